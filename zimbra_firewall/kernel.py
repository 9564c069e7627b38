"""What the kernel's netfilter tables hold, beside ufw's rule files: `iptables-save` / `ip6tables-save` text in,
what the exposure audit must add to its judgement out. Pure: no I/O.

Why ufw's files are not enough (iptables(8), ufw's before.rules and ufw-init):
- ufw hooks its chains into the filter table's INPUT chain and implements its default deny as that chain's
  policy. Another program's ACCEPT in INPUT (an admin's `iptables -I INPUT …`, a control panel, a VPN) lets
  a packet in before ufw's chains see it, or after them, when no ufw rule decided it;
- a DNAT in the nat table's PREROUTING (Docker's published ports: `-p 8080:80`) sends the packet to FORWARD,
  past every INPUT rule of ufw's: it reaches the container if anything in FORWARD accepts it (Docker does);
- ufw's rule files are loaded at enable and reload; rules written to them since, or deleted from the kernel
  by hand, are not what the kernel applies.
Native nftables tables (`nft`) beside them cannot let in what ufw drops (each base chain on a hook must accept
a packet), so they are only named, not judged.
"""

import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from zimbra_firewall.access import ANYWHERE, Port
from zimbra_firewall.ufw import RuleView

KERNEL = "kernel"  # a kernel rule's words: ("kernel", "iptables" or the file it is from, "-A INPUT …")
# the chain ufw's rule files fill, the one jump of INPUT's after which ufw's user rules have decided
UFW_USER_INPUT = {4: "ufw-user-input", 6: "ufw6-user-input"}
UFW_BEFORE_INPUT = {4: "ufw-before-input", 6: "ufw6-before-input"}
SAVE_COMMAND = {4: "iptables", 6: "ip6tables"}
# where an edit of ufw's before chain lives, and the template ufw ships it from (Debian's ufw package)
BEFORE_RULES = {4: "/etc/ufw/before.rules", 6: "/etc/ufw/before6.rules"}
SHIPPED_BEFORE_RULES = {4: "/usr/share/ufw/iptables/before.rules", 6: "/usr/share/ufw/iptables/before6.rules"}
# matches whose options are read; any other option makes a rule one the audit cannot judge
KNOWN_MODULES = frozenset({"tcp", "udp", "multiport", "comment", "conntrack", "state"})
TERMINAL = {"ACCEPT": "allow", "DROP": "deny", "REJECT": "reject"}
# targets that decide no packet's fate (they mark, log or count, and the packet goes on), and RETURN
NOT_DECIDING = frozenset(
    {"LOG", "NFLOG", "RETURN", "ULOG", "AUDIT", "MARK", "CONNMARK", "CT", "NOTRACK", "TCPMSS", "CLASSIFY", "DSCP",
     "TOS", "TTL", "HL", "SET", "TRACE", "CHECKSUM", "SECMARK", "CONNSECMARK", "IDLETIMER", "LED", "RATEEST"}
)  # fmt: skip
# the chains ufw hooks into INPUT, in its order; the user rules are reached from the second
UFW_INPUT_HOOKS = frozenset(
    f"{prefix}-{name}"
    for prefix in ("ufw", "ufw6")
    for name in ("before-logging-input", "before-input", "after-input", "after-logging-input", "reject-input",
                 "track-input")
)  # fmt: skip
NO_PORTS = frozenset({"icmp", "ipv6-icmp", "icmpv6", "esp", "ah", "gre", "vrrp", "igmp", "ospf", "sctp"})
# tables iptables-nft makes, and firewalld's: not another program's
OWN_NFT_TABLES = frozenset(
    f"{family} {name}" for family in ("ip", "ip6") for name in ("filter", "nat", "mangle", "raw", "security")
) | frozenset({"inet firewalld", "ip firewalld", "ip6 firewalld"})


@dataclass(frozen=True)
class Rule:
    """One `-A` line of iptables-save, read."""

    chain: str
    line: str  # as saved, from "-A"
    source: str = ""
    destination: str = ""
    interface: str = ""
    proto: str = ""
    dports: str = ""  # "7071", "80,443", "8000:8010"
    states: frozenset = frozenset()  # conntrack/state states; empty: any
    target: str = ""
    to_destination: str = ""  # DNAT's
    comment: str = ""
    negated: tuple = ()  # options given with `!`
    unknown: tuple = ()  # options not read

    def key(self) -> tuple:
        """What the rule does, whatever order or implicit `-m tcp` iptables-save or ufw wrote it in."""
        return (
            self.chain,
            _network_text(self.source),
            _network_text(self.destination),
            self.interface,
            self.proto,
            self.dports,
            self.states,
            self.target,
            self.to_destination,
            self.comment,
            frozenset(self.negated),
            frozenset(self.unknown),
        )


@dataclass(frozen=True)
class Table:
    policies: dict  # built-in chain → policy
    rules: tuple  # of Rule, in order


@dataclass(frozen=True)
class Published:
    """A port another program sends on through DNAT (Docker's -p): judged by whether FORWARD lets it pass."""

    port: Port
    sources: tuple
    to: str
    forwarded: bool  # something in FORWARD accepts forwarded packets
    line: str


@dataclass(frozen=True)
class FamilyView:
    """One family's tables as the audit judges them."""

    version: int
    input_policy: str  # ACCEPT | DROP | "" (not read)
    before: tuple = ()  # (RuleView, words): another program's INPUT rules, ahead of ufw's user rules
    after: tuple = ()  # (RuleView, words): behind them, for what no ufw rule decided
    not_judged: tuple = ()  # lines that may let packets in, in a form the audit does not read
    published: tuple = ()  # of Published
    user_rules: tuple = ()  # ufw's user chain as the kernel has it: Rule.key() of each
    ufw_loaded: bool = False  # ufw's chains are in the kernel


@dataclass(frozen=True)
class KernelView:
    families: dict = field(default_factory=dict)  # version → FamilyView
    nft_tables: tuple = ()  # (family, name) of native nftables tables, not judged


def parse_save(text: str) -> dict[str, Table]:
    """iptables-save's text → table name → Table. ValueError for a line that is none of iptables-save's: a
    rule's comment may hold a newline, which iptables-save prints as it is, and the rest of that rule (its
    target) would otherwise pass unseen, or forge a table of its own."""
    tables: dict[str, Table] = {}
    name, policies, rules = "", dict[str, str](), list[Rule]()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*") and not name:
            name, policies, rules = line[1:], {}, []
        elif line.startswith(":") and name and len(line[1:].split()) >= 2:
            chain, policy, *_ = line[1:].split()
            if policy != "-":
                policies[chain] = policy
        elif line.startswith("-A ") and name:
            rules.append(parse_rule(line))
        elif line == "COMMIT" and name:
            tables[name] = Table(policies, tuple(rules))
            name = ""
        else:
            raise ValueError(f"line {number} is none of iptables-save's: {line[:80]!r}")
    return tables


def words_of(line: str) -> list[str]:
    """A rule's words as iptables-restore splits them (xtables' tokenizer): at blanks, except inside double
    quotes, where a backslash keeps the next character; a single quote is an ordinary character (ufw writes
    `--comment 'dapp_…'`, and the kernel keeps the quotes; iptables-save then prints `"\\'dapp_…\\'"`)."""
    words, word, quoted, escaped, started = [], [], False, False, False
    for char in line:
        if escaped:
            word.append(char)
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted, started = not quoted, True
        elif char.isspace() and not quoted:
            if started or word:
                words.append("".join(word))
            word, started = [], False
        else:
            word.append(char)
    if started or word:
        words.append("".join(word))
    return words


def parse_rule(line: str) -> Rule:
    """One `-A CHAIN …` line (iptables-save's, or a ufw rule file's) → Rule; options it does not read go to
    `unknown`, options given with `!` to `negated`: the audit judges neither."""
    words = words_of(line)
    values: dict[str, str] = {}
    negated, unknown = [], []
    for name, arguments, negate in _options(words):
        text = " ".join((name, *arguments))
        if text in RECENT_DEFAULTS:  # what iptables-save adds to ufw's `-m recent --set` (`ufw limit`)
            continue
        if negate:
            negated.append(f"! {text}")
        if name in READ_OPTIONS:
            values[name] = arguments[0] if arguments else ""
        elif name == "-m":
            if not arguments or arguments[0] not in KNOWN_MODULES:
                unknown.append(text)
        elif name not in ("-o", "-A") and not name.startswith(TARGET_OPTIONS):
            unknown.append(text)
    states = values.get("--ctstate", values.get("--state", ""))
    return Rule(
        chain=values.get("-A", ""),
        line=line.strip(),
        source=values.get("-s", ""),
        destination=values.get("-d", ""),
        interface=values.get("-i", ""),
        proto=values.get("-p", "").lower(),
        dports=values.get("--dport", values.get("--dports", "")),
        states=frozenset(s for s in states.upper().split(",") if s),
        target=values.get("-j", values.get("-g", "")),
        to_destination=values.get("--to-destination", ""),
        comment=values.get("--comment", ""),
        negated=tuple(negated),
        unknown=tuple(unknown),
    )


def _options(words: Sequence[str]) -> Iterable[tuple[str, tuple[str, ...], bool]]:
    """iptables' words → (option, its arguments, negated), as getopt reads them: an option the audit reads
    takes exactly the next word, whatever it looks like (`--comment --dport` is a comment); another takes
    the words up to the next option (`--tcp-flags FIN,SYN SYN` two, `--syn` none), which is a guess, but
    such an option makes the rule one the audit does not judge anyway."""
    index, pending = 0, False
    while index < len(words):
        word = words[index]
        index += 1
        if word == "!":
            pending = True
            continue
        name = _OPTION_NAMES.get(word, word)
        if name in READ_OPTIONS or name == "-m":
            arguments = tuple(words[index : index + 1])
            index += len(arguments)
        else:
            end = index
            while end < len(words) and not (words[end].startswith("-") and len(words[end]) > 1 or words[end] == "!"):
                end += 1
            arguments, index = tuple(words[index:end]), end
        yield name, arguments, pending
        pending = False


RECENT_DEFAULTS = frozenset(
    {"--name DEFAULT", "--rsource", "--mask 255.255.255.255", "--mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}
)
READ_OPTIONS = frozenset(
    {"-A", "-s", "-d", "-i", "-p", "--dport", "--dports", "--ctstate", "--state", "-j", "-g", "--to-destination",
     "--comment"}
)  # fmt: skip
_OPTION_NAMES = {
    "--append": "-A",
    "--source": "-s",
    "--src": "-s",
    "--destination": "-d",
    "--dst": "-d",
    "--in-interface": "-i",
    "--out-interface": "-o",
    "--protocol": "-p",
    "--destination-port": "--dport",
    "--destination-ports": "--dports",
    "--jump": "-j",
    "--goto": "-g",
}
# options a rule's target takes (REJECT's, LOG's, DNAT's besides --to-destination …): they decide no match
TARGET_OPTIONS = ("--reject-with", "--log-", "--nflog-", "--set-", "--to-ports", "--to-source", "--random")


def _loopback(text: str) -> bool:
    try:
        return bool(text) and ipaddress.ip_network(text, strict=False).is_loopback
    except ValueError:
        return False


def _network_text(text: str) -> str:
    if not text:
        return ""
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return text


def _ports(rule: Rule) -> tuple[Port, ...] | None:
    """The ports a rule concerns: None for every port of every protocol; () for a protocol without ports."""
    if rule.proto in ("", "all"):
        return None if not rule.dports else ()
    if rule.proto not in ("tcp", "udp"):
        return ()
    if not rule.dports:
        return (Port(1, 65535, rule.proto),)
    ports = []
    for spec in rule.dports.split(","):
        first, _, last = spec.partition(":")
        if not (first.isdigit() and (not last or last.isdigit())):
            return ()
        ports.append(Port(int(first), int(last or first), rule.proto))
    return tuple(ports)


def _admits_new(rule: Rule) -> bool:
    return not rule.states or bool(rule.states & {"NEW", "UNTRACKED"})


def rule_view(rule: Rule) -> RuleView | None:
    """A rule that decides an inbound packet, as the audit's rules are (RuleView), or None when it decides no
    new connection from another host (loopback, established, ICMP, a log)."""
    action = TERMINAL.get(rule.target)
    ports = _ports(rule)
    if action is None or rule.interface == "lo" or not _admits_new(rule) or ports == ():
        return None
    # a drop of INVALID or UNTRACKED packets alone keeps out no new connection
    if action != "allow" and rule.states and "NEW" not in rule.states:
        return None
    sources = (ipaddress.ip_network(rule.source, strict=False),) if rule.source else ANYWHERE
    destinations = (ipaddress.ip_network(rule.destination, strict=False),) if rule.destination else ANYWHERE
    return RuleView(action, True, sources, ports, "", rule.comment, destinations, rule.interface)


def judgeable(rule: Rule) -> bool:
    """Can rule_view say what this rule does? Not with a negation, an option it does not read, or an address
    that does not parse."""
    if rule.negated or rule.unknown:
        return False
    try:
        for address in (rule.source, rule.destination):
            if address:
                ipaddress.ip_network(address, strict=False)
    except ValueError:
        return False
    return True


def _chains_reached(rules: Sequence[Rule], start: str) -> list[str]:
    """`start` and every chain it jumps or goes to, transitively, in the order met."""
    found, queue = [start], [start]
    while queue:
        chain = queue.pop(0)
        for rule in rules:
            if rule.chain == chain and rule.target and rule.target not in found and _is_chain(rules, rule.target):
                found.append(rule.target)
                queue.append(rule.target)
    return found


def _is_chain(rules: Sequence[Rule], name: str) -> bool:
    return any(rule.chain == name for rule in rules)


def _accepts_something(rules: Sequence[Rule], chain: str) -> bool:
    """Does `chain`, or a chain it reaches, accept a new connection?"""
    reached = set(_chains_reached(rules, chain))
    return any(r.chain in reached and r.target == "ACCEPT" and _admits_new(r) for r in rules)


def family_view(version: int, text: str, stock_before: str = "") -> FamilyView:
    """One family's iptables-save text → what the audit adds: another program's INPUT rules around ufw's, the
    rules an edit of before.rules added to ufw's before chain (those not in `stock_before`, the template ufw
    ships, when it was read), the ports published through DNAT, ufw's user chain as loaded."""
    tables = parse_save(text)
    filter_table = tables.get("filter", Table({}, ()))
    rules = filter_table.rules
    user_chain, before_chain = UFW_USER_INPUT[version], UFW_BEFORE_INPUT[version]
    ufw_loaded = _is_chain(rules, user_chain) or any(r.target == user_chain for r in rules)
    before: list[tuple] = []
    after: list[tuple] = []
    not_judged: list[str] = []
    passed_ufw = False
    for rule in (r for r in rules if r.chain == "INPUT"):
        if rule.target in UFW_INPUT_HOOKS:
            passed_ufw = passed_ufw or rule.target == before_chain
            continue
        _judge(rule, rules, SAVE_COMMAND[version], after if passed_ufw else before, not_judged)
    if stock_before:
        shipped = {
            parse_rule(line).key() for line in stock_before.splitlines() if line.startswith(f"-A {before_chain} ")
        }
        for rule in (r for r in rules if r.chain == before_chain and r.key() not in shipped):
            if not rule.target.startswith(("ufw-", "ufw6-")):
                _judge(rule, rules, BEFORE_RULES[version], before, not_judged)
    if "iptables-legacy tables present" in text:  # iptables-nft's save says so, and lists none of them
        not_judged.append(f"{SAVE_COMMAND[version]}-legacy-save: tables of the legacy backend beside these")
    forwarded = filter_table.policies.get("FORWARD") == "ACCEPT" or _accepts_something(rules, "FORWARD")
    return FamilyView(
        version=version,
        input_policy=filter_table.policies.get("INPUT", ""),
        before=tuple(before),
        after=tuple(after),
        not_judged=tuple(not_judged),
        published=tuple(_published(version, tables.get("nat", Table({}, ())).rules, forwarded)),
        user_rules=tuple(r.key() for r in rules if r.chain == user_chain),
        ufw_loaded=ufw_loaded,
    )


def _judge(rule: Rule, rules: Sequence[Rule], where: str, judged: list, not_judged: list) -> None:
    """Put a rule that may decide a new connection where it belongs: with the rules judged in its place
    (`judged`), or, when it could let one in in a form the audit does not read, with `not_judged`. `where`:
    the command or file it comes from."""
    if not rule.target or rule.target in NOT_DECIDING:
        return
    chain = _is_chain(rules, rule.target)
    if rule.target not in TERMINAL and not chain:  # NFQUEUE, a target of a module's own: what it does is not read
        not_judged.append(f"{where}: {rule.line}")
        judged.append((_taken_as_open(rule, rules), (KERNEL, where, rule.line)))
        return
    if chain and not _accepts_something(rules, rule.target):  # fail2ban's kind: it can only keep out
        return
    if not rule.negated and (rule.interface == "lo" or not _admits_new(rule) or rule.proto in NO_PORTS):
        return  # loopback, established connections, ICMP and the like: no new connection to a TCP or UDP socket
    if chain or not judgeable(rule):
        if rule.target == "ACCEPT" or chain:
            not_judged.append(f"{where}: {rule.line}")
            judged.append((_taken_as_open(rule, rules), (KERNEL, where, rule.line)))
        return  # a drop the audit cannot read is not counted on: the ports stay as open as the rest says
    view = rule_view(rule)
    if view is not None:
        judged.append((view, (KERNEL, where, rule.line)))


def _taken_as_open(rule: Rule, rules: Sequence[Rule]) -> RuleView:
    """A rule that may let connections in, in a form the audit does not read (a negation, a match it does not
    know, another program's chain that accepts): taken, for a security audit, as letting everyone in on the
    ports it names (every port when it names none, or is a chain), so a port behind it is judged open."""
    on_ports = any(text.startswith(("! -p", "! --dport")) for text in rule.negated)
    ports = _ports(rule) if rule.target in TERMINAL and not on_ports else None
    return RuleView("allow", True, ANYWHERE, ports or None, "", "not read: taken as open to all", ANYWHERE)


def _published(version: int, nat: Sequence[Rule], forwarded: bool) -> Iterable[Published]:
    for chain in _chains_reached(nat, "PREROUTING"):
        for rule in (r for r in nat if r.chain == chain and r.target == "DNAT"):
            if _loopback(rule.destination):
                continue  # published on a loopback address (docker run -p 127.0.0.1:…): not from another host
            ports = _ports(rule)
            if ports is None:  # no protocol: every port of both
                ports = (Port(1, 65535, "tcp"), Port(1, 65535, "udp"))
            sources = (
                (ipaddress.ip_network(rule.source, strict=False),) if rule.source and judgeable(rule) else ANYWHERE
            )
            for port in ports:
                yield Published(port, sources, rule.to_destination, forwarded, f"{SAVE_COMMAND[version]}: {rule.line}")


def file_rules(version: int, text: str) -> tuple:
    """ufw's rule file (user.rules / user6.rules) → Rule.key() of each rule of its user input chain, to compare
    with FamilyView.user_rules."""
    chain = UFW_USER_INPUT[version]
    return tuple(parse_rule(line).key() for line in text.splitlines() if line.startswith(f"-A {chain} "))


def kernel_view(iptables: str, ip6tables: str, nft: str, shipped: Sequence[str] = ("", "")) -> KernelView:
    """The reads (iptables-save, ip6tables-save, `nft -j list tables`, the before.rules templates ufw ships) →
    KernelView; a family whose save printed no table was not read (no iptables, or no IPv6)."""
    families = {
        version: family_view(version, text, stock)
        for version, text, stock in ((4, iptables, shipped[0]), (6, ip6tables, shipped[1]))
        if "*filter" in text
    }
    return KernelView(families, nft_tables(nft))


def nft_tables(text: str) -> tuple[tuple[str, str], ...]:
    """`nft -j list tables` → (family, name) of the tables neither iptables-nft nor firewalld made; a list that
    does not parse is one unknown table, so that it is named rather than missed."""
    if not text.strip():
        return ()
    try:
        listed = [item["table"] for item in json.loads(text)["nftables"] if "table" in item]
        tables = [(str(table["family"]), str(table["name"])) for table in listed]
    except (ValueError, KeyError, TypeError):
        return (("?", "(nft's list of tables did not parse)"),)
    return tuple(table for table in tables if f"{table[0]} {table[1]}" not in OWN_NFT_TABLES)
