"""
Operations for ufw: application profiles, rules owned by a comment tag, default policies and enabling.
Each reads the host's state first and yields only the difference. They take plain values and know
nothing of Zimbra (deploy.py passes the Zimbra policy's values), so any pyinfra deploy can use them.
"""

import re
import shlex
from collections.abc import Generator, Iterable, Mapping

from pyinfra import host
from pyinfra.api import OperationValueError, QuoteString, StringCommand, operation

from facts.ufw import UfwState
from tasks import run
from tasks.report import report_once
from zimbra_firewall.ufw import (
    DEFAULT_POLICIES,
    PROFILE_PATH,
    Profile,
    as_profiles,
    default_policy_script,
    plan_defaults,
    plan_profiles,
    plan_rules,
    wait_for_xtables_lock,
)


def current_state(lock_wait: int, profile_path: str = PROFILE_PATH) -> dict:
    """ufw's state on this host (facts.ufw.UfwState): one read serves every operation until one of them
    changes ufw (each that does is declared `run.changes(UfwState)`), so a no-op run is one command."""
    return run.fact(UfwState, profile_path=profile_path, lock_wait=lock_wait)


def reads(lock_wait: int = 60, profile_path: str = PROFILE_PATH) -> run.Reads:
    """The fact this module's operations read first (for tasks/run.py's prefetch)."""
    return [(UfwState, {"profile_path": profile_path, "lock_wait": lock_wait})]


def _ufw(*words):
    return StringCommand("LC_ALL=C", "ufw", *[QuoteString(w) for w in words])


# `ufw app update NAME` rewrites the rules that use the profile but reloads them into the kernel only when it
# is not run under SSH (ufw src/frontend.py application_update, LP #424528), and pyinfra always is: the
# kernel kept the profile's old ports, while `ufw status` showed the new ones. This is ufw's own command with
# that one check answered "not under SSH"; the reload it then makes is _reload_user_rules, the one every
# `ufw allow` makes (flush and restore of ufw's user chains: closed for a moment, never open). Run by ufw's
# own interpreter (its #! line) in isolated mode: no current directory or PYTHON* variable on its path.
APP_UPDATE = (
    "import runpy, sys, ufw.util; ufw.util.under_ssh = lambda *args, **kwargs: False; "
    'sys.argv.pop(0); runpy.run_path(sys.argv[0], run_name="__main__")'
)


def app_update_script(names: Iterable[str], path: str, previous: str | None) -> str:
    """Shell that reloads the rules of each profile in `names` after their file at `path` was written, and
    on a failure puts the file back as it was (`previous`, None: no file), so that the next run sees the
    change still to make."""
    updates = " && ".join(
        f'LC_ALL=C $ufw_python -I -c {shlex.quote(APP_UPDATE)} "$ufw_script" app update {shlex.quote(name)}'
        for name in names
    )
    target = shlex.quote(path)
    undo = f"rm -f {target}" if previous is None else f"printf '%s\\n' {shlex.quote(previous)} > {target}"
    found = 'ufw_script=$(command -v ufw) && ufw_python=$(sed -n "1s/^#! *//p" "$ufw_script") && [ -n "$ufw_python" ]'
    return f"if ! {{ {found} && {updates}; }}; then {undo}; exit 1; fi"


def _one_command(guard: str, lock_wait: int, *steps: str | StringCommand) -> StringCommand:
    """A step's commands in ONE remote shell, each quoted, stopping at the first that fails: `guard` first,
    then the wait for another program's xtables lock, then the steps."""
    script = ["set -e", guard, wait_for_xtables_lock(lock_wait)]
    script += [step.get_raw_value() if isinstance(step, StringCommand) else step for step in steps]
    return StringCommand("sh", "-c", QuoteString("\n".join(line for line in script if line)))


@operation()
@run.changes(UfwState)
def app_profiles(
    profiles: Mapping[str, str] | Iterable[Profile], path: str = PROFILE_PATH, lock_wait: int = 60, guard: str = ""
) -> Generator:
    """
    Write ufw application profiles and let ufw reload the rules that use them.

    + profiles: ``{"name": "80,443/tcp", ...}``, or ``Profile`` objects (name, ports, title, description)
    + path: the profile file under /etc/ufw/applications.d (the other operations read the default one)
    + lock_wait: seconds to wait for another program's xtables lock before failing
    + guard: shell run first, in the same remote command, that stops the step by exiting (a dead-man's
      switch's check that its arm still holds: zimbra_firewall.safety.Switch.guard)

    **Example:**

    .. code:: python

        ufw.app_profiles(profiles={"Web": "80,443/tcp"}, path="/etc/ufw/applications.d/web")
    """
    profiles = as_profiles(profiles)
    if not profiles:
        raise OperationValueError("no profiles to write")
    previous = current_state(lock_wait, path)["profiles"]
    text = plan_profiles(previous, profiles)
    if text is None:
        host.noop(f"ufw profiles in {path} are up to date")
        return
    write = StringCommand("printf", "%s", QuoteString(text), ">", QuoteString(path))
    update = app_update_script([profile.name for profile in profiles], path, previous)
    yield _one_command(guard, lock_wait, write, update)


@operation()
@run.changes(UfwState)
def rules(
    rules: Iterable[tuple[str, ...]],
    owner: str,
    restrictions: Mapping[str, Iterable[str]] | None = None,
    apps: Mapping[str, str] | None = None,
    purge: bool = False,
    changes: str = "both",
    lock_wait: int = 60,
    guard: str = "",
) -> Generator:
    """
    Make ufw's user rules match ``rules``: add the missing ones (in the order given: put SSH first),
    delete rules tagged ``owner`` that are no longer wanted and unmanaged rules that open a restricted
    port to other sources; list the other unmanaged rules (or delete them with ``purge``).
    With ``changes="add"`` then ``changes="delete"`` (two operations), pyinfra adds on every host before
    it deletes on any: a rule another host's traffic needs is never missing in between.

    + rules: argument tuples as ``ufw show added`` prints them, e.g. ``("allow", "from", "10.0.0.0/8",
      "to", "any", "port", "22", "proto", "tcp")``; each is tagged with the comment ``owner``
    + owner: the comment tag of the rules this deploy owns
    + restrictions: ``{"5432/tcp": ["10.1.0.0/16"]}``: ports only those sources may reach
    + apps: ``{"Web": "80,443/tcp"}``: what the profiles named in rules open
    + purge: delete every unmanaged rule, not only those that widen a restriction
    + changes: ``both``, ``add`` (additions only) or ``delete`` (deletions only)
    + lock_wait: seconds to wait for another program's xtables lock before failing
    + guard: shell run first, in the same remote command, that stops the step by exiting

    **Example:**

    .. code:: python

        ufw.rules(
            rules=[("allow", "from", "10.0.0.0/8", "to", "any", "port", "22", "proto", "tcp"), ("allow", "Web")],
            owner="web-firewall",
            restrictions={"5432/tcp": ["10.1.0.0/16"]},
            apps={"Web": "80,443/tcp"},
        )
    """
    if not isinstance(owner, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", owner):
        raise OperationValueError(f"owner must be a plain tag (letters, digits, _ . : -), not {owner!r}")
    if any(not rule or not all(isinstance(word, str) for word in rule) for rule in rules):
        raise OperationValueError("each rule is a non-empty tuple of ufw's words")
    if changes not in ("both", "add", "delete"):
        raise OperationValueError(f"changes must be both, add or delete, not {changes!r}")
    # deletions do not depend on whether the additions ran, so each step plans from what it reads
    state = current_state(lock_wait)
    plan = plan_rules(state["rules"], rules, owner, restrictions, apps, purge, state["apps"])
    for rule, ports in zip(plan.delete_widening, plan.opened, strict=True):
        opened = ", ".join(str(port) for port in ports)
        report_once(
            "warning", f"removing unmanaged rule that opens {opened} wider than the policy: ufw {shlex.join(rule)}"
        )
    for rule in plan.delete_unmanaged:
        report_once("warning", f"removing unmanaged rule (purge): ufw {' '.join(rule)}")
    for rule in plan.kept_unmanaged:
        report_once("info", f"keeping unmanaged rule: ufw {' '.join(rule)}")
    additions = plan.add if changes != "delete" else ()
    deletions = plan.delete_owned + plan.delete_widening + plan.delete_unmanaged if changes != "add" else ()
    if not additions and not deletions:
        host.noop("ufw rules are as wanted" if not plan.changes else f"no rule to {changes} here")
        return
    commands = [_ufw(*rule) for rule in additions] + [_ufw("--force", "delete", *rule) for rule in deletions]
    yield _one_command(guard, lock_wait, *commands)


@operation()
@run.changes(UfwState)
def default_policy(incoming: str = "deny", outgoing: str = "allow", lock_wait: int = 60, guard: str = "") -> Generator:
    """
    Set ufw's default policies, only where they differ, as ``ufw default`` would but without the disable and
    enable it runs on an active firewall (which let everything in for seconds): the files as ufw writes them,
    the kernel's policy chains in one transaction per family (zimbra_firewall.ufw.default_policy_script).

    + incoming: deny, reject or allow
    + outgoing: deny, reject or allow
    + lock_wait: seconds to wait for another program's xtables lock before failing
    + guard: shell run first, in the same remote command, that stops the step by exiting

    **Example:**

    .. code:: python

        ufw.default_policy(incoming="deny", outgoing="allow")
    """
    for value in (incoming, outgoing):
        if value not in DEFAULT_POLICIES:
            raise OperationValueError(f"invalid default policy: {value}")
    changes = plan_defaults(current_state(lock_wait), incoming, outgoing)
    if not changes:
        host.noop(f"ufw defaults are already {incoming} incoming, {outgoing} outgoing")
        return
    yield _one_command(guard, lock_wait, default_policy_script(changes, lock_wait))


@operation()
@run.changes(UfwState)
def enabled(lock_wait: int = 60, guard: str = "") -> Generator:
    """
    Enable ufw (and on boot) unless it is active already. Run it after the SSH rules.

    + lock_wait: seconds to wait for another program's xtables lock before failing
    + guard: shell run first, in the same remote command, that stops the step by exiting

    **Example:**

    .. code:: python

        ufw.enabled()
    """
    if current_state(lock_wait)["active"]:
        host.noop("ufw is already active")
        return
    yield _one_command(guard, lock_wait, _ufw("--force", "enable"))
