"""
Operations of the dead-man's switch: snapshot ufw and arm a rollback timer before the firewall changes,
disarm it once the controller got through on a new connection, and report rollbacks that happened.
"""

from pyinfra import host
from pyinfra.api import OperationValueError, QuoteString, StringCommand, operation

from facts.ufw import FileText, UfwRules, UfwStatus
from tasks.report import report_once
from zimbra_firewall.policy import PROFILE_PATH
from zimbra_firewall.safety import DISARM_SCRIPT, ROLLBACK_LOG, arm_script
from zimbra_firewall.ufw import plan_rules, render_profiles


def _sh(script):
    return StringCommand("sh", "-c", QuoteString(script))


def firewall_will_change(policy):
    status = host.get_fact(UfwStatus, lock_wait=policy.xtables_lock_wait)
    return (
        not status["active"]
        or (status["incoming"], status["outgoing"]) != (policy.default_incoming, policy.default_outgoing)
        or plan_rules(host.get_fact(UfwRules), policy).changes
        or host.get_fact(FileText, path=PROFILE_PATH) != render_profiles(policy.profiles).rstrip("\n")
    )


@operation()
def arm_rollback(policy, seconds=120):
    """
    When the firewall is about to change: take the host's deploy lock, snapshot ufw (rules, policies,
    profiles, active or not) and arm a timer that restores the snapshot after ``seconds`` unless
    ``disarm_rollback`` runs first. A second deploy that finds the lock taken fails clearly.

    + policy: the host's ``Policy`` (to know whether anything will change)
    + seconds: how long the change has to prove it left SSH reachable

    **Example:**

    .. code:: python

        armed = safety.arm_rollback(policy=policy, seconds=120)
    """
    if not isinstance(seconds, int) or seconds < 5:
        raise OperationValueError("the rollback timer needs at least 5 seconds")
    if not firewall_will_change(policy):
        host.noop("firewall already as wanted: no rollback needed")
        return
    yield _sh(arm_script(seconds))


@operation()
def disarm_rollback():
    """
    Stop the rollback timer and release the lock. Run it only after a new connection succeeded.

    **Example:**

    .. code:: python

        safety.disarm_rollback(_if=armed.did_change)
    """
    yield _sh(DISARM_SCRIPT)


@operation()
def report_rollbacks():
    """
    Show rollbacks that restored the firewall since the last run (time and reason), then file them
    away so each is reported once.

    **Example:**

    .. code:: python

        safety.report_rollbacks()
    """
    log = host.get_fact(FileText, path=ROLLBACK_LOG)
    if not log:
        host.noop("no rollback since the last run")
        return
    for line in log.splitlines():
        report_once("warning", f"ROLLBACK happened: {line}")
    yield _sh(f"cat {ROLLBACK_LOG} >> {ROLLBACK_LOG}.reported && rm {ROLLBACK_LOG}")


def confirm_new_connection():
    """For ``python.call``: open a NEW connection the way the deploy reached this host, and run a
    command over it. Raises (failing the host, so the rollback fires) when that is not possible."""
    connector = type(host.connector)(host.state, host)
    connector.connect()
    try:
        ok, _output = connector.run_shell_command(StringCommand("true"))
    finally:
        _close_quietly(getattr(connector, "client", None))
    if not ok:
        raise RuntimeError("a new connection opened but could not run a command")


def _close_quietly(client):
    """Closing is not part of the check: paramiko's ProxyCommand close raises when the proxy process
    has already exited (seen at 30 hosts), which says nothing about whether the host is reachable."""
    if client is None:
        return
    try:
        client.close()
    except OSError:
        pass
