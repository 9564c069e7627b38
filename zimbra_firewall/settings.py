"""Every setting the deploy reads from group_data: name, default, allowed values, one line of help and
its check. The one source of the defaults, of the per-key validation (zimbra_firewall/policy.py) and of
the README's configuration table:

    python -m zimbra_firewall.settings      # prints the table; tests/test_settings.py keeps the README equal
"""

import copy
import difflib
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal

from zimbra_firewall.access import Network, Port
from zimbra_firewall.untrusted import Refused, host_and_port, service

# pyinfra's own host data and the connectors', never a typo of ours
FOREIGN_KEY = re.compile(r"^(_|ssh_|winrm_|docker|chroot_|local_|vagrant|terraform|podman|lab_)")
TABLE_START = "<!-- settings table: python -m zimbra_firewall.settings -->"
TABLE_END = "<!-- end of settings table -->"
Auto = Literal["auto"]


class PolicyError(ValueError):
    """A group_data value that cannot be applied; the message names the key."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"group_data {key}: {reason}")
        self.key = key


# --- checks: (value, key) → the value to use, or PolicyError ---------------------------------------------


def boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(key, f"must be True or False, not {value!r}")
    return value


def integer(low: int, high: int, what: str) -> Callable[[Any, str], int]:
    def check(value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise PolicyError(key, f"{value!r} is not {what} ({low} to {high})")
        return value

    return check


def choice(*options: str) -> Callable[[Any, str], str]:
    def check(value: Any, key: str) -> str:
        if value not in options:
            listed = ", ".join(options[:-1]) + f" or {options[-1]}" if len(options) > 2 else " or ".join(options)
            raise PolicyError(key, f"{value!r}: use {listed}")
        return value

    return check


def text(pattern: str, what: str, max_len: int) -> Callable[[Any, str], str]:
    def check(value: Any, key: str) -> str:
        if not isinstance(value, str) or not value or len(value) > max_len or not re.fullmatch(pattern, value):
            raise PolicyError(key, f"{value!r} is not {what} (at most {max_len} characters)")
        return value

    return check


def list_of(item: Callable[[Any, str], Any]) -> Callable[[Any, str], tuple]:
    def check(value: Any, key: str) -> tuple:
        if not isinstance(value, (list, tuple)):
            raise PolicyError(key, f"must be a list, not {type(value).__name__} {value!r}")
        return tuple(item(v, key) for v in value)

    return check


def optional_path(value: Any, key: str) -> str:
    if not isinstance(value, str) or "\0" in value or len(value) > 4096:
        raise PolicyError(key, f"{value!r} is not a file path")
    return value


def empty_or(check: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    def either(value: Any, key: str) -> Any:
        return "" if value == "" else check(value, key)

    return either


def auto_or(check: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    def either(value: Any, key: str) -> Any:
        if isinstance(value, str) and value != "auto":
            raise PolicyError(key, f"{value!r}: use 'auto' or a list")
        return "auto" if value == "auto" else check(value, key)

    return either


def mapping(value: Any, key: str) -> Mapping:
    if not isinstance(value, dict):
        raise PolicyError(key, f"must be a mapping, not {value!r}")
    return MappingProxyType(dict(value))


def parse_port(text: str | int, key: str) -> Port:
    """'7071/tcp', '10024:10032/tcp' or a bare number (tcp) → Port."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise PolicyError(key, f"{text!r} is not a port (write 7071/tcp or 10024:10032/tcp)")
    match = re.fullmatch(r"(\d{1,5})(?::(\d{1,5}))?(?:/(tcp|udp))?", str(text).strip())
    if not match:
        raise PolicyError(key, f"{text!r} is not a port (write 7071/tcp or 10024:10032/tcp)")
    first, last = int(match.group(1)), int(match.group(2) or match.group(1))
    for number in (first, last):
        if not 1 <= number <= 65535:
            raise PolicyError(key, f"port {number} is outside 1-65535")
    if last < first:
        raise PolicyError(key, f"range {text!r} ends before it starts")
    return Port(first, last, match.group(3) or "tcp")


def subnet(value: Any, key: str) -> Network:
    if not isinstance(value, str):
        raise PolicyError(key, f"{value!r} is not a subnet in CIDR notation")
    try:
        network = ipaddress.ip_network(value.strip())
    except ValueError as error:
        if "host bits set" in str(error):
            exact = ipaddress.ip_network(value.strip(), strict=False)
            raise PolicyError(key, f"{value!r} has host bits set (did you mean {exact}?)") from None
        raise PolicyError(key, f"{value!r} is not a subnet in CIDR notation") from None
    if "/" not in value:
        raise PolicyError(key, f"{value!r} needs a prefix length (for one address: {network})")
    if network.prefixlen == 0:
        raise PolicyError(key, f"{value!r} is everyone: that is what `public` exposure is for")
    return network


def ip_address(value: Any, key: str) -> str:
    try:
        ipaddress.ip_address(value)
    except (ValueError, TypeError):
        raise PolicyError(key, f"{value!r} is not an IP address") from None
    return value


def host_port(value: Any, key: str) -> str:
    try:
        host_and_port(value)
    except Refused as why:
        raise PolicyError(key, f"{value!r} is not host[:port]: {why}") from None
    return value


def service_name(value: Any, key: str) -> str:
    try:
        return service(value)
    except Refused as why:
        raise PolicyError(key, f"{value!r} is not a Zimbra service name (zimbraServiceEnabled): {why}") from None


def name(value: Any, key: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9_]+", value):
        raise PolicyError(key, f"{value!r} is not a group name")
    return value


@dataclass(frozen=True)
class ExtraAllow:
    """A site's own flow: `port` reachable from exactly `sources`, on the nodes running one of the services
    `on` (every node when empty)."""

    port: Port
    sources: tuple[Network, ...]
    on: tuple[str, ...] = ()


EXTRA_ALLOW_EXAMPLE = "{'port': '7306/tcp', 'from': ['10.0.0.14/32'], 'on': ['mailbox']}"


def extra_allow(value: Any, key: str) -> ExtraAllow:
    if not isinstance(value, dict) or not {"port", "from"} <= set(value) or set(value) - {"port", "from", "on"}:
        raise PolicyError(key, f"{value!r}: write each as {EXTRA_ALLOW_EXAMPLE}")
    sources = list_of(subnet)(value["from"], key)
    if not sources:
        raise PolicyError(key, f"{value!r}: `from` lists no source")
    return ExtraAllow(parse_port(value["port"], key), sources, list_of(service_name)(value.get("on", []), key))


# --- the settings --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    allowed: str  # for the README
    help: str  # one line, for the README
    check: Callable[[Any, str], Any]


def setting(default: Any, allowed: str, help: str, check: Callable[[Any, str], Any]) -> Any:
    """One field of Settings: its schema (group_data's default, the README's text, the check) in the metadata;
    no dataclass default, so a Settings is only ever made with every value checked (read_settings)."""
    return field(metadata={"schema": (default, allowed, help, check)})


@dataclass(frozen=True)
class Settings:
    """Every setting the deploy reads from group_data, checked, in the form the code uses (subnets as
    ipaddress networks, lists as tuples, mappings read-only). The fields are the schema, in README order."""

    management_subnets: tuple[Network, ...] = setting(
        [],
        "IPv4/IPv6 CIDRs (required)",
        "the admins' subnets: SSH and the local-only ports are allowed from these only",
        list_of(subnet),
    )
    zimbra_nodes: tuple[Network, ...] = setting(
        [],
        "IPv4/IPv6 CIDRs",
        "instead of the peers read from Zimbra's LDAP: every port other nodes reach on this one (a "
        '"Zimbra Intra" profile) is allowed from these subnets',
        list_of(subnet),
    )
    peer_networks: tuple[Network, ...] = setting(
        [],
        "IPv4/IPv6 CIDRs",
        "where Zimbra's nodes may be: a peer address (from LDAP and DNS) outside these gets no rule, with a "
        "warning (the audit shows it too); empty: any address but those no peer can have (0.0.0.0, ::, "
        "loopback, multicast, link-local, IPv4-mapped)",
        list_of(subnet),
    )
    optional_groups: tuple[str, ...] = setting(
        [],
        "`client_certificates` (3443), `chat` (5222, 5223), `admin_proxy` (9071)",
        "optional catalogue groups to open",
        list_of(name),
    )
    exposure_overrides: Mapping[str, Any] = setting(
        {},
        'exposure class → ports, e.g. `{"public": ["80/tcp"]}`',
        "move ports between classes or add ports the catalogue lacks (e.g. 80 public for ACME HTTP-01)",
        mapping,
    )
    extra_allows: tuple[ExtraAllow, ...] = setting(
        [],
        f"items like `{EXTRA_ALLOW_EXAMPLE}`",
        "a site's own flows outside Zimbra's (a separate MariaDB host, a backup server's SSH, a monitoring host): "
        "the port opened to exactly these CIDRs, on the nodes running one of `on`'s services (every node "
        "without `on`); owned and tagged like every rule (a hand-typed rule for the same flow is never widening)",
        list_of(extra_allow),
    )
    profile_mode: str = setting(
        "split",
        "`split`, `seed`",
        "`seed`: the how-to's single `Zimbra` profile open to everyone, with a warning",
        choice("split", "seed"),
    )
    profile_names: Mapping[str, str] = setting(
        {"public": "Zimbra Public", "local-only": "Zimbra Local", "intra": "Zimbra Intra"},
        "letters, digits, space, `_.+-`; at most 64 characters",
        "ufw application profile names",
        mapping,
    )
    allow_management_all_ports: bool = setting(
        False,
        "`True`, `False`",
        "the how-to's blanket `ufw allow from <subnet>` (every port) for the management subnets",
        boolean,
    )
    purge_unmanaged_rules: bool = setting(
        False,
        "`True`, `False`",
        "also delete every rule this deploy did not write (rules that open a non-public port wider "
        "than the policy are always deleted)",
        boolean,
    )
    firewall_ssh_port: int = setting(
        22,
        "1-65535",
        "the SSH port allowed from the management subnets, first",
        integer(1, 65535, "a port number"),
    )
    firewall: str = setting(
        "auto",
        "`auto`, `ufw`, `firewalld`",
        "the host's firewall; `auto`: firewalld where it runs (RHEL, Rocky, Alma, Oracle Linux), else ufw",
        choice("auto", "ufw", "firewalld"),
    )
    firewalld_remove_services: tuple[str, ...] = setting(
        ["cockpit"],
        "firewalld service names",
        "firewalld hosts: services removed from the zones packets land in, even where they widen no Zimbra port "
        "(RHEL adds `cockpit`, the web console's root login on 9090, open to everyone); SSH open to everyone goes "
        "anyway (it widens `firewall_ssh_port`)",
        list_of(text(r"[A-Za-z0-9][A-Za-z0-9_-]*", "a firewalld service name", 64)),
    )
    firewalld_accept_zones: tuple[str, ...] = setting(
        [],
        "firewalld zone names",
        "firewalld hosts: zones other than the default that may keep target ACCEPT (a Docker or libvirt bridge's "
        "zone); any other such zone, or policy to the host, refuses the host, since it lets everything in",
        list_of(text(r"[A-Za-z0-9][A-Za-z0-9_-]*", "a firewalld zone name", 17)),
    )
    default_incoming: str = setting(
        "deny",
        "`deny`, `reject`, `allow`",
        "the default incoming policy (ufw's default; firewalld: the target of the zones packets land in)",
        choice("deny", "reject", "allow"),
    )
    default_outgoing: str = setting(
        "allow",
        "`deny`, `reject`, `allow`",
        "ufw's default outgoing policy (firewalld filters nothing outgoing: `allow` only)",
        choice("deny", "reject", "allow"),
    )
    rule_comment: str = setting(
        "zimbra-firewall",
        "letters, digits, `_.:-`; at most 64 characters",
        "the comment tag on every rule this deploy owns",
        text(r"[A-Za-z0-9][A-Za-z0-9_.:-]*", "a plain tag (letters, digits, _ . : -)", 64),
    )
    manage_memcached: bool = setting(
        True,
        "`True`, `False`",
        "`False`: leave memcached's attributes (and memcached) as Zimbra has them; its port's rules still follow "
        "the policy",
        boolean,
    )
    memcached_bind_addresses: Auto | tuple[str, ...] = setting(
        "auto",
        "`auto`, IP addresses",
        "`zimbraMemcachedBindAddress` on memcached nodes; `auto`: 127.0.0.1 and the node's own addresses its "
        "host name resolves to, where the proxies' nginx connects",
        auto_or(list_of(ip_address)),
    )
    memcached_client_servers: Auto | tuple[str, ...] = setting(
        "auto",
        "`auto`, `host[:port]` values",
        "`zimbraMemcachedClientServerList` on mailbox nodes; `auto`: 127.0.0.1 on a node that also runs "
        "memcached, else left as Zimbra has it",
        auto_or(list_of(host_port)),
    )
    zimbra_read: str = setting(
        "ldap",
        "`ldap`, `zmprov`",
        "read Zimbra's servers with one ldapsearch (no JVM), or with `zmprov -l gas` and one `gs` per server",
        choice("ldap", "zmprov"),
    )
    rollback_seconds: int = setting(
        120,
        "5-3600",
        "the dead-man's switch: ufw is restored this long after a change unless a new SSH connection confirmed it",
        integer(5, 3600, "a number of seconds"),
    )
    allow_lockout_risk: bool = setting(
        False,
        "`True`, `False`",
        "skip the preflight (your address outside `management_subnets`, or SSH on another port)",
        boolean,
    )
    xtables_lock_wait: int = setting(
        60,
        "1-3600",
        "seconds to wait for another program's xtables lock (iptables-legacy hosts) before a ufw step fails",
        integer(1, 3600, "a number of seconds"),
    )
    audit_json: str = setting(
        "",
        "a file path",
        "audit.py: also write the report as JSON there (docs/audit.schema.json)",
        optional_path,
    )
    audit_html: str = setting(
        "",
        "a file path",
        "audit.py: also write the report as one HTML page there (a node × port matrix, the findings and their fixes)",
        optional_path,
    )
    audit_probe: bool = setting(
        False,
        "`True`, `False`",
        "audit.py: also connect from the controller to every TCP listener, and say where that disagrees with the rules",
        boolean,
    )
    audit_probe_via: str = setting(
        "",
        "a command prefix",
        "audit.py: run the controller's probe through this (the lab's inventory sets `ip netns exec <netns>`)",
        empty_or(text(r"[A-Za-z0-9_./ =:-]+", "a command prefix (words of letters, digits and _ . / = : -)", 200)),
    )


SETTINGS = tuple(Setting(f.name, *f.metadata["schema"]) for f in fields(Settings))
BY_NAME = {setting.name: setting for setting in SETTINGS}


def defaults() -> dict:
    return {setting.name: copy.deepcopy(setting.default) for setting in SETTINGS}


def read_settings(host_data: dict) -> Settings:
    """host_data (pyinfra's host.data.dict()) → every setting, checked, defaults filled in. A key that is
    close to a setting's name is refused as a typo; pyinfra's own keys pass."""
    for key in host_data:
        if key in BY_NAME or FOREIGN_KEY.match(key):
            continue
        close = difflib.get_close_matches(key, BY_NAME, n=1, cutoff=0.75)
        if close:
            raise PolicyError(key, f"unknown key (did you mean {close[0]!r}?)")
    return Settings(
        **{
            s.name: s.check(host_data[s.name] if s.name in host_data else copy.deepcopy(s.default), s.name)
            for s in SETTINGS
        }
    )


def render_table() -> str:
    """The README's configuration table."""
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for setting in SETTINGS:
        rows.append(f"| `{setting.name}` | `{setting.default!r}` | {setting.allowed} | {setting.help} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(render_table(), end="")
