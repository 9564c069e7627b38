"""What one run knows of one host: the reads made of it, the findings already said, its Zimbra topology.
One `HostRun` per pyinfra Host (a run makes its own Host objects, so nothing outlives it or leaks into the
next run of the same process), reached with `of()`.

Reads: pyinfra loads deploy.py for every host at once but runs the operations one after another, each on
every host before the next; with `-y` an operation reads its facts only when it runs. Reads made while
deploy.py loads overlap across hosts; reads made by operations cost one round of the whole inventory each.
So the facts the operations need are read while loading (`prefetch`), and each read serves every later
operation of the same phase (planning, or execution) until an operation changes what it reads. That one
rule lives in `changes`: an operation declared with the facts it changes has them read again after it
yields a command, whatever its body remembers or forgets to do.
"""

import functools
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import ParamSpec

import gevent
from pyinfra.api import FactBase
from pyinfra.api.host import Host
from pyinfra.context import ctx_host

from zimbra_firewall.topology import Topology

Reads = list[tuple[type[FactBase], dict]]
_MISSING = object()


def _key(cls: type[FactBase], kwargs: dict) -> tuple:
    return (cls, tuple(sorted(kwargs.items())))


@dataclass(eq=False)
class HostRun:
    host_ref: "weakref.ref[Host]"  # not the Host itself: it is the key this is kept under, which must be free to go
    prefetched: dict = field(default_factory=dict)  # fact key → value read while loading, not yet used
    cached: dict = field(default_factory=dict)  # (phase, fact key) → value
    said: set[str] = field(default_factory=set)
    topology: Topology | None = None  # as this host read it (tasks/zimbra.py)

    @property
    def host(self) -> Host:
        host = self.host_ref()
        assert host is not None  # reached only through of(host), while the host is there
        return host

    def prefetch(self, reads: Reads) -> None:
        """Read these facts now, all at once (a channel each on the host's connection). A read that fails is
        left to the operation that needs it: raised here, it would stop every host's run."""

        def read(cls, kwargs):
            with ctx_host.use(self.host):  # greenlets spawned here do not share the context
                try:
                    self.prefetched[_key(cls, kwargs)] = self.host.get_fact(cls, **kwargs)
                except Exception:  # the operation's own read raises it again, failing this host alone
                    return

        gevent.joinall([gevent.spawn(read, cls, kwargs) for cls, kwargs in reads])

    def fact(self, cls: type[FactBase], **kwargs):
        """The fact's value for this phase: read once, prefetched if it was, until an operation changes it."""
        key = _key(cls, kwargs)
        phase = (self.host.state.is_executing, key)
        if phase not in self.cached:
            value = self.prefetched.pop(key, _MISSING)
            self.cached[phase] = self.host.get_fact(cls, **kwargs) if value is _MISSING else value
        return self.cached[phase]

    def peek(self, cls: type[FactBase], **kwargs):
        """The prefetched value, left for the operation that will use it (None when the read failed or was
        not made)."""
        key = _key(cls, kwargs)
        return self.prefetched.get(key, self.cached.get((self.host.state.is_executing, key)))

    def changed(self, *classes: type[FactBase]) -> None:
        """What these facts read is no longer true on this host: every later use reads it again."""
        self.prefetched = {key: v for key, v in self.prefetched.items() if key[0] not in classes}
        self.cached = {(phase, key): v for (phase, key), v in self.cached.items() if key[0] not in classes}

    def say_once(self, message: str) -> bool:
        """Whether `message` is new for this host (with change detection on, pyinfra runs a body twice)."""
        new = message not in self.said
        self.said.add(message)
        return new


_runs: "weakref.WeakKeyDictionary[Host, HostRun]" = weakref.WeakKeyDictionary()


def of(target: Host | None = None) -> HostRun:
    """The run's knowledge of `target` (the current host by default)."""
    target = target or ctx_host.get()
    if target not in _runs:
        _runs[target] = HostRun(weakref.ref(target))
    return _runs[target]


def prefetch(reads: Reads) -> None:
    of().prefetch(reads)


def fact(cls: type[FactBase], **kwargs):
    return of().fact(cls, **kwargs)


Arguments = ParamSpec("Arguments")


def changes(
    *classes: type[FactBase],
) -> Callable[[Callable[Arguments, Generator]], Callable[Arguments, Generator]]:
    """Declare an operation's body as changing what `classes` read: once it yields a command, this host's
    reads of them are made again (under @operation())."""

    def declare(body: Callable[Arguments, Generator]) -> Callable[Arguments, Generator]:
        @functools.wraps(body)
        def changing(*args: Arguments.args, **kwargs: Arguments.kwargs) -> Generator:
            for number, command in enumerate(body(*args, **kwargs)):
                if number == 0:
                    of().changed(*classes)
                yield command

        return changing

    return declare
