"""ufw's text in and out, and what to change: profile rendering, `ufw show added` / /etc/default/ufw /
state parsing, and the planners the operations (tasks/ufw.py) and the rollback's "will ufw change"
share. Pure functions on plain values, tested on output captured from ufw 0.36; nothing here is
Zimbra's (zimbra_firewall/ufw_policy.py turns the Zimbra policy into these values).
"""

import configparser
import functools
import ipaddress
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from zimbra_firewall.access import ANYWHERE, Port, Restriction, opened_wider

PROFILE_PATH = "/etc/ufw/applications.d/zimbra"
DEFAULT_POLICIES = ("deny", "reject", "allow")
MULTIPORT_LIMIT = 15  # iptables' multiport match; a range counts as two
XTABLES_LOCK = "/run/xtables.lock"
# separates the parts of a read that takes one command (a line no ufw output or file holds)
SECTION = "@@zimbra-firewall@@"
NO_FILE = "@@zimbra-firewall-no-file@@"


def sections(lines: Iterable[str], marker: str = SECTION) -> list[str]:
    """A one-command read's output (its lines, as a fact gets them) → the texts between `marker` lines, each
    ending in a newline unless empty (an empty part stays a part)."""
    parts: list[str] = []
    current: list[str] = []
    for line in lines:
        if line == marker:
            parts.append("".join(f"{text}\n" for text in current))
            current = []
        else:
            current.append(line)
    return [*parts, "".join(f"{text}\n" for text in current)]


def wait_for_xtables_lock(seconds: int) -> str:
    """Shell that waits at most `seconds` for the xtables lock, else fails saying why. ufw (through
    iptables-legacy's -w) would wait without end; the lock is only waited for, never held."""
    return (
        f"flock -w {int(seconds)} {XTABLES_LOCK} true || {{ echo 'the xtables lock ({XTABLES_LOCK}) stayed "
        f"held by another process for {int(seconds)} s: another firewall tool is running; retry when it is "
        "done' >&2; exit 1; }"
    )


POLICY_WORDS = {"DROP": "deny", "REJECT": "reject", "ACCEPT": "allow"}


@dataclass(frozen=True)
class Profile:
    """A ufw application profile; ports as ufw's `ports=` line takes them ("80,443/tcp|53/udp")."""

    name: str
    ports: str
    title: str = ""
    description: str = ""


def chunk_ports(ports: Iterable[Port]) -> str:
    """ufw `ports=` text: one entry per protocol, split so no entry exceeds the multiport limit."""
    entries = []
    for proto in ("tcp", "udp"):
        chunk: list[str] = []
        weight = 0
        for port in sorted(p for p in ports if p.proto == proto):
            cost = 1 if port.first == port.last else 2
            if weight + cost > MULTIPORT_LIMIT:
                entries.append(f"{','.join(chunk)}/{proto}")
                chunk, weight = [], 0
            chunk.append(str(port).split("/")[0])
            weight += cost
        if chunk:
            entries.append(f"{','.join(chunk)}/{proto}")
    return "|".join(entries)


def as_profiles(profiles: Mapping[str, str] | Iterable[Profile]) -> tuple[Profile, ...]:
    """Profiles given as Profile objects or as a mapping of name → ports."""
    if isinstance(profiles, Mapping):
        return tuple(Profile(name, ports, title=name) for name, ports in profiles.items())
    return tuple(profiles)


def render_profiles(profiles: Iterable[Profile]) -> str:
    blocks = [f"[{p.name}]\ntitle={p.title}\ndescription={p.description}\nports={p.ports}\n" for p in profiles]
    return "# Managed by zimbra-firewall: edits are replaced on the next run.\n\n" + "\n".join(blocks)


def parse_show_added(text: str) -> list[tuple[str, ...]]:
    """`ufw show added` → the rules as argument tuples (the words after `ufw`), in order."""
    rules = []
    for line in text.splitlines():
        if line.startswith("ufw "):
            rules.append(tuple(shlex.split(line)[1:]))
    return rules


USER_RULES = ("/etc/ufw/user.rules", "/etc/ufw/user6.rules")
TUPLE = "### tuple ###"
ANYWHERE_TEXT = ("0.0.0.0/0", "::/0")


RULE_FILES = f"{SECTION}files"


def read_user_rules() -> str:
    """Shell printing what parse_rules reads: ufw's user rule files (ufw's Python not started), after `ufw
    show added` when a route rule is there (their printing is not reimplemented here; the files still give
    the ports ufw stored with app rules)."""
    v4, v6 = USER_RULES
    return (
        f"if grep -qs '^{TUPLE} route:' {v4} {v6}; then echo show-added && LC_ALL=C ufw show added && "
        f"echo {RULE_FILES}; else echo files; fi && cat {v4} && echo {SECTION}6 && cat {v6} 2>/dev/null"
    )


def _rule_parts(text: str) -> tuple[str, str, str]:
    """read_user_rules' output → (its kind, what `ufw show added` printed or "", the rule files' text)."""
    kind, _, body = text.partition("\n")
    if kind.strip() != "show-added":
        return kind.strip(), "", body
    added, _, files = body.partition(f"\n{RULE_FILES}\n")
    return "show-added", added, files


def parse_rules(text: str, ipv6: bool = True) -> list[tuple[str, ...]]:
    """read_user_rules' output → the rules as `ufw show added` prints them (argument tuples, in order)."""
    kind, added, files = _rule_parts(text)
    if kind == "show-added":
        return parse_show_added(added)
    rules = []
    for line in _tuple_lines(files, ipv6):
        rule = command_of_tuple(line)
        if rule and rule not in rules:  # a rule for IPv4 and IPv6 is printed once, as ufw does
            rules.append(rule)
    return rules


def _tuple_lines(body: str, ipv6: bool) -> list[str]:
    v4, _, v6 = body.partition(f"\n{SECTION}6\n")
    return [line for text in ((v4, v6) if ipv6 else (v4,)) for line in text.splitlines() if line.startswith(TUPLE)]


def stored_app_ports(text: str) -> dict[str, tuple["Port", ...]]:
    """read_user_rules' output → app name → the ports ufw stored with its rules (ufw writes a profile's ports
    into the rule when it is added, and keeps them after the profile is gone: the kernel has those)."""
    apps: dict[str, tuple[Port, ...]] = {}
    for line in _tuple_lines(_rule_parts(text)[2], True):
        rule = read_tuple(line)
        if rule is None:
            continue
        for app in (rule.dapp, rule.sapp):
            port = rule.dport if app == rule.dapp else rule.sport
            if app and port != "any":
                apps[app] = tuple(dict.fromkeys((*apps.get(app, ()), *(_ports_of(port, rule.protocol) or ()))))
    return apps


PROFILE_DIR = "/etc/ufw/applications.d"
APP_FILE = f"{SECTION}app"


def read_app_profiles() -> str:
    """Shell printing what parse_app_profiles reads: every file of ufw's application profiles."""
    return f'for f in {PROFILE_DIR}/*; do [ -f "$f" ] && echo {APP_FILE} && cat "$f"; done; true'


def parse_app_profiles(text: str) -> dict[str, tuple["Port", ...]]:
    """read_app_profiles' output → profile name → the ports its `ports=` line opens, across every file (ufw
    reads them with ConfigParser, as this does; a file it could not read is skipped, as ufw skips it)."""
    apps: dict[str, tuple[Port, ...]] = {}
    for body in text.split(f"{APP_FILE}\n")[1:]:
        for name, ports in profile_file_ports(body).items():
            apps[name] = tuple(dict.fromkeys((*apps.get(name, ()), *ports)))
    return apps


def profile_file_ports(text: str) -> dict[str, tuple["Port", ...]]:
    """One application profile file → profile name → the ports its `ports=` line opens; {} for a file ufw
    could not read either (it reads them with ConfigParser, as this does)."""
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return {}
    return {name: ports_of_text(parser.get(name, "ports", fallback="")) for name in parser.sections()}


@dataclass(frozen=True)
class TupleLine:
    """The fields of one `### tuple ###` line of user.rules/user6.rules, as ufw 0.36 reads them
    (backend_iptables.py _read_rules): ports and addresses as ufw stores them (an app rule's ports too)."""

    action: str  # allow | deny | reject | limit
    logtype: str  # "", log, log-all
    protocol: str  # tcp | udp | any …
    dport: str
    dst: str
    sport: str
    src: str
    direction: str  # in | out
    interface_in: str
    interface_out: str
    dapp: str
    sapp: str
    comment: str


def read_tuple(line: str) -> TupleLine | None:
    """One `### tuple ###` line → its fields; None for a route rule or a malformed line (ufw skips those)."""
    body, _, comment = line.partition(" comment=")
    fields = body[len(TUPLE) :].split()
    if not 6 <= len(fields) <= 9 or fields[0].startswith("route:"):
        return None
    action_words = fields[0].lower().split("_")
    action = action_words[0] if action_words[0] in ("allow", "reject", "limit") else "deny"
    direction, interface_in, interface_out = "in", "", ""
    if len(fields) in (7, 9):
        last = fields[-1]
        direction = last.split("_")[0]
        for part in last.split("!"):
            side, _, name = part.partition("_")
            if name:
                interface_in, interface_out = (name, interface_out) if side == "in" else (interface_in, name)
    dapp = sapp = ""
    if len(fields) >= 8:
        dapp = "" if fields[6] == "-" else fields[6].replace("%20", " ")
        sapp = "" if fields[7] == "-" else fields[7].replace("%20", " ")
    hex_text = comment.strip()
    try:
        text = bytes.fromhex(hex_text[: len(hex_text) // 2 * 2]).decode("utf-8", "backslashreplace")
    except ValueError:  # not ufw's hex: a hand edit; kept as written, so the rule is never taken for ours
        text = hex_text
    logtype = action_words[1] if len(action_words) > 1 else ""
    protocol, dport, dst, sport, src = fields[1:6]
    return TupleLine(
        action, logtype, protocol, dport, dst, sport, src, direction, interface_in, interface_out, dapp, sapp, text
    )


def command_of_tuple(line: str) -> tuple[str, ...] | None:
    """One `### tuple ###` line of user.rules/user6.rules → the rule's words as `ufw show added` prints
    them, as ufw 0.36 prints it (parser.py UFWCommandRule.get_command); None for a malformed line."""
    rule = read_tuple(line)
    if rule is None:
        return None
    words = [rule.action]
    simple = rule.dst in ANYWHERE_TEXT and rule.src in ANYWHERE_TEXT and rule.sport == "any" and not rule.sapp
    if simple and not rule.interface_in and not rule.interface_out and rule.dport != "any":
        words += ["out"] if rule.direction == "out" else []
        words += [rule.logtype] if rule.logtype else []
        words.append(rule.dapp or (rule.dport if rule.protocol == "any" else f"{rule.dport}/{rule.protocol}"))
    else:
        words += ["in", "on", rule.interface_in] if rule.interface_in else []
        if rule.interface_out:
            words += ["out", "on", rule.interface_out]
        elif rule.direction == "out":
            words.append("out")
        words += [rule.logtype] if rule.logtype else []
        located = False
        ends = (("from", rule.src, rule.sport, rule.sapp), ("to", rule.dst, rule.dport, rule.dapp))
        for word, address, port, app in ends:
            address = "any" if address in ANYWHERE_TEXT else address
            if address != "any" or port != "any" or app:
                located = True
                words += [word, address] + (["app", app] if app else ["port", port] if port != "any" else [])
        if not located and not rule.interface_in and not rule.interface_out:
            words += ["to", "any"]
        if rule.protocol != "any" and not rule.dapp and not rule.sapp:
            words += ["proto", rule.protocol]
    if rule.comment:
        words += ["comment", rule.comment]
    return tuple(words)


def parse_defaults(text: str) -> dict:
    """/etc/default/ufw → {'ipv6': bool, 'incoming': …, 'outgoing': …}; readable while ufw is inactive."""
    values = dict(re.findall(r'^([A-Z_0-9]+)="?([^"\n]*)"?', text, re.MULTILINE))
    return {
        # no IPV6 line is no IPv6: ufw's use_ipv6 (backend.py) and ufw-init-functions want "yes" written
        "ipv6": values.get("IPV6", "no").lower() == "yes",
        "incoming": POLICY_WORDS.get(values.get("DEFAULT_INPUT_POLICY", ""), "unknown"),
        "outgoing": POLICY_WORDS.get(values.get("DEFAULT_OUTPUT_POLICY", ""), "unknown"),
    }


# ufw's user input chain per IP version: loaded while ufw filters that family
USER_INPUT = {4: "ufw-user-input", 6: "ufw6-user-input"}


def status_read(lock_wait: int) -> str:
    """Shell printing what parse_status reads: whether ufw's IPv4 chain is loaded, whether its IPv6 one is, a
    SECTION line, /etc/default/ufw. The IPv4 test is the one `ufw status` makes without starting ufw's Python.
    Both families are tested because ufw loads each one's rules with its own iptables-restore (ufw-init-functions
    ufw_start): with IPV6=yes, one family's can be in force without the other's. Both read the kernel's rules,
    so it first waits at most `lock_wait` seconds for the xtables lock."""
    return (
        f"{wait_for_xtables_lock(lock_wait)}; iptables -n -L {USER_INPUT[4]} >/dev/null 2>&1; echo $?; "
        f"ip6tables -n -L {USER_INPUT[6]} >/dev/null 2>&1; echo $?; echo {SECTION} && cat /etc/default/ufw"
    )


def parse_status(chain_status: str, defaults: str) -> dict:
    """status_read's two parts → {'active', 'active6', 'incoming', 'outgoing', 'ipv6'}: 'active' is ufw's
    IPv4 chain loaded (what `ufw status` says, and what the deploy enables), 'active6' its IPv6 chain."""
    lines = chain_status.strip().splitlines()
    # ufw's user chain is loaded while ufw is active, missing (1) when not
    if len(lines) != 2 or lines[0].strip() not in ("0", "1"):
        raise ValueError(f"iptables could not list ufw's chains ({' '.join(lines) or 'no exit status'})")
    # IPv6's status is not checked so strictly: on a kernel without IPv6 ip6tables fails otherwise than with 1
    # (legacy's "can't initialize ip6tables table" is 3), and such a host must still be deployed and audited;
    # whatever is not 0 is no IPv6 rule in force, which the audit takes as IPv6 unfiltered, never as filtered
    return {**parse_defaults(defaults), "active": lines[0].strip() == "0", "active6": lines[1].strip() == "0"}


def parse_state(text: str) -> dict:
    """The state read's output (status_read's, the user rules (read_user_rules), every profile file
    (read_app_profiles), the deploy's profile file, separated by SECTION lines) → {'active', 'active6',
    'incoming', 'outgoing', 'ipv6', 'rules', 'apps', 'profiles'}; 'apps': app name → the ports a rule naming
    it opens (its profile's and those ufw stored with its rules); 'profiles' is the deploy's profile file's
    text without its final newline, or None when there is none."""
    parts = re.split(rf"^{SECTION}$\n?", text, maxsplit=4, flags=re.MULTILINE)
    if len(parts) != 5:
        raise ValueError(f"expected 5 parts in ufw's state, got {len(parts)}")
    chain_status, defaults, added, app_files, profiles = parts
    profiles = profiles.rstrip("\n")
    status = parse_status(chain_status, defaults)
    apps = parse_app_profiles(app_files)
    for name, ports in stored_app_ports(added).items():
        apps[name] = tuple(dict.fromkeys((*apps.get(name, ()), *ports)))
    return {
        **status,
        "rules": parse_rules(added, status["ipv6"]),
        "apps": apps,
        "profiles": None if profiles == NO_FILE else profiles,
    }


@dataclass(frozen=True)
class RuleView:
    """What one ufw rule lets in: its action, source, ports (None = every port) or app."""

    action: str
    inbound: bool
    sources: tuple
    ports: tuple | None  # of Port; None when the rule names no port
    app: str
    comment: str
    destinations: tuple = ANYWHERE
    interface: str = ""  # `in on IFACE`: only packets arriving there


def _ports_of(spec, proto):
    protos = [proto] if proto in ("tcp", "udp") else ["tcp", "udp"]
    numbers = spec.split(",")
    ports = []
    for number in numbers:
        first, _, last = number.partition(":")
        if not (first.isascii() and first.isdigit() and (not last or last.isascii() and last.isdigit())):
            return None  # a service name ufw did not translate: unknown ports
        ports += [Port(int(first), int(last or first), p) for p in protos]
    return tuple(ports)


def view_rule(args: tuple[str, ...]) -> RuleView:
    """Read one rule in the canonical forms `ufw show added` prints."""
    words = list(args)
    action = words.pop(0)
    inbound, sources, destinations, port_spec, proto, app, comment = True, ANYWHERE, ANYWHERE, None, None, "", ""
    interface = ""
    if words and words[0] in ("in", "out"):
        inbound = words.pop(0) == "in"
    extended = any(w in ("from", "to", "on") for w in words)
    # `port` and `app` after `from` are the source's: they narrow who may connect, not where to, so a rule
    # with a source port alone (`allow from any port 53`) lets in every port
    side = "to"
    while words:
        word = words.pop(0)
        if word == "comment":
            comment = words.pop(0)
        elif word in ("log", "log-all"):
            continue
        elif not extended:
            port_spec, _, proto = word.partition("/")
            if not port_spec[:1].isdigit():
                app, port_spec = word, None
        elif word == "from":
            side, sources = word, _networks(words.pop(0))
        elif word == "to":
            side, destinations = word, _networks(words.pop(0))
        elif word == "proto":
            proto = words.pop(0)
        elif word in ("port", "app"):
            value = words.pop(0)
            if side == "to" and word == "port":
                port_spec = value
            elif side == "to":
                app = value
        elif word == "on":
            interface = words.pop(0)
    ports = _ports_of(port_spec, proto) if port_spec else None
    return RuleView(action, inbound, sources, ports, app, comment, destinations, interface)


def _networks(address: str) -> tuple:
    return ANYWHERE if address in ("any", *ANYWHERE_TEXT) else (ipaddress.ip_network(address, strict=False),)


def rule_of_tuple(line: str) -> RuleView | None:
    """One `### tuple ###` line → what it lets in, with the ports ufw stored (an app rule's too: ufw writes
    the profile's ports into the line when the rule is added); None for a route rule or a malformed line."""
    rule = read_tuple(line)
    if rule is None:
        return None
    ports = None if rule.dport == "any" else _ports_of(rule.dport, rule.protocol)
    return RuleView(
        rule.action,
        rule.direction == "in",
        _networks(rule.src),
        ports,
        rule.dapp,
        rule.comment,
        _networks(rule.dst),
        rule.interface_in,
    )


def ports_of_text(text: str) -> tuple[Port, ...]:
    """A `ports=` text ("80,443/tcp|10024:10032/tcp") → tuple of Port."""
    ports: list[Port] = []
    for entry in text.split("|"):
        spec, _, proto = entry.partition("/")
        ports += _ports_of(spec, proto) or []
    return tuple(ports)


def restriction_list(restrictions) -> list[Restriction]:
    """{ports text: [source subnets]} → the Restrictions: ports only those sources may reach."""
    return [
        Restriction(ports_of_text(ports), tuple(ipaddress.ip_network(s, strict=False) for s in sources))
        for ports, sources in restrictions.items()
    ]


def widened(args, restrictions, apps) -> tuple[Port, ...]:
    """The restricted ports a rule lets in from a source their restriction does not allow (none: the rule
    widens nothing). restrictions: from restriction_list; apps: profile name → Ports, for app rules (an app
    nobody knows the ports of may let in any of them: it is taken as opening every port, so that its rule
    goes rather than a port it opens staying open)."""
    rule = view_rule(args)
    if rule.action not in ("allow", "limit") or not rule.inbound:
        return ()
    return opened_wider(rule.sources, apps.get(rule.app) if rule.app else rule.ports, restrictions)


@dataclass(frozen=True)
class RulePlan:
    add: tuple
    delete_owned: tuple
    delete_widening: tuple
    delete_unmanaged: tuple
    kept_unmanaged: tuple
    opened: tuple = ()  # per rule of delete_widening, the restricted ports it opens wider than allowed

    @property
    def changes(self):
        return bool(self.add or self.delete_owned or self.delete_widening or self.delete_unmanaged)


def without_comment(rule):
    return rule[:-2] if rule[-2:-1] == ("comment",) else rule


def plan_rules(
    current: Iterable[tuple[str, ...]],
    rules: Iterable[tuple[str, ...]],
    owner: str,
    restrictions: Mapping[str, Iterable[str]] | None = None,
    apps: Mapping[str, str] | None = None,
    purge: bool = False,
    host_apps: Mapping[str, Iterable[Port]] | None = None,
) -> RulePlan:
    """What to change so ufw's user rules are `rules`, each tagged with the comment `owner`.
    current: rules from parse_show_added. Owned rules (tagged `owner`) no longer wanted are deleted; an
    untagged rule equal to a wanted one but for the tag is adopted (ufw updates it in place when added);
    an unmanaged rule that opens a port of `restrictions` ({ports text: [subnets]}) to other sources is
    deleted, an app rule included (`ufw allow SomeProfile` whose profile opens 7071); other unmanaged rules
    are kept and listed, or deleted when `purge`. apps: profile name → ports text, the profiles the deploy
    writes; host_apps: profile name → Ports, what the host's profiles and stored rules say (the state's
    'apps'): an app rule opens the ports of both."""
    # a deploy asks the same question several times per host (will ufw change? what to add? to delete?)
    return _plan_rules(
        tuple(tuple(r) for r in current),
        tuple(tuple(r) for r in rules),
        owner,
        tuple((ports, tuple(sources)) for ports, sources in (restrictions or {}).items()),
        tuple((apps or {}).items()),
        purge,
        tuple((name, tuple(ports)) for name, ports in (host_apps or {}).items()),
    )


@functools.lru_cache(maxsize=1024)
def _plan_rules(current, rules, owner, restrictions, apps, purge, host_apps=()) -> RulePlan:
    wanted = tuple((*without_comment(rule), "comment", owner) for rule in rules)
    wanted_bare = {without_comment(r) for r in wanted}
    comments = {r: view_rule(r).comment for r in current}
    owned = [r for r in current if comments[r] == owner]
    unmanaged = [r for r in current if comments[r] != owner and without_comment(r) not in wanted_bare]
    limits = restriction_list(dict(restrictions))
    app_ports = dict(host_apps)
    for name, text in apps:
        app_ports[name] = tuple(dict.fromkeys((*app_ports.get(name, ()), *ports_of_text(text))))
    opened = tuple((r, widened(r, limits, app_ports)) for r in unmanaged)
    widening = tuple(r for r, ports in opened if ports)
    rest = tuple(r for r in unmanaged if r not in widening)
    return RulePlan(
        add=tuple(r for r in wanted if r not in current),
        delete_owned=tuple(r for r in owned if r not in wanted),
        delete_widening=widening,
        delete_unmanaged=rest if purge else (),
        kept_unmanaged=() if purge else rest,
        opened=tuple(ports for _, ports in opened if ports),
    )


def plan_profiles(current_text: str | None, profiles: Iterable[Profile]) -> str | None:
    """The profile file's new text, or None when it already reads so. current_text: the state's
    'profiles' (None when there is no file)."""
    text = render_profiles(profiles)
    return None if current_text == text.rstrip("\n") else text


def plan_defaults(state: Mapping, incoming: str, outgoing: str) -> tuple[tuple[str, str], ...]:
    """(policy, direction) pairs to set: only those that differ."""
    return tuple(
        (value, direction)
        for direction, value in (("incoming", incoming), ("outgoing", outgoing))
        if state[direction] != value
    )


# Which ufw commands may run on an ACTIVE firewall without opening it, even for a moment (ufw 0.36,
# src/frontend.py and src/backend_iptables.py; measured in the lab with a prober connecting every 10 ms):
# - `ufw allow|deny|…`, `ufw --force delete …`, `ufw app update NAME`, `ufw logging LEVEL`: they rewrite
#   user.rules and reload only ufw's user and logging chains (_reload_user_rules, update_logging); at worst
#   an allowed port refuses for a moment. Safe.
# - `ufw --force enable` on an inactive firewall: it starts from nothing filtered. Safe (and on an active one
#   it reloads nothing at all).
# - `ufw reload` and `ufw default …` (even unchanged): disable, then enable (frontend.set_default_policy calls
#   stop_firewall and start_firewall); the stop flushes every chain and sets INPUT to ACCEPT (ufw-init-functions
#   ufw_stop) for seconds, and a failed start leaves ufw off (ENABLED=no). Never run here: default_policy_script
#   does what `ufw default` does without them.
BUILTIN = {"incoming": "INPUT", "outgoing": "OUTPUT"}
TARGETS = {"deny": "DROP", "reject": "REJECT", "allow": "ACCEPT"}


def default_policy_script(changes: Iterable[tuple[str, str]], lock_wait: int = 60) -> str:
    """Shell that sets default policies ((policy, direction) pairs, plan_defaults') as `ufw default` would, but
    without its disable and enable: /etc/default/ufw and after*.rules as ufw writes them
    (backend_iptables.set_default_policy), the kernel's policy chains changed in ONE iptables-restore
    transaction per family while ufw is active (the built-in chain's policy, ufw-reject-*, ufw-track-* and
    ufw-skip-to-policy-*, as ufw-init-functions ufw_start loads them), then `ufw logging LEVEL` for the log
    rules that depend on the policy (user.rules' LOGGING section and the LOG-only chains). A lab test checks
    that files and kernel then equal what `ufw default` and a reload give."""
    lines = ["set -e"]
    for policy, direction in changes:
        chain, target = BUILTIN[direction], TARGETS[policy]
        low = chain.lower()
        lines.append(f"sed -i 's/^DEFAULT_{chain}_POLICY=.*/DEFAULT_{chain}_POLICY=\"{target}\"/' /etc/default/ufw")
        old, new = ("BLOCK", "ALLOW") if policy == "allow" else ("ALLOW", "BLOCK")
        lines.append(f"sed -i 's/UFW {old}/UFW {new}/g' /etc/ufw/after.rules /etc/ufw/after6.rules")
        for exe, prefix in (("iptables", "ufw"), ("ip6tables", "ufw6")):
            body = [
                "*filter",
                f":{chain} {'DROP' if target == 'REJECT' else target} [0:0]",
                *(f"-F {prefix}-{name}-{low}" for name in ("reject", "track", "skip-to-policy")),
                *([f"-A {prefix}-reject-{low} -j REJECT"] if target == "REJECT" else []),
                *(
                    f"-A {prefix}-track-{low} -p {proto} -m conntrack --ctstate NEW -j ACCEPT"
                    for proto in (("tcp", "udp") if target == "ACCEPT" else ())
                ),
                f"-A {prefix}-skip-to-policy-{low} -j {target}",
                "COMMIT",
            ]
            restore = "printf '%s\\n' " + " ".join(shlex.quote(line) for line in body)
            active = f"{exe} -n -L {prefix}-user-input >/dev/null 2>&1"
            lines.append(f"if {active}; then {restore} | {exe}-restore -n -w {int(lock_wait)}; fi")
    # ufw's start does the same for a missing level: `low`
    lines.append(
        "level=$(sed -n 's/^LOGLEVEL=//p' /etc/ufw/ufw.conf); LC_ALL=C ufw logging \"${level:-low}\" >/dev/null"
    )
    return "\n".join(lines)


def changes_pending(
    state: Mapping, profiles: Iterable[Profile], rule_arguments: dict, incoming: str, outgoing: str
) -> bool:
    """Would the operations change anything? The same planners they use, so the two cannot drift."""
    return bool(
        not state["active"]
        or plan_defaults(state, incoming, outgoing)
        or plan_rules(state["rules"], **rule_arguments, host_apps=state["apps"]).changes
        or plan_profiles(state["profiles"], profiles) is not None
    )
