"""The lab as tests, scripts and benchmarks use it: the `python -m lab` command line, from Python."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lab(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], cwd=REPO, check=check, capture_output=True, text=True, **kwargs
    )


def status() -> dict:
    return json.loads(lab("status", "--json").stdout)


def run(host: str, *command: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    """Run a command inside a lab host; CompletedProcess with text output."""
    result = lab("exec", host, "--", *command, check=False, input=input)
    if check and result.returncode:
        raise AssertionError(f"{host}: {' '.join(command)} exited {result.returncode}: {result.stderr.strip()}")
    return result


def probe(from_host: str, address: str, specs: list[str]) -> dict[str, str]:
    """{'25/tcp': 'open' | 'closed' | 'filtered'} as `from_host` sees `address`."""
    return json.loads(run(from_host, "python3", "/opt/lab/probe.py", address, *specs).stdout)
