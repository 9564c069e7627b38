"""What one run knows of one host: the reads made of it, the findings already said, its Zimbra topology.
One `HostRun` per pyinfra Host (a run makes its own Host objects, so nothing outlives it or leaks into the
next run of the same process), reached with `of()`.

Reads: pyinfra loads deploy.py for every host at once but runs the operations one after another, each on
every host before the next; with `-y` an operation reads its facts only when it runs. Reads made while
deploy.py loads overlap across hosts; reads made by operations cost one round of the whole inventory each.
So the facts the operations need are read while loading (`prefetch`), and each read serves every later
operation of the same phase (planning, or execution) until an operation changes what it reads. That one
rule lives in `changes`: an operation declared with the facts it changes has them read again after it
yields a command, whatever its body remembers or forgets to do; and that read rides on the change itself,
in the same remote command once the change succeeded (`ChangeThenRead`), so it costs no command of its own.
"""

import functools
import secrets
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import ParamSpec

import gevent
from pyinfra.api import FactBase, StringCommand
from pyinfra.api.host import Host
from pyinfra.api.state import State
from pyinfra.connectors.util import CommandOutput
from pyinfra.context import ctx_host

from zimbra_firewall.topology import Topology

Reads = list[tuple[type[FactBase], dict]]
FactKey = tuple[type[FactBase], tuple[tuple[str, object], ...]]
_MISSING = object()


def _key(cls: type[FactBase], kwargs: dict) -> FactKey:
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

    def changed(self, *classes: type[FactBase]) -> list[FactKey]:
        """What these facts read is no longer true on this host: every later use reads it again. Returns the
        reads dropped, those a change can make again in its own command (no global argument such as _sudo
        among their arguments: the change runs with the operation's)."""
        stale = {key for key in self.prefetched if key[0] in classes}
        stale |= {key for (_phase, key) in self.cached if key[0] in classes}
        self.prefetched = {key: v for key, v in self.prefetched.items() if key[0] not in classes}
        self.cached = {(phase, key): v for (phase, key), v in self.cached.items() if key[0] not in classes}
        return sorted((key for key in stale if not any(name.startswith("_") for name, _ in key[1])), key=repr)

    def read_again(self, key: FactKey, value) -> None:
        """`key`'s value as a change's own command read it, for the rest of this phase."""
        self.cached[(self.host.state.is_executing, key)] = value

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


class ChangeThenRead(StringCommand):
    """A change and, in the same remote shell once it succeeded, the reads it made stale: what they print
    becomes their value for the rest of the phase, so the next operation sends no read of its own. Its
    text (get_raw_value: what a plan or a test sees) is the change alone; the reads are added when it runs,
    between markers of its own. A read that fails there, or a change that fails, leaves the read to the
    next operation that needs it."""

    def __init__(self, change: StringCommand, stale: list[FactKey]):
        super().__init__(*change.bits, _separator=change.separator, **change.connector_arguments)
        self.stale = stale
        self.marker = f"@@zimbra-firewall-read-{secrets.token_hex(8)}@@"

    def with_reads(self) -> StringCommand:
        reads: list = []
        for number, (cls, kwargs) in enumerate(self.stale):
            command = cls().command
            read = command(**dict(kwargs)) if callable(command) else command
            reads += ["echo", f"{self.marker}{number};", "(", read, ")", "2>/dev/null;"]
            reads += ["echo", f"{self.marker}{number}", "$?;"]
        return StringCommand(self, "&&", "{", *reads, "}") if reads else self

    def execute(self, state: State, host: Host, connector_arguments):
        connector_arguments.update(self.connector_arguments)
        status, output = host.run_shell_command(
            self.with_reads(), print_output=state.print_output, print_input=state.print_input, **connector_arguments
        )
        if not status:
            return status, output
        change_lines, reads = split_reads(list(output), self.marker, len(self.stale))
        for (cls, kwargs), lines in zip(self.stale, reads, strict=True):
            if lines is None:
                continue
            fact = cls()
            try:
                value = fact.process(lines) if lines else fact.default()
            except Exception:  # FactProcessError and the like: the next operation reads it again, and fails there
                continue
            of(host).read_again((cls, kwargs), value)
        return status, CommandOutput(change_lines)


def split_reads(lines: list, marker: str, count: int) -> tuple[list, list[list[str] | None]]:
    """ChangeThenRead's output → the change's own lines (its stderr, the reads' going to /dev/null, and its
    stdout before the first read), and each read's stdout lines (None: it failed or did not run). Lines are
    pyinfra's OutputLine (buffer_name, line); each read is `marker N`, its lines, `marker N STATUS`."""
    stdout = [line.line for line in lines if line.buffer_name == "stdout"]
    first = stdout.index(f"{marker}0") if f"{marker}0" in stdout else len(stdout)
    change_lines, seen = [], 0
    for line in lines:
        if line.buffer_name == "stdout":
            seen += 1
            if seen > first:
                continue
        change_lines.append(line)
    reads: list[list[str] | None] = [None] * count
    for number in range(count):
        begin = f"{marker}{number}"
        if begin not in stdout:
            continue
        start = stdout.index(begin) + 1
        end = next((i for i in range(start, len(stdout)) if stdout[i].startswith(f"{begin} ")), None)
        if end is not None and stdout[end] == f"{begin} 0":
            reads[number] = stdout[start:end]
    return change_lines, reads


Arguments = ParamSpec("Arguments")


def changes(
    *classes: type[FactBase],
) -> Callable[[Callable[Arguments, Generator]], Callable[Arguments, Generator]]:
    """Declare an operation's body as changing what `classes` read: once it yields a command, this host's
    reads of them are made again (under @operation()), by that command itself where it is a shell command."""

    def declare(body: Callable[Arguments, Generator]) -> Callable[Arguments, Generator]:
        @functools.wraps(body)
        def changing(*args: Arguments.args, **kwargs: Arguments.kwargs) -> Generator:
            stale: list[FactKey] = []
            for command in body(*args, **kwargs):
                # before each command: what an earlier command of this operation read again is stale once more
                stale = sorted({*stale, *of().changed(*classes)}, key=repr)
                if isinstance(command, str):
                    command = StringCommand(command.strip())
                yield ChangeThenRead(command, stale) if type(command) is StringCommand else command

        return changing

    return declare
