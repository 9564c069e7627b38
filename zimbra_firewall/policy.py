"""Port catalogue + group_data → one validated Policy per host. Pure: no I/O but reading the catalogue.

Every group_data value is checked here, before pyinfra runs a single command on any host; a bad
value raises PolicyError naming the key.
"""

import os
import re
from dataclasses import dataclass, field

import yaml

from zimbra_firewall.settings import PolicyError, read_settings, text
from zimbra_firewall.ufw import Port, Profile, chunk_ports

__all__ = ["Policy", "PolicyError", "Port", "Profile", "build_policy", "load_catalogue", "parse_port"]

CATALOGUE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "catalogue.yaml")
EXPOSURES = ("public", "local-only", "intra", "loopback-only")
SEED_PROFILE = {
    "name": "Zimbra",
    "title": "Zimbra Collaboration Server",
    "description": "Open source server for email, contacts, calendar, and more.",
    "ports": "25,80,110,143,443,465,587,993,995,3443,5222,5223,7071,9071/tcp",
}


@dataclass(frozen=True)
class Policy:
    exposure: dict  # class → tuple of Port
    management_subnets: tuple
    zimbra_nodes: tuple
    ssh_port: int
    profiles: tuple
    rules: tuple  # each a tuple of ufw arguments as `ufw show added` prints them, before the comment tag
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
    def restrictions(self) -> dict[str, list[str]]:
        """{ports text: [subnets]}: the non-public ports and the only sources that may reach them."""
        allowed = {"local-only": self.management_subnets, "intra": self.zimbra_nodes, "loopback-only": ()}
        return {
            chunk_ports(self.exposure[exposure]): [str(net) for net in sources]
            for exposure, sources in allowed.items()
            if self.exposure[exposure]
        }

    @property
    def rule_arguments(self) -> dict:
        """ufw.rules' arguments (and the rule planner's) for this policy."""
        return {
            "rules": self.rules,
            "owner": self.comment,
            "restrictions": self.restrictions,
            "apps": {profile.name: profile.ports for profile in self.profiles},
            "purge": self.purge_unmanaged,
        }

    @property
    def needs_ipv6(self) -> bool:
        return any(n.version == 6 for n in self.management_subnets + self.zimbra_nodes)


def load_catalogue(path: str = CATALOGUE) -> dict:
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


PROFILE_NAME = text(r"[A-Za-z0-9][A-Za-z0-9 _.+-]*", "a profile name ufw accepts (letters, digits, space, _ . + -)", 64)


def exposure_map(catalogue, groups, overrides):
    """Port → exposure class, after optional groups and the user's overrides."""
    classes = {}
    for entry in catalogue["ports"]:
        if entry.get("group") and entry["group"] not in groups:
            continue
        classes[parse_port(f"{entry['port']}/{entry['proto']}", "catalogue")] = entry["exposure"]
    claimed = {}
    for exposure, ports in overrides.items():
        key = f"exposure_overrides[{exposure!r}]"
        if exposure not in EXPOSURES:
            raise PolicyError(key, f"unknown exposure class; known: {', '.join(EXPOSURES)}")
        if not isinstance(ports, (list, tuple)):
            raise PolicyError(key, f"must be a list of ports, not {ports!r}")
        for spec in ports:
            port = parse_port(spec, key)
            for other, other_class in claimed.items():
                if other.overlaps(port) and other_class != exposure:
                    raise PolicyError(key, f"port {port} is also listed under {other_class!r}")
            claimed[port] = exposure
            for existing in [p for p in classes if p.overlaps(port)]:
                del classes[existing]
            classes[port] = exposure
    return classes


def build_profiles(data, classes, with_intra):
    names = data["profile_names"]
    for exposure, name in names.items():
        if exposure not in ("public", "local-only", "intra"):
            raise PolicyError(f"profile_names[{exposure!r}]", "only public, local-only and intra have profiles")
        PROFILE_NAME(name, f"profile_names[{exposure!r}]")
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
            profiles[exposure] = Profile(names[exposure], chunk_ports(ports), title, description)
    if data["profile_mode"] == "seed":
        profiles["public"] = Profile(
            SEED_PROFILE["name"], SEED_PROFILE["ports"], SEED_PROFILE["title"], SEED_PROFILE["description"]
        )
    return profiles


def build_rules(profiles, management, zimbra_nodes, ssh_port, blanket):
    """SSH first, then the public profile from anywhere, then what the management subnets and the other
    Zimbra nodes may reach (ufw.rules adds the owner's comment tag to each)."""
    rules = [("allow", "from", str(net), "to", "any", "port", str(ssh_port), "proto", "tcp") for net in management]
    if "public" in profiles:
        rules.append(("allow", profiles["public"].name))
    for net in management:
        if blanket:
            rules.append(("allow", "from", str(net)))
        elif "local-only" in profiles:
            rules.append(("allow", "from", str(net), "to", "any", "app", profiles["local-only"].name))
    if "intra" in profiles:
        rules += [("allow", "from", str(net), "to", "any", "app", profiles["intra"].name) for net in zimbra_nodes]
    return tuple(rules)


def check_groups(groups, catalogue):
    for group in groups:
        if group not in catalogue["groups"]:
            raise PolicyError("optional_groups", f"unknown group {group!r}; known: {', '.join(catalogue['groups'])}")


def check_management_for_local_only(classes, management):
    if any(c == "local-only" for c in classes.values()) and not management:
        raise PolicyError(
            "management_subnets",
            "is empty, so the local-only ports (and SSH) would be closed to everyone: list the admins' subnets",
        )


def seed_warnings(settings, classes):
    """The seed's single profile opens to everyone what this policy keeps local-only: say which ports."""
    if settings["profile_mode"] != "seed":
        return ()
    seed_ports = SEED_PROFILE["ports"].split("/")[0].split(",")
    opened = sorted(p for p, c in classes.items() if c != "public" and str(p.first) in seed_ports)
    if not opened:
        return ()
    return ("profile_mode 'seed' opens local-only ports to everyone: " + ", ".join(str(p) for p in opened),)


def build_policy(host_data: dict, catalogue: dict | None = None) -> Policy:
    """host_data: the host's group_data as a dict (pyinfra's host.data.dict())."""
    settings = read_settings(host_data)
    catalogue = catalogue or load_catalogue()
    check_groups(settings["optional_groups"], catalogue)
    classes = exposure_map(catalogue, settings["optional_groups"], settings["exposure_overrides"])
    check_management_for_local_only(classes, settings["management_subnets"])
    profiles = build_profiles(settings, classes, with_intra=bool(settings["zimbra_nodes"]))
    return Policy(
        exposure={name: tuple(sorted(p for p, c in classes.items() if c == name)) for name in EXPOSURES},
        management_subnets=settings["management_subnets"],
        zimbra_nodes=settings["zimbra_nodes"],
        ssh_port=settings["firewall_ssh_port"],
        profiles=tuple(profiles.values()),
        rules=build_rules(
            profiles,
            settings["management_subnets"],
            settings["zimbra_nodes"],
            settings["firewall_ssh_port"],
            settings["allow_management_all_ports"],
        ),
        default_incoming=settings["default_incoming"],
        default_outgoing=settings["default_outgoing"],
        comment=settings["rule_comment"],
        purge_unmanaged=settings["purge_unmanaged_rules"],
        memcached={
            "zimbraMemcachedBindAddress": list(settings["memcached_bind_addresses"]),
            "zimbraMemcachedClientServerList": list(settings["memcached_client_servers"]),
        },
        memcached_read=settings["memcached_read"],
        rollback_seconds=settings["rollback_seconds"],
        allow_lockout_risk=settings["allow_lockout_risk"],
        xtables_lock_wait=settings["xtables_lock_wait"],
        warnings=seed_warnings(settings, classes),
    )
