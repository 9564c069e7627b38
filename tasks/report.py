"""Say a finding once per host (with change detection on, pyinfra runs an operation's body twice), say what
the run knows of a node, and fail a host with a sentence."""

from collections.abc import Iterable

from pyinfra import host, logger
from pyinfra.api import FunctionCommand

from zimbra_firewall.topology import Topology, describe_peers

_said = set()


def report_once(level: str, message: str) -> None:
    if (host.name, message) not in _said:
        _said.add((host.name, message))
        getattr(logger, level)(f"{host.name}: {message}")


def node_view(topology: Topology, warnings: Iterable[str]) -> None:
    """Say what the run knows of this node: its services, and the address it uses for each peer."""
    if topology.borrowed_from:
        logger.warning(f"{host.name}: cannot reach Zimbra's LDAP itself; using what {topology.borrowed_from} read")
    if topology.this:
        services = " ".join(sorted(topology.this.services))
        logger.info(
            f"{host.name}: {topology.this.hostname} runs {services}; peers: {describe_peers(topology) or 'none'}"
        )
    for warning in warnings:
        logger.warning(f"{host.name}: {warning}")


def fail_host(message: str) -> FunctionCommand:
    """A command that fails this host, saying why: it runs nothing more, the other hosts go on."""
    return FunctionCommand(_fail, (message,), {})


def _fail(state, host, message):
    host.log_styled(message, fg="red", log_func=logger.error)
    return False
