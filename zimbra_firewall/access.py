"""What a policy lets in, in no firewall's words: ports, and the sources that may reach them. The policy
(zimbra_firewall/policy.py) is made of these; each firewall backend renders them into its own rules
(zimbra_firewall/ufw_policy.py for ufw)."""

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, order=True)
class Port:
    first: int
    last: int
    proto: str  # tcp | udp

    def __str__(self):
        span = str(self.first) if self.first == self.last else f"{self.first}:{self.last}"
        return f"{span}/{self.proto}"

    def overlaps(self, other):
        return self.proto == other.proto and self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class Allow:
    """One way in: from `source` (None: from anywhere) to `ports`, or to the ports of the application profile
    `profile`; with neither, to every port (the how-to's blanket rule for a management subnet)."""

    source: Network | None
    ports: tuple[Port, ...] = ()
    profile: str = ""


@dataclass(frozen=True)
class Restriction:
    """Ports that only `sources` may reach (none: nobody off the host): a rule of anyone else's that lets
    another source in to one of them widens the policy."""

    ports: tuple[Port, ...]
    sources: tuple[Network, ...]


def holds(networks: Iterable[Network], inner: Network) -> bool:
    """Is the network `inner` within one of `networks` (those of its family)?"""
    return any(n.version == inner.version and inner.subnet_of(n) for n in networks)  # type: ignore[arg-type]


ANYWHERE = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def opened_wider(
    sources: Iterable[Network], ports: Iterable[Port] | None, restrictions: Iterable[Restriction]
) -> tuple[Port, ...]:
    """The restricted ports that a way in from `sources` to `ports` (None: every port) opens to a source their
    restriction does not allow: what makes a rule that is not the deploy's widen the policy (ufw's and
    firewalld's alike)."""
    sources, ports = tuple(sources), None if ports is None else tuple(ports)
    opened: set[Port] = set()
    for restriction in restrictions:
        if all(holds(restriction.sources, source) for source in sources):
            continue
        opened |= {r for r in restriction.ports if ports is None or any(p.overlaps(r) for p in ports)}
    return tuple(sorted(opened))


def network_order(network: Network) -> tuple[int, Network]:
    """A sort key for networks of both families: IPv4 first."""
    return (network.version, network)  # type: ignore[return-value]
