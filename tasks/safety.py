"""
Operations of the dead-man's switch: snapshot ufw and arm a rollback timer before the firewall changes,
disarm it once the controller got through on a new connection, and report rollbacks that happened.
"""

from collections.abc import Generator

from pyinfra import host
from pyinfra.api import OperationValueError, QuoteString, StringCommand, operation

from facts.safety import Preflight
from facts.ufw import FileText
from tasks import prefetch
from tasks.report import fail_host, report_once
from tasks.ufw import current_state, forget_state
from zimbra_firewall.policy import Policy
from zimbra_firewall.safety import ROLLBACK_LOG, arm_arguments, disarm_arguments, preflight_problem
from zimbra_firewall.ufw import changes_pending


def reads() -> prefetch.Reads:
    """The facts this module's operations read (for tasks/prefetch.py)."""
    return [(Preflight, {"_sudo": False}), (FileText, {"path": ROLLBACK_LOG})]


def _sh(script, *arguments):
    return StringCommand("sh", "-c", *[QuoteString(word) for word in (script, *arguments)])


@operation()
def preflight(policy: Policy) -> Generator:
    """
    Fail this host, untouched, unless it is a Zimbra server with ufw (IPv6 on when the policy has IPv6
    subnets) that the controller reaches from a management subnet on ``firewall_ssh_port``; the last
    check is skipped when the policy allows the lockout risk. Run it first: a failed host runs nothing more.

    + policy: the host's ``Policy``

    **Example:**

    .. code:: python

        safety.preflight(policy=policy)
    """
    problem = preflight_problem(policy, prefetch.fact(Preflight, _sudo=False))
    if not problem:
        host.noop("a Zimbra server with ufw, reached from a management subnet on the firewall's SSH port")
        return
    yield fail_host(f"{problem}; this host is left untouched")


def firewall_will_change(policy: Policy) -> bool:
    """What the ufw operations of deploy.py would do, asked of the same planners with the same values."""
    return changes_pending(
        current_state(policy.xtables_lock_wait),
        policy.profiles,
        policy.rule_arguments,
        policy.default_incoming,
        policy.default_outgoing,
    )


@operation()
def arm_rollback(policy: Policy, seconds: int = 120) -> Generator:
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
    # the snapshot is also the host's deploy lock: what was read before taking it is read again
    forget_state()
    yield _sh(*arm_arguments(seconds))


@operation()
def disarm_rollback() -> Generator:
    """
    Stop the rollback timer and release the lock. Run it only after a new connection succeeded.

    **Example:**

    .. code:: python

        safety.disarm_rollback(_if=armed.did_change)
    """
    yield _sh(*disarm_arguments())


@operation()
def report_rollbacks() -> Generator:
    """
    Show rollbacks that restored the firewall since the last run (time and reason), then file them
    away so each is reported once.

    **Example:**

    .. code:: python

        safety.report_rollbacks()
    """
    log = prefetch.fact(FileText, path=ROLLBACK_LOG)
    if not log:
        host.noop("no rollback since the last run")
        return
    for line in log.splitlines():
        report_once("warning", f"ROLLBACK happened: {line}")
    yield _sh(f"cat {ROLLBACK_LOG} >> {ROLLBACK_LOG}.reported && rm {ROLLBACK_LOG}")


def confirm_new_connection() -> None:
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
