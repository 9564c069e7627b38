"""firewalld's text in and out, and what to change: the one-command read of its configuration (XML files,
never firewall-cmd: each call starts Python and talks D-Bus) and of the zones the kernel dispatches to, the
service definitions and the owned policy object rendered, and the planner that prunes a zone of what opens
a restricted port wider than allowed. Pure functions on plain values, tested on files captured from
firewalld 1.3; nothing here is Zimbra's (zimbra_firewall/firewalld_policy.py turns the Zimbra policy into
these values).

The model (README "firewalld"): everything the deploy allows is in ONE policy object it owns (ingress ANY,
egress HOST, priority -1, target CONTINUE: evaluated before any zone's own rules, whatever zone a packet
lands in) and in the service definitions that object names; the zones packets land in keep the admin's
other content, pruned of what widens the policy, with the policy's default as their target.
"""

import ipaddress
import re
import shlex
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from xml.sax.saxutils import quoteattr

from zimbra_firewall.access import ANYWHERE, Network, Port, Restriction, opened_wider

CONFIG_DIR = "/etc/firewalld"
SHIPPED_DIR = "/usr/lib/firewalld"
SECTION = "@@zimbra-firewall@@"
FILE_MARK = "@@zimbra-firewall-file@@"
MANAGED = "managed by zimbra-firewall"
# what a zone's target is for each default incoming policy (firewalld.zone(5))
TARGETS = {"deny": "DROP", "reject": "%%REJECT%%", "allow": "ACCEPT"}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # what firewalld takes for a zone, service or policy
POLICY_NAME_LIMIT = 17  # firewalld: its longest chain, POST_<policy>_allow, must fit netfilter's 28 characters


def object_name(text: str) -> str:
    """A name firewalld takes for a service or policy file (and a shell word as it stands): profile names
    ("Zimbra Local") lower-cased, other characters as '-'."""
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")
    if not NAME.fullmatch(name):
        raise ValueError(f"{text!r} gives no firewalld object name")
    return name


@dataclass(frozen=True)
class Service:
    """A firewalld service definition (/etc/firewalld/services/NAME.xml)."""

    name: str
    ports: tuple[Port, ...]
    short: str = ""
    description: str = ""


@dataclass(frozen=True)
class Grant:
    """One way in, in the owned policy: from `source` (None: anyone) to the service `service`, or to `ports`;
    with neither (and a source), to every port."""

    source: Network | None
    service: str = ""
    ports: tuple[Port, ...] = ()


def port_text(port: Port) -> str:
    return str(port.first) if port.first == port.last else f"{port.first}-{port.last}"


def render_service(service: Service) -> str:
    ports = "".join(f'  <port protocol="{p.proto}" port="{port_text(p)}"/>\n' for p in sorted(service.ports))
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f"<!-- {MANAGED}: edits are replaced on the next run -->\n"
        "<service>\n"
        f"  <short>{_text(service.short or service.name)}</short>\n"
        f"  <description>{_text(service.description)}</description>\n"
        f"{ports}</service>\n"
    )


def rich_rule(grant: Grant) -> list[str]:
    """The XML `<rule>` elements of one sourced Grant (one per port: a rich rule holds one)."""
    assert grant.source is not None
    family = f"ipv{grant.source.version}"
    head = f'<rule family="{family}"><source address="{grant.source}"/>'
    if grant.service:
        return [f'{head}<service name="{grant.service}"/><accept/></rule>']
    if not grant.ports:
        return [f"{head}<accept/></rule>"]
    return [f'{head}<port port="{port_text(p)}" protocol="{p.proto}"/><accept/></rule>' for p in sorted(grant.ports)]


def render_policy(name: str, grants: Iterable[Grant], description: str = "") -> str:
    """The owned policy object: traffic from any zone to this host, before the zones' own rules (priority -1);
    what it does not accept goes on to the zone (target CONTINUE)."""
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f"<!-- {MANAGED}: edits are replaced on the next run -->",
        '<policy target="CONTINUE" priority="-1">',
        f"  <short>{_text(name)}</short>",
        f"  <description>{_text(description)}</description>",
        '  <ingress-zone name="ANY"/>',
        '  <egress-zone name="HOST"/>',
    ]
    for grant in grants:
        if grant.source is None:
            if grant.service:
                lines.append(f'  <service name="{grant.service}"/>')
            lines += [f'  <port port="{port_text(p)}" protocol="{p.proto}"/>' for p in sorted(grant.ports)]
        else:
            lines += [f"  {rule}" for rule in rich_rule(grant)]
    return "\n".join([*lines, "</policy>", ""])


def _text(value: str) -> str:
    return quoteattr(value)[1:-1]


# --- the read ------------------------------------------------------------------------------------------

# firewalld runs: asked of systemd where it runs, else of the process table (firewall-cmd --state would start
# Python and ask over D-Bus)
FIREWALLD_RUNNING = (
    "if [ -d /run/systemd/system ]; then systemctl is-active --quiet firewalld; else pgrep -x firewalld >/dev/null; fi"
)
# the services a zone names, at the top or in a rich rule, with either quote
SERVICE_NAMES = 'grep -hoE "<service[^>]*name=[\\"\'][A-Za-z0-9_.-]*" '
# the chains that say what firewalld lets in: the dispatch, the zones' and policies' chains (a rich rule with a
# priority lands in their pre or post part) and the redirections (nat_PRE_*: what they redirect is accepted),
# not their deny and log parts (fail2ban's bans land in deny; a ban is no drift to undo)
ALLOW_CHAINS = "awk '/^\\tchain / { keep = $2 ~ /^(filter_IN|nat_PRE)/ && $2 !~ /_(deny|log)$/ } keep { print }'"
# the permanent configuration and what firewalld made of it in the kernel, each as a digest: recorded when the
# deploy reloads, compared on the next run, so that a file changed since, or a runtime-only change
# (`firewall-cmd --add-port` without --permanent), is found with no firewall-cmd started. No nft table (another
# backend, nft failing) digests as `none`, which never matches
DIGESTS = (
    f"{{ cat {CONFIG_DIR}/firewalld.conf; find -L {CONFIG_DIR} -type f -name '*.xml' -print0 | LC_ALL=C sort -z | "
    "xargs -0r cat; } 2>/dev/null | sha256sum | cut -c1-64; "
    f"if t=$(nft list table inet firewalld 2>/dev/null); then printf '%s\\n' \"$t\" | {ALLOW_CHAINS} | sha256sum | "
    "cut -c1-64; else echo none; fi"
)


def record_digests(record: str) -> str:
    """Shell lines that write DIGESTS' two lines to `record` (a root-only file): what the reload just applied
    (two lines: `set -e` does not stop at a failure before the last command of `a && b`)."""
    new = shlex.quote(f"{record}.new")
    return f"{{ {DIGESTS}; }} > {new}\nmv {new} {shlex.quote(record)}"


def state_read(record: str) -> str:
    """Shell printing what parse_state reads, in one command without starting firewall-cmd: whether firewalld
    runs, its default zone and backend, the zones the kernel dispatches incoming packets to (firewalld's own
    nft chains, by source then by interface), every zone file, the service files the zones and policies name
    and those under /etc, every policy file; then the digests of what is in force and those `record` kept at
    the last reload. Each file is printed after a FILE_MARK line and followed by an empty line (a file
    without a final newline stays apart from the next mark)."""
    running = f"{FIREWALLD_RUNNING} && echo running=yes"
    files = 'for f in "$@"; do [ -f "$f" ] && echo "' + FILE_MARK + ' $f" && cat "$f" && echo; done'
    zones = f"{SHIPPED_DIR}/zones/*.xml {CONFIG_DIR}/zones/*.xml"
    policies = f"{SHIPPED_DIR}/policies/*.xml {CONFIG_DIR}/policies/*.xml"
    return (
        f"{running}; grep -E '^(DefaultZone|FirewallBackend|AllowZoneDrifting)=' {CONFIG_DIR}/firewalld.conf "
        "2>/dev/null; "
        f"echo {SECTION}; for c in filter_INPUT_ZONES_SOURCE filter_INPUT_ZONES; do "
        f'nft list chain inet firewalld "$c" 2>/dev/null; done; echo {SECTION}; '
        f"sh -c '{files}' files {zones}; echo {SECTION}; "
        f"names=$({SERVICE_NAMES} {zones} {policies} 2>/dev/null | sed 's/.*name=.//' | sort -u); "
        f'set -- {CONFIG_DIR}/services/*.xml; for n in $names; do [ -f "{CONFIG_DIR}/services/$n.xml" ] || '
        f'set -- "$@" "{SHIPPED_DIR}/services/$n.xml"; done; '
        f"sh -c '{files}' files \"$@\"; echo {SECTION}; "
        f"sh -c '{files}' files {policies}; echo {SECTION}; "
        f"{DIGESTS}; echo {SECTION}; cat {shlex.quote(record)} 2>/dev/null; true"
    )


def split_files(text: str) -> dict[str, str]:
    """The files a read printed (FILE_MARK lines, each file followed by an empty line) → path → text."""
    found: dict[str, str] = {}
    path = None
    for line in text.splitlines(keepends=True):
        if line.startswith(FILE_MARK + " "):
            path = line[len(FILE_MARK) + 1 :].rstrip("\n")
            found[path] = ""
        elif path is not None:
            found[path] += line
    return {path: text[:-1] if text.endswith("\n") else text for path, text in found.items()}


def by_name(files: Mapping[str, str], kind: str) -> dict[str, tuple[str, str]]:
    """name → (path, text) of the `kind` files (zones, services, policies): /etc's over the shipped ones."""
    chosen: dict[str, tuple[str, str]] = {}
    for base in (SHIPPED_DIR, CONFIG_DIR):
        prefix = f"{base}/{kind}/"
        for path, text in files.items():
            if path.startswith(prefix) and path.endswith(".xml"):
                chosen[path[len(prefix) : -4]] = (path, text)
    return chosen


@dataclass(frozen=True)
class State:
    """firewalld's configuration on a host, as the deploy and the audit need it."""

    running: bool
    default_zone: str
    dispatched: tuple[str, ...]  # the zones the kernel sends incoming packets to (runtime), in order
    zones: Mapping[str, tuple[str, str]]  # name → (path, text)
    services: Mapping[str, tuple[str, str]]
    policies: Mapping[str, tuple[str, str]]
    applied: bool = False  # the configuration and the kernel's ruleset are what the last reload made
    backend: str = "nftables"
    kernel_read: bool = True  # nft listed firewalld's table
    drifting: bool = False  # AllowZoneDrifting=yes (RHEL 8): a source zone with target default falls through
    recorded: bool = False  # the deploy's record of its last reload exists (the digests `applied` compares)

    @property
    def judged_zones(self) -> tuple[str, ...]:
        """The zones whose rules decide incoming packets: those the kernel dispatches to, and the default."""
        return tuple(dict.fromkeys((*self.dispatched, self.default_zone)))

    @property
    def problem(self) -> str:
        """Why this deploy cannot judge this firewalld (the host is then left untouched), or ""."""
        if self.backend != "nftables":
            return (
                f"firewalld runs its {self.backend} backend: this deploy reads and judges the nftables one "
                "(FirewallBackend=nftables, the default since firewalld 0.6 and on RHEL 8/9)"
            )
        if self.running and not self.kernel_read:
            return (
                "nft cannot list firewalld's table (nft list table inet firewalld): this deploy reads there "
                "what is in force"
            )
        if self.running and not self.dispatched:
            return (
                "firewalld's nft table has no zone dispatch (chain filter_INPUT_ZONES, firewalld 0.9 to 1.x): which "
                "zones packets land in cannot be told here (firewalld 2.x dispatches otherwise)"
            )
        bad = [zone for zone in self.judged_zones if not NAME.fullmatch(zone)]
        if bad:
            return f"a zone name firewalld would not take: {bad[0]!r}"
        return ""

    def service_ports(self, name: str) -> tuple[Port, ...] | None:
        """What a service opens; None when that is unknown (no such file, an include, a file that does not
        parse): taken as every port, so that what names it goes rather than a port it opens staying open."""
        if name not in self.services:
            return None
        return service_ports(self.services[name][1])


def parse_state(text: str) -> State:
    parts = text.split(f"{SECTION}\n")
    if len(parts) != 7:
        raise ValueError(f"expected 7 parts in firewalld's state, got {len(parts)}")
    head, chain, zones, services, policies, digests, recorded = parts
    settings = dict(re.findall(r"^(DefaultZone|FirewallBackend|AllowZoneDrifting)=(.*)$", head, re.MULTILINE))
    dispatched = tuple(dict.fromkeys(re.findall(r"goto filter_IN_([A-Za-z0-9_-]+)", chain)))
    return State(
        running="running=yes" in head.split(),
        default_zone=settings.get("DefaultZone", "").strip() or "public",
        dispatched=dispatched,
        zones=by_name(split_files(zones), "zones"),
        services=by_name(split_files(services), "services"),
        policies=by_name(split_files(policies), "policies"),
        applied=recorded.split() == digests.split() and len(digests.split()) == 2 and "none" not in digests.split(),
        backend=settings.get("FirewallBackend", "").strip() or "nftables",
        kernel_read="none" not in digests.split(),
        drifting=settings.get("AllowZoneDrifting", "").strip().lower() in ("yes", "true"),
        recorded=bool(recorded.split()),
    )


def _root(text: str) -> ElementTree.Element | None:
    try:
        return ElementTree.fromstring(text.encode())
    except ElementTree.ParseError:
        return None


def _ports(spec: str | None, proto: str | None) -> tuple[Port, ...] | None:
    first, _, last = (spec or "").partition("-")
    if not (first.isdigit() and (not last or last.isdigit())) or proto not in ("tcp", "udp", "sctp", "dccp"):
        return None
    low, high = sorted((int(first), int(last or first)))  # firewalld reads 7100-7000 as 7000-7100
    return (Port(low, high, proto),)


def service_ports(text: str) -> tuple[Port, ...] | None:
    """A service file → the ports it opens; None when unknown: it includes another service, names a protocol
    (every port of it), a source port (every port, to whoever sends from it) or a port this cannot read."""
    root = _root(text)
    if root is None or any(root.find(tag) is not None for tag in ("include", "protocol", "source-port")):
        return None
    ports: list[Port] = []
    for element in root.iter("port"):
        found = _ports(element.get("port"), element.get("protocol"))
        if found is None:
            return None
        ports += found
    return tuple(ports)


# --- what a zone or a policy lets in, and what to prune ----------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One element of a zone or policy that lets something in: from `sources` to `ports` (None: every port)."""

    element: str  # the element as the file has it, on one line (for reports, and to find it again)
    kind: str  # service | port | protocol | source-port | rule | forward-port
    sources: tuple[Network, ...]
    ports: tuple[Port, ...] | None
    service: str = ""  # the service it names, at the top or in a rich rule


def _forwarded(element: ElementTree.Element) -> tuple[Port, ...] | None:
    """The port a forward-port element lets packets in to (firewalld accepts what it redirects: `ct status
    dnat accept`). A `to-addr` may be one of this host's own addresses, which this pure planner does not
    know: every forward is judged by its destination port, so a restricted one goes rather than stays open."""
    return _ports(element.get("to-port") or element.get("port"), element.get("protocol"))


def _rule_entry(element: ElementTree.Element, state: State, text: str) -> Entry | None:
    forward = element.find("forward-port")
    if element.find("accept") is None and forward is None:
        return None  # reject, drop and mark let nothing in
    source = element.find("source")
    sources: tuple[Network, ...] = ANYWHERE
    if source is not None and not _inverted(source):
        sources = _networks([source.get("address")]) or ANYWHERE  # an ipset or a MAC: who that is cannot be told
    service = element.find("service")
    if forward is not None:
        ports = _forwarded(forward)
    elif not _names_ports(element) and (
        element.find("icmp-type") is not None or element.find("icmp-block") is not None
    ):
        return None
    else:
        ports = _rule_ports(state, element)  # a protocol, a source port, or nothing named: every port
    return Entry(text, "rule", sources, ports, service.get("name", "") if service is not None else "")


def _names_ports(element: ElementTree.Element) -> bool:
    return element.find("service") is not None or element.find("port") is not None


def _rule_ports(state: State, element: ElementTree.Element) -> tuple[Port, ...] | None:
    """The ports a rich rule names (its service's, or its port); None: every port, or what cannot be read."""
    service, port = element.find("service"), element.find("port")
    if service is not None:
        return state.service_ports(service.get("name", ""))
    return _ports(port.get("port"), port.get("protocol")) if port is not None else None


def _inverted(source: ElementTree.Element) -> bool:
    return source.get("invert", "").lower() in ("yes", "true")


def one_line(element: ElementTree.Element) -> str:
    """An element as one line of XML (a multi-line rich rule too): how reports show it, and how it is found."""
    return re.sub(r">\s+<", "><", ElementTree.tostring(element, encoding="unicode").strip())


def entries_of(state: State, root: ElementTree.Element) -> list[Entry]:
    """What a zone or a policy lets in (its sources: anyone; it applies to the packets that reach it)."""
    entries = []
    for element in root:
        text = one_line(element)
        if element.tag == "service":
            name = element.get("name", "")
            entries.append(Entry(text, "service", ANYWHERE, state.service_ports(name), name))
        elif element.tag == "port":
            entries.append(Entry(text, "port", ANYWHERE, _ports(element.get("port"), element.get("protocol"))))
        elif element.tag in ("protocol", "source-port"):
            entries.append(Entry(text, element.tag, ANYWHERE, None))
        elif element.tag == "forward-port":
            entries.append(Entry(text, element.tag, ANYWHERE, _forwarded(element)))
        elif element.tag == "rule":
            entry = _rule_entry(element, state, text)
            if entry:
                entries.append(entry)
    return entries


@dataclass(frozen=True)
class ZonePlan:
    """What changes in one zone, or in one policy object of the admin's (`kind`)."""

    zone: str
    path: str  # where the new file goes (/etc/firewalld/zones/NAME.xml, …/policies/NAME.xml)
    text: str | None  # the new file, None when it is as wanted
    removed: tuple[tuple[Entry, tuple[Port, ...]], ...] = ()  # each with the ports it opened too wide
    purged: tuple[Entry, ...] = ()
    kept: tuple[Entry, ...] = ()
    target: tuple[str, str] = ("", "")  # (old, new) when the target changes
    problem: str = ""  # what stops the deploy on this host, untouched
    kind: str = "zone"


@dataclass(frozen=True)
class Wanted:
    """What the zones are to be: the default zone's target, the restrictions nothing may widen, services
    named for removal, whether every other entry goes too, and the zones that may keep accepting everything."""

    target: str
    restrictions: tuple[Restriction, ...]
    remove_services: tuple[str, ...] = ()
    purge: bool = False
    accept_zones: tuple[str, ...] = ()


FOLDERS = {"zone": "zones", "policy": "policies"}


def plan_zone(state: State, zone: str, wanted: Wanted, kind: str = "zone") -> ZonePlan:
    """What to change in one zone (or, with kind "policy", one policy object of the admin's that lets traffic
    in to this host): drop each entry that widens a restriction (or is a service named for removal; or, with
    purge, any entry), set the target (an empty one in `wanted` keeps the file's). The rest of the file
    (interfaces, sources, ICMP settings, masquerading, the admin's narrower entries) stays as it is. One that
    accepts everything (target ACCEPT) is a problem unless `accept_zones` names it."""
    found = (state.zones if kind == "zone" else state.policies).get(zone)
    path = f"{CONFIG_DIR}/{FOLDERS[kind]}/{zone}.xml"
    root = _root(found[1]) if found else None
    if root is None:
        return ZonePlan(zone, path, None, problem=f"the {kind} {zone}'s file does not parse (or is missing)", kind=kind)
    removed, purged, kept = [], [], []
    for entry in entries_of(state, root):
        opened = opened_wider(entry.sources, entry.ports, wanted.restrictions)
        if opened or entry.service in wanted.remove_services:
            removed.append((entry, opened))
        elif wanted.purge:
            purged.append(entry)
        else:
            kept.append(entry)
    old_target = root.get("target", "default")
    new_target = wanted.target or old_target
    problem = ""
    if new_target == "ACCEPT" and not wanted.target and zone not in wanted.accept_zones:
        problem = (
            f"the {kind} {zone} accepts every packet it gets (target ACCEPT), whatever this deploy allows: change its "
            "target, or list it in firewalld_accept_zones (a Docker or libvirt bridge's zone)"
        )
    drop = {entry.element for entry, _ in removed} | {entry.element for entry in purged}
    if not drop and old_target == new_target:
        return ZonePlan(zone, path, None, kept=tuple(kept), problem=problem, kind=kind)
    for element in list(root):
        if one_line(element) in drop:
            root.remove(element)
    if new_target != old_target:
        root.set("target", new_target)
    ElementTree.indent(root, "  ")
    text = '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"
    target = (old_target, new_target) if old_target != new_target else ("", "")
    return ZonePlan(zone, path, text, tuple(removed), tuple(purged), tuple(kept), target, problem, kind)


def to_host(text: str) -> bool:
    """Does this policy file filter traffic to the host itself (an egress zone HOST)?"""
    root = _root(text)
    return root is None or any(e.get("name") == "HOST" for e in root.iter("egress-zone"))


def rich_rule_text(element: ElementTree.Element) -> str:
    """A rich rule's XML in firewall-cmd's rich language (`rule family="ipv4" source address="…" accept`), as
    `--remove-rich-rule` takes it: each element's name, then its attributes (`invert` as NOT), then its
    children."""
    words = [element.tag]
    if _inverted(element):
        words.append("NOT")
    words += [f'{key}="{value}"' for key, value in element.attrib.items() if key != "invert"]
    words += [rich_rule_text(child) for child in element]
    return " ".join(words)


# --- what decides an incoming packet, for the audit -------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """One element of firewalld's configuration that decides incoming packets: from `sources` to `ports` (None:
    every port), accepted or not. where: "policy NAME" or "zone NAME"; element: one line of XML, or the target."""

    where: str
    element: str
    accept: bool
    sources: tuple[Network, ...]
    ports: tuple[Port, ...] | None


TARGET_DEFAULTS = {"DROP": "deny", "ACCEPT": "allow"}  # any other target (default, %%REJECT%%) rejects


def inbound(state: State) -> tuple[tuple[Gate, ...], str]:
    """What decides a packet to the host, in firewalld's order (the first gate that holds the packet's source
    and port decides), and what happens to the rest (deny | reject | allow: the default zone's target).
    The policy objects to the host that run before the zones (priority below 0) by priority; the accepts of
    those that run inside them (above 0) with them; then the zones the kernel dispatches to: those bound to
    sources of their own first (a packet from there ends in that zone: its target decides, unless zone
    drifting lets a `default` one fall through), then the interface zones and the default zone, taken to
    see every source (which interface a network comes in on is not known here). In each, rich rules by
    their priority around the rejects and drops, then what accepts (firewalld's pre, deny, allow, post).
    Where it cannot be told whether a gate that keeps packets out applies (a zone among several a packet
    may land in, a rate limit, a destination, a protocol or ICMP type, an ipset), it is left out, and every
    gate that lets in is kept: a port may be called open that firewalld keeps closed, never the reverse."""
    scopes: dict[str, tuple[Network, ...] | None] = {}  # zone → the sources surely landing there, None: unknown
    roots = {}
    for zone in state.judged_zones:
        root = _root(state.zones[zone][1]) if zone in state.zones else None
        if root is None:
            continue  # a zone without a file: the preflight refuses such a host to the deploy
        own = _networks(e.get("address") for e in root.iter("source"))
        bound = bool(own) and root.find("interface") is None and zone != state.default_zone
        roots[zone] = root
        scopes[zone] = own if bound else None
    unbound = [zone for zone, scope in scopes.items() if scope is None]
    everyone = ANYWHERE if len(unbound) == 1 else None  # the default zone alone: every packet lands there
    Ordered = list[tuple[int, str, ElementTree.Element, tuple[Network, ...] | None]]
    before: Ordered = []
    inside: Ordered = []
    for name, (_, text) in state.policies.items():
        root = _root(text)
        ingress = {e.get("name") for e in root.iter("ingress-zone")} if root is not None else set()
        if root is None or not to_host(text) or not ingress & {"ANY", *scopes}:
            continue
        priority = _priority(root.get("priority", "-1"), -1)
        sure = ANYWHERE if "ANY" in ingress else _sure(ingress, scopes, everyone)
        (before if priority < 0 else inside).append((priority, name, root, sure))
    gates: list[Gate] = []
    for _, name, root, sure in sorted(before, key=lambda p: (p[0], p[1])):
        gates += _gates(state, root, f"policy {name}", ANYWHERE, sure)
        gates += _target(f"policy {name}", root.get("target", "CONTINUE"), sure)
    for _, name, root, _ in sorted(inside, key=lambda p: (p[0], p[1])):
        gates += _gates(state, root, f"policy {name}", ANYWHERE, None)
    for zone in sorted(scopes, key=lambda z: (scopes[z] is None, z)):
        root, scope = roots[zone], scopes[zone]
        gates += _gates(state, root, f"zone {zone}", scope or ANYWHERE, scope or everyone)
        target = root.get("target", "default")
        drifts = state.drifting and target == "default"
        gates += _target(f"zone {zone}", target, None if drifts else scope or everyone)
    default = roots.get(state.default_zone)
    return tuple(gates), TARGET_DEFAULTS.get(default.get("target", "") if default is not None else "", "reject")


def _sure(ingress: set, scopes: Mapping, everyone: tuple[Network, ...] | None) -> tuple[Network, ...] | None:
    """The sources surely arriving through one of these ingress zones, or None when that cannot be told."""
    if len(ingress) != 1:
        return None
    zone = next(iter(ingress))
    return scopes.get(zone) or (everyone if zone in scopes else None)


def _target(where: str, target: str, sure: tuple[Network, ...] | None) -> list[Gate]:
    """A zone's or a policy's target as a gate for every port: ACCEPT always; DROP, REJECT (and a zone's
    default, which rejects) only where it surely applies (`sure`)."""
    if target == "ACCEPT":
        return [Gate(where, f"target {target}", True, sure or ANYWHERE, None)]
    if target == "CONTINUE" or not sure:
        return []
    return [Gate(where, f"target {target}", False, sure, None)]


def _networks(addresses: Iterable[str | None]) -> tuple[Network, ...]:
    found = []
    for address in addresses:
        try:
            found.append(ipaddress.ip_network(address or "", strict=False))
        except ValueError:
            continue  # an ipset or a MAC address: whom it holds cannot be told here
    return tuple(found)


def _within(sources: Iterable[Network], scope: Iterable[Network]) -> tuple[Network, ...]:
    """The part of `sources` inside `scope`, as networks (the narrower of each pair that nests)."""
    inside = []
    for source in sources:
        for limit in scope:
            if source.version == limit.version:
                if source.subnet_of(limit):  # type: ignore[arg-type]
                    inside.append(source)
                elif limit.subnet_of(source):  # type: ignore[arg-type]
                    inside.append(limit)
    return tuple(dict.fromkeys(inside))


def _family(element: ElementTree.Element, sources: tuple[Network, ...]) -> tuple[Network, ...]:
    family = {"ipv4": 4, "ipv6": 6}.get(element.get("family", ""))
    return tuple(s for s in sources if family is None or s.version == family)


def _gates(
    state: State, root: ElementTree.Element, where: str, scope: tuple[Network, ...], sure: tuple[Network, ...] | None
) -> list[Gate]:
    """A zone's or a policy's gates in firewalld's order: rich rules with a priority below 0, the rejects and
    drops, what accepts, rich rules with a priority above 0. What accepts applies within `scope`; what keeps
    out only within `sure` (None: nowhere it can be told), and only when its packets can be told."""
    ordered = []
    for element in root.iter("rule"):
        if element.find("reject") is None and element.find("drop") is None:
            continue
        gate = _closing(state, element, where, sure) if sure else None
        if gate:
            ordered.append((_bucket(element, closing=True), gate))
    for entry in entries_of(state, root):
        element = ElementTree.fromstring(entry.element)
        sources = _within(_family(element, entry.sources), scope)
        if sources:
            ordered.append((_bucket(element, closing=False), Gate(where, entry.element, True, sources, entry.ports)))
    return [gate for _, gate in sorted(ordered, key=lambda pair: pair[0])]


def _priority(written: str, default: int) -> int:
    return int(written) if re.fullmatch(r"-?\d{1,5}", written) else default


def _bucket(element: ElementTree.Element, closing: bool) -> tuple[int, int]:
    """firewalld's chain order: pre (rich rules with a priority below 0, by priority), deny, allow, post."""
    priority = _priority(element.get("priority", "0"), 0) if element.tag == "rule" else 0
    if priority < 0:
        return (0, priority)
    if priority > 0:
        return (3, priority)
    return (1, 0) if closing else (2, 0)


def _closing(state: State, element: ElementTree.Element, where: str, sure: tuple[Network, ...]) -> Gate | None:
    """A rich rule that rejects or drops, as a gate, where whom and what it keeps out can be told: its
    sources (no inversion, ipset or MAC), a port or a readable service, no destination, rate limit,
    protocol, source port or ICMP type."""
    if any(element.find(tag) is not None for tag in ("destination", "protocol", "source-port", "icmp-type")):
        return None
    if any(True for _ in element.iter("limit")):
        return None
    source = element.find("source")
    if source is not None and (_inverted(source) or not source.get("address")):
        return None
    ports = _rule_ports(state, element) if _names_ports(element) else None
    if ports is None:
        return None
    sources = _networks([source.get("address")]) if source is not None else ANYWHERE
    sources = _within(_family(element, sources), sure)
    return Gate(where, one_line(element), False, sources, ports) if sources else None


@dataclass(frozen=True)
class Plan:
    """Every file to write or remove, and the zones' and policies' plans (for reports)."""

    writes: Mapping[str, str]  # path → text
    removes: tuple[str, ...]
    zones: tuple[ZonePlan, ...]
    problems: tuple[str, ...] = ()  # what this deploy cannot judge here: the host is left untouched

    @property
    def changes(self) -> bool:
        return bool(self.writes or self.removes)


def problems(
    state: State, services: Iterable[Service], policy_name: str, policy_text: str, wanted: Wanted
) -> list[str]:
    """Why the deploy must leave this host's firewalld untouched: names firewalld would refuse, and what
    plan() finds it cannot judge. The preflight, the plan shown and the operation all ask this."""
    services = tuple(services)
    found = [
        f"{name!r} is not a firewalld object name (letters, digits, _ and -)"
        for name in (policy_name, *(service.name for service in services))
        if not isinstance(name, str) or not NAME.fullmatch(name)
    ]
    if len(policy_name) > POLICY_NAME_LIMIT:
        found.append(
            f"the policy object's name {policy_name!r} (from rule_comment) is longer than firewalld's "
            f"{POLICY_NAME_LIMIT} characters"
        )
    return found or list(plan(state, services, policy_name, policy_text, wanted).problems)


def plan(state: State, services: Iterable[Service], policy_name: str, policy_text: str, wanted: Wanted) -> Plan:
    """What to write so firewalld's permanent configuration is the wanted one: our service files and policy
    object (those of ours no longer wanted removed), the judged zones and the admin's policies to this host
    pruned. The default zone takes the policy's target; another zone packets land in (an interface or a
    source of its own: Docker's, libvirt's, an admin's) and the admin's policies keep theirs."""
    writes: dict[str, str] = {}
    services = tuple(services)
    for service in services:
        text = render_service(service)
        if state.services.get(service.name) != (f"{CONFIG_DIR}/services/{service.name}.xml", text):
            writes[f"{CONFIG_DIR}/services/{service.name}.xml"] = text
    policy_path = f"{CONFIG_DIR}/policies/{policy_name}.xml"
    if state.policies.get(policy_name) != (policy_path, policy_text):
        writes[policy_path] = policy_text
    wanted_names = {f"services/{s.name}" for s in services} | {f"policies/{policy_name}"}
    removes = tuple(
        path
        for kind, found in (("services", state.services), ("policies", state.policies))
        for name, (path, text) in sorted(found.items())
        if path.startswith(f"{CONFIG_DIR}/") and MANAGED in text and f"{kind}/{name}" not in wanted_names
    )
    keep_target = replace(wanted, target="")
    zones = [plan_zone(state, z, wanted if z == state.default_zone else keep_target) for z in state.judged_zones]
    zones += [
        plan_zone(state, name, keep_target, "policy")
        for name, (path, text) in sorted(state.policies.items())
        if name != policy_name and MANAGED not in text and to_host(text)
    ]
    writes.update({zone.path: zone.text for zone in zones if zone.text is not None})
    problems = ([state.problem] if state.problem else []) + [zone.problem for zone in zones if zone.problem]
    return Plan(writes, removes, tuple(zones), tuple(problems))


def changes_pending(
    state: State, services: Iterable[Service], policy_name: str, policy_text: str, wanted: Wanted
) -> bool:
    """Would the operations change anything (files to write, or a reload to put them in force)? The planner
    they use, so that the rollback's "will the firewall change" and the plan shown cannot drift from them."""
    return not state.applied or plan(state, services, policy_name, policy_text, wanted).changes
