"""Port catalogue + group_data → one validated Policy per host. Pure: no I/O but reading the catalogue.

Every group_data value is checked here, before pyinfra runs a single command on any host; a bad
value raises PolicyError naming the key.
"""

import difflib
import ipaddress
import os
import re
from dataclasses import dataclass, field

import yaml

CATALOGUE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "catalogue.yaml")
EXPOSURES = ("public", "local-only", "intra", "loopback-only")
PROFILE_PATH = "/etc/ufw/applications.d/zimbra"
MULTIPORT_LIMIT = 15  # iptables' multiport match; a range counts as two
SEED_PROFILE = {
    "name": "Zimbra",
    "title": "Zimbra Collaboration Server",
    "description": "Open source server for email, contacts, calendar, and more.",
    "ports": "25,80,110,143,443,465,587,993,995,3443,5222,5223,7071,9071/tcp",
}

# Every key the deploy reads; group_data/all.py gives each its documented default.
KEYS = (
    "management_subnets",
    "zimbra_nodes",
    "optional_groups",
    "exposure_overrides",
    "profile_mode",
    "profile_names",
    "allow_management_all_ports",
    "purge_unmanaged_rules",
    "firewall_ssh_port",
    "default_incoming",
    "default_outgoing",
    "rule_comment",
    "memcached_bind_addresses",
    "memcached_client_servers",
    "memcached_read",
    "rollback_seconds",
    "allow_lockout_risk",
    "xtables_lock_wait",
)
# pyinfra's own host data, never a typo of ours
FOREIGN_KEY = re.compile(r"^(_|ssh_|winrm_|docker|chroot_|local_|vagrant|terraform|podman|lab_)")


class PolicyError(ValueError):
    """A group_data value that cannot be applied; the message names the key."""

    def __init__(self, key, reason):
        super().__init__(f"group_data {key}: {reason}")
        self.key = key


@dataclass(frozen=True, order=True)
class Port:
    first: int
    last: int
    proto: str  # tcp | udp

    def __str__(self):
        span = str(self.first) if self.first == self.last else f"{self.first}:{self.last}"
        return f"{span}/{self.proto}"

    def overlaps(self, other):
        return self.proto == other.proto and self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    description: str
    ports: str  # as ufw's `ports=` line takes it


@dataclass(frozen=True)
class Policy:
    exposure: dict  # class → tuple of Port
    management_subnets: tuple
    zimbra_nodes: tuple
    ssh_port: int
    profiles: tuple
    rules: tuple  # each a tuple of ufw arguments, exactly as `ufw show added` prints them
    default_incoming: str
    default_outgoing: str
    comment: str
    purge_unmanaged: bool
    memcached: dict  # zimbra attribute → list of desired values
    memcached_read: str
    rollback_seconds: int
    allow_lockout_risk: bool
    xtables_lock_wait: int
    warnings: tuple = field(default=())

    @property
    def needs_ipv6(self):
        return any(n.version == 6 for n in self.management_subnets + self.zimbra_nodes)


def load_catalogue(path=CATALOGUE):
    with open(path) as f:
        # libyaml's loader when PyYAML has it: pyinfra builds a policy per host, and 30 hosts notice
        catalogue = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    seen = {}
    for entry in catalogue["ports"]:
        port = parse_port(f"{entry['port']}/{entry['proto']}", "catalogue")
        if entry["exposure"] not in EXPOSURES:
            raise PolicyError("catalogue", f"port {port}: unknown exposure {entry['exposure']!r}")
        if entry.get("group") and entry["group"] not in catalogue["groups"]:
            raise PolicyError("catalogue", f"port {port}: unknown group {entry['group']!r}")
        if port in seen:
            raise PolicyError("catalogue", f"port {port} is listed twice")
        seen[port] = entry
    return catalogue


def parse_port(text, key):
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


def parse_subnet(text, key):
    if not isinstance(text, str):
        raise PolicyError(key, f"{text!r} is not a subnet in CIDR notation")
    try:
        network = ipaddress.ip_network(text.strip())
    except ValueError as error:
        if "host bits set" in str(error):
            raise PolicyError(
                key, f"{text!r} has host bits set (did you mean {ipaddress.ip_network(text.strip(), strict=False)}?)"
            ) from None
        raise PolicyError(key, f"{text!r} is not a subnet in CIDR notation") from None
    if "/" not in text:
        raise PolicyError(key, f"{text!r} needs a prefix length (for one address: {network})")
    if network.prefixlen == 0:
        raise PolicyError(key, f"{text!r} is everyone: that is what `public` exposure is for")
    return network


def require_list(data, key):
    value = data[key]
    if not isinstance(value, (list, tuple)):
        raise PolicyError(key, f"must be a list, not {type(value).__name__} {value!r}")
    return list(value)


def check_keys(data):
    known = set(KEYS)
    for key in known - set(data):
        raise PolicyError(key, "missing (group_data/all.py sets every key; is it there?)")
    for key in data:
        if key in known or FOREIGN_KEY.match(key):
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
        if close:
            raise PolicyError(key, f"unknown key (did you mean {close[0]!r}?)")


def check_text(value, key, pattern, what, max_len):
    if not isinstance(value, str) or not value or len(value) > max_len or not re.fullmatch(pattern, value):
        raise PolicyError(key, f"{value!r} is not {what} (at most {max_len} characters)")
    return value


def check_profile_name(name, key):
    return check_text(
        name, key, r"[A-Za-z0-9][A-Za-z0-9 _.+-]*", "a profile name ufw accepts (letters, digits, space, _ . + -)", 64
    )


def exposure_map(catalogue, groups, overrides):
    """Port → exposure class, after optional groups and the user's overrides."""
    classes = {}
    for entry in catalogue["ports"]:
        if entry.get("group") and entry["group"] not in groups:
            continue
        classes[parse_port(f"{entry['port']}/{entry['proto']}", "catalogue")] = entry["exposure"]
    if not isinstance(overrides, dict):
        raise PolicyError("exposure_overrides", f"must be a mapping of exposure class to ports, not {overrides!r}")
    claimed = {}
    for exposure, ports in overrides.items():
        key = f"exposure_overrides[{exposure!r}]"
        if exposure not in EXPOSURES:
            raise PolicyError(key, f"unknown exposure class; known: {', '.join(EXPOSURES)}")
        if not isinstance(ports, (list, tuple)):
            raise PolicyError(key, f"must be a list of ports, not {ports!r}")
        for text in ports:
            port = parse_port(text, key)
            for other, other_class in claimed.items():
                if other.overlaps(port) and other_class != exposure:
                    raise PolicyError(key, f"port {port} is also listed under {other_class!r}")
            claimed[port] = exposure
            for existing in [p for p in classes if p.overlaps(port)]:
                del classes[existing]
            classes[port] = exposure
    return classes


def chunk_ports(ports):
    """ufw `ports=` text: one entry per protocol, split so no entry exceeds the multiport limit."""
    entries = []
    for proto in ("tcp", "udp"):
        chunk, weight = [], 0
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


def build_profiles(data, classes, with_intra):
    names = data["profile_names"]
    if not isinstance(names, dict):
        raise PolicyError("profile_names", f"must be a mapping of exposure class to profile name, not {names!r}")
    for exposure, name in names.items():
        if exposure not in ("public", "local-only", "intra"):
            raise PolicyError(f"profile_names[{exposure!r}]", "only public, local-only and intra have profiles")
        check_profile_name(name, f"profile_names[{exposure!r}]")
    if len(set(names.values())) != len(names):
        raise PolicyError("profile_names", "two exposure classes share one profile name")
    descriptions = {
        "public": ("Zimbra public mail services", "Mail ports open to everyone (managed by zimbra-firewall)"),
        "local-only": (
            "Zimbra admin and local services",
            "Ports for the management networks only (managed by zimbra-firewall)",
        ),
        "intra": ("Zimbra internal services", "Ports between Zimbra nodes only (managed by zimbra-firewall)"),
    }
    profiles = {}
    for exposure, (title, description) in descriptions.items():
        ports = [p for p, c in classes.items() if c == exposure]
        if ports and (exposure != "intra" or with_intra):
            if exposure not in names:
                raise PolicyError("profile_names", f"needs a name for the {exposure!r} profile")
            profiles[exposure] = Profile(names[exposure], title, description, chunk_ports(ports))
    if data["profile_mode"] == "seed":
        profiles["public"] = Profile(
            SEED_PROFILE["name"], SEED_PROFILE["title"], SEED_PROFILE["description"], SEED_PROFILE["ports"]
        )
    return profiles


def build_rules(profiles, management, zimbra_nodes, ssh_port, blanket, comment):
    tag = ("comment", comment)
    rules = [
        ("allow", "from", str(net), "to", "any", "port", str(ssh_port), "proto", "tcp", *tag) for net in management
    ]
    if "public" in profiles:
        rules.append(("allow", profiles["public"].name, *tag))
    for net in management:
        if blanket:
            rules.append(("allow", "from", str(net), *tag))
        elif "local-only" in profiles:
            rules.append(("allow", "from", str(net), "to", "any", "app", profiles["local-only"].name, *tag))
    if "intra" in profiles:
        rules += [("allow", "from", str(net), "to", "any", "app", profiles["intra"].name, *tag) for net in zimbra_nodes]
    return tuple(rules)


def check_memcached(data):
    addresses = require_list(data, "memcached_bind_addresses")
    for address in addresses:
        try:
            ipaddress.ip_address(address)
        except (ValueError, TypeError):
            raise PolicyError("memcached_bind_addresses", f"{address!r} is not an IP address") from None
    servers = require_list(data, "memcached_client_servers")
    for server in servers:
        if not isinstance(server, str) or not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", server):
            raise PolicyError("memcached_client_servers", f"{server!r} is not host[:port]")
    if data["memcached_read"] not in ("ldap", "zmprov"):
        raise PolicyError("memcached_read", f"{data['memcached_read']!r}: use 'ldap' or 'zmprov'")
    return {"zimbraMemcachedBindAddress": addresses, "zimbraMemcachedClientServerList": servers}


def build_policy(host_data, catalogue=None):
    """host_data: the host's group_data as a dict (pyinfra's host.data.dict())."""
    check_keys(host_data)
    data = {key: host_data[key] for key in KEYS}
    catalogue = catalogue or load_catalogue()
    groups = require_list(data, "optional_groups")
    for group in groups:
        if group not in catalogue["groups"]:
            raise PolicyError("optional_groups", f"unknown group {group!r}; known: {', '.join(catalogue['groups'])}")
    management = tuple(parse_subnet(s, "management_subnets") for s in require_list(data, "management_subnets"))
    nodes = tuple(parse_subnet(s, "zimbra_nodes") for s in require_list(data, "zimbra_nodes"))
    if data["profile_mode"] not in ("split", "seed"):
        raise PolicyError("profile_mode", f"{data['profile_mode']!r}: use 'split' or 'seed'")
    for key in ("allow_management_all_ports", "purge_unmanaged_rules", "allow_lockout_risk"):
        if not isinstance(data[key], bool):
            raise PolicyError(key, f"must be True or False, not {data[key]!r}")
    ssh_port = data["firewall_ssh_port"]
    if isinstance(ssh_port, bool) or not isinstance(ssh_port, int) or not 1 <= ssh_port <= 65535:
        raise PolicyError("firewall_ssh_port", f"{ssh_port!r} is not a port number 1-65535")
    rollback = data["rollback_seconds"]
    if isinstance(rollback, bool) or not isinstance(rollback, int) or not 5 <= rollback <= 3600:
        raise PolicyError("rollback_seconds", f"{rollback!r} is not a number of seconds from 5 to 3600")
    lock_wait = data["xtables_lock_wait"]
    if isinstance(lock_wait, bool) or not isinstance(lock_wait, int) or not 1 <= lock_wait <= 3600:
        raise PolicyError("xtables_lock_wait", f"{lock_wait!r} is not a number of seconds from 1 to 3600")
    if data["default_incoming"] not in ("deny", "reject", "allow"):
        raise PolicyError("default_incoming", f"{data['default_incoming']!r}: use deny, reject or allow")
    if data["default_outgoing"] not in ("deny", "reject", "allow"):
        raise PolicyError("default_outgoing", f"{data['default_outgoing']!r}: use deny, reject or allow")
    comment = check_text(
        data["rule_comment"],
        "rule_comment",
        r"[A-Za-z0-9][A-Za-z0-9_.:-]*",
        "a plain tag (letters, digits, _ . : -)",
        64,
    )
    classes = exposure_map(catalogue, groups, data["exposure_overrides"])
    if any(c == "local-only" for c in classes.values()) and not management:
        raise PolicyError(
            "management_subnets",
            "is empty, so the local-only ports (and SSH) would be closed to everyone: list the admins' subnets",
        )
    profiles = build_profiles(data, classes, with_intra=bool(nodes))
    warnings = []
    if data["profile_mode"] == "seed":
        opened = [
            p
            for p, c in classes.items()
            if c != "public" and any(str(p.first) == n for n in SEED_PROFILE["ports"].split("/")[0].split(","))
        ]
        if opened:
            warnings.append(
                "profile_mode 'seed' opens local-only ports to everyone: " + ", ".join(str(p) for p in sorted(opened))
            )
    exposure = {name: tuple(sorted(p for p, c in classes.items() if c == name)) for name in EXPOSURES}
    return Policy(
        exposure=exposure,
        management_subnets=management,
        zimbra_nodes=nodes,
        ssh_port=ssh_port,
        profiles=tuple(profiles.values()),
        rules=build_rules(profiles, management, nodes, ssh_port, data["allow_management_all_ports"], comment),
        default_incoming=data["default_incoming"],
        default_outgoing=data["default_outgoing"],
        comment=comment,
        purge_unmanaged=data["purge_unmanaged_rules"],
        memcached=check_memcached(data),
        memcached_read=data["memcached_read"],
        rollback_seconds=rollback,
        allow_lockout_risk=data["allow_lockout_risk"],
        xtables_lock_wait=lock_wait,
        warnings=tuple(warnings),
    )
