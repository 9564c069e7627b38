"""
Operations for firewalld: service definitions, an owned policy object and zones pruned of what widens it,
written as permanent configuration, then applied with ONE reload. Each reads the host's state first and
yields only the difference. They take plain values and know nothing of Zimbra (deploy.py passes the Zimbra
policy's values through zimbra_firewall/firewalld_policy.py), so any pyinfra deploy can use them.
"""

import os
from collections.abc import Generator, Iterable

from pyinfra import host
from pyinfra.api import OperationValueError, QuoteString, StringCommand, operation

from facts.firewalld import FirewalldState
from tasks import run
from tasks.report import report_once
from zimbra_firewall import firewalld
from zimbra_firewall.firewalld import (
    Plan,
    Service,
    State,
    Wanted,
    plan,
    record_digests,
)


def current_state(record: str) -> State:
    """firewalld's state on this host (facts.firewalld.FirewalldState): one read serves every operation until
    one of them changes it."""
    return run.fact(FirewalldState, record=record)


def reads(record: str) -> run.Reads:
    """The fact this module's operations read first (for tasks/run.py's prefetch)."""
    return [(FirewalldState, {"record": record})]


def _one_command(guard: str, *lines: str | StringCommand) -> StringCommand:
    """A step's commands in ONE remote shell, stopping at the first that fails, `guard` first."""
    script = ["set -e", guard, *(line.get_raw_value() if isinstance(line, StringCommand) else line for line in lines)]
    return StringCommand("sh", "-c", QuoteString("\n".join(line for line in script if line)))


def _write(path: str, text: str) -> list[StringCommand]:
    """Two lines, not `a && b`: `set -e` does not stop at a failure before the last command of a list."""
    new = f"{path}.zimbra-firewall.new"
    return [
        StringCommand("printf", "%s", QuoteString(text), ">", QuoteString(new)),
        StringCommand("mv", QuoteString(new), QuoteString(path)),
    ]


def _report(found: Plan) -> None:
    for zone in found.zones:
        where = f"{zone.kind} {zone.zone}"
        for entry, ports in zone.removed:
            why = f"opens {', '.join(str(p) for p in ports)} wider than the policy" if ports else "named for removal"
            report_once("warning", f"removing from {where} ({why}): {entry.element}")
        for entry in zone.purged:
            report_once("warning", f"removing from {where} (purge): {entry.element}")
        for entry in zone.kept:
            report_once("info", f"keeping in {where}: {entry.element}")
        if zone.target[1]:
            report_once("info", f"{where}: target {zone.target[0]} → {zone.target[1]}")


def configuration_plan(
    services: Iterable[Service], policy_name: str, policy_text: str, wanted: Wanted, record: str
) -> Plan:
    """What configured() would write, from this host's state (the rollback's "will the firewall change" too)."""
    return plan(current_state(record), services, policy_name, policy_text, wanted)


def problems(services: Iterable[Service], policy_name: str, policy_text: str, wanted: Wanted, record: str) -> list[str]:
    """Why configured() would refuse this host, from its state (the preflight asks before anything is armed)."""
    return firewalld.problems(current_state(record), services, policy_name, policy_text, wanted)


@operation()
@run.changes(FirewalldState)
def configured(
    services: Iterable[Service],
    policy_name: str,
    policy_text: str,
    wanted: Wanted,
    record: str,
    guard: str = "",
) -> Generator:
    """
    Write firewalld's permanent configuration: the service definitions (and those this deploy wrote that are
    no longer wanted removed), the owned policy object, and the zones packets land in, pruned of every entry
    that opens a restricted port wider than allowed (and of the services named for removal), with the wanted
    target. Nothing is in force until ``applied`` reloads.

    + services: ``zimbra_firewall.firewalld.Service`` objects (name, ports, short, description)
    + policy_name: the owned policy object's name (its file /etc/firewalld/policies/NAME.xml)
    + policy_text: that file's text (``zimbra_firewall.firewalld.render_policy``)
    + wanted: ``zimbra_firewall.firewalld.Wanted``: the default zone's target, the restrictions, services to
      remove, zones that may keep accepting everything
    + record: the file ``applied`` keeps its digests in (read with the state)
    + guard: shell run first, in the same remote command, that stops the step by exiting (a dead-man's
      switch's check that its arm still holds)

    **Example:**

    .. code:: python

        firewalld.configured(
            services=[Service("web", (Port(80, 80, "tcp"), Port(443, 443, "tcp")))],
            policy_name="web-firewall",
            policy_text=render_policy("web-firewall", [Grant(None, "web")]),
            wanted=Wanted("DROP", restrictions=()),
            record="/var/lib/web-firewall/firewalld-applied",
        )
    """
    services = tuple(services)
    refused = problems(services, policy_name, policy_text, wanted, record)
    if refused:
        raise OperationValueError(f"{'; '.join(refused)}: firewalld is left as it is")
    found = configuration_plan(services, policy_name, policy_text, wanted, record)
    _report(found)
    if not found.changes:
        host.noop("firewalld's configuration is as wanted")
        return
    folders = sorted({os.path.dirname(path) for path in found.writes})
    lines = [StringCommand("mkdir", "-p", QuoteString(folder)) for folder in folders]
    lines += [line for path, text in sorted(found.writes.items()) for line in _write(path, text)]
    lines += [StringCommand("rm", "-f", QuoteString(path)) for path in found.removes]
    yield _one_command(guard, *lines)


@operation()
@run.changes(FirewalldState)
def applied(record: str, guard: str = "") -> Generator:
    """
    Put firewalld's permanent configuration in force with ONE reload, unless the configuration and the
    kernel's ruleset are still what the last reload made (a file changed since, or a runtime-only change
    such as ``firewall-cmd --add-port`` without ``--permanent``, reloads). The configuration is checked
    first (``firewall-cmd --check-config``): a bad one is never loaded. A reload drops new connections while it
    rebuilds (firewalld's DROP policy table); established ones stay.

    + record: the file the digests of what was applied are kept in (root's)
    + guard: shell run first, in the same remote command, that stops the step by exiting

    **Example:**

    .. code:: python

        firewalld.applied(record="/var/lib/web-firewall/firewalld-applied")
    """
    state = current_state(record)
    if not state.running:
        raise OperationValueError("firewalld is not running: start it (systemctl enable --now firewalld)")
    if state.applied:
        host.noop("firewalld runs what its configuration says, as the last reload made it")
        return
    yield _one_command(
        guard,
        StringCommand("mkdir", "-p", QuoteString(os.path.dirname(record))),
        "firewall-cmd --check-config >/dev/null",
        "firewall-cmd --reload >/dev/null",
        record_digests(record),
    )
