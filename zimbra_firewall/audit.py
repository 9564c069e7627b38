"""The exposure audit: what each listening socket of a node can be reached from, given ufw's rules (or
firewalld's configuration, as rules in the order it decides: observed_firewalld) as they are, against what
the policy lets reach it. Pure: audit.py and facts/audit.py read the host, these
functions judge; zimbra_firewall/audit_report.py renders.

Reachability is judged per source, as ufw's kernel rules judge a packet: ufw's own accepts of before.rules
(DHCP client replies), then the user rules of the source's family in their order, the first that matches
decides (allow and limit let in, deny and reject do not), else the default incoming policy; an inactive ufw
lets everything in, and so does a family whose rules ufw has not loaded; IPV6=no lets no IPv6 in (ufw: "only
IPv6 on loopback accepted"). A source is a network: the world, each management subnet, each `zimbra_nodes`
subnet, each peer's address, and each network a rule names; a rule decides for a source when its own source
network holds the whole of it. A rule for one interface (`in on eth1`) or one destination (`to 10.0.0.5`)
decides only the packets arriving there or sent there: the packet is followed on each interface a rule names,
on an interface none names, and to each of the host's addresses the socket accepts, and it reaches the socket
when one of these lets it in (`lo` is never where another host's packets arrive). Sockets bound to loopback
are reachable from the host alone, whatever the rules say (ufw accepts loopback traffic before its user
rules).
"""

import dataclasses
import functools
import ipaddress
import re
import shlex
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from zimbra_firewall.access import ANYWHERE, Network, holds
from zimbra_firewall.catalogue import Catalogue
from zimbra_firewall.firewalld import State as FirewalldState
from zimbra_firewall.firewalld import inbound, rich_rule_text
from zimbra_firewall.firewalld_policy import policy_name
from zimbra_firewall.kernel import KERNEL, SAVE_COMMAND, UFW_USER_INPUT, KernelView, file_rules, words_of
from zimbra_firewall.policy import Policy, attribute_port, nginx_memcached_address
from zimbra_firewall.topology import Server, Topology
from zimbra_firewall.trust import (
    java_address_text,
    judge_mynetworks,
    mynetworks_value,
    not_throttle_safe,
    not_trusted,
    remote_address_text,
)
from zimbra_firewall.ufw import (
    TUPLE,
    USER_INPUT,
    USER_RULES,
    Port,
    RuleView,
    command_of_tuple,
    ports_of_text,
    rule_of_tuple,
    view_rule,
    without_comment,
)
from zimbra_firewall.ufw_policy import ufw_rules
from zimbra_firewall.untrusted import IPAddress, Refused, peer_address_problem, port_number, shown

SCHEMA = "zimbra-firewall-audit/1"
# the verdicts, most serious first; the first five fail the audit
VERDICTS = (
    "too open",
    "unknown listener",
    "probe got in",
    "rules not loaded",
    "relay trusted too broadly",
    "relay trust not judged",
    "proxy not trusted",
    "memcached unreachable from proxy",
    "probe disagrees",
    "not judged",
    "too closed",
    "rule without listener",
)
FAILING = frozenset(VERDICTS[:5])
OK = "ok"
# how ss shows a socket bound to every address of one family ("::": IPv6 only), or of both ("*")
ANY_ADDRESS = {4: "0.0.0.0", 6: "::"}
WILDCARDS = ("*", *ANY_ADDRESS.values())
LETTING_IN = ("allow", "limit")


def unmapped(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IPv4-mapped IPv6 address (::ffff:10.0.0.5) as the IPv4 address it stands for, any other as it is."""
    return getattr(ip, "ipv4_mapped", None) or ip


@dataclass(frozen=True)
class Listener:
    """One listening socket as `ss -Hlnptu` shows it. address: as bound ("0.0.0.0", "::" for IPv6 only,
    "*" for both families, or one address)."""

    proto: str
    address: str
    port: int
    process: str = ""
    pid: int | None = None

    @property
    def loopback(self) -> bool:
        return self.address not in WILDCARDS and ipaddress.ip_address(self.address).is_loopback

    def destinations(self, own_addresses: Iterable[str], version: int) -> list:
        """The host's addresses of this family a packet can reach this socket at."""
        addresses = {ipaddress.ip_address(a) for a in own_addresses}
        if self.address not in WILDCARDS:
            addresses.add(ipaddress.ip_address(self.address))
        return sorted(a for a in addresses if a.version == version and self.accepts(str(a)))

    def accepts(self, address: str) -> bool:
        """Does a connection to `address` (one of the host's) reach this socket?"""
        ip = ipaddress.ip_address(address)
        return self.address in ("*", ANY_ADDRESS[ip.version]) or self.address == str(ip)


_SS_PROCESS = re.compile(r'\("([^"]*)",pid=(\d+)')


def parse_listeners(text: str) -> list[Listener]:
    """`ss -Hlnptu` → its listening TCP and bound UDP sockets (one per proto, address and port). A socket bound
    to an IPv4-mapped IPv6 address (`[::ffff:10.0.0.5]:7071`, as Java binds) receives IPv4 packets to that
    address alone, which the IPv4 rules judge: it is read as bound to the IPv4 address."""
    found: dict[tuple, Listener] = {}
    for line in text.splitlines():
        fields = line.split(None, 6)
        if len(fields) < 6 or fields[0] not in ("tcp", "udp"):
            continue
        address, _, port = fields[4].rpartition(":")
        # ss adds the device a socket is bound to after the address, brackets and all: `[fe80::1]%eth0:546`
        address = address.partition("%")[0].strip("[]")
        try:
            number = port_number(port)
            bound = address if address in WILDCARDS else str(unmapped(ipaddress.ip_address(address)))
        except (Refused, ValueError):
            continue
        process = _SS_PROCESS.search(fields[6]) if len(fields) > 6 else None
        listener = Listener(
            fields[0],
            bound,
            number,
            process.group(1) if process else "",
            int(process.group(2)) if process else None,
        )
        found.setdefault((listener.proto, listener.address, listener.port), listener)
    return sorted(found.values(), key=lambda item: (item.port, item.proto, item.address))


def link_local_addresses(text: str) -> tuple[str, ...]:
    """The first words of /proc/net/if_inet6's lines (each address as 32 hex digits) → the IPv6 link-local
    ones, which `hostname -I` leaves out: a host whose only IPv6 addresses are link-local is still reached over
    IPv6 there, by any host on its links."""
    found = []
    for word in text.split():
        if re.fullmatch(r"[0-9a-f]{32}", word):
            ip = ipaddress.IPv6Address(int(word, 16))
            if ip.is_link_local and str(ip) not in found:
                found.append(str(ip))
    return tuple(found)


# --- rules as they are, and as the policy wants them -------------------------------------------------------


@dataclass(frozen=True)
class Ruleset:
    active: bool  # ufw: some family's rules loaded; firewalld: running
    incoming: str  # default incoming policy: deny | reject | allow
    ipv6: bool
    rules: dict  # IP version → tuple of (RuleView, words as `ufw show added` prints them, or a firewalld gate's)
    firewall: str = "ufw"  # whose rules: ufw | firewalld
    unloaded: frozenset = frozenset()  # IP versions whose rules are not in the kernel while the other's are
    before: Mapping = field(default_factory=dict)  # IP version → (RuleView, words): accepts ahead of the rules
    accepting: frozenset = frozenset()  # IP versions whose INPUT chain's policy in the kernel is ACCEPT


# the first word of the words of an accept in ufw's own rule files: (BUILT_IN, the file, the iptables line)
BUILT_IN = "built-in"
# ufw's before.rules and before6.rules, as ufw ships them, accept DHCP replies to the host's client ahead of
# every user rule: no user rule closes the port. The sender picks its source port, so who may send from 67
# (547) is anyone: IPv4's is open to the world, IPv6's to every link-local address (they are the only ones the
# rule takes, at both ends)
_LINK_LOCAL = (ipaddress.ip_network("fe80::/10"),)


def _accepting(networks: tuple, port: Port, what: str) -> RuleView:
    """An accept from and to `networks`, of one port."""
    return RuleView("allow", True, networks, (port,), "", what, networks)


UFW_BEFORE = {
    4: (
        (
            _accepting(ANYWHERE, Port(68, 68, "udp"), "DHCP client (replies from port 67)"),
            (BUILT_IN, "/etc/ufw/before.rules", "-A ufw-before-input -p udp --sport 67 --dport 68 -j ACCEPT"),
        ),
    ),
    6: (
        (
            _accepting(_LINK_LOCAL, Port(546, 546, "udp"), "DHCPv6 client (replies from port 547)"),
            (
                BUILT_IN,
                "/etc/ufw/before6.rules",
                "-A ufw6-before-input -p udp -s fe80::/10 --sport 547 -d fe80::/10 --dport 546 -j ACCEPT",
            ),
        ),
    ),
}


def observed_ruleset(status: dict, rule_files: Sequence[str], kernel: KernelView | None = None) -> Ruleset:
    """status: zimbra_firewall.ufw.parse_status's; rule_files: the text of user.rules and user6.rules; kernel:
    what the kernel's tables hold besides (zimbra_firewall.kernel): another program's INPUT rules ahead of
    ufw's user rules and behind them, and an INPUT policy that accepts where ufw's default does not."""
    rules, accepting = {}, set()
    for version, text in zip((4, 6), rule_files, strict=True):
        lines = [line for line in text.splitlines() if line.startswith(TUPLE)]
        pairs = [(rule_of_tuple(line), command_of_tuple(line)) for line in lines]
        rules[version] = tuple((view, words) for view, words in pairs if view is not None)
        family = kernel.families.get(version) if kernel else None
        if family and family.ufw_loaded:
            rules[version] = family.before + rules[version] + family.after
            if family.input_policy == "ACCEPT" and status["incoming"] != "allow":
                accepting.add(version)
    loaded = {4: status["active"], 6: status["active6"]}
    return Ruleset(
        any(loaded.values()),
        status["incoming"],
        status["ipv6"],
        rules,
        unloaded=frozenset(version for version, chain in loaded.items() if not chain),
        before=UFW_BEFORE,
        accepting=frozenset(accepting),
    )


FIREWALLD = "firewalld"  # the first word of a firewalld gate's words: ("firewalld", "zone public", "<service …/>")


def observed_firewalld(state: FirewalldState) -> Ruleset:
    """firewalld's permanent configuration as rules in the order it decides (zimbra_firewall.firewalld
    inbound): each gate an allow or a deny rule, its words ("firewalld", where, the element); the default zone's
    target as the default. A stopped firewalld lets everything in."""
    gates, default = inbound(state)
    rules = {}
    for version in (4, 6):
        pairs = []
        for gate in gates:
            own = tuple(s for s in gate.sources if s.version == version)
            if own:
                view = RuleView("allow" if gate.accept else "deny", True, own, gate.ports, "", gate.where)
                pairs.append((view, (FIREWALLD, gate.where, gate.element)))
        rules[version] = tuple(pairs)
    return Ruleset(state.running, default, True, rules, FIREWALLD)


def observed_of(read: "NodeRead") -> Ruleset | None:
    """The rules in force on a node as its read gave them: firewalld's, ufw's, or None (not read)."""
    if read.firewalld is not None:
        return observed_firewalld(read.firewalld)
    return observed_ruleset(read.status, read.rule_files, read.kernel) if read.status else None


def rule_text(words: Sequence[str]) -> str:
    """A rule for people: `ufw allow …`, `zone public: <service name="http"/>`, `/etc/ufw/before.rules: -A …`
    or `iptables: -A INPUT …`."""
    if words[:1] in ((FIREWALLD,), (BUILT_IN,), (KERNEL,)):
        return f"{words[1]}: {words[2]}"
    return "ufw " + shlex.join(without_comment(words))


def expected_ruleset(policy: Policy, firewall: str = "ufw") -> Ruleset:
    """The rules the policy wants, active, with its default: an app rule opens its profile's ports. On ufw,
    what ufw's own files accept comes first, as it does in the kernel: the policy cannot close it."""
    apps = {profile.name: ports_of_text(profile.ports) for profile in policy.profiles}
    pairs = []
    for words in ufw_rules(policy):
        view = view_rule(words)
        if view.app:
            view = dataclasses.replace(view, ports=apps.get(view.app, ()))
        pairs.append((view, (*without_comment(words), "comment", policy.comment)))
    before = UFW_BEFORE if firewall == "ufw" else {}
    return Ruleset(True, policy.default_incoming, True, {4: tuple(pairs), 6: tuple(pairs)}, firewall, before=before)


@dataclass(frozen=True)
class Source:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    kind: str  # world | management | zimbra_nodes | peer | rule
    name: str  # "world", the subnet, or the peer's host name


@dataclass(frozen=True)
class Decision:
    reachable: bool
    via: str  # "rule", "default deny incoming", "ufw inactive", "ufw's IPv6 rules not loaded", "IPV6=no"
    rule: tuple = ()  # the deciding rule's words
    where: str = ""  # the path it decided, where rules tell paths apart: "in on eth1, to 10.0.0.5"


NOT_LOADED = "ufw's IPv{} rules not loaded"


def sources(policy: Policy, topology: Topology, rulesets: Iterable[Ruleset]) -> list[Source]:
    """Every source the audit judges for: the first kind that names a network names it."""
    found: dict = {}

    def add(network, kind, name):
        found.setdefault(network, Source(network, kind, name))

    used = dict(policy.addresses)  # what the policy makes each peer's rules from (checked, or last known)
    for peer in topology.peers:
        for address in used.get(peer.hostname, ()):
            add(ipaddress.ip_network(address), "peer", peer.hostname)
    for network in policy.management_subnets:
        add(network, "management", str(network))
    for network in policy.zimbra_nodes:
        add(network, "zimbra_nodes", str(network))
    for network in ANYWHERE:
        add(network, "world", "world")
    for ruleset in rulesets:
        for pairs in (*ruleset.before.values(), *ruleset.rules.values()):
            for view, _ in pairs:
                for network in view.sources:
                    add(network, "rule", str(network))
    return list(found.values())


def _opens(view: RuleView, listener: Listener) -> bool:
    if view.ports is None:
        return True
    return any(p.proto == listener.proto and p.first <= listener.port <= p.last for p in view.ports)


def decide(ruleset: Ruleset, source: Source, listener: Listener, own_addresses: Iterable[str]) -> Decision | None:
    """Can `source` reach `listener`? None when it cannot even address it (other family, loopback socket)."""
    version = source.network.version
    destinations = () if listener.loopback else _destination_networks(listener, tuple(own_addresses), version)
    if not destinations:
        return None
    if not ruleset.active:
        return Decision(True, "ufw inactive")
    if version == 6 and not ruleset.ipv6:
        return Decision(False, "IPV6=no")
    if version in ruleset.unloaded:
        return Decision(True, NOT_LOADED.format(version))
    matching = [
        (view, words)
        for view, words in (*ruleset.before.get(version, ()), *ruleset.rules[version])
        if view.inbound and _opens(view, listener) and holds(view.sources, source.network)
    ]
    # ufw writes `in on IFACE` as iptables' `-i IFACE` and `to ADDR` as `-d ADDR` (backend_iptables.py): such
    # a rule decides only the packets that arrive there or are sent there, and the others go on to the next
    # rule. So the packet is followed on every path the rules tell apart (each interface they name, and one
    # they do not: the audit does not know the host's interfaces, and the rules let in there too; each group of
    # the host's addresses they treat alike), and it reaches the socket when one path lets it in: a deny for
    # one interface or one address hides nothing on the others, an allow for one is enough.
    named = sorted({view.interface for view, _ in matching} - {"", "lo"})  # lo: never another host's packets
    groups: dict[tuple, list] = {}
    for network in destinations:
        groups.setdefault(tuple(holds(view.destinations, network) for view, _ in matching), []).append(network)
    decisions = [
        _first_match(ruleset, matching, interface, addresses[0], _where(interface, named, addresses, len(groups)))
        for interface in ("", *named)
        for addresses in groups.values()
    ]
    first = next((decision for decision in decisions if decision.reachable), decisions[0])
    if all((d.reachable, d.via, d.rule) == (first.reachable, first.via, first.rule) for d in decisions):
        return dataclasses.replace(first, where="")  # every path alike: naming one would suggest the others differ
    return first


@functools.lru_cache(maxsize=4096)  # asked for every source of every socket, twice (the rules now, the policy's)
def _destination_networks(listener: Listener, own_addresses: tuple, version: int) -> tuple:
    return tuple(ipaddress.ip_network(address) for address in listener.destinations(own_addresses, version))


def _first_match(ruleset: Ruleset, matching: list, interface: str, destination, where: str) -> Decision:
    for view, words in matching:
        if view.interface in ("", interface) and holds(view.destinations, destination):
            return Decision(view.action in LETTING_IN, "rule", words, where)
    if destination.version in ruleset.accepting:  # ufw's default deny is INPUT's policy: someone changed it
        return Decision(True, f"{KERNEL_POLICY[destination.version]} ACCEPT in the kernel", where=where)
    return Decision(ruleset.incoming == "allow", f"default {ruleset.incoming} incoming", where=where)


def _where(interface: str, named: Sequence[str], addresses: Sequence, groups: int) -> str:
    parts = []
    if interface:
        parts.append(f"in on {interface}")
    elif named:
        parts.append(f"in on an interface other than {', '.join(named)}")
    if groups > 1:
        parts.append("to " + " or ".join(str(network.network_address) for network in addresses))
    return ", ".join(parts)


KERNEL_POLICY = {4: "iptables -P INPUT", 6: "ip6tables -P INPUT"}


# --- judging a node ----------------------------------------------------------------------------------------


@dataclass
class Finding:
    verdict: str
    port: str  # "7071/tcp"
    detail: str
    fix: list[str]


@dataclass
class SocketAudit:
    proto: str
    port: int
    address: str
    process: str
    pid: int | None
    service: str  # what the catalogue says serves this port, or ""
    expected: str  # public | local-only | intra | loopback-only | ssh | other role | unknown
    reach: list[str]  # who can reach it: "world", subnets, peer host names; "loopback only"; [] = nobody
    verdict: str
    sources: list[dict] = field(default_factory=list)
    probe: dict | None = None


@dataclass
class NodeAudit:
    name: str  # the inventory's host name
    server: str  # zimbra_server_hostname
    services: list[str]
    topology: str  # ldap | zmprov | failed
    error: str
    ufw: dict  # active, incoming, outgoing, ipv6
    rollback: dict  # last: the last line of the rollback log, or ""; armed: a timer is running now
    warnings: list[str]
    sockets: list[SocketAudit]
    findings: list[Finding]
    complete: bool = True  # False when the node's sockets or its firewall's state could not be read: not audited
    firewall: str = "ufw"  # ufw | firewalld: whose rules were judged (`ufw` then holds firewalld's state)

    @property
    def failed(self) -> bool:
        return not self.complete or any(f.verdict in FAILING for f in self.findings)


@dataclass(frozen=True)
class NodeRead:
    """What one node's read gave (facts/audit.py ExposureRead)."""

    topology: Topology
    listeners: tuple
    status: dict  # parse_status's, or {} when ufw's state could not be read
    rule_files: tuple  # user.rules, user6.rules
    rollback_last: str = ""
    rollback_armed: bool = False
    ufw_error: str = ""
    controller: str = ""  # the controller's address as the host sees the SSH connection
    reached_at: str = ""  # the host's address that SSH connection arrived at
    firewalld: FirewalldState | None = None  # firewalld's configuration, where firewalld runs (instead of ufw's)
    link_local: tuple = ()  # the host's IPv6 link-local addresses (link_local_addresses)
    kernel: KernelView | None = None  # the kernel's netfilter tables, on a ufw host


def reach_names(decisions: dict) -> list[str]:
    """Who reaches a socket, for people: "world" says it all; else subnets and peers, each named once."""
    reached = [source for source, decision in decisions.items() if decision.reachable]
    if any(source.kind == "world" for source in reached):
        return ["world"]
    order = {"management": 0, "zimbra_nodes": 1, "peer": 2, "rule": 3}
    names = []
    for source in sorted(reached, key=lambda s: (order[s.kind], s.name)):
        if source.name not in names:
            names.append(source.name)
    return names


def port_catalogue(catalogue: Catalogue, policy: Policy, topology: Topology) -> dict[Port, tuple[str, str]]:
    """Port → (service, what the policy expects of it on this node), this node's ports first."""
    this = topology.this
    known = {}
    for exposure, ports in policy.exposure.items():
        for port in ports:
            known[port] = ("", exposure)
    for entry in catalogue.ports:
        default = entry.port
        number = attribute_port(this, entry.attribute, default.first)
        if not number:
            continue  # Zimbra's "listens nowhere"
        port = dataclasses.replace(default, first=number, last=number + default.last - default.first)
        if port in known:
            expected = known[port][1]
        elif entry.group and (this is None or entry.role in this.services):
            expected = f"off (optional group {entry.group})"
        else:
            expected = f"{entry.role} role, not this node's"
        known[port] = (entry.service, expected)
    ssh = Port(policy.ssh_port, policy.ssh_port, "tcp")
    known[ssh] = (known.get(ssh, ("SSH", ""))[0] or "SSH", "ssh")
    return known


def _lookup(known: dict, listener: Listener) -> tuple[str, str] | None:
    for port, value in known.items():
        if port.proto == listener.proto and port.first <= listener.port <= port.last:
            return value
    return None


def audit_node(
    name: str,
    read: NodeRead,
    policy: Policy,
    catalogue: Catalogue,
    deploy_command: str,
    warnings: Iterable[str] = (),
    nginx_looks: Mapping[str, str] | None = None,
) -> NodeAudit:
    """Judge every socket of one node, and its rules, against its policy. nginx_looks: proxy host name → the
    address that proxy resolves this node's host name to (its nginx's memcached address)."""
    topology, own = read.topology, (*read.topology.own_addresses, *read.link_local)
    observed = observed_of(read)
    expected = expected_ruleset(policy, observed.firewall if observed else "ufw")
    every = sources(policy, topology, [r for r in (observed, expected) if r])
    known = port_catalogue(catalogue, policy, topology)
    wanted_ports = {p for view, _ in expected.rules[4] for p in view.ports or ()}
    sockets: list[SocketAudit] = []
    findings: list[Finding] = []
    # per port: its sockets (IPv4, IPv6, several addresses), and per source what reaches it through any of them
    sockets_of: dict[tuple[int, str], list[SocketAudit]] = {}
    reach_of: dict[tuple[int, str], dict] = {}
    for listener in read.listeners:
        service, exposure = _lookup(known, listener) or _built_in(observed, listener) or ("", "unknown")
        if exposure == "unknown" and any(p.proto == listener.proto and p.first == listener.port for p in wanted_ports):
            exposure = "intra"
        socket = SocketAudit(
            listener.proto, listener.port, listener.address, listener.process, listener.pid, service, exposure, [], OK
        )
        if listener.loopback:
            socket.reach = ["loopback only"]
        elif observed:
            judged = _evaluate(socket, listener, observed, expected, every, own)
            key = (listener.port, listener.proto)
            sockets_of.setdefault(key, []).append(socket)
            reach = reach_of.setdefault(key, {})
            for source, (now, wanted) in judged.items():
                now_seen, wanted_seen = reach.get(source, (now, wanted))
                reach[source] = (now if now.reachable else now_seen, wanted if wanted.reachable else wanted_seen)
        sockets.append(socket)
    for (port, proto), group in sockets_of.items():
        findings += _port_findings(f"{port}/{proto}", group, reach_of[(port, proto)], name, deploy_command)
    if observed:
        ours = f"policy {policy_name(policy)}" if read.firewalld is not None else policy.comment
        findings += _rules_without_listener(observed, read.listeners, ours, deploy_command)
        findings += _memcached_findings(topology, read.listeners, observed, deploy_command, nginx_looks or {})
        if read.kernel is not None and read.firewalld is None:
            findings += _kernel_findings(read, read.kernel, expected, name, deploy_command)
    _mark(sockets, findings)
    this = topology.this
    if this is None:
        warnings = [*warnings, "Zimbra's roles unknown: judged as a server running every service, with no peer"]
    if read.firewalld is not None and read.firewalld.recorded and not read.firewalld.applied:
        warnings = [
            *warnings,
            "firewalld's rules in force are not what its files made at the deploy's last reload (a runtime-only "
            "change, files edited without a reload): the files are judged; audit_probe checks what is in force, "
            "and the deploy puts it back",
        ]
    warnings = [*warnings, *_unloaded_warnings(sockets)]
    ufw = {"active": False, "active6": False, "incoming": "unknown", "outgoing": "unknown", "ipv6": True, **read.status}
    if observed and read.firewalld is not None:
        ufw = {"active": observed.active, "active6": observed.active, "incoming": observed.incoming}
        ufw |= {"outgoing": "allow", "ipv6": True}
    return NodeAudit(
        name=name,
        server=this.hostname if this else topology.name,
        services=sorted(this.services) if this else [],
        topology=topology.source if this else "failed",
        error="; ".join(e for e in (topology.error, read.ufw_error) if e),
        ufw={k: ufw[k] for k in ("active", "active6", "incoming", "outgoing", "ipv6")},
        rollback={"last": read.rollback_last, "armed": read.rollback_armed},
        warnings=list(warnings),
        sockets=sockets if observed else [],  # not judged without the firewall's state
        findings=sorted(findings, key=lambda f: (rank(f.verdict), _port_key(f.port))),
        complete=observed is not None,
        firewall=observed.firewall if observed else "ufw",
    )


def _built_in(observed: Ruleset | None, listener: Listener) -> tuple[str, str] | None:
    """(service, "ufw built-in") for a port one of ufw's own accepts opens. Such a port (68/udp, dhclient's or
    systemd-networkd's) is not the catalogue's: the catalogue's ports become the deploy's rules, and this one
    is ufw's, before any rule, on every ufw host; a DHCP client on it is a server's normal state, not an
    unknown listener that fails the audit. Its reach is still said as it is: the world."""
    for pairs in (observed.before if observed else {}).values():
        for view, _ in pairs:
            if _opens(view, listener):
                return view.comment, "ufw built-in"
    return None


def _unloaded_warnings(sockets: Iterable[SocketAudit]) -> list[str]:
    """A family whose rules ufw has not loaded while the other's are, said once per node where a socket was
    judged unfiltered for it (a kernel without IPv6 has no IPv6 rules loaded, and no IPv6 socket either)."""
    vias = {row["via"] for socket in sockets for row in socket.sources}
    return [
        f"ufw's IPv{version} rules are not loaded (no {USER_INPUT[version]} chain) while the other family's "
        f"are: IPv{version} is judged unfiltered; `ufw reload` loads them or says why it cannot"
        for version in (4, 6)
        if NOT_LOADED.format(version) in vias
    ]


def unread_node(name: str, error: str) -> NodeAudit:
    """A node whose read failed: in the report, failing the audit, with the reason."""
    ufw = {"active": False, "active6": False, "incoming": "unknown", "outgoing": "unknown", "ipv6": True}
    return NodeAudit(name, "", [], "failed", error, ufw, {"last": "", "armed": False}, [], [], [], complete=False)


def _port_key(text: str) -> tuple:
    number, _, proto = text.partition("/")
    return (int(number.split(":")[0]) if number[:1].isdigit() else 0, proto)


def _evaluate(socket, listener, observed, expected, every, own) -> dict:
    """Fill the socket's sources and reach; → {source: (decision now, decision the policy wants)}."""
    judged = {}
    for source in every:
        now = decide(observed, source, listener, own)
        if now is None:
            continue
        wanted = decide(expected, source, listener, own)
        assert wanted is not None  # what decides None (family, loopback) is the same in both rulesets
        judged[source] = (now, wanted)
        socket.sources.append(
            {
                "network": str(source.network),
                "kind": source.kind,
                "name": source.name,
                "reachable": now.reachable,
                "expected": wanted.reachable,
                "via": _via_text(now),
            }
        )
    socket.reach = reach_names({source: now for source, (now, _) in judged.items()})
    return judged


def _port_findings(spec: str, group: list, judged: dict, name: str, deploy_command: str) -> list[Finding]:
    """The verdict on one port from every socket listening on it (IPv4 and IPv6 sockets, several addresses)."""
    reach = reach_names({source: now for source, (now, _) in judged.items()})
    first = group[0]
    what = first.service or first.expected
    if first.expected == "unknown" and reach:
        processes = sorted({f"{s.process or 'a process'}" + (f" (pid {s.pid})" if s.pid else "") for s in group})
        detail = (
            f"{', '.join(processes)} listens on {', '.join(s.address for s in group)}, a port the catalogue does "
            f"not know, reachable from {', '.join(reach)}"
        )
        fixes = _closing_fixes([now for now, _ in judged.values() if now.reachable], name, deploy_command)
        fixes.append("or, if it is wanted, list it in exposure_overrides (group_data) and rerun the deploy")
        return [Finding("unknown listener", spec, detail, fixes)]
    opened = {source: now for source, (now, wanted) in judged.items() if now.reachable and not wanted.reachable}
    if opened:
        allowed = sorted({source.name for source, (_, wanted) in judged.items() if wanted.reachable})
        detail = (
            f"{what}: reachable from {', '.join(reach_names(opened))}; the policy allows "
            f"{', '.join(allowed) or 'nobody off the host'}"
        )
        return [Finding("too open", spec, detail, _closing_fixes(opened.values(), name, deploy_command))]
    missing = sorted({s.name for s, (now, wanted) in judged.items() if wanted.reachable and not now.reachable})
    if missing:
        detail = f"{what}: not reachable from {', '.join(missing)}, as the policy wants"
        return [Finding("too closed", spec, detail, [f"{deploy_command} --limit {name}"])]
    return []


def _via_text(decision: Decision) -> str:
    text = "rule: " + rule_text(decision.rule) if decision.rule else decision.via
    return f"{text} ({decision.where})" if decision.where else text


def removal(words: Sequence[str]) -> str:
    """The command that takes a rule away: `ufw delete …`, or firewall-cmd's for a zone's or a policy's
    element; a target that lets everything in goes back to the one that decides nothing itself."""
    if words[:1] == (KERNEL,) and words[1].startswith("/"):  # a line of before.rules: ufw loads it again
        return f"delete `{words[2]}` from {words[1]}, then ufw reload (it lets everything in for a moment)"
    if words[:1] == (KERNEL,):  # iptables -D CHAIN, then the rule as saved
        return f"{words[1]} -D " + shlex.join(words_of(words[2])[1:])
    if words[:1] != (FIREWALLD,):
        return "ufw delete " + shlex.join(without_comment(words))
    kind, _, name = words[1].partition(" ")
    scope = f"--zone={shlex.quote(name)}" if kind == "zone" else f"--policy={shlex.quote(name)}"
    if not words[2].startswith("<"):
        option = "--set-target=" + ("default" if kind == "zone" else "CONTINUE")
    else:
        option = _removal_option(ElementTree.fromstring(words[2]))
    return f"firewall-cmd --permanent {scope} {option} && firewall-cmd --reload"


def _removal_option(element: ElementTree.Element) -> str:
    get = element.get
    if element.tag == "rule":
        value = rich_rule_text(element)
    elif element.tag in ("port", "source-port"):
        value = f"{get('port')}/{get('protocol')}"
    elif element.tag == "forward-port":
        value = ":".join(
            f"{key}={get(attribute)}"
            for key, attribute in (
                ("port", "port"),
                ("proto", "protocol"),
                ("toport", "to-port"),
                ("toaddr", "to-addr"),
            )
            if get(attribute)
        )
    else:
        value = get("name") or get("value") or ""
    option = "rich-rule" if element.tag == "rule" else element.tag
    return f"--remove-{option}={shlex.quote(value)}"


def _closing_fixes(decisions: Iterable[Decision], name: str, deploy_command: str) -> list[str]:
    fixes = []
    for decision in decisions:
        if decision.rule:
            fix = removal(decision.rule)
        elif decision.via == "ufw inactive":
            fix = f"{deploy_command} --limit {name}"
        elif decision.via in (NOT_LOADED.format(4), NOT_LOADED.format(6)):
            fix = "ufw reload (it loads both families' rules, or says why it cannot)"
        elif decision.via.endswith("ACCEPT in the kernel"):
            fix = decision.via.replace(" ACCEPT in the kernel", " DROP")
        else:
            fix = "ufw default deny incoming"
        if fix not in fixes:
            fixes.append(fix)
    return fixes


def _rules_without_listener(observed: Ruleset, listeners, owner: str, deploy_command: str) -> list[Finding]:
    findings, seen = [], set()
    for version in (4, 6):
        for view, words in observed.rules[version]:
            if words in seen or not view.inbound or view.action not in LETTING_IN or view.ports is None:
                continue
            seen.add(words)
            idle = [
                p
                for p in view.ports
                if not any(
                    not item.loopback and item.proto == p.proto and p.first <= item.port <= p.last for item in listeners
                )
            ]
            for port in idle:
                ours = view.comment == owner
                fix = (
                    [removal(words)]
                    if not ours
                    else [
                        f"start what serves {port}, or take {port} out of this node's policy (exposure_overrides, "
                        f"optional_groups) and rerun: {deploy_command}"
                    ]
                )
                detail = f"`{rule_text(words)}` opens {port}, where nothing listens"
                findings.append(Finding("rule without listener", str(port), detail, fix))
    return findings


def _kernel_findings(
    read: NodeRead, kernel: KernelView, expected: Ruleset, name: str, deploy_command: str
) -> list[Finding]:
    """What the kernel holds that ufw's files do not say: ufw's rules as loaded differing from its files, a port
    published through DNAT past ufw's INPUT rules, another program's rule the audit cannot read."""
    findings = []
    for version, family in sorted(kernel.families.items()):
        save = SAVE_COMMAND[version]
        files = file_rules(version, read.rule_files[0 if version == 4 else 1])
        if read.status.get("active") and family.ufw_loaded and family.user_rules != files:
            detail = (
                f"{USER_RULES[0 if version == 4 else 1]} and the kernel's {UFW_USER_INPUT[version]} chain differ "
                f"({len(set(files) - set(family.user_rules))} rules only in the file, "
                f"{len(set(family.user_rules) - set(files))} only in the kernel): the audit judged the file, the "
                "kernel applies the other (a file edited by hand, `ufw app update` run under SSH by ufw 0.36…)"
            )
            fixes = [
                "ufw reload (ufw lets everything in while it reloads, for a moment: at a quiet time)",
                f"then {deploy_command} --limit {name}",
            ]
            findings.append(Finding("rules not loaded", "", detail, fixes))
        for published in family.published:
            if not published.forwarded or _public_in(expected, published.port, version):
                continue
            port = published.port
            spec = f"{port.first}/{port.proto}" if port.first == port.last else f"{port.first}:{port.last}/{port.proto}"
            whom = "the world" if published.sources == ANYWHERE else ", ".join(map(str, published.sources))
            detail = (
                f"published through DNAT to {published.to} ({published.line}): forwarded past ufw's INPUT rules, "
                f"reachable from {whom}"
            )
            fixes = [
                f"publish it on a local address only (docker run -p 127.0.0.1:{port.first}:…), or drop others in "
                f"DOCKER-USER: {save} -I DOCKER-USER -p {port.proto} -m conntrack --ctorigdstport {port.first} "
                "! -s <management subnet> -j DROP"
            ]
            findings.append(Finding("too open", spec, detail, fixes))
        for line in family.not_judged:
            detail = (
                f"a rule outside ufw's chains that may let connections in, in a form the audit does not read: {line}"
            )
            findings.append(
                Finding("not judged", "", detail, [f"{save} -S to read it; remove it or write it as a ufw rule"])
            )
    for family, table in kernel.nft_tables:
        detail = (
            f"nftables table {family} {table}, not ufw's: it can drop what ufw lets in, never let in what ufw drops, "
            "unless it rewrites destinations (nat)"
        )
        findings.append(Finding("not judged", "", detail, [shlex.join(["nft", "list", "table", family, table])]))
    return findings


def _public_in(ruleset: Ruleset, port: Port, version: int) -> bool:
    """Does `ruleset` let the whole world of that family reach `port`?"""
    world = ANYWHERE[0 if version == 4 else 1]
    return any(
        view.action in LETTING_IN
        and holds(view.sources, world)
        and (
            view.ports is None
            or any(p.proto == port.proto and p.first <= port.first <= port.last <= p.last for p in view.ports)
        )
        for view, _ in ruleset.rules[version]
    )


def nginx_looks(topology: Topology, topologies: Iterable[Topology]) -> dict[str, str]:
    """proxy host name → the address that proxy's nginx connects to for this node's memcached: by the proxy's
    zimbraIPMode, among the addresses its own read resolved this node's host name to (the proxies of this run:
    their reads)."""
    if topology.this is None:
        return {}
    looks = {}
    for seen in topologies:
        if seen.this and "proxy" in seen.this.services:
            entry = next((s for s in seen.servers if s.name.lower() == topology.this.name.lower()), None)
            address = nginx_memcached_address(entry, seen.this) if entry else None
            if address:
                looks[seen.this.hostname] = address
    return looks


def _memcached_findings(
    topology: Topology, listeners, observed: Ruleset, deploy_command: str, looks: Mapping[str, str]
) -> list[Finding]:
    """nginx on every proxy connects to each memcached server at its zimbraServiceHostname, resolved on the
    proxy (Zimbra/zm-mailbox ProxyConfGen.java, MemcacheServersVar): is that address this host's, does
    memcached listen there, and do the rules let the proxy in? looks: proxy host name → the address it
    resolves this node to (from the proxy's own read, when it is in the run), else this node's resolution."""
    this = topology.this
    if this is None or "memcached" not in this.services:
        return []
    port = attribute_port(this, "zimbraMemcachedBindPort", 11211)
    spec = f"{port}/tcp"
    bound = [item for item in listeners if item.proto == "tcp" and item.port == port]
    unserved: dict[tuple[str, bool], list[str]] = {}
    findings: list[Finding] = []
    for proxy in (s for s in topology.servers if "proxy" in s.services):
        target = looks.get(proxy.hostname) or nginx_memcached_address(this, proxy)
        if target is None:
            continue
        here = target in topology.own_addresses or (proxy is this and ipaddress.ip_address(target).is_loopback)
        serving = [item for item in bound if item.accepts(target)] if here else []
        if not serving:
            unserved.setdefault((target, here), []).append(proxy.hostname)
        elif proxy is not this:  # its own nginx connects over the host's own interfaces, which ufw lets through
            for address in proxy.addresses:
                source = Source(ipaddress.ip_network(address), "peer", proxy.hostname)
                decision = decide(observed, source, serving[0], [target])
                if decision is not None and not decision.reachable:
                    detail = (
                        f"{observed.firewall} keeps {proxy.hostname} ({address}) from {target}:{port}, where its "
                        "nginx looks"
                    )
                    fix = [f"{deploy_command} --limit {topology.name or this.name}"]
                    if observed.firewall == "ufw":
                        fix.insert(0, f"ufw allow from {address} to any port {port} proto tcp")
                    findings.append(Finding("memcached unreachable from proxy", spec, detail, fix))
    for (target, here), names in unserved.items():
        if not here:
            detail = (
                f"nginx on {', '.join(names)} resolves {this.hostname} to {target}, not an address of this host "
                f"({', '.join(topology.own_addresses)}): its route cache goes elsewhere"
            )
            step = f"make {this.hostname} resolve to this host's address on {', '.join(names)} (DNS or /etc/hosts)"
        else:
            where = ", ".join(item.address for item in bound) or "nowhere"
            detail = (
                f"nginx on {', '.join(names)} connects to {this.hostname} = {target}:{port}, but memcached listens "
                f"on {where}"
            )
            rebind = (
                f"zmprov ms {shlex.quote(this.name)} +zimbraMemcachedBindAddress {target} && zmmemcachedctl restart"
            )
            step = f"su - zimbra -c {shlex.quote(rebind)} (or {deploy_command} with memcached_bind_addresses: auto)"
        findings.insert(0, Finding("memcached unreachable from proxy", spec, detail, [step]))
    return findings


def rank(verdict: str) -> int:
    """Most serious first: the order of VERDICTS, then ok."""
    return VERDICTS.index(verdict) if verdict in VERDICTS else len(VERDICTS)


def _mark(sockets: list[SocketAudit], findings: list[Finding]) -> None:
    """Each socket takes the most serious verdict found for its port."""
    for socket in sockets:
        spec = f"{socket.port}/{socket.proto}"
        verdicts = [f.verdict for f in findings if f.port == spec]
        if verdicts and socket.reach != ["loopback only"]:
            socket.verdict = min(verdicts, key=rank)


# --- the active check: the controller's connections against what the rules say ---------------------------


def probe_plan(read: NodeRead) -> tuple[str, list[int]]:
    """The address the controller reaches the node at, and the TCP ports listening there off loopback."""
    target = read.reached_at
    if not target:
        return "", []
    ports = {item.port for item in read.listeners if item.proto == "tcp" and not item.loopback and item.accepts(target)}
    return target, sorted(ports)


def apply_probe(node: NodeAudit, read: NodeRead, probe: dict) -> None:
    """probe: zimbra_firewall/probe.py's answer for probe_plan's address and ports. Each probed socket says
    what the controller saw and what the rules say it should have seen; a difference is a finding (another
    firewall, a rule file ufw has not loaded, NAT between the controller and the node)."""
    observed = observed_of(read)
    controller = read.controller or probe.get("local", "")
    if not controller or observed is None:
        return
    source = Source(ipaddress.ip_network(controller), "controller", controller)
    target = probe["address"]
    for socket, listener in zip(node.sockets, read.listeners, strict=True):
        seen = probe["results"].get(str(listener.port))
        decision = decide(observed, source, listener, [target]) if listener.proto == "tcp" else None
        if seen is None or decision is None or not listener.accepts(target):
            continue
        agrees = (seen != "filtered") == decision.reachable
        # the controller got in where the rules say blocked: the strongest evidence of exposure there is
        verdict = "probe got in" if seen != "filtered" and not decision.reachable else "probe disagrees"
        socket.probe = {
            "from": controller,
            "to": target,
            "observed": seen,
            "computed": "reachable" if decision.reachable else "blocked",
            "agrees": agrees,
        }
        if not agrees:
            spec = f"{listener.port}/tcp"
            detail = (
                f"the controller ({controller}) found {target}:{listener.port} {seen}, but the rules say "
                f"{'reachable' if decision.reachable else 'blocked'} ({_via_text(decision)})"
            )
            fixes = [
                "look for a firewall besides ufw (iptables -S, nft list ruleset) or NAT on the way; "
                "`ufw reload` if ufw's rule files were edited by hand"
                if read.firewalld is None
                else "look for rules besides firewalld's (nft list ruleset) or NAT on the way; `firewall-cmd --reload` "
                "if firewalld's files were edited by hand, or a runtime change (firewall-cmd without --permanent)"
            ]
            node.findings.append(Finding(verdict, spec, detail, fixes))
            socket.verdict = min(socket.verdict, verdict, key=rank)
    node.findings.sort(key=lambda f: (rank(f.verdict), _port_key(f.port)))


# --- whom Zimbra trusts past the firewall: Postfix's relay networks, mailboxd's proxies ----------------------

MYNETWORKS = "zimbraMtaMyNetworks"


def add_trust_findings(node: NodeAudit, topology: Topology, policy: Policy) -> None:
    """Add to a node's findings what its Zimbra configuration trusts that no firewall rule shows: an MTA's
    relay networks (relay_findings), a mailbox server's trust of the proxies (proxy_trust_findings)."""
    node.findings += relay_findings(topology, policy) + proxy_trust_findings(topology, policy)
    node.findings.sort(key=lambda f: (rank(f.verdict), _port_key(f.port)))


def relay_findings(topology: Topology, policy: Policy) -> list[Finding]:
    """On an MTA: does Postfix's mynetworks (this server's zimbraMtaMyNetworks, else cn=config's) let relay
    without authentication from beyond the Zimbra nodes, the management subnets and loopback? Its clients
    relay anywhere (permit_mynetworks comes first in Zimbra's smtpd_relay_restrictions:
    Zimbra/zm-mta zmconfigd/smtpd_relay_restrictions.cf): the precondition of CVE-2024-45519's postjournal
    exploit. Items it cannot judge (host names, files, lookup tables) are a finding of their own."""
    this = topology.this
    if this is None or "mta" not in this.services:
        return []
    trusted = [*_zimbra_networks(topology, policy), *policy.management_subnets]
    fix = [
        _zmprov_set(this, MYNETWORKS, [mynetworks_value(trusted)]),
        "run it as the zimbra user; zmconfigd then writes it into postfix's main.cf and restarts the MTA "
        "within zmconfigd_interval (60 s; check: postconf mynetworks)",
    ]
    values = this.attributes.get(MYNETWORKS)
    if not values:
        detail = (
            f"{MYNETWORKS} is set neither here nor in cn=config: zmconfigd leaves postfix's mynetworks as main.cf "
            "has it, which the audit does not read"
        )
        return [Finding("relay trust not judged", MYNETWORKS, detail, fix)]
    whose = "this server's own value" if MYNETWORKS in this.own_attributes else "cn=config's, which it inherits"
    judged = judge_mynetworks(" ".join(values), trusted)
    findings = []
    if judged.wider:
        detail = (
            f"postfix lets relay without authentication from {', '.join(shown(p.text) for p in judged.wider)} "
            f"({MYNETWORKS}, {whose}), beyond the Zimbra nodes, the management subnets and loopback: every host "
            "there may send mail anywhere through this MTA, the precondition of CVE-2024-45519's postjournal exploit"
        )
        own = [ipaddress.ip_address(a) for a in topology.own_addresses]
        if any(ip in p.network for p in judged.wider if p.network for ip in own if ip.version == p.network.version):
            detail += (
                "; Zimbra's installer writes the MTA's own subnets there (zmsetup.pl, `zmserverips -n`), so on a "
                "default install every other host of those subnets may relay"
            )
        findings.append(Finding("relay trusted too broadly", MYNETWORKS, detail, fix))
    if judged.unjudged:
        listed = "; ".join(f"{shown(text)} ({why})" for text, why in judged.unjudged)
        detail = f"postfix's mynetworks ({MYNETWORKS}, {whose}) holds what the audit cannot judge: {listed}"
        findings.append(Finding("relay trust not judged", MYNETWORKS, detail, fix))
    return findings


def _zimbra_networks(topology: Topology, policy: Policy) -> list[Network]:
    """Every Zimbra node's addresses that the policy's rules use, and this node's own (`hostname -I`), as
    host networks; none that no peer can have (loopback is trusted whole anyway)."""
    written = [a for _, found in policy.addresses for a in found] + list(topology.own_addresses)
    ips = {ipaddress.ip_address(a) for a in written}
    return [ipaddress.ip_network(ip) for ip in ips if peer_address_problem(ip) is None]


def _zmprov_set(server: Server, attribute: str, values: Sequence[str], add: bool = False) -> str:
    """The zmprov command that sets (or, `add`, adds to) an attribute where the node's value comes from: its
    own entry when it has one there, else cn=config."""
    where = f"ms {shlex.quote(server.name)}" if attribute in server.own_attributes else "mcf"
    sign = "+" if add else ""
    return f"zmprov {where} " + " ".join(f"{sign}{attribute} {shlex.quote(value)}" for value in values)


def proxy_trust_findings(topology: Topology, policy: Policy) -> list[Finding]:
    """On a mailbox server, where a proxy node exists: does mailboxd trust every proxy address (its own
    zimbraMailTrustedIP, else cn=config's)? It takes the client's address from X-Forwarded-For only on a
    connection from one of them (Zimbra/zm-mailbox RemoteIP.java); from any other, ZimbraInvalidLoginFilter
    skips the request (it never suspends a client guessing passwords) and logs name the proxy. And does its
    DoSFilter leave them unthrottled (zimbraHttpThrottleSafeIPs, with the mailbox servers DoSFilter.java adds
    itself)? It counts the requests of clients not logged in by the connection's address: through one proxy,
    all of them share its limit (zimbraHttpDosFilterMaxRequestsPerSec, 30 a second by default). The proxy's
    addresses are those its rules use, both families: nginx's web upstreams name the mailbox servers by
    host name (ProxyConfGen.java WebUpstreamServersVar), so it may connect over either."""
    this = topology.this
    proxies = [s for s in topology.servers if "proxy" in s.services]
    if this is None or "mailbox" not in this.services:
        return []
    used = dict(policy.addresses)

    def usable(server: Server) -> list[IPAddress]:
        ips = sorted((ipaddress.ip_address(a) for a in used.get(server.hostname, ())), key=lambda ip: (ip.version, ip))
        return [ip for ip in ips if peer_address_problem(ip) is None]  # loopback: trusted by both anyway

    mailbox_servers = [s for s in topology.servers if "mailbox" in s.services]
    itself = [java_address_text(ip) for s in mailbox_servers for ip in usable(s)]
    checks = (
        (
            "zimbraMailTrustedIP",
            not_trusted,
            (),
            "mailboxd does not take the client's address from {}: ZimbraInvalidLoginFilter never suspends a "
            "client guessing passwords through it, and logs and X-Originating-IP name the proxy",
        ),
        (
            "zimbraHttpThrottleSafeIPs",
            not_throttle_safe,
            itself,
            "the DoSFilter throttles {} as one client: the requests of every user behind it not yet logged in "
            "share one limit (zimbraHttpDosFilterMaxRequestsPerSec)",
        ),
    )
    findings = []
    for attribute, missing_of, added, says in checks:
        values = [*this.attributes.get(attribute, ()), *added]
        missing = {p.hostname: missing_of(values, usable(p)) for p in proxies}
        missing = {name: ips for name, ips in missing.items() if ips}
        if not missing:
            continue
        written = [remote_address_text(ip) for ips in missing.values() for ip in ips]
        who = ", ".join(f"{name} ({', '.join(remote_address_text(ip) for ip in ips)})" for name, ips in missing.items())
        command = _zmprov_set(this, attribute, written, add=True)
        where = "" if attribute in this.own_attributes else " on every mailbox server"
        restart = f"then zmmailboxdctl restart{where}, as the zimbra user (zimbra-attrs.xml: requiresRestart mailbox)"
        fix = [command, restart]
        findings.append(Finding("proxy not trusted", attribute, says.format(who), fix))
    return findings


# --- the whole run -----------------------------------------------------------------------------------------


def summary(nodes: Sequence[NodeAudit]) -> dict:
    counts = {verdict: sum(f.verdict == verdict for n in nodes for f in n.findings) for verdict in VERDICTS}
    return {
        "nodes": len(nodes),
        "sockets": sum(len(n.sockets) for n in nodes),
        "findings": counts,
        "failed": sorted(n.name for n in nodes if n.failed),
    }


def node_json(node: NodeAudit) -> dict:
    return {**dataclasses.asdict(node), "failed": node.failed}


def as_json(nodes: Sequence[NodeAudit], generated: str) -> dict:
    """The JSON document docs/audit.schema.json describes."""
    return {
        "schema": SCHEMA,
        "generated": generated,
        "summary": summary(nodes),
        "nodes": [node_json(n) for n in sorted(nodes, key=lambda n: n.name)],
    }
