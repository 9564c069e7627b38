"""Say a finding once per host (with change detection on, pyinfra runs an operation's body twice), say what
the run knows of a node (and, after pyinfra's results, what it left out), and fail a host with a sentence."""

from collections.abc import Iterable

from pyinfra import host, logger
from pyinfra.api import FunctionCommand
from pyinfra.api.state import BaseStateCallback

from tasks import run
from zimbra_firewall.topology import Topology, describe_peers
from zimbra_firewall.untrusted import terminal_safe


def report_once(level: str, message: str) -> None:
    if run.of().say_once(message):
        # a rule's comment or a profile's name, as ufw's files hold them, may carry terminal controls
        getattr(logger, level)(f"{host.name}: {terminal_safe(message)}")


def node_view(topology: Topology, warnings: Iterable[str], refused: Iterable[str] = ()) -> None:
    """Say what the run knows of this node: its services, the address it uses for each peer, and each value
    from LDAP, DNS or the host that it left out (zimbra_firewall/untrusted.py), which the run's last lines
    count again."""
    refused = tuple(refused)
    for value in refused:
        logger.warning(f"{host.name}: untrusted value left out: {value}")
    if refused:
        RunSummary.of(host.state).refused[host.name] = len(refused)
    if topology.borrowed_from:
        logger.warning(f"{host.name}: cannot reach Zimbra's LDAP itself; using what {topology.borrowed_from} read")
    if topology.this:
        services = " ".join(sorted(topology.this.services))
        logger.info(
            f"{host.name}: {topology.this.hostname} runs {services}; peers: {describe_peers(topology) or 'none'}"
        )
    for warning in warnings:
        logger.warning(f"{host.name}: {warning}")


def undo_view(record: dict) -> None:
    """Say what undo.py will put back on this node."""
    if not record["exists"]:
        logger.info(f"{host.name}: undo: nothing to undo")
        return
    parts = (
        [f"the firewall's files and rules as they were before the deploy of {record['since']}"]
        if record["firewall"]
        else []
    )
    parts += [f"memcached's {', '.join(record['memcached'])}"] if record["memcached"] else []
    logger.info(f"{host.name}: undo: puts back {' and '.join(parts) or 'nothing'}")


def fail_host(message: str) -> FunctionCommand:
    """A command that fails this host, saying why: it runs nothing more, the other hosts go on."""
    return FunctionCommand(_fail, (message,), {})


def _fail(state, host, message):
    host.log_styled(message, fg="red", log_func=logger.error)
    return False


class RunSummary(BaseStateCallback):
    """What the whole run left out, said once after pyinfra's results (when the last host disconnects)."""

    def __init__(self) -> None:
        self.refused: dict[str, int] = {}
        self.disconnected = 0

    @classmethod
    def of(cls, state) -> "RunSummary":
        found = next((h for h in state.callback_handlers if isinstance(h, cls)), None)
        if found is None:
            found = cls()
            state.add_callback_handler(found)
        return found

    def host_disconnect(self, state, host) -> None:  # type: ignore[override]
        self.disconnected += 1
        if self.disconnected == len(state.activated_hosts) and self.refused:
            nodes = ", ".join(f"{name} ({count})" for name, count in sorted(self.refused.items()))
            logger.warning(
                f"--> values from Zimbra's LDAP, DNS or the hosts were left out on {len(self.refused)} node(s): "
                f"{nodes}; the run went on without them (the warnings above name each)"
            )
