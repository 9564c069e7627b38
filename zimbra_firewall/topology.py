"""A Zimbra install as its LDAP records it, seen from one node: every server's services, host name and
(effective) attributes, each peer's addresses as this node resolves them. Pure: facts/zimbra.py reads the
text, these functions turn it into a Topology.

Zimbra keeps every server as `cn=<name>,cn=servers,cn=zimbra` with zimbraServiceEnabled and
zimbraServiceHostname; a server without its own value of an attribute inherits cn=config's
(Zimbra/zm-mailbox store/conf/attrs/zimbra-attrs.xml, Provisioning.java).

Everything read is untrusted (zimbra_firewall/untrusted.py): a Topology holds only values that passed.
"""

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from zimbra_firewall.ldif import parse_ldif
from zimbra_firewall.untrusted import Refused, address, checked, endpoint, host_name, shown

CONFIG_DN = "cn=config,cn=zimbra"
SERVERS_DN = "cn=servers,cn=zimbra"
# Attributes that live on cn=config only (zimbra-attrs.xml: optionalIn="globalConfig"): `zmprov gs` cannot
# show them, the zmprov read asks `gcf` for them
GLOBAL_ONLY = frozenset({"zimbraLogHostname"})
# the kinds of the attributes every read has (the catalogue adds its ports, flows' targets and switches)
BASE_KINDS = {"cn": "name", "zimbraServiceHostname": "name", "zimbraServiceEnabled": "service"}


@dataclass(frozen=True)
class Server:
    name: str
    hostname: str  # zimbraServiceHostname: the name the other nodes connect to
    services: frozenset[str]
    attributes: Mapping[str, tuple[str, ...]]  # effective: the server's own values, else cn=config's; checked
    addresses: tuple[str, ...] = ()  # zimbraServiceHostname resolved on the node that read the topology
    last_known: tuple[str, ...] = ()  # the addresses the last deploy used for it on that node
    # the attributes its own entry sets (the others are cn=config's): a fix goes where the value comes from
    own_attributes: frozenset[str] = frozenset()

    def value(self, attribute: str, default: str = "") -> str:
        values = self.attributes.get(attribute) or ()
        return values[0] if values else default

    def named_by(self, text: str) -> bool:
        """Does a checked endpoint value ("host", "host:port", "[v6]:port", "http://host:7780/x") name this
        server?"""
        host = endpoint(text)[0].lower()
        return host in (self.hostname.lower(), self.name.lower()) or host in self.addresses


@dataclass(frozen=True)
class Topology:
    this: Server | None  # the node that read it
    servers: tuple[Server, ...] = ()
    own_addresses: tuple[str, ...] = ()  # this node's addresses (`hostname -I`)
    source: str = "ldap"  # ldap | zmprov
    error: str = ""  # why the topology could not be read; only `name` is set then
    name: str = ""  # the reading node's zimbra_server_hostname
    borrowed_from: str = ""  # the host whose read this is, when this node could not read LDAP itself
    refused: tuple[str, ...] = ()  # the values left out, each said once: "entry: attribute 'value': why"
    last_known: tuple[tuple[str, tuple[str, ...]], ...] = ()  # the addresses file as read: (host name, addresses)

    @property
    def peers(self) -> tuple[Server, ...]:
        return tuple(s for s in self.servers if s is not self.this)


def endpoint_port(text: str) -> int | None:
    """The port a checked endpoint value writes, or None."""
    return endpoint(text)[1]


def entries_from_zmprov(text: str) -> list[tuple[str, dict[str, list[str]]]]:
    """The zmprov read (`gs SERVER attrs…` blocks, each opening with `# name SERVER`, then a `# config`
    block of `gcf` lines) → entries shaped as parse_ldif's."""
    entries, attrs = [], None
    for line in text.splitlines():
        if line.startswith("# name "):
            attrs = {"cn": [line[len("# name ") :]]}
            entries.append((f"cn={attrs['cn'][0]},{SERVERS_DN}", attrs))
        elif line.strip() == "# config":
            attrs = {}
            entries.append((CONFIG_DN, attrs))
        elif attrs is not None:
            name, sep, value = line.partition(": ")
            if sep:
                attrs.setdefault(name, []).append(value)
    return entries


def parse_resolved(text: str) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """Lines "name<TAB>address address…" (the resolver's output, or the addresses file the deploy keeps) →
    ({name (lower case): addresses, in the resolver's order}, what was left out). A name is all that comes
    before the last tab, so no name can pass for another; names that are no host name are never looked up
    and are dropped; so are words that are no address."""
    resolved, refused = {}, []
    for line in text.splitlines():
        name, tab, words = line.rpartition("\t")
        if not tab:
            continue
        try:
            name = host_name(name).lower()
        except Refused:
            continue
        addresses = []
        for word in words.split():
            try:
                addresses.append(str(address(word)))
            except Refused as why:
                refused.append(f"{name} resolved to {shown(word)}: {why}")
        resolved[name] = tuple(dict.fromkeys(addresses))
    return resolved, refused


def _checked_attributes(
    where: str, attrs: Mapping[str, list[str]], kinds: Mapping[str, str], refused: list[str]
) -> dict[str, tuple[str, ...]]:
    """An entry's attributes with every value in the form its kind needs; a value that is not is left out
    (and said in `refused`); an attribute without a kind was not asked for and is dropped."""
    kept = {}
    for attribute, values in attrs.items():
        kind = kinds.get(attribute)
        if kind is None:
            continue
        good = []
        for text in values:
            try:
                good.append(checked(kind, text))
            except Refused as why:
                refused.append(f"{where}: {attribute} {shown(text)} left out: {why}")
        if good:
            kept[attribute] = tuple(good)
    return kept


def build_topology(
    entries: Iterable[tuple[str, Mapping[str, list[str]]]],
    this_name: str,
    resolved: Mapping[str, tuple[str, ...]],
    own_addresses: Iterable[str] = (),
    source: str = "ldap",
    kinds: Mapping[str, str] | None = None,
    last_known: Mapping[str, tuple[str, ...]] | None = None,
    refused: Iterable[str] = (),
) -> Topology:
    """entries: LDAP entries (dn, attributes) of cn=config and the servers, as read (untrusted); this_name:
    the reading node's zimbra_server_hostname; resolved: host name (lower case) → addresses, as resolved on
    that node; kinds: attribute → the kind of value it holds (zimbra_firewall.untrusted.KINDS; the catalogue's
    attribute_kinds()); last_known: host name → the addresses the last deploy used. A server whose cn or host
    name is no host name is left out whole; a value of another attribute that is not of its kind is left out
    alone (the server then inherits cn=config's value, as for an unset one). Each is said in `refused`."""
    kinds, last_known, refused = {**BASE_KINDS, **(kinds or {})}, last_known or {}, list(refused)
    entries = list(entries)
    config_attrs = next((attrs for dn, attrs in entries if dn.lower() == CONFIG_DN), {})
    config = _checked_attributes("cn=config", {a: v for a, v in config_attrs.items() if a != "cn"}, kinds, refused)
    servers = []
    for dn, attrs in entries:
        if not dn.lower().endswith("," + SERVERS_DN) or not attrs.get("cn"):
            continue
        try:
            name = host_name(attrs["cn"][0])
        except Refused as why:
            refused.append(f"server entry {shown(dn)} left out: cn {shown(attrs['cn'][0])}: {why}")
            continue
        written = (attrs.get("zimbraServiceHostname") or [name])[0]
        try:
            hostname = host_name(written)
        except Refused as why:
            refused.append(f"server {name} left out: zimbraServiceHostname {shown(written)}: {why}")
            continue
        own = _checked_attributes(f"server {name}", attrs, kinds, refused)
        effective = {**config, **own, "cn": (name,), "zimbraServiceHostname": (hostname,)}
        servers.append(
            Server(
                name=name,
                hostname=hostname,
                services=frozenset(effective.get("zimbraServiceEnabled", ())),
                attributes=effective,
                addresses=resolved.get(hostname.lower(), ()),
                last_known=last_known.get(hostname.lower(), ()),
                own_attributes=frozenset(own),
            )
        )
    servers.sort(key=lambda s: s.name)
    own_addresses = _addresses(own_addresses, "this host's addresses (hostname -I)", refused)
    this = next((s for s in servers if s.name.lower() == this_name.lower()), None)
    kept = tuple(sorted(last_known.items()))
    if this is None:
        error = _no_entry(this_name, refused)
        return Topology(None, (), own_addresses, error=error, name=this_name, refused=tuple(refused), last_known=kept)
    return Topology(
        this, tuple(servers), own_addresses, source, name=this_name, refused=tuple(refused), last_known=kept
    )


def _no_entry(this_name: str, refused: list[str]) -> str:
    why = f"no server entry cn={shown(this_name)},{SERVERS_DN} in Zimbra's LDAP"
    mine = [r for r in refused if this_name.lower() in r.lower()]
    return why + (f" that this run can use ({mine[0]})" if mine else "")


def _addresses(words: Iterable[str], what: str, refused: list[str]) -> tuple[str, ...]:
    kept = []
    for word in words:
        try:
            kept.append(str(address(word)))
        except Refused as why:
            refused.append(f"{what}: {shown(word)} left out: {why}")
    return tuple(kept)


def seen_from(
    other: Topology,
    this_name: str,
    resolved: Mapping[str, tuple[str, ...]],
    own_addresses: Iterable[str],
    by: str,
    last_known: Mapping[str, tuple[str, ...]] | None = None,
) -> Topology:
    """Another node's read of the same install, as this node sees it: the names resolved here."""
    last_known = last_known or {}
    servers = [
        dataclasses.replace(
            s, addresses=resolved.get(s.hostname.lower(), ()), last_known=last_known.get(s.hostname.lower(), ())
        )
        for s in other.servers
    ]
    this = next((s for s in servers if s.name.lower() == this_name.lower()), None)
    if this is None:
        return Topology(None, error=_no_entry(this_name, []), name=this_name)
    own = _addresses(own_addresses, "this host's addresses (hostname -I)", [])
    kept = tuple(sorted(last_known.items()))
    return Topology(
        this,
        tuple(servers),
        own,
        other.source,
        name=this_name,
        borrowed_from=by,
        refused=other.refused,
        last_known=kept,
    )


def render_addresses(addresses: Iterable[tuple[str, Iterable[str]]]) -> str:
    """(host name, addresses) pairs → the addresses file parse_resolved reads back (names without an
    address are left out: they have nothing to keep)."""
    lines = sorted(f"{name.lower()}\t{' '.join(found)}\n" for name, found in addresses if found)
    return "".join(lines)


@dataclass(frozen=True)
class TopologyRead:
    """The parts of facts/zimbra.py's read, as the host printed them (nothing checked yet)."""

    this_name: str  # zimbra_server_hostname from localconfig.xml
    own_addresses: str  # `hostname -I`
    source: str  # ldap | zmprov | failed
    body: str  # LDIF, the zmprov read, or why the read failed
    resolved: str  # the resolver's lines for every zimbraServiceHostname
    last_known: str = ""  # the addresses file of the last deploy


def topology_from_read(read: TopologyRead, kinds: Mapping[str, str] | None = None) -> Topology:
    """facts/zimbra.py's read → a checked Topology. LDAP and zmprov print attribute names as Zimbra's schema
    spells them."""
    own = read.own_addresses.split()
    try:
        this_name = host_name(read.this_name)
    except Refused as why:
        error = f"zimbra_server_hostname in localconfig.xml is {shown(read.this_name)}: {why}"
        return Topology(None, own_addresses=_addresses(own, "", []), error=error)
    if read.source == "failed":
        # Zimbra's (or LDAP's) message, on one line, with nothing a terminal would act on
        error = shown(" ".join(read.body.split()) or "zmprov failed", 500, quote=False)
        return Topology(None, own_addresses=_addresses(own, "", []), error=error, name=this_name)
    entries = parse_ldif(read.body) if read.source == "ldap" else entries_from_zmprov(read.body)
    resolved, refused = parse_resolved(read.resolved)
    last_known, _ = parse_resolved(read.last_known)
    return build_topology(entries, this_name, resolved, own, read.source, kinds, last_known, refused)


def describe_peers(topology: Topology) -> str:
    """ "ldap.example.com=10.0.0.10,fd00::10; mta…" (unresolved names said so)."""
    return "; ".join(f"{s.hostname}={','.join(s.addresses) or 'UNRESOLVED'}" for s in topology.peers)
