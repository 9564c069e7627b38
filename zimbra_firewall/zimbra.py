"""The memcached change set, as `zmprov ms` arguments. Pure; the formats are those of Zimbra/zm-mailbox
ProvUtil.java (zmprov)."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

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


@dataclass(frozen=True)
class MemcachedChange:
    """What setting memcached's attributes takes: the `zmprov -l ms SERVER …` arguments (empty: nothing), the
    arguments that put the previous values back, and whether memcached restarts or mailboxd re-reads."""

    arguments: tuple[str, ...]
    undo: tuple[str, ...]
    restart: bool
    reload_clients: bool


def memcached_change(current: Mapping[str, Iterable[str]], desired: Mapping[str, list[str]]) -> MemcachedChange:
    """current: the attributes as Zimbra has them (any others are ignored); desired: those to manage."""
    now = {name: list(current.get(name, ())) for name in desired}
    arguments = memcached_changes(now, dict(desired))
    changed = set(arguments[::2])
    return MemcachedChange(
        tuple(arguments),
        tuple(memcached_changes(dict(desired), now)),
        bool(changed & NEEDS_RESTART),
        bool(changed & NEEDS_CLIENT_RELOAD),
    )
