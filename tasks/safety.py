"""
Operations of the dead-man's switch: snapshot ufw and arm a rollback timer before the firewall changes,
disarm it once the controller got through on a new connection, and report rollbacks that happened.
"""

import time
from collections.abc import Generator

from pyinfra import host, logger
from pyinfra.api import OperationValueError, QuoteString, StringCommand, operation

from facts.firewalld import FirewalldState
from facts.safety import Preflight, RollbackState
from facts.ufw import UfwState
from tasks import firewalld, run, ufw
from tasks.report import fail_host, report_once
from tasks.ufw import current_state
from zimbra_firewall.firewalld import changes_pending as firewalld_changes_pending
from zimbra_firewall.firewalld_policy import arguments as firewalld_arguments
from zimbra_firewall.policy import Policy
from zimbra_firewall.safety import (
    FIREWALLD_RECORD,
    Switch,
    chosen_firewall,
    preflight_problem,
    recover_arguments,
    reported_arguments,
)
from zimbra_firewall.ufw import changes_pending
from zimbra_firewall.ufw_policy import rule_arguments


def reads() -> run.Reads:
    """The facts this module's operations read (for tasks/run.py's prefetch)."""
    return [(Preflight, {"_sudo": False}), (RollbackState, {})]


def firewall(policy: Policy) -> str:
    """This host's firewall backend, ufw or firewalld: the policy's `firewall` setting, `auto` resolved from
    what the host runs (zimbra_firewall.safety.chosen_firewall)."""
    # peeked, not read: the Preflight operation's own read stays the one this host makes (a failed read there
    # fails the host; here it would stop every host's run)
    return chosen_firewall(policy.firewall, run.of().peek(Preflight, _sudo=False) or {})


def firewall_reads(policy: Policy) -> run.Reads:
    """The state reads of this host's backend (for tasks/run.py's prefetch, once reads() are in)."""
    if firewall(policy) == "firewalld":
        return firewalld.reads(FIREWALLD_RECORD)
    return ufw.reads(policy.xtables_lock_wait)


def _sh(script, *arguments):
    return StringCommand("sh", "-c", *[QuoteString(word) for word in (script, *arguments)])


@operation()
def preflight(policy: Policy) -> Generator:
    """
    Fail this host, untouched, unless it is a Zimbra server with its firewall (ufw, with IPv6 on when the
    policy has IPv6 subnets; or firewalld running, 0.9 or later) that the controller reaches from a
    management subnet on ``firewall_ssh_port``; the last check is skipped when the policy allows the lockout
    risk. On firewalld, also unless its configuration can be judged (a zone file that does not parse, a zone
    that accepts everything, the iptables backend…). Run it first: a failed host runs nothing more.

    + policy: the host's ``Policy``

    **Example:**

    .. code:: python

        safety.preflight(policy=policy)
    """
    backend = firewall(policy)
    problem = preflight_problem(policy, run.fact(Preflight, _sudo=False), backend)
    if not problem and backend == "firewalld":
        problem = "; ".join(firewalld.problems(**firewalld_arguments(policy), record=FIREWALLD_RECORD))
    if not problem:
        host.noop(f"a Zimbra server with {backend}, reached from a management subnet on the firewall's SSH port")
        return
    yield fail_host(f"{problem}; this host is left untouched")


def firewall_will_change(policy: Policy) -> bool:
    """What the firewall operations of deploy.py would do, asked of the same planners with the same values."""
    if firewall(policy) == "firewalld":
        state = firewalld.current_state(FIREWALLD_RECORD)
        return firewalld_changes_pending(state, **firewalld_arguments(policy))
    return changes_pending(
        current_state(policy.xtables_lock_wait),
        policy.profiles,
        rule_arguments(policy),
        policy.default_incoming,
        policy.default_outgoing,
    )


@operation()
@run.changes(UfwState, FirewalldState)  # the snapshot is also the host's deploy lock: read again after it
def arm_rollback(policy: Policy, switch: Switch, seconds: int = 120, needed: bool | None = None) -> Generator:
    """
    When the firewall is about to change: take the host's deploy lock, snapshot the firewall's files (ufw's and
    the kernel's rules; firewalld's permanent configuration), and arm a timer that restores them after
    ``seconds`` unless ``disarm_rollback`` runs first. A second deploy that finds the lock taken fails
    clearly; so does a host whose rules cannot be read, with nothing changed.

    + policy: the host's ``Policy`` (to know whether anything will change)
    + switch: this run's ``zimbra_firewall.safety.Switch``: its token, which every later ufw step checks
    + seconds: how long the change has to prove it left SSH reachable
    + needed: whether the firewall will change; by default the deploy's planners are asked

    **Example:**

    .. code:: python

        switch = Switch.new()
        armed = safety.arm_rollback(policy=policy, switch=switch, seconds=120)
        ufw.rules(..., guard=switch.guard)
    """
    if not isinstance(seconds, int) or seconds < 5:
        raise OperationValueError("the rollback timer needs at least 5 seconds")
    if not (firewall_will_change(policy) if needed is None else needed):
        host.noop("firewall already as wanted: no rollback needed")
        return
    yield _sh(*switch.arm_arguments(seconds, firewall(policy)))


@operation()
def disarm_rollback(switch: Switch, keep: bool = True) -> Generator:
    """
    Stop the rollback timer and release the lock, if this run's arm still holds (else fail, saying when the
    rollback fired). Run it only after a new connection succeeded.

    + switch: this run's ``Switch``, as armed
    + keep: keep the snapshot as the undo record (undo.py puts it back), replacing the one before

    **Example:**

    .. code:: python

        safety.disarm_rollback(switch=switch, _if=armed.did_change)
    """
    yield _sh(*switch.disarm_arguments(keep))


def memcached_undo_keeping(switch: Switch, undo: tuple[str, ...]) -> StringCommand:
    """The command that adds to the undo record the ``zmprov ms`` arguments putting memcached's previous values
    back (to this run's record when the firewall changed too, else to a new one): for
    ``tasks.zimbra.memcached_binding``'s ``then``, run once memcached changed.

    + switch: this run's ``Switch``
    + undo: the arguments (zimbra_firewall.zimbra.MemcachedChange's ``undo``)
    """
    return _sh(*switch.keep_memcached_arguments(undo))


@operation()
@run.changes(UfwState, FirewalldState)  # a recovery puts the firewall back: what was read before is read again
def report_rollbacks() -> Generator:
    """
    Show rollbacks that restored the firewall since the last run (time and reason; a failed one as an
    error), file them away so each is reported once, and finish what an earlier run left: a restore cut
    short, or an arm whose timer is gone (the host restarted, or the timer was killed), which is restored,
    since its change was never confirmed. The firewall's steps after it read ufw again.

    **Example:**

    .. code:: python

        safety.report_rollbacks()
    """
    found = run.fact(RollbackState)
    if not found["log"] and not found["unfinished"]:
        host.noop("no rollback since the last run")
        return
    for line in found["log"].splitlines():
        if " FAILED " in line:
            report_once("error", f"ROLLBACK FAILED: {line}")
        else:
            report_once("warning", f"ROLLBACK happened: {line}")
    if found["log"]:
        yield _sh(*reported_arguments(len(found["log"].splitlines())))
    if found["unfinished"]:
        what = {
            "restore": "an earlier restore was cut short: finishing it",
            "stale-arm": "an earlier change was never confirmed and its rollback timer is gone (a restart, or the "
            "timer was killed): putting the firewall back as it was before it",
        }[found["unfinished"]]
        report_once("warning", what)
        yield _sh(*recover_arguments())


# An sshd that many clients reach at once (a scan; MaxStartups' random early drop, 10:30:100 by default) closes
# some new connections before its banner: one such drop is no proof that the firewall blocks SSH. A firewall
# that does block it fails every attempt, and the rollback's timer runs meanwhile whatever happens here.
CONNECTION_ATTEMPTS = 3
SECONDS_BETWEEN_ATTEMPTS = 2.0


def confirm_new_connection(
    state, host, attempts: int = CONNECTION_ATTEMPTS, pause: float = SECONDS_BETWEEN_ATTEMPTS
) -> bool:
    """For ``python.call``: open a NEW connection the way the deploy reached this host, and run a command
    over it; up to ``attempts`` times. When none gets through the host fails with a sentence, and its
    rollback restores the firewall."""
    for attempt in range(1, attempts + 1):
        ok, why = _new_connection_runs_a_command(state, host)
        if ok:
            return True
        if attempt < attempts:
            host.log_styled(
                f"a new SSH connection did not get through ({why}): trying again", fg="yellow", log_func=logger.warning
            )
            time.sleep(pause)
    message = f"a new SSH connection did not get through ({why}): the rollback puts the firewall back"
    host.log_styled(message, fg="red", log_func=logger.error)
    return False


def _new_connection_runs_a_command(state, host) -> tuple[bool, str]:
    connector = type(host.connector)(state, host)
    try:
        connector.connect()
        ok, _output = connector.run_shell_command(StringCommand("true"))
        why = "it opened but could not run a command"
    except Exception as error:  # the connector's own errors (ConnectError, SSHException, OSError …) say why
        ok, why = False, str(error) or type(error).__name__
    finally:
        _close_quietly(getattr(connector, "client", None))
    return ok, why


def _close_quietly(client):
    """Closing is not part of the check: paramiko's ProxyCommand close raises when the proxy process
    has already exited (seen at 30 hosts), which says nothing about whether the host is reachable."""
    if client is None:
        return
    try:
        client.close()
    except OSError:
        pass
