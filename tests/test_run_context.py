"""The run context's one invalidation rule, run for real in a local shell: an operation declared as
changing a fact sends the fact's read in its own command, and the next operation plans on what that read
saw, without a command of its own; a change or a read that fails leaves the read to the next operation."""

import shlex
import subprocess
from types import SimpleNamespace

import pytest
from pyinfra.api import FactBase, QuoteString, StringCommand
from pyinfra.connectors.util import CommandOutput, OutputLine
from pyinfra.context import ctx_host

from tasks import run


class FileText(FactBase):
    """A file's lines (the test's stand-in for ufw's state)."""

    def command(self, path: str) -> str:
        return f"cat {shlex.quote(path)}"

    def process(self, output):
        return output


class LocalHost:
    """What HostRun and ChangeThenRead use of pyinfra's host, running commands in a local shell."""

    def __init__(self):
        self.name = "local"
        self.state = SimpleNamespace(is_executing=True, print_output=False, print_input=False)
        self.reads = 0
        self.sent = []

    def get_fact(self, cls, **kwargs):
        self.reads += 1
        status, output = self.run_shell_command(StringCommand(cls().command(**kwargs)))
        return cls().process(output.stdout_lines)

    def run_shell_command(self, command, **_arguments):
        self.sent.append(command.get_raw_value())
        done = subprocess.run(["sh", "-c", command.get_raw_value()], capture_output=True, text=True)
        lines = [OutputLine("stdout", line) for line in done.stdout.splitlines()]
        lines += [OutputLine("stderr", line) for line in done.stderr.splitlines()]
        return done.returncode == 0, CommandOutput(lines)


def write(path, text):
    """An operation's body that changes the file, declared as changing FileText."""
    yield StringCommand(
        "printf", QuoteString("%s\\n"), QuoteString(text), ">", QuoteString(path), "&&", "echo", "written"
    )


@pytest.fixture
def read_once(tmp_path):
    """A local host, current for pyinfra, whose file says "before" and has been read once."""
    path = str(tmp_path / "state")
    host = LocalHost()
    with ctx_host.use(host):
        subprocess.run(["sh", "-c", f"echo before > {path}"], check=True)
        assert run.fact(FileText, path=path) == ["before"] and host.reads == 1
        yield host, path


def test_a_declared_change_reads_again_in_its_own_command_and_the_next_read_costs_nothing(read_once):
    host, path = read_once
    (command,) = list(run.changes(FileText)(write)(path, "after"))
    assert command.get_raw_value() == f"printf '%s\\n' after > {path} && echo written"  # its text: the change
    status, output = command.execute(host.state, host, {})
    assert status and output.stdout_lines == ["written"]  # the read's lines are not the change's output
    assert len(host.sent) == 2  # the first read, then the change with its read
    assert run.fact(FileText, path=path) == ["after"] and host.reads == 1


def remove(path):
    """An operation's body after which the fact's read fails (cat of a missing file)."""
    yield StringCommand("rm", QuoteString(path))


def test_a_change_that_fails_or_a_read_that_fails_leaves_the_read_to_the_next_operation(read_once):
    host, path = read_once
    (failing,) = list(run.changes(FileText)(write)(path + "/no/such", "x"))
    assert not failing.execute(host.state, host, {})[0]
    assert run.fact(FileText, path=path) == ["before"] and host.reads == 2
    (removing,) = list(run.changes(FileText)(remove)(path))
    assert removing.execute(host.state, host, {})[0]
    assert run.fact(FileText, path=path) == [] and host.reads == 3


def write_then_remove(path, text):
    """An operation's body of two commands: the first changes the file, the second removes it (its read fails)."""
    yield from write(path, text)
    yield from remove(path)


def test_each_command_of_an_operation_makes_the_read_stale_again(read_once):
    host, path = read_once
    commands = run.changes(FileText)(write_then_remove)(path, "after")
    assert next(commands).execute(host.state, host, {})[0]  # its read says "after"
    assert next(commands).execute(host.state, host, {})[0]  # its read fails: the file is gone
    assert list(commands) == []
    assert run.fact(FileText, path=path) == [] and host.reads == 2  # read again, never the stale "after"


def test_the_reads_are_told_apart_from_the_change_s_output():
    marker = "@@m@@"
    lines = [
        OutputLine("stdout", "changed"),
        OutputLine("stderr", "a warning"),
        OutputLine("stdout", f"{marker}0"),
        OutputLine("stdout", "line of read 0"),
        OutputLine("stderr", "late stderr of the change"),
        OutputLine("stdout", f"{marker}0 0"),
        OutputLine("stdout", f"{marker}1"),
        OutputLine("stdout", "partial"),
        OutputLine("stdout", f"{marker}1 2"),
    ]
    change, reads = run.split_reads(lines, marker, 2)
    assert [line.line for line in change] == ["changed", "a warning", "late stderr of the change"]
    assert reads == [["line of read 0"], None]
    assert run.split_reads(lines[:2], marker, 1) == (lines[:2], [None])
    # a line of the change that looks like another command's marker is the change's own
    assert run.split_reads([OutputLine("stdout", "@@x@@0")], marker, 1) == ([OutputLine("stdout", "@@x@@0")], [None])
