"""Say a finding once per host (with change detection on, pyinfra runs an operation's body twice), and
fail a host with a sentence."""

from pyinfra import host, logger
from pyinfra.api import FunctionCommand

_said = set()


def report_once(level: str, message: str) -> None:
    if (host.name, message) not in _said:
        _said.add((host.name, message))
        getattr(logger, level)(f"{host.name}: {message}")


def fail_host(message: str) -> FunctionCommand:
    """A command that fails this host, saying why: it runs nothing more, the other hosts go on."""
    return FunctionCommand(_fail, (message,), {})


def _fail(state, host, message):
    host.log_styled(message, fg="red", log_func=logger.error)
    return False
