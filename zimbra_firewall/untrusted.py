"""The trust boundary: every value that comes from Zimbra's LDAP, from DNS or from a host's output is checked
here before it can reach a command or a rule. Pure, standard library only.

group_data and the inventory are the admin's and trusted (zimbra_firewall/settings.py checks them for
mistakes). What LDAP holds is not: anyone with Zimbra admin rights, or with a shell as the zimbra user on any
node (localconfig.xml holds the LDAP password), can write any value there. So a value is accepted only in
the narrow form its use needs (a host name, a port number, an address, a URL), and a value that fails is
left out with a warning that shows it safely (`shown`), never an exception that would stop every host.
"""

import ipaddress
import re
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 1123 host names: labels of letters, digits and hyphens, neither first nor last a hyphen, 1-63 characters;
# 253 characters in all. ASCII only (re.ASCII: \w and friends would take other scripts' letters).
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)
_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)  # not \d: int() takes '٣' and str.isdigit() takes '²'
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", re.ASCII)  # zimbraServiceEnabled: mailbox, zimbraAdmin…
_URL_TEXT = re.compile(r"[\x21-\x7e]+", re.ASCII)  # printable ASCII without spaces
SHOWN_LENGTH = 120


class Refused(ValueError):
    """A value that is not in the form its use needs; the message says why."""


def shown(value: object, limit: int = SHOWN_LENGTH, quote: bool = True) -> str:
    """A value as a warning may print it: every character outside printable ASCII escaped (no terminal
    escape, no bidirectional override, no line break reaches the terminal), cut at `limit`, in quotes."""
    text = str(value)
    escaped = "".join(c if " " <= c <= "~" and c not in "\\'" else _escape(c) for c in text[:limit])
    more = f"… ({len(text)} characters)" if len(text) > limit else ""
    return f"'{escaped}'{more}" if quote else escaped + more


# what a terminal acts on rather than prints: C0 and C1 controls, DEL, bidirectional overrides and isolates
_TERMINAL_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """Text for a terminal, lines kept: every character a terminal would act on escaped (a report that shows
    what hosts said, such as process names, may print it whole)."""
    return _TERMINAL_CONTROL.sub(lambda match: _escape(match.group()), text)


def _escape(character: str) -> str:
    if character in "\\'":
        return "\\" + character
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _ip_literal(text: str) -> IPAddress | None:
    """An IP address literal, or None when `text` is not one; refused with an IPv6 zone (`%eth0`), since
    `ipaddress` takes any text after the `%` and no tool a rule reaches (ufw, iptables) takes a zone."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if getattr(ip, "scope_id", None) is not None:
        raise Refused("an IPv6 address with a zone (%…)")
    return ip


def host_name(text: str) -> str:
    """A DNS host name (RFC 1123) or an IP address literal; returned as written, a final dot dropped."""
    if not isinstance(text, str):
        raise Refused("not text")
    ip = _ip_literal(text)
    if ip is not None:
        return str(ip)
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > 253:
        raise Refused("not a host name (1-253 characters)")
    if not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise Refused("not a host name (letters, digits and inner hyphens between dots)")
    return name


def port_number(text: str) -> int:
    """A port number, 1-65535, in ASCII digits alone (no sign, no space, no protocol)."""
    if not isinstance(text, str) or not _PORT.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise Refused("not a port number (1-65535)")
    return int(text)


def address(text: str) -> IPAddress:
    """An IP address, as `ipaddress` parses it, without an IPv6 zone."""
    ip = _ip_literal(text) if isinstance(text, str) else None
    if ip is None:
        raise Refused("not an IP address")
    return ip


def service(text: str) -> str:
    """A Zimbra service name (zimbraServiceEnabled): letters, digits, _ and -."""
    if not isinstance(text, str) or not _SERVICE.fullmatch(text):
        raise Refused("not a service name")
    return text


def flag(text: str) -> str:
    """A Zimbra boolean: TRUE or FALSE (any case), returned upper-case."""
    if not isinstance(text, str) or text.upper() not in ("TRUE", "FALSE"):
        raise Refused("not TRUE or FALSE")
    return text.upper()


def mode(text: str) -> str:
    """A Zimbra enumerated value (zimbraMailMode's http, https, both, mixed, redirect; zimbraIPMode's ipv4,
    ipv6, both): ASCII letters and digits, a letter first, returned upper-case."""
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,31}", text):
        raise Refused("not a word of letters and digits")
    return text.upper()


def host_and_port(text: str) -> tuple[str, int | None]:
    """ "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address → (host, port or None)."""
    if not isinstance(text, str):
        raise Refused("not text")
    ip = _ip_literal(text)
    if ip is not None:
        return str(ip), None
    if text.startswith("["):
        inside, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise Refused("not [address]:port")
        return str(address(inside)), port_number(rest[1:]) if rest else None
    name, colon, port = text.partition(":")
    return host_name(name), port_number(port) if colon else None


def url(text: str) -> tuple[str, int | None]:
    """An http(s) URL without user information → (host, port or None)."""
    if not isinstance(text, str) or not _URL_TEXT.fullmatch(text):
        raise Refused("not a URL (printable characters, no spaces)")
    try:
        parts = urlsplit(text)
    except ValueError as why:  # an unclosed [ of an IPv6 literal
        raise Refused(f"not a URL ({why})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise Refused("not an http or https URL")
    if "@" in parts.netloc:
        raise Refused("a URL with user information")
    return host_and_port(parts.netloc)


def endpoint(text: str) -> tuple[str, int | None]:
    """What a Zimbra attribute names a server by: a URL, or host[:port] → (host, port or None)."""
    return url(text) if "://" in str(text) else host_and_port(text)


def endpoint_text(text: str) -> str:
    """An endpoint value, checked, as written (its users read host and port with `endpoint`)."""
    endpoint(text)
    return text


TEXT_LENGTH = 10240  # zimbra-attrs.xml's max for zimbraMtaMyNetworks, the longest free text read


def free_text(text: str) -> str:
    """A value the audit only parses and reports (Postfix's mynetworks, mailboxd's trusted addresses): any
    text, as written, up to TEXT_LENGTH characters (beyond, cut and marked). Refusing a strange one would make
    the server seem to inherit cn=config's value, which it does not: its parser says what it cannot judge
    instead. It never reaches a command or a rule; a report shows it through `shown`."""
    if not isinstance(text, str):
        raise Refused("not text")
    # longer: cut, with a mark its parser cannot judge, rather than left out (which would look inherited)
    return text if len(text) <= TEXT_LENGTH else text[:TEXT_LENGTH] + " …(cut)"


# How each kind of value is checked, and the form kept
KINDS = {
    "name": host_name,
    # 0: Zimbra's "not used" for a port attribute (zm-mailbox CheckPortConflict.java): the service listens nowhere
    "port": lambda text: "0" if text == "0" else str(port_number(text)),
    "address": lambda text: str(address(text)),
    "service": service,
    "flag": flag,
    "mode": mode,
    "endpoint": endpoint_text,
    "text": free_text,
}


def checked(kind: str, text: str) -> str:
    """The value in the form `kind` needs, or Refused."""
    return KINDS[kind](text)


def peer_address_problem(ip: IPAddress) -> str | None:
    """Why an address can never be a Zimbra peer's, or None: a rule from it would let in nobody real, or
    everybody (0.0.0.0 and :: mean "any" to some tools), or a whole link."""
    if getattr(ip, "scope_id", None) is not None:
        return "an address with a zone (%…)"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_link_local:
        return "a link-local address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return "an IPv4-mapped IPv6 address"
    if ip.version == 4 and ip.is_reserved:
        return "a reserved or broadcast address"
    return None
