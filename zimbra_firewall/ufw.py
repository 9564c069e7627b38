"""ufw's text in and out: profile rendering, `ufw show added` / /etc/default/ufw / state parsing,
and the rule plan. Pure functions, tested on output captured from ufw 0.36.
"""

import ipaddress
import re
import shlex
from dataclasses import dataclass

from .policy import Port

XTABLES_LOCK = "/run/xtables.lock"
# separates the parts of a read that takes one command (a line no ufw output or file holds)
SECTION = "@@zimbra-firewall@@"
NO_FILE = "@@zimbra-firewall-no-file@@"


def wait_for_xtables_lock(seconds):
    """Shell that waits at most `seconds` for the xtables lock, else fails saying why. ufw (through
    iptables-legacy's -w) would wait without end; the lock is only waited for, never held."""
    return (
        f"flock -w {int(seconds)} {XTABLES_LOCK} true || {{ echo 'the xtables lock ({XTABLES_LOCK}) stayed "
        f"held by another process for {int(seconds)} s: another firewall tool is running; retry when it is "
        "done' >&2; exit 1; }"
    )


POLICY_WORDS = {"DROP": "deny", "REJECT": "reject", "ACCEPT": "allow"}
ANYWHERE = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def render_profiles(profiles):
    blocks = [f"[{p.name}]\ntitle={p.title}\ndescription={p.description}\nports={p.ports}\n" for p in profiles]
    return "# Managed by zimbra-firewall: edits are replaced on the next run.\n\n" + "\n".join(blocks)


def parse_show_added(text):
    """`ufw show added` → the rules as argument tuples (the words after `ufw`), in order."""
    rules = []
    for line in text.splitlines():
        if line.startswith("ufw "):
            rules.append(tuple(shlex.split(line)[1:]))
    return rules


def parse_defaults(text):
    """/etc/default/ufw → {'ipv6': bool, 'incoming': …, 'outgoing': …}; readable while ufw is inactive."""
    values = dict(re.findall(r'^([A-Z_0-9]+)="?([^"\n]*)"?', text, re.MULTILINE))
    return {
        "ipv6": values.get("IPV6", "yes").lower() == "yes",
        "incoming": POLICY_WORDS.get(values.get("DEFAULT_INPUT_POLICY", ""), "unknown"),
        "outgoing": POLICY_WORDS.get(values.get("DEFAULT_OUTPUT_POLICY", ""), "unknown"),
    }


def parse_state(text):
    """The state read's output (exit status of `iptables -L ufw-user-input`, /etc/default/ufw, `ufw show added`,
    the profile file, separated by SECTION lines) → {'active', 'incoming', 'outgoing', 'ipv6', 'rules',
    'profiles'}; 'profiles' is the profile file's text without its final newline, or None when there is none."""
    parts = re.split(rf"^{SECTION}$\n?", text, maxsplit=3, flags=re.MULTILINE)
    if len(parts) != 4:
        raise ValueError(f"expected 4 parts in ufw's state, got {len(parts)}")
    chain_status, defaults, added, profiles = parts
    # the test `ufw status` makes: its user chain is loaded while ufw is active, missing (1) when not
    if chain_status.strip() not in ("0", "1"):
        raise ValueError(f"iptables could not list ufw's chain (exit status {chain_status.strip()})")
    profiles = profiles.rstrip("\n")
    return {
        **parse_defaults(defaults),
        "active": chain_status.strip() == "0",
        "rules": parse_show_added(added),
        "profiles": None if profiles == NO_FILE else profiles,
    }


@dataclass(frozen=True)
class RuleView:
    """What one ufw rule lets in: its action, source, ports (None = every port) or app."""

    action: str
    inbound: bool
    sources: tuple
    ports: tuple  # of Port; None when the rule names no port
    app: str
    comment: str


def _ports_of(spec, proto):
    protos = [proto] if proto in ("tcp", "udp") else ["tcp", "udp"]
    numbers = spec.split(",")
    ports = []
    for number in numbers:
        first, _, last = number.partition(":")
        if not first.isdigit():
            return None  # a service name ufw did not translate: unknown ports
        ports += [Port(int(first), int(last or first), p) for p in protos]
    return tuple(ports)


def view_rule(args):
    """Read one rule in the canonical forms `ufw show added` prints."""
    words = list(args)
    action = words.pop(0)
    inbound, sources, port_spec, proto, app, comment = True, ANYWHERE, None, None, "", ""
    if words and words[0] in ("in", "out"):
        inbound = words.pop(0) == "in"
    extended = any(w in ("from", "to", "on") for w in words)
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
            source = words.pop(0)
            sources = ANYWHERE if source == "any" else (ipaddress.ip_network(source, strict=False),)
        elif word == "port":
            port_spec = words.pop(0)
        elif word == "proto":
            proto = words.pop(0)
        elif word == "app":
            app = words.pop(0)
        elif word in ("to", "on"):
            words.pop(0)
    ports = _ports_of(port_spec, proto) if port_spec else None
    return RuleView(action, inbound, sources, ports, app, comment)


def _within(sources, allowed):
    return all(any(s.version == a.version and s.subnet_of(a) for a in allowed) for s in sources)


def widens_policy(args, policy, app_ports):
    """True when an unmanaged rule lets in a local-only, intra or loopback-only port from a source
    the policy does not allow for that port. app_ports: profile name → Ports, for app rules."""
    rule = view_rule(args)
    if rule.action not in ("allow", "limit") or not rule.inbound:
        return False
    if rule.app:
        ports = app_ports.get(rule.app)
        if ports is None:
            return False
    else:
        ports = rule.ports
    allowed_from = {
        "local-only": policy.management_subnets,
        "intra": policy.zimbra_nodes,
        "loopback-only": (),
    }
    for exposure, allowed in allowed_from.items():
        restricted = policy.exposure[exposure]
        if not restricted:
            continue
        opens = ports is None or any(p.overlaps(r) for p in ports for r in restricted)
        if opens and not _within(rule.sources, allowed):
            return True
    return False


@dataclass(frozen=True)
class RulePlan:
    add: tuple
    delete_owned: tuple
    delete_widening: tuple
    delete_unmanaged: tuple
    kept_unmanaged: tuple

    @property
    def changes(self):
        return bool(self.add or self.delete_owned or self.delete_widening or self.delete_unmanaged)


def profile_ports(profiles):
    result = {}
    for profile in profiles:
        ports = []
        for entry in profile.ports.split("|"):
            spec, _, proto = entry.partition("/")
            ports += _ports_of(spec, proto) or []
        result[profile.name] = tuple(ports)
    return result


def without_comment(rule):
    return rule[:-2] if rule[-2:-1] == ("comment",) else rule


def plan_rules(current, policy):
    """current: rules from parse_show_added. Owned rules carry the policy's comment tag; an untagged
    rule that equals a wanted one but for the tag is adopted (ufw updates it in place when added)."""
    wanted = set(policy.rules)
    wanted_bare = {without_comment(r) for r in policy.rules}
    owned = [r for r in current if view_rule(r).comment == policy.comment]
    unmanaged = [r for r in current if view_rule(r).comment != policy.comment and without_comment(r) not in wanted_bare]
    app_ports = profile_ports(policy.profiles)
    widening = tuple(r for r in unmanaged if widens_policy(r, policy, app_ports))
    rest = tuple(r for r in unmanaged if r not in widening)
    return RulePlan(
        add=tuple(r for r in policy.rules if r not in current),
        delete_owned=tuple(r for r in owned if r not in wanted),
        delete_widening=widening,
        delete_unmanaged=rest if policy.purge_unmanaged else (),
        kept_unmanaged=() if policy.purge_unmanaged else rest,
    )
