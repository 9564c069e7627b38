"""Operations for Zimbra through its own tools: memcached's binding via zmprov, and its restart."""

from pyinfra import host
from pyinfra.api import OperationValueError, QuoteString, StringCommand, operation

from facts.zimbra import ZIMBRA_HOME, ZimbraMemcached
from zimbra_firewall.zimbra import MEMCACHED_ATTRIBUTES, memcached_changes


@operation()
def memcached_binding(attributes, read="ldap"):
    """
    Set memcached's Zimbra attributes with ONE ``zmprov -l ms``, only those that differ (multi-valued
    values compare without regard to order). Run as the zimbra user.

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
    args = memcached_changes(current["values"], attributes)
    if not args:
        host.noop("memcached attributes already set")
        return
    yield StringCommand(f"{ZIMBRA_HOME}/bin/zmprov", "-l", "ms", QuoteString(current["hostname"]),
                        *[QuoteString(a) for a in args])


@operation()
def memcached_restart():
    """
    Restart Zimbra's memcached so it listens where its attributes say. Run as the zimbra user, and
    only when the binding changed (``_if=binding.did_change``).

    **Example:**

    .. code:: python

        zimbra.memcached_restart(_if=binding.did_change, _sudo=True, _sudo_user="zimbra")
    """
    yield StringCommand(f"{ZIMBRA_HOME}/bin/zmmemcachedctl", "restart")
