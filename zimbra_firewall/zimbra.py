"""The memcached change set, as `zmprov ms` arguments. Pure; the formats are those of Zimbra/zm-mailbox
ProvUtil.java (zmprov)."""

MEMCACHED_ATTRIBUTES = ("zimbraMemcachedBindAddress", "zimbraMemcachedBindPort", "zimbraMemcachedClientServerList")
# memcached reads these at start (Zimbra/zm-core-utils src/bin/zmmemcachedctl); mailboxd reads the client
# list at start or on `zmprov rmcc` (Zimbra/zm-mailbox ProvUtil.java, reloadMemcachedClientConfig)
NEEDS_RESTART = frozenset({"zimbraMemcachedBindAddress", "zimbraMemcachedBindPort"})
NEEDS_CLIENT_RELOAD = frozenset({"zimbraMemcachedClientServerList"})


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
