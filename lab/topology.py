"""What a lab consists of: hosts, their Zimbra roles, addresses and listeners. Pure data, no I/O but
reading the port catalogue.

All hosts share one layer-2 segment (a bridge in the lab's namespace); the "subnets" below are what a
firewall on a Zimbra host sees as the source of a connection: the Zimbra nodes in the servers subnet,
the controller and `mgmt` in the management subnet, `outside` in a subnet that stands for the internet.

Topologies:
- `single`: every Zimbra host is a complete single-server install (all roles, its own LDAP); N of them
  with --zimbra-hosts N.
- `cluster`: one Zimbra install spread over nodes that talk to each other: `ldap`, `mta`, `proxy`
  (proxy + memcached), `mailbox` (mailbox + logger) and `mailbox-2`; --proxies and --mailboxes size it.
"""

import functools
import ipaddress
import os
import uuid
from dataclasses import asdict, dataclass, replace

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
MAX_CLUSTER_NODES = 30
TOPOLOGIES = ("single", "cluster")
LISTEN_MODES = ("roles", "all")
CATALOGUE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zimbra_firewall", "catalogue.yaml"
)

# zimbraServiceEnabled of each kind of node, as a real install writes it (Zimbra/zm-docker
# _misc/reference/SLDAP.txt, a 4-node dump; `imapd` left out: the standalone IMAP server is optional).
ROLE_SERVICES = {
    "ldap": ["ldap", "stats"],
    "mta": ["amavis", "opendkim", "stats", "mta"],
    "proxy": ["stats", "memcached", "proxy"],
    "mailbox": ["spell", "stats", "service", "zimbra", "zimbraAdmin", "zimlet", "mailbox"],
    "logger": ["logger"],
    "memcached": ["memcached"],
    "dnscache": ["dnscache"],
}
SINGLE_SERVER_ROLES = ["ldap", "mta", "mailbox", "logger", "proxy", "dnscache"]
# Ports that the lab's real services hold (sshd everywhere, slapd, memcached): no stand-in listener.
REAL_SERVICES = {"ldap": [(389, "tcp")], "memcached": [(11211, "tcp")]}


@dataclass(frozen=True)
class Host:
    name: str
    role: str  # zimbra | mgmt | outside
    ipv4: str
    ipv6: str
    services: tuple = ()  # zimbraServiceEnabled, on Zimbra hosts
    firewall: str = "ufw"  # the firewall a Zimbra host comes with: ufw (Ubuntu-like) or firewalld (RHEL-like)

    @property
    def fqdn(self):
        return f"{self.name}.{DOMAIN}"

    def to_dict(self):
        return dict(asdict(self), services=list(self.services), fqdn=self.fqdn)


def host_from_dict(data):
    return Host(
        data["name"],
        data["role"],
        data["ipv4"],
        data["ipv6"],
        tuple(data.get("services", ())),
        data.get("firewall", "ufw"),
    )


FIREWALLS = ("ufw", "firewalld")


def with_firewalld(hosts: list[Host], names: str) -> list[Host]:
    """The hosts, those of `names` (comma-separated Zimbra host names, or `all`) running firewalld instead of
    ufw, as a RHEL, Rocky, Alma or Oracle Linux server would."""
    zimbra = [h.name for h in hosts if h.role == "zimbra"]
    chosen = {n.strip() for n in names.split(",") if n.strip()}
    if "all" in chosen:
        chosen = set(zimbra)
    unknown = sorted(chosen - set(zimbra))
    if unknown:
        raise LabError(f"--firewalld names {', '.join(unknown)}, not a Zimbra host of this lab ({', '.join(zimbra)})")
    return [replace(h, firewall="firewalld") if h.name in chosen else h for h in hosts]


def services_for(roles):
    """zimbraServiceEnabled for a node of these roles (ROLE_SERVICES' keys), in a stable order."""
    unknown = [r for r in roles if r not in ROLE_SERVICES]
    if unknown or not roles:
        raise LabError(f"unknown roles {', '.join(unknown) or '(none)'}; known: {', '.join(ROLE_SERVICES)}")
    return tuple(dict.fromkeys(s for role in roles for s in ROLE_SERVICES[role]))


def subnet_address(subnet, index):
    ipv4, ipv6 = SUBNETS[subnet]
    return (str(ipaddress.ip_network(ipv4)[index]), str(ipaddress.ip_network(ipv6)[index]))


def server_address(index):
    """The servers subnet's address number `index` (1-based) for Zimbra nodes: .10, .11, …"""
    return subnet_address("servers", 9 + index)


def numbered(base, index):
    return base if index == 1 else f"{base}-{index}"


def cluster_nodes(proxies, mailboxes):
    """(name, roles) of a cluster's Zimbra nodes."""
    nodes = [("ldap", ["ldap"]), ("mta", ["mta"])]
    nodes += [(numbered("proxy", i), ["proxy"]) for i in range(1, proxies + 1)]
    nodes += [
        (numbered("mailbox", i), ["mailbox", "logger"] if i == 1 else ["mailbox"]) for i in range(1, mailboxes + 1)
    ]
    return nodes


def hosts_for(topology: str = "single", zimbra_hosts: int = 1, proxies: int = 1, mailboxes: int = 2) -> list[Host]:
    if topology not in TOPOLOGIES:
        raise LabError(f"unknown topology {topology!r}; known: {', '.join(TOPOLOGIES)}")
    if topology == "single":
        if not 1 <= zimbra_hosts <= MAX_ZIMBRA_HOSTS:
            raise LabError(f"--zimbra-hosts must be 1 to {MAX_ZIMBRA_HOSTS}, not {zimbra_hosts}")
        nodes = [(numbered("zimbra", i), SINGLE_SERVER_ROLES) for i in range(1, zimbra_hosts + 1)]
    else:
        if proxies < 1 or mailboxes < 1 or 2 + proxies + mailboxes > MAX_CLUSTER_NODES:
            raise LabError(
                f"a cluster has at least one proxy and one mailbox and at most {MAX_CLUSTER_NODES} "
                f"Zimbra nodes (ldap + mta + proxies + mailboxes), not --proxies {proxies} "
                f"--mailboxes {mailboxes}"
            )
        nodes = cluster_nodes(proxies, mailboxes)
    hosts = [
        Host(name, "zimbra", *server_address(i), services_for(roles)) for i, (name, roles) in enumerate(nodes, start=1)
    ]
    hosts.append(Host("mgmt", "mgmt", *subnet_address("management", 10)))
    hosts.append(Host("outside", "outside", *subnet_address("outside", 10)))
    return hosts


def free_server_index(hosts):
    taken = {h.ipv4 for h in hosts}
    return next(i for i in range(1, 240) if server_address(i)[0] not in taken)


def zimbra_id(host):
    """A stable zimbraId per host name, as a real install has one per server."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, host.fqdn))


@functools.cache
def load_catalogue_ports(path=CATALOGUE):
    """The deploy's port catalogue, read as data: [{port, proto, role, exposure}] with ranges expanded."""
    import yaml  # noqa: PLC0415 (hosts never need it: the controller computes their listeners)

    with open(path) as f:
        entries = yaml.safe_load(f)["ports"]
    ports = []
    for entry in entries:
        first, _, last = str(entry["port"]).partition(":")
        for port in range(int(first), int(last or first) + 1):
            ports.append({"port": port, "proto": entry["proto"], "role": entry["role"], "exposure": entry["exposure"]})
    return tuple(ports)


def check_listen_mode(mode):
    if mode not in LISTEN_MODES:
        raise LabError(f"--listen must be one of {', '.join(LISTEN_MODES)}, not {mode!r}")


def listen_ports(services: list[str], mode: str = "roles") -> list[dict]:
    """The stand-in listeners of a node: the catalogue's ports of its services ("all" on every node),
    bound as the real services bind (loopback-only ports on 127.0.0.1, the rest on every address); with
    mode "all", every catalogue port on every address (the harshest case). Ports a real service of the
    node holds are left out."""
    check_listen_mode(mode)
    services = set(services)
    held = {spec for service, specs in REAL_SERVICES.items() if service in services for spec in specs}
    listeners = []
    for entry in load_catalogue_ports():
        if (entry["port"], entry["proto"]) in held:
            continue
        if mode == "all":
            bind = "::"
        elif entry["role"] == "all" or entry["role"] in services:
            bind = "127.0.0.1" if entry["exposure"] == "loopback-only" else "::"
        else:
            continue
        listeners.append({"port": entry["port"], "proto": entry["proto"], "bind": bind})
    return listeners


def host_config(host, hosts, zmprov_delay, ldap_password, listen_mode="roles", management=SUBNETS["management"]):
    """The /etc/lab-host.json a host's init reads at start. Each install's LDAP master is its `ldap`
    node (a cluster) or the server itself (single servers); the master loads every server of its install.
    management: the subnets the site manages its servers from (directory)."""
    config = dict(
        host.to_dict(),
        ipv4_prefixlen=LAB_IPV4.prefixlen,
        ipv6_prefixlen=LAB_IPV6.prefixlen,
        hosts_file=render_hosts_file(hosts),
    )
    if host.role == "zimbra":
        install = install_of(host, hosts)
        master = next(h for h in install if "ldap" in h.services)
        config["zimbra"] = {
            "fqdn": host.fqdn,
            "id": zimbra_id(host),
            "services": list(host.services),
            "zmprov_delay": zmprov_delay,
            "ldap_master": master.fqdn,
            "ldap_password": ldap_password,
        }
        if host == master:
            config["zimbra"]["directory"] = directory(install, management)
        config["listen"] = listen_ports(host.services, listen_mode)
    return config


def render_hosts_file(hosts):
    """Every lab name on both addresses: Zimbra requires its host names to resolve on every node."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    for host in hosts:
        names = f"{host.fqdn} {host.name}"
        lines += [f"{host.ipv4}\t{names}", f"{host.ipv6}\t{names}"]
    return "\n".join(lines) + "\n"


def install_of(host, hosts):
    """The Zimbra hosts that share `host`'s LDAP: all Zimbra hosts of a cluster, or the host alone."""
    zimbra = [h for h in hosts if h.role == "zimbra"]
    masters = [h for h in zimbra if "ldap" in h.services]
    return zimbra if len(masters) == 1 else [host]


def directory(install, management=SUBNETS["management"]):
    """What an install's LDAP holds: global config and one entry per server (see server_entry), with whom
    Zimbra trusts past the firewall as a hardened site has it (relay_networks, mailboxd_trusted). A node
    `lab add` brings later is in neither value: the audit warns of a new proxy or MTA until they are set."""

    def first_with(service):
        return next((h.fqdn for h in install if service in h.services), None)

    config = dict(GLOBAL_CONFIG)
    for attr, service in (("zimbraLogHostname", "logger"), ("zimbraSmtpHostname", "mta")):
        if first_with(service):
            config[attr] = [first_with(service)]
    trusted = mailboxd_trusted(install)
    if trusted:
        config["zimbraMailTrustedIP"] = trusted
        config["zimbraHttpThrottleSafeIPs"] = list(trusted)
    servers = [server_entry(h) for h in install]
    for host, server in zip(install, servers, strict=True):
        if "mta" in host.services:
            server["attrs"]["zimbraMtaMyNetworks"] = [relay_networks(install, management)]
    return {"config": config, "servers": servers}


# Whom Zimbra trusts past the firewall, seeded as a site has it once it has followed the exposure audit's
# advice (its fixes set these very values), so that a deployed lab audits clean. Zimbra's installer trusts
# more: zmsetup.pl (Zimbra/zm-build rpmconf/Install/zmsetup.pl) sets each MTA's own zimbraMtaMyNetworks
# (`zmprov ms`) to what `zmserverips -n` (Zimbra/zm-core-utils src/libexec/zmserverips) prints, the network
# of every address of the host: on a host of the servers subnet `127.0.0.0/8 [::1]/128 10.77.0.0/24
# [fd5a:7e3c:91b2::]/64` (the lab's interfaces, /16 and /48, would give wider still), an open relay for
# every other host there. The lab seeds the narrowed value instead, and a lab test (tests/lab/test_audit.py)
# writes the installer's to see the audit fail on it. Computed from the lab's own addresses, not the deploy's.
LOOPBACK_NETWORKS = ("127.0.0.0/8", "[::1]/128")


def relay_networks(install, management=SUBNETS["management"]):
    """An MTA's zimbraMtaMyNetworks narrowed to loopback, every Zimbra node of the install (/32, /128) and
    the management subnets, written as Postfix reads a list: separated by spaces, IPv6 in []."""
    networks = {ipaddress.ip_network(a) for h in install for a in (h.ipv4, h.ipv6) if a}
    networks |= {ipaddress.ip_network(n) for n in management}
    ordered = sorted(networks, key=lambda n: (n.version, n))
    listed = [f"[{n.network_address}]/{n.prefixlen}" if n.version == 6 else str(n) for n in ordered]
    return " ".join([*LOOPBACK_NETWORKS, *listed])


def mailboxd_trusted(install):
    """zimbraMailTrustedIP (and zimbraHttpThrottleSafeIPs): every address of every proxy node, as mailboxd
    compares it with a connection's (Jetty's getRemoteAddr, compared as text by Zimbra/zm-mailbox
    RemoteIP.java): IPv4 dotted; IPv6 as Java writes it (eight groups, no ::) in [], as RemoteIP.java's own
    "[0:0:0:0:0:0:0:1]"."""
    trusted = []
    for host in install:
        if "proxy" in host.services:
            if host.ipv4:
                trusted.append(str(ipaddress.ip_address(host.ipv4)))
            if host.ipv6:
                groups = ipaddress.ip_address(host.ipv6).exploded.split(":")
                trusted.append(f"[{':'.join(f'{int(group, 16):x}' for group in groups)}]")
    return trusted


def server_entry(host):
    attrs = {
        "zimbraId": [zimbra_id(host)],
        "zimbraServiceHostname": [host.fqdn],
        "zimbraServiceEnabled": list(host.services),
        "zimbraServiceInstalled": list(host.services),
    }
    if "proxy" in host.services:
        attrs.update(PROXY_PORTS)
    if "mailbox" in host.services:
        # zmsetup.pl points each mailbox at its own spell checker and makes it a proxy lookup target
        attrs["zimbraReverseProxyLookupTarget"] = ["TRUE"]
        if "spell" in host.services:
            attrs["zimbraSpellCheckURL"] = [f"http://{host.fqdn}:7780/aspell.php"]
    return {"name": host.fqdn, "attrs": attrs}


# Where nginx listens, as zm-core-utils zmproxyconfig writes it on each proxy server's entry
# (zimbra-attrs.xml leaves zimbraMailProxyPort and zimbraMailSSLProxyPort at 0 until then).
PROXY_PORTS = {
    "zimbraAdminProxyPort": ["9071"],
    "zimbraImapProxyBindPort": ["143"],
    "zimbraImapSSLProxyBindPort": ["993"],
    "zimbraMailProxyPort": ["80"],
    "zimbraMailSSLProxyClientCertPort": ["3443"],
    "zimbraMailSSLProxyPort": ["443"],
    "zimbraPop3ProxyBindPort": ["110"],
    "zimbraPop3SSLProxyBindPort": ["995"],
}

# cn=config as a fresh install writes it (Zimbra/zm-mailbox store/conf/attrs/zimbra-attrs.xml defaults;
# backend ports as zm-core-utils zmproxyconfig sets them once a proxy is configured).
GLOBAL_CONFIG = {
    "zimbraAdminPort": ["7071"],
    "zimbraDocumentEditingCallbackPort": ["7074"],
    "zimbraExtensionBindPort": ["7072"],
    "zimbraImapBindPort": ["7143"],
    "zimbraImapSSLBindPort": ["7993"],
    "zimbraLmtpBindPort": ["7025"],
    # as Zimbra's installer sets it where a proxy fronts the mailboxes (Zimbra/zm-build zmsetup.pl)
    "zimbraMailMode": ["https"],
    "zimbraMailPort": ["8080"],
    "zimbraMailSSLPort": ["8443"],
    "zimbraMemcachedBindPort": ["11211"],
    "zimbraMtaAuthPort": ["7073"],
    "zimbraPop3BindPort": ["7110"],
    "zimbraPop3SSLBindPort": ["7995"],
    "zimbraRemoteImapBindPort": ["8143"],
    "zimbraRemoteImapSSLBindPort": ["8993"],
    "zimbraRemoteManagementPort": ["22"],
    "zimbraReverseProxyAdminEnabled": ["FALSE"],
    "zimbraReverseProxySSLToUpstreamEnabled": ["TRUE"],
    "zimbraSmtpPort": ["25"],
}


def overlapping_networks(machine_networks):
    """The machine's own networks that overlap the lab's prefixes (confusing even in a namespace)."""
    return [n for n in machine_networks if n.overlaps(LAB_IPV4 if n.version == 4 else LAB_IPV6)]
