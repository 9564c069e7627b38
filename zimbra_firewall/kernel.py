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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from zimbra_firewall.access import ANYWHERE, Port
from zimbra_firewall.ufw import RuleView

KERNEL = "kernel"  # the first word of a kernel rule's words: ("kernel", "iptables", "-A INPUT …")
# the chain ufw's rule files fill, the one jump of INPUT's after which ufw's user rules have decided
UFW_USER_INPUT = {4: "ufw-user-input", 6: "ufw6-user-input"}
UFW_BEFORE_INPUT = {4: "ufw-before-input", 6: "ufw6-before-input"}
SAVE_COMMAND = {4: "iptables", 6: "ip6tables"}
# matches whose options are read; any other option makes a rule one the audit cannot judge
KNOWN_MODULES = frozenset({"tcp", "udp", "multiport", "comment", "conntrack", "state"})
TERMINAL = {"ACCEPT": "allow", "DROP": "deny", "REJECT": "reject"}
NOT_DECIDING = frozenset({"LOG", "NFLOG", "RETURN", "ULOG", "AUDIT", "MARK", "CONNMARK", "CT", "NOTRACK"})
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
            self.negated,
            self.unknown,
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
    nft_tables: tuple = ()  # "inet mytable": native nftables tables, not judged


def parse_save(text: str) -> dict[str, Table]:
    """iptables-save's text → table name → Table."""
    tables: dict[str, Table] = {}
    name, policies, rules = "", dict[str, str](), list[Rule]()
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            name, policies, rules = line[1:], {}, []
        elif line.startswith(":") and name:
            chain, policy, *_ = line[1:].split()
            if policy != "-":
                policies[chain] = policy
        elif line.startswith("-A ") and name:
            rules.append(parse_rule(line))
        elif line == "COMMIT" and name:
            tables[name] = Table(policies, tuple(rules))
            name = ""
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
        name = _OPTION_NAMES.get(name, name)
        text = " ".join((name, *arguments))
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
    """iptables' words → (option, its arguments, negated): an option's arguments are the words up to the next
    option (`--tcp-flags FIN,SYN SYN` takes two, `--syn` none)."""
    name, negate, pending = "", False, False
    arguments: list[str] = []
    for word in words:
        if word == "!":
            pending = True
            continue
        if word.startswith("-") and len(word) > 1 and not word[1:].isdigit():
            if name:
                yield name, tuple(arguments), negate
            name, arguments, negate, pending = word, [], pending, False
        else:
            arguments.append(word)
    if name:
        yield name, tuple(arguments), negate


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


def _words(version: int, rule: Rule) -> tuple[str, str, str]:
    return (KERNEL, SAVE_COMMAND[version], rule.line)


def family_view(version: int, text: str) -> FamilyView:
    """One family's iptables-save text → what the audit adds: another program's INPUT rules around ufw's, the
    ports published through DNAT, ufw's user chain as loaded."""
    tables = parse_save(text)
    filter_table = tables.get("filter", Table({}, ()))
    rules = filter_table.rules
    user_chain = UFW_USER_INPUT[version]
    ufw_loaded = _is_chain(rules, user_chain) or any(r.target == user_chain for r in rules)
    before: list[tuple] = []
    after: list[tuple] = []
    not_judged: list[str] = []
    passed_ufw = False
    for rule in (r for r in rules if r.chain == "INPUT"):
        if rule.target.startswith(("ufw-", "ufw6-")):
            passed_ufw = passed_ufw or rule.target == UFW_BEFORE_INPUT[version]
            continue
        if rule.target in NOT_DECIDING or rule.interface == "lo" or not _admits_new(rule):
            continue
        if rule.target not in TERMINAL:  # another program's chain: judged only if it can never accept
            if _accepts_something(rules, rule.target):
                not_judged.append(f"{SAVE_COMMAND[version]}: {rule.line}")
            continue
        if not judgeable(rule):
            if rule.target == "ACCEPT":
                not_judged.append(f"{SAVE_COMMAND[version]}: {rule.line}")
            continue
        view = rule_view(rule)
        if view is not None:
            (after if passed_ufw else before).append((view, _words(version, rule)))
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


def _published(version: int, nat: Sequence[Rule], forwarded: bool) -> Iterable[Published]:
    for chain in _chains_reached(nat, "PREROUTING"):
        for rule in (r for r in nat if r.chain == chain and r.target == "DNAT"):
            ports = _ports(rule) or ()
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


def kernel_view(iptables: str, ip6tables: str, nft: str) -> KernelView:
    """The three reads (iptables-save, ip6tables-save, `nft list tables`) → KernelView; a family whose save
    printed no table was not read (no iptables, or no IPv6)."""
    families = {
        version: family_view(version, text) for version, text in ((4, iptables), (6, ip6tables)) if "*filter" in text
    }
    return KernelView(families, nft_tables(nft))


def nft_tables(text: str) -> tuple[str, ...]:
    """`nft list tables` → the tables neither iptables-nft nor firewalld made."""
    found = []
    for line in text.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "table" and f"{words[1]} {words[2]}" not in OWN_NFT_TABLES:
            found.append(f"{words[1]} {words[2]}")
    return tuple(found)
