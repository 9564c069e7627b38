"""The port catalogue (catalogue.yaml: its comments are the documentation of its format), read once and
checked into frozen values: the ports by role and exposure, and the flows between Zimbra's roles. Pure:
no I/O but reading the file."""

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from zimbra_firewall.access import Port
from zimbra_firewall.settings import PolicyError, parse_port

CATALOGUE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "catalogue.yaml")
EXPOSURES = ("public", "local-only", "intra", "loopback-only")


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
    without_proxy: Port | None = None  # the proxy port whose exposure it takes where no proxy fronts it


Conditions = tuple[tuple[str, tuple[str, ...]], ...]  # (attribute, the values it may have), every one of them


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
    ipmode: str | None = None  # how its client picks the address family from its zimbraIPMode (IPMODES)
    named_in: tuple[str, str] | None = None  # (attribute, service): the destination must be named there on a server


# How a flow's client follows the source server's zimbraIPMode, as address families per mode (the others:
# both). strict: nginx's IP literals and postfix's inet_protocols, one family per mode; jvm: Zimbra's Java
# programs, which zm-core-utils zmiptool starts with -Djava.net.preferIPv4Stack=true in ipv4 mode (IPv4
# only) and with a mere preference in ipv6 mode (both).
IPMODES = {"strict": {"IPV4": (4,), "IPV6": (6,)}, "jvm": {"IPV4": (4,)}}


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
    front = entry.get("without_proxy")
    return CataloguePort(
        port,
        entry["service"],
        entry["role"],
        entry["exposure"],
        entry.get("attribute"),
        entry.get("group"),
        entry.get("source", ""),
        parse_port(f"{front}/{entry['proto']}", "catalogue") if front else None,
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
    if entry.get("ipmode") not in (None, *IPMODES):
        raise PolicyError("catalogue", f"{where}: ipmode is one of {', '.join(IPMODES)}")
    to = entry["to"]
    named_in = entry.get("named_in")
    if named_in is not None and (to.startswith("@") or set(named_in) != {"attribute", "of"}):
        raise PolicyError("catalogue", f"{where}: named_in takes attribute and of, with a role destination")
    return Flow(
        tuple(entry["from"]),
        entry["proto"],
        to_role=None if to.startswith("@") else to,
        to_attribute=to[1:] if to.startswith("@") else None,
        port=port if isinstance(port, int) else None,
        port_attribute=None if isinstance(port, int) else port,
        default=default,
        source_conditions=_conditions(when.get("source", {})),
        destination_conditions=_conditions(when.get("destination", {})),
        group=entry.get("group"),
        what=entry.get("what", ""),
        source=entry.get("source", ""),
        ipmode=entry.get("ipmode"),
        named_in=(named_in["attribute"], named_in["of"]) if named_in else None,
    )


def _conditions(when: Mapping[str, object]) -> Conditions:
    """{attribute: value or [values]} → ((attribute, (VALUE, ...)), ...): upper-case, as LDAP compares them."""
    return tuple(
        (attribute, tuple(str(v).upper() for v in (wanted if isinstance(wanted, list) else [wanted])))
        for attribute, wanted in when.items()
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
    proxy_ports = {entry.port for entry in ports if entry.role == "proxy"}
    for entry in ports:
        if entry.without_proxy and entry.without_proxy not in proxy_ports:
            raise PolicyError("catalogue", f"port {entry.port}: without_proxy {entry.without_proxy} is no proxy port")
    return Catalogue(groups, ports, tuple(_flow(entry, groups) for entry in raw["flows"]))


@functools.cache
def catalogue_cache() -> Catalogue:
    """The catalogue, read once per process (pyinfra builds a policy per host)."""
    return load_catalogue()
