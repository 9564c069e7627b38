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
from dataclasses import dataclass, field, replace
from xml.sax.saxutils import quoteattr

from zimbra_firewall.access import Network, Port, Restriction, holds

CONFIG_DIR = "/etc/firewalld"
SHIPPED_DIR = "/usr/lib/firewalld"
SECTION = "@@zimbra-firewall@@"
FILE_MARK = "@@zimbra-firewall-file@@"
MANAGED = "managed by zimbra-firewall"
# what a zone's target is for each default incoming policy (firewalld.zone(5))
TARGETS = {"deny": "DROP", "reject": "%%REJECT%%", "allow": "ACCEPT"}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]{0,63}")
ANYWHERE = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def object_name(text: str) -> str:
    """A name firewalld takes for a service or policy file (and a shell word as it stands): profile names
    ("Zimbra Local") lower-cased, other characters as '-'."""
    name = re.sub(r"[^a-z0-9_+-]+", "-", text.lower()).strip("-")
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
    with neither, to every port."""

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
SERVICE_NAMES = r"""grep -ho '<service[^>]*name="[A-Za-z0-9_.+-]*"' """


# the permanent configuration and the kernel's ruleset firewalld made, each as a digest: recorded when the
# deploy reloads, compared on the next run, so that a file changed since, or a runtime-only change
# (`firewall-cmd --add-port` without --permanent), is found with no firewall-cmd started
DIGESTS = (
    f"{{ cat {CONFIG_DIR}/firewalld.conf; find {CONFIG_DIR} -type f -name '*.xml' -print0 | sort -z | "
    "xargs -0r cat; } 2>/dev/null | sha256sum | cut -c1-64; "
    "nft list table inet firewalld 2>/dev/null | sha256sum | cut -c1-64"
)


def record_digests(record: str) -> str:
    """Shell that writes DIGESTS' two lines to `record` (a root-only file): what the reload just applied."""
    return f"{{ {DIGESTS}; }} > {shlex.quote(record)}.new && mv {shlex.quote(record)}.new {shlex.quote(record)}"


def state_read(record: str) -> str:
    """Shell printing what parse_state reads, in one command without starting firewall-cmd: whether firewalld
    runs, whether it has policy objects (0.9 and later ship /usr/lib/firewalld/policies), the zones the kernel
    dispatches incoming packets to (firewalld's own nft chain), firewalld.conf, every zone file, the service
    files the zones name and those under /etc, the policy files under /etc; then the digests of what is in
    force and those `record` kept at the last reload."""
    running = f"{FIREWALLD_RUNNING} && echo running=yes"
    files = 'for f in "$@"; do [ -f "$f" ] && echo "' + FILE_MARK + ' $f" && cat "$f"; done'
    return (
        f"{running}; [ -d {SHIPPED_DIR}/policies ] && echo policies=yes; echo {SECTION}; "
        f"nft list chain inet firewalld filter_INPUT_ZONES 2>/dev/null; echo {SECTION}; "
        f"grep '^DefaultZone=' {CONFIG_DIR}/firewalld.conf 2>/dev/null; echo {SECTION}; "
        f"sh -c '{files}' files {SHIPPED_DIR}/zones/*.xml {CONFIG_DIR}/zones/*.xml; echo {SECTION}; "
        f"names=$({SERVICE_NAMES} {SHIPPED_DIR}/zones/*.xml {CONFIG_DIR}/zones/*.xml 2>/dev/null | "
        "sed 's/.*name=\"//; s/\"$//' | sort -u); "
        f'set -- {CONFIG_DIR}/services/*.xml; for n in $names; do [ -f "{CONFIG_DIR}/services/$n.xml" ] || '
        f'set -- "$@" "{SHIPPED_DIR}/services/$n.xml"; done; '
        f"sh -c '{files}' files \"$@\"; echo {SECTION}; "
        f"sh -c '{files}' files {CONFIG_DIR}/policies/*.xml; echo {SECTION}; {DIGESTS}; echo {SECTION}; "
        f"cat {shlex.quote(record)} 2>/dev/null; true"
    )


def split_files(text: str) -> dict[str, str]:
    """The files a read printed (FILE_MARK lines) → path → text."""
    found: dict[str, str] = {}
    path = None
    for line in text.splitlines(keepends=True):
        if line.startswith(FILE_MARK + " "):
            path = line[len(FILE_MARK) + 1 :].rstrip("\n")
            found[path] = ""
        elif path is not None:
            found[path] += line
    return found


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
    policies_supported: bool
    default_zone: str
    dispatched: tuple[str, ...]  # the zones the kernel sends incoming packets to (runtime), in order
    zones: Mapping[str, tuple[str, str]]  # name → (path, text)
    services: Mapping[str, tuple[str, str]]
    policies: Mapping[str, tuple[str, str]]
    applied: bool = False  # the configuration and the kernel's ruleset are what the last reload made

    @property
    def judged_zones(self) -> tuple[str, ...]:
        """The zones whose rules decide incoming packets: those the kernel dispatches to, and the default."""
        return tuple(dict.fromkeys((*self.dispatched, self.default_zone)))

    def service_ports(self, name: str) -> tuple[Port, ...] | None:
        """What a service opens; None when that is unknown (no such file, an include, a file that does not
        parse): taken as every port, so that what names it goes rather than a port it opens staying open."""
        if name not in self.services:
            return None
        return service_ports(self.services[name][1])


def parse_state(text: str) -> State:
    parts = text.split(f"{SECTION}\n")
    if len(parts) != 8:
        raise ValueError(f"expected 8 parts in firewalld's state, got {len(parts)}")
    head, chain, conf, zones, services, policies, digests, recorded = parts
    flags = set(head.split())
    default = re.search(r"^DefaultZone=(\S+)", conf, re.MULTILINE)
    dispatched = tuple(dict.fromkeys(re.findall(r"goto filter_IN_([A-Za-z0-9_+-]+)", chain)))
    return State(
        running="running=yes" in flags,
        policies_supported="policies=yes" in flags,
        default_zone=default.group(1) if default else "public",
        dispatched=dispatched,
        zones=by_name(split_files(zones), "zones"),
        services=by_name(split_files(services), "services"),
        policies=by_name(split_files(policies), "policies"),
        applied=recorded.split() == digests.split() and len(digests.split()) == 2,
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
    return (Port(int(first), int(last or first), proto),)


def service_ports(text: str) -> tuple[Port, ...] | None:
    """A service file → the ports it opens; None when unknown (it includes another service, or names a
    protocol or port this cannot read)."""
    root = _root(text)
    if root is None or root.find("include") is not None or root.find("protocol") is not None:
        return None
    ports: list[Port] = []
    for element in root.iter("port"):
        found = _ports(element.get("port"), element.get("protocol"))
        if found is None:
            return None
        ports += found
    return tuple(ports)


# --- what a zone lets in, and what to prune --------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One element of a zone that lets something in: from `sources` to `ports` (None: every port)."""

    element: str  # the element as the zone file has it (its text, for reports and to find it again)
    kind: str  # service | port | protocol | source-port | rule | forward-port
    sources: tuple[Network, ...]
    ports: tuple[Port, ...] | None


def _rule_entry(element: ElementTree.Element, state: State, text: str) -> Entry | None:
    if element.find("accept") is None:
        return None  # reject, drop and mark let nothing in
    source = element.find("source")
    sources: tuple[Network, ...] = ANYWHERE
    if source is not None and source.get("invert", "").lower() not in ("yes", "true"):
        try:
            sources = (ipaddress.ip_network(source.get("address") or "", strict=False),)
        except ValueError:
            sources = ANYWHERE  # an ipset or a MAC address: who that is cannot be told here
    ports: tuple[Port, ...] | None = None
    if element.find("service") is not None:
        ports = state.service_ports(element.find("service").get("name", ""))  # type: ignore[union-attr]
    elif element.find("port") is not None:
        port = element.find("port")
        ports = _ports(port.get("port"), port.get("protocol"))  # type: ignore[union-attr]
    elif element.find("icmp-type") is not None or element.find("icmp-block") is not None:
        return None
    return Entry(text, "rule", sources, ports)


def one_line(element: ElementTree.Element) -> str:
    """An element as one line of XML (a multi-line rich rule too): how reports show it, and how it is found."""
    return re.sub(r">\s+<", "><", ElementTree.tostring(element, encoding="unicode").strip())


def zone_entries(state: State, zone: str) -> tuple[list[Entry], ElementTree.Element | None]:
    """What the zone lets in (its sources: anyone; the zone applies to the packets dispatched to it), and
    its parsed root (None when the file does not parse)."""
    root = _root(state.zones[zone][1]) if zone in state.zones else None
    if root is None:
        return [], None
    entries = []
    for element in root:
        text = one_line(element)
        if element.tag == "service":
            entries.append(Entry(text, "service", ANYWHERE, state.service_ports(element.get("name", ""))))
        elif element.tag == "port":
            entries.append(Entry(text, "port", ANYWHERE, _ports(element.get("port"), element.get("protocol"))))
        elif element.tag in ("protocol", "source-port"):
            entries.append(Entry(text, element.tag, ANYWHERE, None))
        elif element.tag == "forward-port":
            entries.append(Entry(text, element.tag, ANYWHERE, _ports(element.get("port"), element.get("protocol"))))
        elif element.tag == "rule":
            entry = _rule_entry(element, state, text)
            if entry:
                entries.append(entry)
    return entries, root


def widens(entry: Entry, restrictions: Iterable[Restriction]) -> tuple[Port, ...]:
    """The restricted ports an entry lets in from a source their restriction does not allow."""
    opened: list[Port] = []
    for restriction in restrictions:
        if all(holds(restriction.sources, source) for source in entry.sources):
            continue
        opened += [r for r in restriction.ports if entry.ports is None or any(p.overlaps(r) for p in entry.ports)]
    return tuple(sorted(set(opened)))


@dataclass(frozen=True)
class ZonePlan:
    zone: str
    path: str  # where the zone's new file goes (/etc/firewalld/zones/NAME.xml)
    text: str | None  # the new file, None when the zone is as wanted
    removed: tuple[tuple[Entry, tuple[Port, ...]], ...] = ()  # each with the ports it opened too wide
    purged: tuple[Entry, ...] = ()
    kept: tuple[Entry, ...] = ()
    target: tuple[str, str] = ("", "")  # (old, new) when the target changes
    problem: str = ""  # the zone's file cannot be read: the host is left untouched
    accepts_all: bool = False  # a zone other than the default whose target accepts everything


@dataclass(frozen=True)
class Wanted:
    """What the zones are to be: their target, the restrictions nothing of theirs may widen, services named
    for removal, and whether every other entry goes too."""

    target: str
    restrictions: tuple[Restriction, ...]
    remove_services: tuple[str, ...] = ()
    purge: bool = False
    kept_kinds: tuple[str, ...] = field(default=("forward-port",))


def plan_zone(state: State, zone: str, wanted: Wanted) -> ZonePlan:
    """What to change in one zone: drop each entry that widens a restriction (or is a service named for
    removal; or, with purge, any entry but a forward-port), set the target (an empty one in `wanted` keeps
    the zone's). The rest of the file (interfaces, sources, ICMP settings, masquerading, the admin's narrower
    entries) stays as it is."""
    path = f"{CONFIG_DIR}/zones/{zone}.xml"
    entries, root = zone_entries(state, zone)
    if root is None:
        return ZonePlan(zone, path, None, problem=f"the zone {zone}'s file does not parse (or is missing)")
    removed, purged, kept = [], [], []
    for entry in entries:
        opened = widens(entry, wanted.restrictions)
        named = entry.kind == "service" and _attribute(entry.element, "name") in wanted.remove_services
        if opened or named:
            removed.append((entry, opened))
        elif wanted.purge and entry.kind not in wanted.kept_kinds:
            purged.append(entry)
        else:
            kept.append(entry)
    drop = {entry.element for entry, _ in removed} | {entry.element for entry in purged}
    old_target = root.get("target", "default")
    new_target = wanted.target or old_target
    accepts_all = new_target == "ACCEPT" and not wanted.target
    if not drop and old_target == new_target:
        return ZonePlan(zone, path, None, kept=tuple(kept), accepts_all=accepts_all)
    for element in list(root):
        if one_line(element) in drop:
            root.remove(element)
    if new_target != old_target:
        root.set("target", new_target)
    ElementTree.indent(root, "  ")
    text = '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"
    target = (old_target, new_target) if old_target != new_target else ("", "")
    return ZonePlan(zone, path, text, tuple(removed), tuple(purged), tuple(kept), target, accepts_all=accepts_all)


def _attribute(element_text: str, name: str) -> str:
    root = _root(element_text)
    return root.get(name, "") if root is not None else ""


@dataclass(frozen=True)
class Plan:
    """Every file to write or remove, and the zones' plans (for reports)."""

    writes: Mapping[str, str]  # path → text
    removes: tuple[str, ...]
    zones: tuple[ZonePlan, ...]

    @property
    def changes(self) -> bool:
        return bool(self.writes or self.removes)


def plan(state: State, services: Iterable[Service], policy_name: str, policy_text: str, wanted: Wanted) -> Plan:
    """What to write so firewalld's permanent configuration is the wanted one: our service files (and ours no
    longer wanted removed), the owned policy object, the judged zones pruned."""
    writes: dict[str, str] = {}
    services = tuple(services)
    for service in services:
        text = render_service(service)
        current = state.services.get(service.name)
        if current is None or current != (f"{CONFIG_DIR}/services/{service.name}.xml", text):
            writes[f"{CONFIG_DIR}/services/{service.name}.xml"] = text
    names = {service.name for service in services}
    removes = tuple(
        path
        for name, (path, text) in sorted(state.services.items())
        if path.startswith(f"{CONFIG_DIR}/") and MANAGED in text and name not in names
    )
    policy_path = f"{CONFIG_DIR}/policies/{policy_name}.xml"
    if state.policies.get(policy_name) != (policy_path, policy_text):
        writes[policy_path] = policy_text
    # the default zone takes the policy's default; another zone packets land in (an interface or a source of
    # its own: Docker's, libvirt's, an admin's) is pruned alike but keeps its target, which its bridge's
    # traffic may need
    zones = tuple(
        plan_zone(state, zone, wanted if zone == state.default_zone else replace(wanted, target=""))
        for zone in state.judged_zones
    )
    writes.update({zone.path: zone.text for zone in zones if zone.text is not None})
    return Plan(writes, removes, zones)
