"""Operations of undo.py: refuse a host with nothing to undo, put its firewall back from the undo record
(zimbra_firewall/rollback/undo.sh, under the undo's own dead-man's switch), and use the record up."""

from collections.abc import Generator

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from facts.firewalld import FirewalldState
from facts.safety import UndoRecord
from facts.ufw import UfwState
from tasks import run
from tasks.report import fail_host
from zimbra_firewall.safety import UNDO_DIR, Switch


def reads() -> run.Reads:
    """The fact this module's operations read (for tasks/run.py's prefetch)."""
    return [(UndoRecord, {})]


def record() -> dict:
    """The host's undo record (facts.safety.UndoRecord), as read while loading."""
    return run.of().peek(UndoRecord) or UndoRecord.default()


@operation()
def record_present(record: dict) -> Generator:
    """
    Fail this host, untouched, when it has nothing to undo, or an undo record that cannot be used.

    + record: the host's undo record (``record()``)
    """
    if not record["exists"]:
        yield fail_host(
            "nothing to undo: no deploy has changed this host since its last undo (or ever); it is left untouched"
        )
    elif record["problem"]:
        yield fail_host(f"cannot undo: {record['problem']}; the host is left untouched")
    else:
        host.noop(f"the deploy of {record['since']} can be undone")


@operation()
@run.changes(UfwState, FirewalldState)
def firewall_back(switch: Switch) -> Generator:
    """
    Put the firewall back as the undo record has it (ufw's files and the kernel's ufw rules; firewalld's files,
    then one reload), while ``switch``'s arm holds.

    + switch: the undo's own ``Switch``, armed
    """
    yield StringCommand("sh", "-c", *[QuoteString(word) for word in switch.undo_arguments()])


@operation()
def record_used() -> Generator:
    """
    Remove the undo record: what it held is back, and a second undo has nothing to put back.
    """
    yield StringCommand("rm", "-rf", QuoteString(UNDO_DIR))
