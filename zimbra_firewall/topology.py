"""A Zimbra install as its LDAP records it, seen from one node: every server's services, host name and
(effective) attributes, each peer's addresses as this node resolves them. Pure: facts/zimbra.py reads the
text, these functions turn it into a Topology.

Zimbra keeps every server as `cn=<name>,cn=servers,cn=zimbra` with zimbraServiceEnabled and
zimbraServiceHostname; a server without its own value of an attribute inherits cn=config's
(Zimbra/zm-mailbox store/conf/attrs/zimbra-attrs.xml, Provisioning.java).
"""

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from zimbra_firewall.ldif import parse_ldif

CONFIG_DN = "cn=config,cn=zimbra"
SERVERS_DN = "cn=servers,cn=zimbra"
# Attributes that live on cn=config only (zimbra-attrs.xml: optionalIn="globalConfig"): `zmprov gs` cannot
# show them, the zmprov read asks `gcf` for them
GLOBAL_ONLY = frozenset({"zimbraLogHostname"})


@dataclass(frozen=True)
class Server:
    name: str
    hostname: str  # zimbraServiceHostname: the name the other nodes connect to
    services: frozenset[str]
    attributes: Mapping[str, tuple[str, ...]]  # effective: the server's own values, else cn=config's
    addresses: tuple[str, ...] = ()  # zimbraServiceHostname resolved on the node that read the topology

    def value(self, attribute: str, default: str = "") -> str:
        values = self.attributes.get(attribute) or ()
        return values[0] if values else default

    def named_by(self, text: str) -> bool:
        """Does a value such as "host", "host:port", "[v6]:port" or "http://host:7780/x" name this server?"""
        host = value_host(text).lower()
        return bool(host) and (host in (self.hostname.lower(), self.name.lower()) or host in self.addresses)


@dataclass(frozen=True)
class Topology:
    this: Server | None  # the node that read it
    servers: tuple[Server, ...] = ()
    own_addresses: tuple[str, ...] = ()  # this node's addresses (`hostname -I`)
    source: str = "ldap"  # ldap | zmprov
    error: str = ""  # why the topology could not be read; only `name` is set then
    name: str = ""  # the reading node's zimbra_server_hostname
    borrowed_from: str = ""  # the host whose read this is, when this node could not read LDAP itself

    @property
    def peers(self) -> tuple[Server, ...]:
        return tuple(s for s in self.servers if s is not self.this)


def value_host(text: str) -> str:
    """The host part of "host", "host:port", "[v6]:port", a bare IPv6 address or a URL."""
    text = text.strip()
    if "://" in text:
        return urlsplit(text).hostname or ""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if text.startswith("["):
        return text[1:].partition("]")[0]
    return text.partition(":")[0]


def value_port(text: str) -> int | None:
    """The port written in such a value, or None."""
    text = text.strip()
    try:
        if "://" in text:
            return urlsplit(text).port
        if text.startswith("["):
            port = text.partition("]")[2].lstrip(":")
            return int(port) if port else None
        ipaddress.ip_address(text)
        return None
    except ValueError:
        pass
    port = text.partition(":")[2]
    return int(port) if port.isdigit() else None


def entries_from_zmprov(text: str) -> list[tuple[str, dict[str, list[str]]]]:
    """The zmprov read (`gs SERVER attrs…` blocks, each opening with `# name SERVER`, then a `# config`
    block of `gcf` lines) → entries shaped as parse_ldif's."""
    entries, attrs = [], None
    for line in text.splitlines():
        if line.startswith("# name "):
            attrs = {"cn": [line[len("# name ") :].strip()]}
            entries.append((f"cn={attrs['cn'][0]},{SERVERS_DN}", attrs))
        elif line.strip() == "# config":
            attrs = {}
            entries.append((CONFIG_DN, attrs))
        elif attrs is not None:
            name, sep, value = line.partition(": ")
            if sep:
                attrs.setdefault(name, []).append(value)
    return entries


def parse_resolved(text: str) -> dict[str, tuple[str, ...]]:
    """Lines "name address address…" → {name (lower case): addresses, in the resolver's order}."""
    resolved = {}
    for line in text.splitlines():
        name, *addresses = line.split()
        resolved[name.lower()] = tuple(str(ipaddress.ip_address(a)) for a in addresses)
    return resolved


def build_topology(
    entries: Iterable[tuple[str, Mapping[str, list[str]]]],
    this_name: str,
    resolved: Mapping[str, tuple[str, ...]],
    own_addresses: Iterable[str] = (),
    source: str = "ldap",
) -> Topology:
    """entries: LDAP entries (dn, attributes) of cn=config and the servers; this_name: the reading node's
    zimbra_server_hostname; resolved: host name (lower case) → addresses, as resolved on that node."""
    entries = list(entries)
    config = next((dict(attrs) for dn, attrs in entries if dn.lower() == CONFIG_DN), {})
    servers = []
    for dn, attrs in entries:
        if not dn.lower().endswith("," + SERVERS_DN) or not attrs.get("cn"):
            continue
        effective = {name: tuple(values) for name, values in {**config, **attrs}.items()}
        name = attrs["cn"][0]
        hostname = (effective.get("zimbraServiceHostname") or (name,))[0]
        servers.append(
            Server(
                name=name,
                hostname=hostname,
                services=frozenset(effective.get("zimbraServiceEnabled", ())),
                attributes=effective,
                addresses=resolved.get(hostname.lower(), ()),
            )
        )
    servers.sort(key=lambda s: s.name)
    this = next((s for s in servers if s.name.lower() == this_name.lower()), None)
    if this is None:
        return Topology(None, error=f"no server entry cn={this_name},{SERVERS_DN} in Zimbra's LDAP", name=this_name)
    return Topology(this, tuple(servers), tuple(own_addresses), source, name=this_name)


def seen_from(
    other: Topology, this_name: str, resolved: Mapping[str, tuple[str, ...]], own_addresses: Iterable[str], by: str
) -> Topology:
    """Another node's read of the same install, as this node sees it: the names resolved here."""
    servers = [dataclasses.replace(s, addresses=resolved.get(s.hostname.lower(), ())) for s in other.servers]
    this = next((s for s in servers if s.name.lower() == this_name.lower()), None)
    if this is None:
        return Topology(None, error=f"no server entry cn={this_name},{SERVERS_DN} in Zimbra's LDAP", name=this_name)
    return Topology(this, tuple(servers), tuple(own_addresses), other.source, name=this_name, borrowed_from=by)


def topology_from_read(this_name: str, own_addresses: str, source: str, body: str, resolved: str) -> Topology:
    """The parts of facts/zimbra.py's read → Topology. LDAP and zmprov print attribute names as Zimbra's
    schema spells them."""
    if source == "failed":
        return Topology(
            None, own_addresses=tuple(own_addresses.split()), error=body.strip() or "zmprov failed", name=this_name
        )
    entries = parse_ldif(body) if source == "ldap" else entries_from_zmprov(body)
    return build_topology(entries, this_name, parse_resolved(resolved), own_addresses.split(), source)


def describe_peers(topology: Topology) -> str:
    """ "ldap.example.com=10.0.0.10,fd00::10; mta…" (unresolved names said so)."""
    return "; ".join(f"{s.hostname}={','.join(s.addresses) or 'UNRESOLVED'}" for s in topology.peers)
