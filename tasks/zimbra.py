"""Operations for Zimbra through its own tools: memcached's binding via zmprov, and its restart."""

from collections.abc import Generator, Mapping

from pyinfra import host
from pyinfra.api import OperationValueError, QuoteString, StringCommand, operation

from facts.zimbra import ZIMBRA_HOME, ZimbraMemcached
from tasks.report import fail_host
from zimbra_firewall.zimbra import MEMCACHED_ATTRIBUTES, memcached_changes

ZMPROV = f"{ZIMBRA_HOME}/bin/zmprov"
ZMMEMCACHEDCTL = f"{ZIMBRA_HOME}/bin/zmmemcachedctl"


@operation()
def memcached_binding(attributes: Mapping[str, list[str]], read: str = "ldap") -> Generator:
    """
    Set memcached's Zimbra attributes with ONE ``zmprov -l ms`` (only those that differ; multi-valued
    values compare without regard to order), then restart memcached. When memcached does not start
    with the new binding, the previous values are put back, memcached restarted, and the step fails.
    Run as the zimbra user.

    + attributes: ``{"zimbraMemcachedBindAddress": ["127.0.0.1"], ...}``; an empty list unsets
    + read: "ldap" (one ldapsearch, no JVM) or "zmprov" (one ``zmprov -l gs``)

    **Example:**

    .. code:: python

        zimbra.memcached_binding(
            attributes={"zimbraMemcachedBindAddress": ["127.0.0.1"]},
            _sudo=True, _sudo_user="zimbra",
        )
    """
    unknown = set(attributes) - set(MEMCACHED_ATTRIBUTES)
    if unknown:
        raise OperationValueError(f"not memcached attributes: {', '.join(sorted(unknown))}")
    current = host.get_fact(ZimbraMemcached, read=read)
    if "error" in current:
        yield fail_host(f"cannot read memcached's Zimbra attributes (LDAP, then zmprov): {current['error']}")
        return
    change = memcached_changes(current["values"], attributes)
    if not change:
        host.noop("memcached attributes already set")
        return
    previous = {name: current["values"].get(name, []) for name in attributes}
    undo = memcached_changes(attributes, previous)
    server = QuoteString(current["hostname"])
    yield StringCommand(ZMPROV, "-l", "ms", server, *[QuoteString(a) for a in change])
    restore = StringCommand(ZMPROV, "-l", "ms", server, *[QuoteString(a) for a in undo]).get_raw_value()
    yield StringCommand(
        "sh",
        "-c",
        QuoteString(
            f"{ZMMEMCACHEDCTL} restart || {{ {restore}; {ZMMEMCACHEDCTL} restart; "
            "echo 'memcached did not start with the new binding: the previous binding is restored' >&2; exit 1; }"
        ),
    )
