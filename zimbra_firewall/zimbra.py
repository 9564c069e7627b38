"""Zimbra's text in and out: localconfig.xml, LDAP (LDIF) and `zmprov gs` output, and the memcached
change set. Pure functions; the formats are those of Zimbra/zm-mailbox ProvUtil.java (zmprov) and LC.java.
"""

import xml.etree.ElementTree as ET

MEMCACHED_ATTRIBUTES = ("zimbraMemcachedBindAddress", "zimbraMemcachedBindPort", "zimbraMemcachedClientServerList")
INHERITED = {"zimbraMemcachedBindPort", "zimbraMemcachedClientServerList"}
# LDAP and zmprov take attribute names in any case: these spellings are the ones this code compares
ATTRIBUTE_NAMES = {name.lower(): name for name in MEMCACHED_ATTRIBUTES}


def parse_localconfig(text: str) -> dict[str, str]:
    root = ET.fromstring(text)
    return {key.get("name"): (key.findtext("value") or "") for key in root.iter("key")}


def memcached_from_ldap(entries: list, server_dn: str) -> dict[str, list[str]]:
    """The values `zmprov gs` shows: the server's own, else those it inherits from the global config."""
    server = next((attrs for dn, attrs in entries if dn.lower() == server_dn.lower()), None)
    if server is None:
        raise ValueError(f"no server entry {server_dn} in Zimbra's LDAP")
    config = next((attrs for dn, attrs in entries if dn.lower() == "cn=config,cn=zimbra"), {})
    values = {name: config[name] for name in INHERITED if name in config}
    values.update({name: server[name] for name in MEMCACHED_ATTRIBUTES if name in server})
    return values


def parse_zmprov_gs(text: str) -> dict[str, list[str]]:
    """`zmprov gs SERVER attr…` stdout → {attribute: [values]}."""
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("# name "):
            continue
        name, sep, value = line.partition(": ")
        if sep:
            values.setdefault(ATTRIBUTE_NAMES.get(name.lower(), name), []).append(value)
    return values


def memcached_changes(current: dict[str, list[str]], desired: dict[str, list[str]]) -> list[str]:
    """Attributes whose values differ (order aside) → `zmprov ms` arguments ('' deletes)."""
    args = []
    for name, wanted in desired.items():
        if sorted(current.get(name, [])) == sorted(wanted):
            continue
        if wanted:
            for value in wanted:
                args += [name, value]
        else:
            args += [name, ""]
    return args
