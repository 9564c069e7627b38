"""The port catalogue (catalogue.yaml: its comments are the documentation of its format), read once and
checked into frozen values: the ports by role and exposure, and the flows between Zimbra's roles. Pure:
no I/O but reading the file."""

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from zimbra_firewall.access import Port
from zimbra_firewall.settings import PolicyError

CATALOGUE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "catalogue.yaml")
EXPOSURES = ("public", "local-only", "intra", "loopback-only")


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


@dataclass(frozen=True)
class CataloguePort:
    """One port of a Zimbra role, at its default number."""

    port: Port
    service: str
    role: str  # the service (zimbraServiceEnabled) that listens on it, or "all"
    exposure: str  # one of EXPOSURES
    attribute: str | None = None  # the Zimbra attribute that holds its number on a server
    group: str | None = None  # wanted only when this optional group is on
    source: str = ""


Conditions = tuple[tuple[str, str], ...]  # (attribute, the value it must have), every one of them


@dataclass(frozen=True)
class Flow:
    """Who connects to whom: from servers running one of `sources` to the destination, which is named by
    role (`to_role`, or "all") or by an attribute of the source server (`to_attribute`: the server whose name
    or address that attribute holds), on a fixed `port` or the one `port_attribute` gives (else `default`)."""

    sources: tuple[str, ...]  # roles, or ("all",)
    proto: str
    to_role: str | None = None
    to_attribute: str | None = None
    port: int | None = None
    port_attribute: str | None = None
    default: int | None = None
    source_conditions: Conditions = ()
    destination_conditions: Conditions = ()
    group: str | None = None
    what: str = ""
    source: str = ""


@dataclass(frozen=True)
class Catalogue:
    groups: Mapping[str, str]  # optional group → what it is for
    ports: tuple[CataloguePort, ...]
    flows: tuple[Flow, ...]


def _port_entry(entry: dict, groups: Mapping[str, str]) -> CataloguePort:
    port = parse_port(f"{entry['port']}/{entry['proto']}", "catalogue")
    if entry["exposure"] not in EXPOSURES:
        raise PolicyError("catalogue", f"port {port}: unknown exposure {entry['exposure']!r}")
    if entry.get("group") and entry["group"] not in groups:
        raise PolicyError("catalogue", f"port {port}: unknown group {entry['group']!r}")
    return CataloguePort(
        port,
        entry["service"],
        entry["role"],
        entry["exposure"],
        entry.get("attribute"),
        entry.get("group"),
        entry.get("source", ""),
    )


def _flow(entry: dict, groups: Mapping[str, str]) -> Flow:
    where = f"flow {entry.get('from')} → {entry.get('to')} port {entry.get('port')}"
    port, default = entry.get("port"), entry.get("default")
    if not isinstance(port, int) and not isinstance(default, int):
        raise PolicyError("catalogue", f"{where}: a port attribute needs a numeric `default`")
    if entry.get("proto") not in ("tcp", "udp") or not isinstance(entry.get("from"), list):
        raise PolicyError("catalogue", f"{where}: needs `proto` (tcp/udp) and a list `from`")
    when = entry.get("when", {})
    if set(when) - {"source", "destination"}:
        raise PolicyError("catalogue", f"{where}: `when` takes source and destination")
    if entry.get("group") and entry["group"] not in groups:
        raise PolicyError("catalogue", f"{where}: unknown group {entry['group']!r}")
    to = entry["to"]
    return Flow(
        tuple(entry["from"]),
        entry["proto"],
        to_role=None if to.startswith("@") else to,
        to_attribute=to[1:] if to.startswith("@") else None,
        port=port if isinstance(port, int) else None,
        port_attribute=None if isinstance(port, int) else port,
        default=default,
        source_conditions=tuple((a, str(v)) for a, v in when.get("source", {}).items()),
        destination_conditions=tuple((a, str(v)) for a, v in when.get("destination", {}).items()),
        group=entry.get("group"),
        what=entry.get("what", ""),
        source=entry.get("source", ""),
    )


def load_catalogue(path: str = CATALOGUE) -> Catalogue:
    with open(path) as f:
        # libyaml's loader when PyYAML has it: pyinfra builds a policy per host, and 30 hosts notice
        raw = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    groups = dict(raw["groups"])
    ports = tuple(_port_entry(entry, groups) for entry in raw["ports"])
    seen = set()
    for entry in ports:
        if entry.port in seen:
            raise PolicyError("catalogue", f"port {entry.port} is listed twice")
        seen.add(entry.port)
    return Catalogue(groups, ports, tuple(_flow(entry, groups) for entry in raw["flows"]))


@functools.cache
def catalogue_cache() -> Catalogue:
    """The catalogue, read once per process (pyinfra builds a policy per host)."""
    return load_catalogue()
