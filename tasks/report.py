"""Say a finding once per host: with change detection on, pyinfra runs an operation's body twice."""

from pyinfra import host, logger

_said = set()


def report_once(level: str, message: str) -> None:
    if (host.name, message) not in _said:
        _said.add((host.name, message))
        getattr(logger, level)(f"{host.name}: {message}")
