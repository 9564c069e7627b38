"""Operations for Zimbra through its own tools: memcached's binding via zmprov, and its restart."""

import re
from collections.abc import Generator, Iterable, Mapping

from pyinfra import host
from pyinfra.api import OperationValueError, QuoteString, StringCommand, operation
from pyinfra.context import ctx_host

from facts.zimbra import ZIMBRA_HOME, ResolvedNames, ZimbraTopology
from tasks import run
from zimbra_firewall.safety import keep_addresses_arguments
from zimbra_firewall.topology import Topology, parse_resolved, render_addresses, seen_from
from zimbra_firewall.zimbra import MEMCACHED_ATTRIBUTES, memcached_change

ZMPROV = f"{ZIMBRA_HOME}/bin/zmprov"
ZMMEMCACHEDCTL = f"{ZIMBRA_HOME}/bin/zmmemcachedctl"


def reads(attributes: tuple[str, ...], read: str = "ldap") -> run.Reads:
    """The fact read_topology reads (for tasks/run.py's prefetch)."""
    return [(ZimbraTopology, {"attributes": attributes, "read": read})]


def read_topology(attributes: tuple[str, ...], read: str = "ldap") -> Topology:
    """
    This node's view of Zimbra's servers (``facts.zimbra.ZimbraTopology``). A node that cannot reach LDAP
    itself, such as a new node that the LDAP server's firewall does not know yet, takes the read of
    another host of this run whose LDAP lists it (one that has read already, else the others in inventory
    order), with the names resolved on this node: the run that opens LDAP to it gives it its rules as well.
    """
    this_run = run.of()
    topology = this_run.topology = this_run.fact(ZimbraTopology, attributes=attributes, read=read)
    if topology.this or not topology.name:
        return topology
    lender = _lender(topology.name.lower(), {"attributes": attributes, "read": read})
    if lender is None:
        return topology
    borrowed, by = lender
    seen = host.get_fact(ResolvedNames, names=tuple(sorted({s.hostname for s in borrowed.servers})))
    resolved, last_known = parse_resolved(seen["resolved"])[0], parse_resolved(seen["last_known"])[0]
    return seen_from(borrowed, topology.name, resolved, seen["own_addresses"].split(), by, last_known)


def _lender(name: str, fact_arguments: dict) -> tuple[Topology, str] | None:
    """A read of another host of this run that lists the server `name`, and that host's name."""
    this = ctx_host.get()
    others = [other for other in host.state.inventory.get_active_hosts() if other is not this]

    def lists(topology: Topology | None) -> bool:
        return bool(topology and topology.this and any(s.name.lower() == name for s in topology.servers))

    for other in others:
        read = run.of(other).topology
        if read and lists(read):
            return read, other.name
    for other in others:
        read = run.of(other).peek(ZimbraTopology, **fact_arguments) or other.get_fact(ZimbraTopology, **fact_arguments)
        if read and lists(read):
            return read, other.name
    return None


@operation()
def memcached_binding(
    server: str,
    current: Mapping[str, list[str]],
    attributes: Mapping[str, list[str]],
    user: str = "zimbra",
    then: StringCommand | None = None,
) -> Generator:
    """
    Set memcached's Zimbra attributes on ``server`` with ONE ``zmprov -l ms`` (only those that differ;
    multi-valued values compare without regard to order). When the binding changed, restart memcached;
    when it does not start with the new binding, the previous values are put back, memcached restarted,
    and the step fails. When the client list changed, ``zmprov rmcc SERVER`` makes mailboxd re-read it.
    Run it as root: Zimbra's tools run as ``user`` (``runuser``), and ``then`` as root, in the same remote
    command.

    + server: the Zimbra server's name (``zimbra_server_hostname``)
    + current: the attributes as Zimbra has them (``facts.zimbra.ZimbraTopology``'s ``this.attributes``:
      the deploy reads them once, with everything else it needs from LDAP)
    + attributes: ``{"zimbraMemcachedBindAddress": ["127.0.0.1", "10.0.0.5"], ...}``; an empty list unsets
    + user: the user Zimbra's tools run as
    + then: a command run once the change succeeded, as root (for example, keeping the previous values
      where an undo finds them: tasks.safety.memcached_undo_keeping)

    **Example:**

    .. code:: python

        zimbra.memcached_binding(
            server="mail.example.com",
            current=topology.this.attributes,
            attributes={"zimbraMemcachedBindAddress": ["127.0.0.1", "10.0.0.5"]},
            _sudo=True,
        )
    """
    unknown = set(attributes) - set(MEMCACHED_ATTRIBUTES)
    if unknown:
        raise OperationValueError(f"not memcached attributes: {', '.join(sorted(unknown))}")
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", user):
        raise OperationValueError(f"user must be a plain user name, not {user!r}")
    change = memcached_change(current, attributes)
    if not change.arguments:
        host.noop("memcached attributes already set" if attributes else "no memcached attribute to manage here")
        return
    name = QuoteString(server)
    # one remote command, stopping at the first step that fails
    steps = [StringCommand(ZMPROV, "-l", "ms", name, *[QuoteString(a) for a in change.arguments]).get_raw_value()]
    if change.restart:
        restore = StringCommand(ZMPROV, "-l", "ms", name, *[QuoteString(a) for a in change.undo]).get_raw_value()
        steps.append(
            f"{{ {ZMMEMCACHEDCTL} restart || {{ {restore}; {ZMMEMCACHEDCTL} restart; "
            "echo 'memcached did not start with the new binding: the previous binding is restored' >&2; "
            "exit 1; }; }"
        )
    if change.reload_clients:
        steps.append(StringCommand(ZMPROV, "rmcc", name).get_raw_value())
    as_user = StringCommand("runuser", "-u", QuoteString(user), "--", "sh", "-c", QuoteString(" && ".join(steps)))
    yield StringCommand(as_user, "&&", then) if then else as_user


@operation()
def addresses_kept(
    addresses: Iterable[tuple[str, Iterable[str]]], kept: Iterable[tuple[str, Iterable[str]]]
) -> Generator:
    """
    Keep on the host the addresses each Zimbra server's rules were made from, for a later run in which its
    name does not resolve (zimbra_firewall.policy.peer_addresses then uses them): written only when they
    changed, root's alone (the state folder is refused when anyone else could write it).

    + addresses: ``(host name, addresses)`` pairs, the policy's ``addresses``
    + kept: the same pairs as the host keeps them now (the topology's ``last_known``)

    **Example:**

    .. code:: python

        zimbra.addresses_kept(addresses=policy.addresses, kept=topology.last_known)
    """
    text = render_addresses(addresses)
    if text == render_addresses(kept):
        host.noop("the servers' addresses are kept as they are")
        return
    yield StringCommand("sh", "-c", *[QuoteString(word) for word in keep_addresses_arguments(text)])
