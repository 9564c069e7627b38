"""What a lab consists of: hosts, roles and addresses. Pure data, no I/O.

All hosts share one layer-2 segment (a bridge in the lab's namespace); the "subnets" below are what a
firewall on a Zimbra host sees as the source of a connection: the controller and `mgmt` in the
management subnet, `outside` in a subnet that stands for the internet.
"""

import ipaddress
import uuid
from dataclasses import asdict, dataclass

from .errors import LabError

LAB_IPV4 = ipaddress.ip_network("10.77.0.0/16")
LAB_IPV6 = ipaddress.ip_network("fd5a:7e3c:91b2::/48")
SUBNETS = {
    "servers": ("10.77.0.0/24", "fd5a:7e3c:91b2::/64"),
    "management": ("10.77.1.0/24", "fd5a:7e3c:91b2:1::/64"),
    "outside": ("10.77.2.0/24", "fd5a:7e3c:91b2:2::/64"),
}
CONTROLLER = ("10.77.1.1", "fd5a:7e3c:91b2:1::1")
DOMAIN = "zfw.test"
MAX_ZIMBRA_HOSTS = 200
TOPOLOGIES = ("single",)

# What a fresh single-server Zimbra install listens on, on every address (Zimbra's sources, see
# shared/reference/zimbra-ports.md). sshd, slapd (389) and memcached (11211) are the real services.
ZIMBRA_TCP_PORTS = [
    25, 80, 110, 143, 443, 465, 587, 636, 993, 995, 3310, 3443, 5222, 5223, 5269, 7025, 7026, 7047, 7071,
    7072, 7073, 7074, 7110, 7143, 7171, 7285, 7306, 7780, 7993, 7995, 8080, 8443, 8465, 8735, 8736, 9071,
    9443, 10024, 10025, 10026, 10027, 10028, 10029, 10030, 10031, 10032, 10663, 23232, 23233,
]
ZIMBRA_UDP_PORTS = [53, 514]
REAL_SERVICE_PORTS = {"tcp": [22, 389, 11211], "udp": []}


@dataclass(frozen=True)
class Host:
    name: str
    role: str  # zimbra | mgmt | outside
    ipv4: str
    ipv6: str

    @property
    def fqdn(self):
        return f"{self.name}.{DOMAIN}"

    def to_dict(self):
        return dict(asdict(self), fqdn=self.fqdn)


def _subnet_address(subnet, index):
    ipv4, ipv6 = SUBNETS[subnet]
    return (str(ipaddress.ip_network(ipv4)[index]), str(ipaddress.ip_network(ipv6)[index]))


def zimbra_host_name(index):
    return "zimbra" if index == 1 else f"zimbra-{index}"


def hosts_for(topology="single", zimbra_hosts=1):
    if topology not in TOPOLOGIES:
        raise LabError(f"unknown topology {topology!r}; known: {', '.join(TOPOLOGIES)}")
    if not 1 <= zimbra_hosts <= MAX_ZIMBRA_HOSTS:
        raise LabError(f"--zimbra-hosts must be 1 to {MAX_ZIMBRA_HOSTS}, not {zimbra_hosts}")
    hosts = [Host(zimbra_host_name(i), "zimbra", *_subnet_address("servers", 9 + i))
             for i in range(1, zimbra_hosts + 1)]
    hosts.append(Host("mgmt", "mgmt", *_subnet_address("management", 10)))
    hosts.append(Host("outside", "outside", *_subnet_address("outside", 10)))
    return hosts


def zimbra_id(host):
    """A stable zimbraId per host name, as a real install has one per server."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, host.fqdn))


def listen_ports():
    return [{"port": p, "proto": "tcp"} for p in ZIMBRA_TCP_PORTS] + [
        {"port": p, "proto": "udp"} for p in ZIMBRA_UDP_PORTS
    ]


def host_config(host, hosts, zmprov_delay):
    """The /etc/lab-host.json a host's init reads at start."""
    config = dict(
        host.to_dict(),
        ipv4_prefixlen=LAB_IPV4.prefixlen,
        ipv6_prefixlen=LAB_IPV6.prefixlen,
        peers=[h.to_dict() for h in hosts],
    )
    if host.role == "zimbra":
        config["zimbra"] = {"fqdn": host.fqdn, "id": zimbra_id(host), "zmprov_delay": zmprov_delay}
        config["listen"] = listen_ports()
    return config


def overlapping_networks(machine_networks):
    """The machine's own networks that overlap the lab's prefixes (confusing even in a namespace)."""
    return [n for n in machine_networks if n.overlaps(LAB_IPV4 if n.version == 4 else LAB_IPV6)]
