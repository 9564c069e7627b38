"""Read early, use later. pyinfra loads deploy.py for every host at once, but runs the operations one
after another, each on every host before the next; with `-y` an operation reads its facts only when it
runs. Reads made while deploy.py loads overlap across hosts; reads made by operations cost one round of
the whole inventory each. `prefetch` makes an operation's reads while loading; `fact` hands each value
out once (a later read of the same fact reads the host again)."""

import gevent
from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.context import ctx_host

Reads = list[tuple[type[FactBase], dict]]
_fetched: dict = {}
_MISSING = object()


def _key(name: str, cls: type[FactBase], kwargs: dict) -> tuple:
    return (id(host.state), name, cls, tuple(sorted(kwargs.items())))


def prefetch(reads: Reads) -> None:
    """Read these facts of the current host now, all at once (a channel each on the host's connection). A
    read that fails is left to the operation that needs it: raised here, it would stop every host's run."""
    current = ctx_host.get()  # the Host itself: greenlets spawned here do not share the context

    def read(cls, kwargs):
        with ctx_host.use(current):
            try:
                _fetched[_key(current.name, cls, kwargs)] = current.get_fact(cls, **kwargs)
            except Exception:  # the operation's own read raises it again, failing this host alone
                return

    gevent.joinall([gevent.spawn(read, cls, kwargs) for cls, kwargs in reads])


def fact(cls: type[FactBase], on=None, **kwargs):
    """The current host's fact (or that of the host `on`): the prefetched value, once (`on` leaves it to
    its host), else a read."""
    target = on or host
    key = _key(target.name, cls, kwargs)
    value = _fetched.get(key, _MISSING) if on else _fetched.pop(key, _MISSING)
    return target.get_fact(cls, **kwargs) if value is _MISSING else value


def peek(cls: type[FactBase], **kwargs):
    """The current host's prefetched value of a fact, left for the operation that will use it (None when the
    read failed or was not made)."""
    return _fetched.get(_key(host.name, cls, kwargs))


def forget(cls: type[FactBase]) -> None:
    """The current host's prefetched values of `cls` are no longer true (an operation changed what they read)."""
    for key in [key for key in _fetched if key[:3] == (id(host.state), host.name, cls)]:
        del _fetched[key]
