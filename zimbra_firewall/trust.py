"""Whom Zimbra's own configuration trusts, past what the firewall lets in: the networks Postfix lets relay
without authentication (zimbraMtaMyNetworks, which zmconfigd writes into main.cf as `mynetworks`:
Zimbra/zm-ldap-utilities conf/zmconfigd.cf, `POSTCONF mynetworks VAR zimbraMtaMyNetworks`), and the proxy
addresses mailboxd takes a client's address from (zimbraMailTrustedIP) or never throttles
(zimbraHttpThrottleSafeIPs). Pure, standard library only.

The values are LDAP's, checked only as text (zimbra_firewall/untrusted.py free_text): each is parsed here,
what cannot be read is said as such, and nothing of a value reaches a command: the audit shows it.
"""

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from zimbra_firewall.access import Network, holds, network_order
from zimbra_firewall.untrusted import IPAddress, Refused, address, host_name

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
# Postfix's list separators (match_list.c: CHARS_COMMA_SP); text inside {} is one item (CHARS_BRACE)
_SEPARATORS = ", \t\r\n"
_PREFIX = re.compile(r"[0-9]{1,3}", re.ASCII)
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


@dataclass(frozen=True)
class Pattern:
    """One item of a mynetworks value. network: the addresses it matches, or None when Postfix reads it as
    something the audit cannot judge (`why` says what)."""

    text: str  # as written, without its leading '!'
    negated: bool  # '!': a client it matches is not in mynetworks, whatever later items say
    network: Network | None
    why: str = ""


@dataclass(frozen=True)
class RelayTrust:
    """A mynetworks value judged against the networks that may relay."""

    wider: tuple[Pattern, ...]  # the items that let relay from outside them
    unjudged: tuple[tuple[str, str], ...]  # (item as written, what Postfix makes of it)


def postfix_items(value: str) -> list[str]:
    """A list parameter's items as Postfix splits them (match_list.c match_list_parse, mystrtokq): at commas
    and white space, but not inside {}; an unclosed { runs to the end."""
    items, current, depth = [], "", 0
    for char in value:
        if char in _SEPARATORS and depth == 0:
            if current:
                items.append(current)
            current = ""
            continue
        if char == "{":
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        current += char
    return [*items, current] if current else items


def mynetworks_patterns(value: str) -> list[Pattern]:
    """A mynetworks value → its patterns, in order. Postfix (match_list.c) reads an item starting with / as a
    file of more patterns, one with a ':' outside [] as a type:table lookup (so IPv6 must be in []), and any
    other as an address or network ("10.0.0.0/24", "[2001:db8::]/64", "[::1]") or else a host name."""
    patterns = []
    for item in postfix_items(value):
        text = item.lstrip("!")
        negated = (len(item) - len(text)) % 2 == 1  # each '!' turns the match over
        network, why = _read_pattern(text)
        patterns.append(Pattern(text, negated, network, why))
    return patterns


def _read_pattern(text: str) -> tuple[Network | None, str]:
    if not text:
        return None, "a '!' with no pattern after it (Postfix stops with a fatal error)"
    if text.startswith("/"):
        return None, "a file Postfix reads more patterns from"
    if text.startswith("$"):
        return None, "a main.cf parameter Postfix puts in its place"
    written, slash, prefix = text.partition("/")
    if not text.startswith("[") and ":" in text:  # Postfix's MATCH_DICTIONARY
        if _network_of(written, prefix if slash else None):
            return None, "IPv6 outside [], which Postfix reads as a type:table lookup, not as a network"
        return None, "a type:table lookup, whose contents Postfix reads from the table"
    if "{" in text or "}" in text:
        return None, "text in {}, which Postfix takes as a whole"
    if text.startswith("["):
        inside, closed, rest = text[1:].partition("]")
        after = rest[1:] if rest.startswith("/") else None
        network = _network_of(inside, after) if closed and (not rest or after is not None) else None
    else:
        network = _network_of(written, prefix if slash else None)
        if network is None and not slash:
            try:
                host_name(text)
            except Refused:
                pass
            else:
                return None, "a host name or domain: Postfix lets relay every client whose name is in it"
    if network is None:
        return None, "no address, network, host name or table Postfix knows"
    return network, ""


def _network_of(written: str, prefix: str | None) -> Network | None:
    """The network an address and an optional prefix length write (host bits dropped, as a looser reading
    can only find more), or None."""
    try:
        ip = address(written)
    except Refused:
        return None
    if prefix is None:
        return ipaddress.ip_network(ip)
    if not _PREFIX.fullmatch(prefix) or int(prefix) > ip.max_prefixlen:
        return None
    return ipaddress.ip_network(f"{ip}/{prefix}", strict=False)


def _as_ipv4(network: Network) -> Network:
    """An IPv4-mapped IPv6 network (Postfix's own default lists [::ffff:127.0.0.0]/104) as the IPv4 one it
    matches: a dual-stack smtpd sees IPv4 clients in that form."""
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96 and network.subnet_of(_IPV4_MAPPED):
        start = int(network.network_address) & 0xFFFFFFFF
        return ipaddress.IPv4Network((start, network.prefixlen - 96))
    return network


def judge_mynetworks(value: str, trusted: Iterable[Network]) -> RelayTrust:
    """Which items of a mynetworks value let relay from outside `trusted` and loopback? Postfix takes the
    first item that matches a client (match_list_match), so a negated network ("!10.0.0.5") takes its
    addresses out of every item after it; a negated item the audit cannot read is taken to exclude nothing,
    which can only find more."""
    allowed = [*LOOPBACK, *trusted]
    wider, unjudged = [], []
    for pattern in mynetworks_patterns(value):
        if pattern.network is None:
            if not pattern.negated or not pattern.text:
                unjudged.append((pattern.text or "!", pattern.why))
            continue
        network = _as_ipv4(pattern.network)
        if pattern.negated:
            allowed.append(network)
        elif not _covered(network, allowed):
            wider.append(pattern)
    return RelayTrust(tuple(wider), tuple(unjudged))


def _covered(network: Network, networks: list[Network]) -> bool:
    """Is every address of `network` in one of `networks`? (Merged first: two halves cover the whole.)"""
    same = [n for n in networks if n.version == network.version]
    return holds(ipaddress.collapse_addresses(same), network)  # type: ignore[type-var]


def mynetworks_value(trusted: Iterable[Network]) -> str:
    """A mynetworks value of loopback and `trusted` as Zimbra's installer writes one (127.0.0.0/8 [::1]/128,
    then networks, IPv6 in []), without an item another one holds."""
    kept = list(LOOPBACK)
    for network in sorted(set(trusted), key=lambda n: (n.version, n.prefixlen, n)):  # the widest first
        if not holds(kept, network):
            kept.append(network)
    listed = kept[: len(LOOPBACK)] + sorted(kept[len(LOOPBACK) :], key=network_order)
    return " ".join(f"[{n.network_address}]/{n.prefixlen}" if n.version == 6 else str(n) for n in listed)


def java_address_text(ip: IPAddress) -> str:
    """An address as Java's InetAddress.getHostAddress() writes it (IPv6: eight groups, no ::)."""
    if ip.version == 4:
        return str(ip)
    return ":".join(f"{int(group, 16):x}" for group in ip.exploded.split(":"))


def remote_address_text(ip: IPAddress) -> str:
    """A client address as mailboxd's filters compare it: Jetty 9.4's request.getRemoteAddr(), which puts an
    IPv6 one in [] (HostPort.normalizeHost; Zimbra/zm-mailbox RemoteIP.java names IPv6 loopback so:
    "[0:0:0:0:0:0:0:1]")."""
    text = java_address_text(ip)
    return text if ip.version == 4 else f"[{text}]"


def not_trusted(values: Iterable[str], addresses: Iterable[IPAddress]) -> list[IPAddress]:
    """The addresses zimbraMailTrustedIP's values do not trust: mailboxd looks a connection's address up as
    text among them (Zimbra/zm-mailbox RemoteIP.TrustedIPs.isIpTrusted: no network, no other spelling)."""
    listed = set(values)
    return [ip for ip in addresses if remote_address_text(ip) not in listed]


def not_throttle_safe(values: Iterable[str], addresses: Iterable[IPAddress]) -> list[IPAddress]:
    """The addresses the DoSFilter throttles despite its whitelist: zimbraHttpThrottleSafeIPs' values, each
    of which may hold several, comma-separated (Zimbra/zm-mailbox ServerConfig.getAddrListCsv), with what
    DoSFilter.init adds itself. Jetty 9.4's DoSFilter.checkWhitelist compares an item without '/' as text
    (remote_address_text) and takes one with '/' as a network (subnetMatch); an IPv6 network is not counted:
    whether subnetMatch reads the bracketed address it is given is not sure."""
    items = [item.strip() for value in values for item in value.split(",") if item.strip()]
    networks = []
    for item in items:
        written, slash, prefix = item.partition("/")
        network = _network_of(written, prefix) if slash else None
        if network is not None and network.version == 4:
            networks.append(network)
    return [
        ip for ip in addresses if remote_address_text(ip) not in items and not holds(networks, ipaddress.ip_network(ip))
    ]
