"""Port catalogue + group_data → one validated Policy per host. Pure: no I/O but reading the catalogue.

Every group_data value is checked here, before pyinfra runs a single command on any host; a bad
value raises PolicyError naming the key.
"""

import dataclasses
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from zimbra_firewall.access import Allow, Network, Port, Restriction, network_order
from zimbra_firewall.catalogue import EXPOSURES, IPMODES, Catalogue, Flow, catalogue_cache, load_catalogue
from zimbra_firewall.firewalld import object_name
from zimbra_firewall.settings import ExtraAllow, PolicyError, Settings, parse_port, text
from zimbra_firewall.topology import BASE_KINDS, Server, Topology, endpoint_port
from zimbra_firewall.ufw import Profile, chunk_ports
from zimbra_firewall.untrusted import address, peer_address_problem

__all__ = [
    "Policy",
    "PolicyError",
    "Port",
    "Profile",
    "build_policy",
    "load_catalogue",
    "parse_port",
    "topology_attributes",
]

SEED_PROFILE = {
    "name": "Zimbra",
    "title": "Zimbra Collaboration Server",
    "description": "Open source server for email, contacts, calendar, and more.",
    "ports": "25,80,110,143,443,465,587,993,995,3443,5222,5223,7071,9071/tcp",
}


@dataclass(frozen=True)
class Policy:
    exposure: dict[str, tuple[Port, ...]]  # exposure class → this node's ports of that class
    management_subnets: tuple[Network, ...]
    zimbra_nodes: tuple[Network, ...]
    ssh_port: int
    profiles: tuple[Profile, ...]
    allows: tuple[Allow, ...]  # in order: SSH first
    default_incoming: str
    default_outgoing: str
    comment: str
    purge_unmanaged: bool
    memcached: dict[str, list[str]]  # zimbra attribute → the values wanted (only those this node manages)
    restricted: tuple[Restriction, ...]  # the non-public ports and the only sources that may reach them
    rollback_seconds: int
    allow_lockout_risk: bool
    xtables_lock_wait: int
    server: str = ""  # this node's Zimbra server name (zimbra_server_hostname)
    # ((zimbraServiceHostname, addresses its rules use), ...): what the deploy keeps for a run in which
    # a name does not resolve
    addresses: tuple[tuple[str, tuple[str, ...]], ...] = ()
    problem: str = ""  # why this node's topology could not be read: the preflight fails the host with it
    refused: tuple[str, ...] = ()  # values from LDAP, DNS or the host left out (zimbra_firewall/untrusted.py)
    warnings: tuple[str, ...] = field(default=())
    firewall: str = "auto"  # ufw | firewalld | auto (the one the host runs)
    remove_services: tuple[str, ...] = ()  # firewalld services removed from the zones even where they widen nothing
    accept_zones: tuple[str, ...] = ()  # firewalld zones that may keep target ACCEPT

    @property
    def needs_ipv6(self) -> bool:
        return any(n.version == 6 for n in self.management_subnets + self.zimbra_nodes) or any(
            allow.source and allow.source.version == 6 for allow in self.allows
        )


PROFILE_NAME = text(r"[A-Za-z0-9][A-Za-z0-9 _.+-]*", "a profile name ufw accepts (letters, digits, space, _ . + -)", 64)


def exposure_map(catalogue: Catalogue, groups, overrides) -> dict[Port, str]:
    """Port → exposure class, after optional groups and the user's overrides."""
    classes = {}
    for entry in catalogue.ports:
        if entry.group and entry.group not in groups:
            continue
        classes[entry.port] = entry.exposure
    claimed: dict[Port, str] = {}
    for exposure, ports in overrides.items():
        key = f"exposure_overrides[{exposure!r}]"
        if exposure not in EXPOSURES:
            raise PolicyError(key, f"unknown exposure class; known: {', '.join(EXPOSURES)}")
        if not isinstance(ports, (list, tuple)):
            raise PolicyError(key, f"must be a list of ports, not {ports!r}")
        for spec in ports:
            port = parse_port(spec, key)
            for other, other_class in claimed.items():
                if other.overlaps(port) and other_class != exposure:
                    raise PolicyError(key, f"port {port} is also listed under {other_class!r}")
            claimed[port] = exposure
            for existing in [p for p in classes if p.overlaps(port)]:
                del classes[existing]
            classes[port] = exposure
    return classes


def build_profiles(data: Settings, classes: dict[Port, str], intra_ports) -> dict[str, Profile]:
    """Profiles of this node's ports: public, local-only, and (with `zimbra_nodes`) what other nodes reach."""
    names = data.profile_names
    for exposure, name in names.items():
        if exposure not in ("public", "local-only", "intra"):
            raise PolicyError(f"profile_names[{exposure!r}]", "only public, local-only and intra have profiles")
        PROFILE_NAME(name, f"profile_names[{exposure!r}]")
    if len(set(names.values())) != len(names):
        raise PolicyError("profile_names", "two exposure classes share one profile name")
    # on firewalld each profile is a service file named after it: "Zimbra Local" and "zimbra-local" would be one
    if len({object_name(name) for name in names.values()}) != len(names):
        raise PolicyError(
            "profile_names", "two profile names give one firewalld service name (case and punctuation aside)"
        )
    descriptions = {
        "public": ("Zimbra public mail services", "Mail ports open to everyone (managed by zimbra-firewall)"),
        "local-only": (
            "Zimbra admin and local services",
            "Ports for the management networks only (managed by zimbra-firewall)",
        ),
        "intra": ("Zimbra internal services", "Ports between Zimbra nodes only (managed by zimbra-firewall)"),
    }
    ports_of = {exposure: [p for p, c in classes.items() if c == exposure] for exposure in ("public", "local-only")}
    ports_of["intra"] = list(intra_ports)
    profiles = {}
    for exposure, (title, description) in descriptions.items():
        if ports_of[exposure]:
            if exposure not in names:
                raise PolicyError("profile_names", f"needs a name for the {exposure!r} profile")
            profiles[exposure] = Profile(names[exposure], chunk_ports(ports_of[exposure]), title, description)
    if data.profile_mode == "seed":
        profiles["public"] = Profile(
            SEED_PROFILE["name"], SEED_PROFILE["ports"], SEED_PROFILE["title"], SEED_PROFILE["description"]
        )
    return profiles


def build_allows(
    profiles: dict[str, Profile],
    *,
    management: tuple[Network, ...],
    zimbra_nodes: tuple[Network, ...],
    ssh_port: int,
    blanket: bool,
    peer_access: dict[Port, set[Network]],
) -> tuple[Allow, ...]:
    """SSH first, then the public profile from anywhere, then what the management subnets may reach, then
    what the other Zimbra nodes may reach: the intra profile from `zimbra_nodes`, else each peer's ports
    from its addresses; and each source of `peer_access` (the peers' and the site's own flows) to its ports."""
    ssh = (Port(ssh_port, ssh_port, "tcp"),)
    allows = [Allow(net, ssh) for net in management]
    if "public" in profiles:
        allows.append(Allow(None, profile=profiles["public"].name))
    for net in management:
        if blanket:
            allows.append(Allow(net))
        elif "local-only" in profiles:
            allows.append(Allow(net, profile=profiles["local-only"].name))
    if zimbra_nodes and "intra" in profiles:
        allows += [Allow(net, profile=profiles["intra"].name) for net in zimbra_nodes]
    by_source: dict[Network, list[Port]] = {}
    for port, sources in peer_access.items():
        for source in sources:
            by_source.setdefault(source, []).append(port)
    allows += [Allow(source, tuple(sorted(by_source[source]))) for source in sorted(by_source, key=network_order)]
    return tuple(allows)


# --- this node in its cluster: ports of its services, the peers that reach each ---------------------------


def attribute_kinds(catalogue: Catalogue | None = None) -> dict[str, str]:
    """Every LDAP attribute the policy reads → the kind of value it must hold (zimbra_firewall/untrusted.py
    KINDS): services and host names, the catalogue's port attributes, the attributes its flows name as a
    destination (endpoints) or a condition (flags), memcached's, and the text of the three whose trust the
    audit judges (zimbra_firewall/trust.py). Nothing else is ever requested (never
    zimbraSSLPrivateKey), and a value not of its kind never reaches a rule or a command."""
    catalogue = catalogue or catalogue_cache()
    kinds = {
        **BASE_KINDS,
        "zimbraMemcachedBindAddress": "address",
        "zimbraMemcachedBindPort": "port",
        "zimbraMemcachedClientServerList": "endpoint",
        # what the audit judges of whom Zimbra trusts beyond the firewall (zimbra_firewall/trust.py): text
        # it parses itself, each server's own value else cn=config's (zimbra-attrs.xml: serverInherited)
        "zimbraMtaMyNetworks": "text",
        "zimbraMailTrustedIP": "text",
        "zimbraHttpThrottleSafeIPs": "text",
    }

    def add(attribute, kind):
        if kinds.setdefault(attribute, kind) != kind:
            raise PolicyError("catalogue", f"attribute {attribute} is used as a {kinds[attribute]} and a {kind}")

    for entry in catalogue.ports:
        if entry.attribute:
            add(entry.attribute, "port")
    for flow in catalogue.flows:
        if flow.to_attribute:
            add(flow.to_attribute, "endpoint")
        if flow.named_in:
            add(flow.named_in[0], "endpoint")
        if flow.port_attribute:
            add(flow.port_attribute, "port")
        for attribute, values in flow.source_conditions + flow.destination_conditions:
            add(attribute, "flag" if set(values) <= {"TRUE", "FALSE"} else "mode")
        if flow.ipmode:
            add("zimbraIPMode", "mode")
    return kinds


def topology_attributes(catalogue: Catalogue | None = None) -> tuple[str, ...]:
    """The attributes the topology read asks LDAP for: those of attribute_kinds()."""
    return tuple(sorted(attribute_kinds(catalogue)))


def attribute_port(server: Server | None, attribute: str | None, default: int) -> int:
    """The number a port attribute gives on this server (its own value, else cn=config's), else default; 0
    when Zimbra's value says the service listens nowhere. The topology holds checked port numbers only."""
    value = server.value(attribute) if server and attribute else ""
    return int(value) if value else default


def node_classes(
    catalogue: Catalogue, classes: dict[Port, str], topology: Topology, ssh: Port
) -> tuple[dict[Port, str], list[str]]:
    """This node's ports → exposure class, and warnings: the catalogue ports of its services (at the number
    their attribute gives), and the ports the overrides add. No topology: every service (topology unknown).
    A number an attribute gives is refused (the rule stays at the default number, said in a warning) when it
    lands on the SSH port or on a catalogue port classed otherwise: a value in LDAP may move a service's port,
    never change how exposed another port is. Where no node of the install runs the proxy and a backend
    port's attribute holds the very number of the proxy port it stands for (`without_proxy`: 443 in
    zimbraMailSSLPort, 993, 995, 80, 143, 110, as the installer leaves a proxy-less install), mailboxd serves
    the clients there itself: the port takes that proxy port's exposure."""
    server = topology.this
    proxied = server is None or any("proxy" in s.services for s in topology.servers)
    every = {entry.port: classes.get(entry.port, "off") for entry in catalogue.ports}
    every.update(classes)
    node: dict[Port, str] = {}
    warnings = []
    for entry in catalogue.ports:
        if entry.port not in classes or not (server is None or entry.role in ("all", *server.services)):
            continue
        exposure, port = classes[entry.port], entry.port
        number = attribute_port(server, entry.attribute, port.first)
        if not number:
            continue  # Zimbra's "not used"
        moved = Port(number, number + port.last - port.first, port.proto)
        front = entry.without_proxy
        if front and not proxied and moved == front:
            exposure = next((c for p, c in classes.items() if p.overlaps(front)), exposure)  # overrides' ranges too
            warnings.append(
                f"no node runs the proxy: mailboxd serves {front} ({entry.service}) itself here, {exposure}"
            )
        elif moved != port:
            taken = {**every, **node}  # the catalogue's numbers, and those another attribute moved a port to
            clash = next((f"{p} is {c} here" for p, c in taken.items() if p.overlaps(moved) and c != exposure), "")
            clash = "the SSH port" if moved.overlaps(ssh) else clash
            if clash:
                warnings.append(
                    f"{entry.attribute} puts {entry.service} on {moved}: {clash}; refused, its rule stays on {port}"
                )
                moved = port
        node[moved] = exposure
    node.update({port: exposure for port, exposure in classes.items() if port not in every})  # the overrides'
    return node, warnings


def reaches(flow: Flow, source: Server, destination: Server, servers: Iterable[Server] = ()) -> bool:
    """Does this catalogue flow go from `source` to `destination`? servers: the install's (for `named_in`)."""
    if "all" not in flow.sources and not source.services & set(flow.sources):
        return False
    if flow.to_attribute:
        if not any(destination.named_by(value) for value in source.attributes.get(flow.to_attribute, ())):
            return False
    elif flow.to_role != "all" and flow.to_role not in destination.services:
        return False
    if flow.named_in:
        attribute, service = flow.named_in
        holders = [server for server in servers if service in server.services]
        if not any(destination.named_by(value) for holder in holders for value in holder.attributes.get(attribute, ())):
            return False
    for server, conditions in ((source, flow.source_conditions), (destination, flow.destination_conditions)):
        if any(server.value(attr).upper() not in wanted for attr, wanted in conditions):
            return False
    return True


def flow_port(flow: Flow, source: Server, destination: Server) -> Port | None:
    """The port a flow reaches on `destination`; None where its attribute says the service listens nowhere."""
    if flow.to_attribute:
        for value in source.attributes.get(flow.to_attribute, ()):
            port = endpoint_port(value)
            if destination.named_by(value) and port:
                return Port(port, port, flow.proto)
    if flow.port is not None:
        number = flow.port
    else:
        assert flow.default is not None  # load_catalogue refuses a port attribute without its default
        number = attribute_port(destination, flow.port_attribute, flow.default)
    return Port(number, number, flow.proto) if number else None


def peer_access(catalogue: Catalogue, groups, topology: Topology, public, addresses) -> dict[Port, set[Network]]:
    """Port of this node → the addresses of the peers whose flows reach it (ports the public rule opens
    anyway left out; a host's own traffic goes over loopback, which ufw always accepts). addresses: server
    name → the addresses its rules use (peer_addresses)."""
    access: dict[Port, set[Network]] = {}
    if topology.this is None:
        return access
    for flow in catalogue.flows:
        if flow.group and flow.group not in groups:
            continue
        for peer in topology.peers:
            if reaches(flow, peer, topology.this, topology.servers):
                port = flow_port(flow, peer, topology.this)
                if port and not any(port.overlaps(p) for p in public):
                    families = flow_families(flow, peer)
                    sources = [ipaddress.ip_network(a) for a in addresses[peer.name]]
                    access.setdefault(port, set()).update(s for s in sources if s.version in families)
    return access


def flow_families(flow: Flow, source: Server) -> tuple[int, ...]:
    """The address families a flow's client uses, as the source server's zimbraIPMode decides for the
    clients that follow it (catalogue IPMODES); both for the others, and for a mode not understood."""
    return IPMODES.get(flow.ipmode or "", {}).get(source.value("zimbraIPMode").upper(), (4, 6))


def site_access(
    extra_allows: tuple[ExtraAllow, ...], server: Server | None, public
) -> tuple[dict[Port, set[Network]], list[str]]:
    """Port of this node → the sources the site's own flows (`extra_allows`) let in, and warnings. server
    None: every node's (topology unknown)."""
    access: dict[Port, set[Network]] = {}
    warnings = []
    for extra in extra_allows:
        if extra.on and server is not None and not server.services & set(extra.on):
            continue
        overlapping = [str(p) for p in public if extra.port.overlaps(p)]
        if overlapping:
            warnings.append(
                f"extra_allows: {extra.port} left out on this node: it overlaps its public {', '.join(overlapping)}, "
                "which everyone reaches already (name the other ports alone)"
            )
            continue
        access.setdefault(extra.port, set()).update(extra.sources)
    return access, warnings


def merged(*accesses: dict[Port, set[Network]]) -> dict[Port, set[Network]]:
    together: dict[Port, set[Network]] = {}
    for access in accesses:
        for port, sources in access.items():
            together.setdefault(port, set()).update(sources)
    return together


def peer_addresses(topology: Topology, bounds: tuple) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """Each server → the addresses its rules come from, and warnings. A peer's address that can be no
    peer's (unspecified, loopback, multicast, link-local, IPv4-mapped: zimbra_firewall.untrusted), or lies
    outside `bounds` (peer_networks, when set), gives no rule. A server still in LDAP whose name gives no
    usable address in this run (DNS down, a name made to resolve to 0.0.0.0) keeps the addresses the last
    deploy used for it, within the same checks: a lookup failure never cuts the cluster's own flows. This
    node keeps what its name resolves to (loopback included: memcached binds there), else the last known."""
    chosen: dict = {}
    warnings: list[str] = []
    for server in topology.servers:
        if server is topology.this:
            chosen[server.name] = server.addresses or server.last_known
            continue
        usable = _usable(server.hostname, server.addresses, bounds, warnings)
        if not usable and server.last_known:
            usable = _usable(server.hostname, server.last_known, bounds, [])
            if usable:
                warnings.append(
                    f"peer {server.hostname} gives no usable address on this node now: its rules keep the addresses "
                    f"it had ({', '.join(usable)}) until it resolves again or leaves Zimbra's LDAP"
                )
        if not usable:
            warnings.append(f"peer {server.hostname} has no usable address on this node: no rule lets it in")
        chosen[server.name] = usable
    return chosen, warnings


def _usable(hostname: str, addresses, bounds: tuple, warnings: list[str]) -> tuple[str, ...]:
    usable = []
    for written in addresses:
        ip = address(written)
        problem = peer_address_problem(ip)
        if problem is None and bounds and not any(ip in network for network in bounds):
            problem = "outside peer_networks"
        if problem:
            warnings.append(f"peer {hostname} resolves on this node to {ip}, {problem}: no rule for that address")
        else:
            usable.append(str(ip))
    return tuple(usable)


def restricted_ports(
    catalogue: Catalogue,
    *,
    classes: dict[Port, str],
    node: dict[Port, str],
    management: tuple[Network, ...],
    zimbra_nodes: tuple[Network, ...],
    access: dict[Port, set[Network]],
    site: dict[Port, set[Network]],
    ssh: Port,
) -> tuple[Restriction, ...]:
    """Every non-public port (the catalogue's, and this node's at its
    attribute's number) with the only sources the policy lets reach it; an unmanaged rule opening one wider
    is deleted. A non-public port of an optional group that is off (9071 without admin_proxy) may be reached
    by nobody off the host. The site's own flows (`site`) reach any port they name, loopback-only ones too.
    The SSH port is local-only unless the catalogue or the overrides class it: SSH open to everyone (ufw's
    `allow OpenSSH`, firewalld's `ssh` service in RHEL's default zone) widens the policy."""
    public = [p for p, c in node.items() if c == "public"]
    ports = {p: c for p, c in classes.items() if c != "public" and not any(p.overlaps(q) for q in public)}
    ports.update({p: c for p, c in node.items() if c != "public"})
    if not any(ssh.overlaps(p) for p in (*classes, *node)):
        ports[ssh] = "local-only"
    off = {e.port for e in catalogue.ports if e.exposure != "public" and e.group}
    off = {port for port in off if not any(port.overlaps(p) for p in ports)}
    every = {port: "off" for port in sorted(off)}
    every.update(ports)
    grouped: dict[frozenset[Network], list[Port]] = {}
    for port, exposure in every.items():
        sources = {s for p, allowed in site.items() if p.overlaps(port) for s in allowed}
        if exposure == "local-only":
            sources |= set(management)
        if exposure not in ("loopback-only", "off"):
            sources |= set(zimbra_nodes)
            sources |= {s for p, peers in access.items() if p.overlaps(port) for s in peers}
        grouped.setdefault(frozenset(sources), []).append(port)
    return tuple(
        Restriction(tuple(sorted(ports)), tuple(sorted(sources, key=network_order)))
        for sources, ports in grouped.items()
    )


def nginx_memcached_address(server: Server, proxy: Server | None = None) -> str | None:
    """Where a proxy's nginx connects to this memcached server: its zimbraServiceHostname (Zimbra/zm-mailbox
    ProxyConfGen.java, MemcacheServersVar), resolved by the proxy's own zimbraIPMode
    (getLookupTargetIPbyIPMode): the first IPv6 address in ipv6 mode, else the first IPv4 (the first IPv6
    when there is none, in both mode)."""
    mode = proxy.value("zimbraIPMode").upper() if proxy else ""
    v4 = [a for a in server.addresses if ipaddress.ip_address(a).version == 4]
    v6 = [a for a in server.addresses if ipaddress.ip_address(a).version == 6]
    order = {"IPV4": v4, "IPV6": v6}.get(mode, v4 + v6)
    return order[0] if order else None


def memcached_wanted(settings: Settings, topology: Topology, addresses: tuple[str, ...]):
    """The memcached attributes this node manages, and warnings. zimbraMemcachedBindAddress on a memcached
    node: `auto` = 127.0.0.1 plus the addresses its zimbraServiceHostname resolves to (`addresses`, the last
    known when it does not resolve now) that are its own, because nginx connects to the resolved host name,
    never to the bind address (Zimbra/zm-mailbox ProxyConfGen.java, MemcacheServersVar).
    zimbraMemcachedClientServerList on a mailbox node: `auto` = 127.0.0.1 when it runs memcached itself (the
    seed's value), else left as Zimbra has it."""
    this = topology.this
    wanted: dict[str, list[str]] = {}
    warnings: list[str] = []
    if this is None or not settings.manage_memcached:
        return wanted, warnings
    if "memcached" in this.services:
        chosen = settings.memcached_bind_addresses
        if chosen != "auto":
            bind = chosen
        else:
            own = [a for a in addresses if ipaddress.ip_address(a).is_loopback or a in topology.own_addresses]
            foreign = [a for a in addresses if a not in own]
            bind = ("127.0.0.1", *[a for a in own if a != "127.0.0.1"])
            if foreign:
                warnings.append(
                    f"{this.hostname} resolves here to {', '.join(foreign)}, which this host does not have: memcached "
                    "is not bound there, so a proxy resolving that name loses its route cache"
                )
        opened = any(ipaddress.ip_address(a).is_unspecified for a in bind)
        looking: dict[str, list[str]] = {}
        for proxy in (s for s in topology.servers if "proxy" in s.services):
            nginx = nginx_memcached_address(dataclasses.replace(this, addresses=addresses), proxy)
            if nginx and nginx not in bind and not opened:
                looking.setdefault(nginx, []).append(proxy.hostname)
        for nginx, proxies in looking.items():
            warnings.append(
                f"memcached_bind_addresses leaves out {nginx}, where {', '.join(sorted(proxies))} look for this "
                "memcached (nginx.conf.memcache): their route cache will be off"
            )
        wanted["zimbraMemcachedBindAddress"] = list(bind)
    if "mailbox" in this.services:
        clients = settings.memcached_client_servers
        if clients != "auto":
            wanted["zimbraMemcachedClientServerList"] = list(clients)
        elif "memcached" in this.services:
            wanted["zimbraMemcachedClientServerList"] = ["127.0.0.1"]
    return wanted, warnings


def check_groups(groups, catalogue: Catalogue) -> None:
    for group in groups:
        if group not in catalogue.groups:
            raise PolicyError("optional_groups", f"unknown group {group!r}; known: {', '.join(catalogue.groups)}")


def check_management_for_local_only(classes, management):
    if any(c == "local-only" for c in classes.values()) and not management:
        raise PolicyError(
            "management_subnets",
            "is empty, so the local-only ports (and SSH) would be closed to everyone: list the admins' subnets",
        )


def seed_warnings(settings: Settings, classes: dict[Port, str]) -> tuple[str, ...]:
    """The seed's single profile opens to everyone what this policy keeps local-only: say which ports."""
    if settings.profile_mode != "seed":
        return ()
    seed_ports = SEED_PROFILE["ports"].split("/")[0].split(",")
    opened = sorted(p for p, c in classes.items() if c != "public" and str(p.first) in seed_ports)
    if not opened:
        return ()
    return ("profile_mode 'seed' opens local-only ports to everyone: " + ", ".join(str(p) for p in opened),)


def build_policy(settings: Settings, topology: Topology) -> Policy:
    """settings: the host's group_data as read_settings checked it (once, before any host changes);
    topology: Zimbra's LDAP as this node reads it (facts/zimbra.py ZimbraTopology). A topology that could
    not be read gives the policy of a server running every service with no peers, and its error in
    `problem`."""
    catalogue = catalogue_cache()
    groups, management = settings.optional_groups, settings.management_subnets
    zimbra_nodes = settings.zimbra_nodes
    check_groups(groups, catalogue)
    classes = exposure_map(catalogue, groups, settings.exposure_overrides)
    check_management_for_local_only(classes, management)
    ssh = Port(settings.firewall_ssh_port, settings.firewall_ssh_port, "tcp")
    node, port_warnings = node_classes(catalogue, classes, topology, ssh)
    public = [p for p, c in node.items() if c == "public"]
    addresses, address_warnings = peer_addresses(topology, settings.peer_networks)
    access = peer_access(catalogue, groups, topology, public, addresses)
    site, site_warnings = site_access(settings.extra_allows, topology.this, public)
    intra = sorted({*(p for p, c in node.items() if c == "intra"), *access}) if zimbra_nodes else ()
    profiles = build_profiles(settings, node, intra)
    this_addresses = addresses[topology.this.name] if topology.this else ()
    memcached, memcached_warnings = memcached_wanted(settings, topology, this_addresses)
    if zimbra_nodes:
        access = {}  # the subnets stand in for the peers
    return Policy(
        exposure={name: tuple(sorted(p for p, c in node.items() if c == name)) for name in EXPOSURES},
        management_subnets=management,
        zimbra_nodes=zimbra_nodes,
        ssh_port=settings.firewall_ssh_port,
        profiles=tuple(profiles.values()),
        allows=build_allows(
            profiles,
            management=management,
            zimbra_nodes=zimbra_nodes,
            ssh_port=settings.firewall_ssh_port,
            blanket=settings.allow_management_all_ports,
            peer_access=merged(access, site),
        ),
        default_incoming=settings.default_incoming,
        default_outgoing=settings.default_outgoing,
        comment=settings.rule_comment,
        purge_unmanaged=settings.purge_unmanaged_rules,
        memcached=memcached,
        restricted=restricted_ports(
            catalogue,
            classes=classes,
            node=node,
            management=management,
            zimbra_nodes=zimbra_nodes,
            access=access,
            site=site,
            ssh=ssh,
        ),
        rollback_seconds=settings.rollback_seconds,
        allow_lockout_risk=settings.allow_lockout_risk,
        xtables_lock_wait=settings.xtables_lock_wait,
        server=topology.this.name if topology.this else "",
        addresses=tuple((s.hostname, addresses[s.name]) for s in topology.servers),
        problem=topology.error,
        refused=topology.refused,
        warnings=(
            *seed_warnings(settings, classes),
            *port_warnings,
            *memcached_warnings,
            *address_warnings,
            *site_warnings,
        ),
        firewall=settings.firewall,
        remove_services=settings.firewalld_remove_services,
        accept_zones=settings.firewalld_accept_zones,
    )
