"""
Operations for ufw: Zimbra's application profiles, the policy's rules, default policies and enabling.
Each reads the host's state first and yields only the difference.
"""

from pyinfra import host
from pyinfra.api import OperationValueError, QuoteString, StringCommand, operation

from facts.ufw import UfwState
from tasks.report import report_once
from zimbra_firewall.policy import PROFILE_PATH
from zimbra_firewall.ufw import plan_rules, render_profiles, wait_for_xtables_lock

# One read of ufw's state serves every operation until one of them changes ufw (a no-op run is then one
# command, not one per operation). Kept apart per phase: a plan-time read never stands in for execution.
_states = {}


def current_state(lock_wait, profile_path=PROFILE_PATH):
    key = (id(host.state), host.name, host.state.is_executing, lock_wait, profile_path)
    if key not in _states:
        _states[key] = host.get_fact(UfwState, profile_path=profile_path, lock_wait=lock_wait)
    return _states[key]


def forget_state():
    """Called by every operation before it changes ufw (or takes the deploy lock)."""
    for key in [key for key in _states if key[:2] == (id(host.state), host.name)]:
        del _states[key]


def _ufw(*words):
    return StringCommand("LC_ALL=C", "ufw", *[QuoteString(w) for w in words])


def _wait_for_xtables_lock(seconds):
    return StringCommand("sh", "-c", QuoteString(wait_for_xtables_lock(seconds)))


@operation()
def app_profiles(profiles, path=PROFILE_PATH, lock_wait=60):
    """
    Write ufw application profiles and let ufw reload the rules that use them.

    + profiles: ``Profile`` objects (name, title, description, ports) from the policy
    + path: the profile file under /etc/ufw/applications.d
    + lock_wait: seconds to wait for another program's xtables lock before failing

    **Example:**

    .. code:: python

        ufw.app_profiles(profiles=policy.profiles)
    """
    if not profiles:
        raise OperationValueError("no profiles to write")
    text = render_profiles(profiles)
    if current_state(lock_wait, path)["profiles"] == text.rstrip("\n"):
        host.noop(f"ufw profiles in {path} are up to date")
        return
    forget_state()
    yield _wait_for_xtables_lock(lock_wait)
    yield StringCommand("printf", "%s", QuoteString(text), ">", QuoteString(path))
    for profile in profiles:
        yield _ufw("app", "update", profile.name)


@operation()
def rules(policy, lock_wait=60):
    """
    Make ufw's user rules match the policy: add the missing ones (SSH first), delete owned rules no
    longer wanted and unmanaged rules that open a restricted port wider than the policy allows;
    list the other unmanaged rules (or delete them when the policy purges).

    + policy: the host's ``Policy``
    + lock_wait: seconds to wait for another program's xtables lock before failing

    **Example:**

    .. code:: python

        ufw.rules(policy=policy)
    """
    plan = plan_rules(current_state(lock_wait)["rules"], policy)
    for rule in plan.delete_widening:
        report_once("warning", f"removing unmanaged rule that opens a restricted port: ufw {' '.join(rule)}")
    for rule in plan.delete_unmanaged:
        report_once("warning", f"removing unmanaged rule (purge_unmanaged_rules): ufw {' '.join(rule)}")
    for rule in plan.kept_unmanaged:
        report_once("info", f"keeping unmanaged rule: ufw {' '.join(rule)}")
    if not plan.changes:
        host.noop("ufw rules match the policy")
        return
    forget_state()
    yield _wait_for_xtables_lock(lock_wait)
    for rule in plan.add:
        yield _ufw(*rule)
    for rule in plan.delete_owned + plan.delete_widening + plan.delete_unmanaged:
        yield _ufw("--force", "delete", *rule)


@operation()
def default_policy(incoming="deny", outgoing="allow", lock_wait=60):
    """
    Set ufw's default policies, only where they differ (an unchanged ``ufw default`` still reloads).

    + incoming: deny, reject or allow
    + outgoing: deny, reject or allow
    + lock_wait: seconds to wait for another program's xtables lock before failing

    **Example:**

    .. code:: python

        ufw.default_policy(incoming="deny", outgoing="allow")
    """
    for value in (incoming, outgoing):
        if value not in ("deny", "reject", "allow"):
            raise OperationValueError(f"invalid default policy: {value}")
    status = current_state(lock_wait)
    changes = [
        (value, direction)
        for direction, value in (("incoming", incoming), ("outgoing", outgoing))
        if status[direction] != value
    ]
    if not changes:
        host.noop(f"ufw defaults are already {incoming} incoming, {outgoing} outgoing")
        return
    forget_state()
    yield _wait_for_xtables_lock(lock_wait)
    for value, direction in changes:
        yield _ufw("default", value, direction)


@operation()
def enabled(lock_wait=60):
    """
    Enable ufw (and on boot) unless it is active already. Run it after the SSH rules.

    + lock_wait: seconds to wait for another program's xtables lock before failing

    **Example:**

    .. code:: python

        ufw.enabled()
    """
    if current_state(lock_wait)["active"]:
        host.noop("ufw is already active")
        return
    forget_state()
    yield _wait_for_xtables_lock(lock_wait)
    yield _ufw("--force", "enable")
