"""What the lab and VM suites share: running the deploy as a user does, reading a lab host's zmprov, and
`lab flows`' report."""

import contextlib
import json
import os
import re
import subprocess
import sys

from lab import client

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYINFRA = os.path.join(os.path.dirname(sys.executable), "pyinfra")
ZIMBRA_FQDN = "zimbra.zfw.test"
# what a deployed single server answers: to everyone, and to the management subnets besides
PUBLIC = {"25/tcp", "443/tcp", "465/tcp", "587/tcp", "993/tcp", "995/tcp"}
LOCAL_ONLY = {"22/tcp", "80/tcp", "110/tcp", "143/tcp", "389/tcp", "7025/tcp", "7071/tcp", "7073/tcp"}
# deploy.py's operations, in order, as pyinfra's results table names them
OPERATIONS = [
    "Preflight",
    "Earlier rollbacks",
    "Rollback armed",
    "Zimbra ufw profiles",
    "ufw rules added",
    "ufw rules removed",
    "ufw default policies",
    "ufw enabled",
    "New SSH connection",
    "Rollback disarmed",
    "Peer addresses kept",
    "memcached binding",
]
# the same on a firewalld host
FIREWALLD_OPERATIONS = [
    "Preflight",
    "Earlier rollbacks",
    "Rollback armed",
    "firewalld configuration",
    "firewalld reloaded",
    "New SSH connection",
    "Rollback disarmed",
    "Peer addresses kept",
    "memcached binding",
]


def deploy(*args, inventory="inventories/lab.py", yes=True):
    """Run the deploy as a user does; without `yes`, pyinfra detects changes first (what --dry shows)."""
    command = [PYINFRA, *(["-y"] if yes else []), inventory, "deploy.py", *args]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    result.ops = operation_results(result.stderr + result.stdout)
    return result


def operation_results(output):
    """pyinfra's closing table → {operation: {"success": n, "error": n, "no_change": n}} ("-" = 0)."""
    rows, in_table = {}, False
    for line in output.splitlines():
        if re.match(r"\s*Operation\s+Hosts\s+Success", line):
            in_table = True
            continue
        if in_table:
            cols = re.split(r"\s{2,}", line.strip())
            if len(cols) != 5 or cols[0] == "Grand total":
                break
            rows[cols[0]] = {
                k: 0 if v == "-" else int(v)
                for k, v in zip(("hosts", "success", "error", "no_change"), cols[1:], strict=True)
            }
    return rows


def zmprov_calls(host="zimbra"):
    """The stand-in's call log: every zmprov run, with who ran it."""
    text = client.run(host, "cat", "/opt/zimbra/log/zmprov-calls.log", check=False).stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def zmprov(*args, host="zimbra", check=True):
    return client.run(host, "runuser", "-u", "zimbra", "--", "/opt/zimbra/bin/zmprov", *args, check=check)


def modify_servers(changes):
    """`zmprov -l ms` on a cluster node for each (node, attribute, value): `+attr`/`-attr` add or remove."""
    for node, attribute, value in changes:
        zmprov("-l", "ms", f"{node}.zfw.test", attribute, value, host=node)


@contextlib.contextmanager
def servers_modified(changes, restored):
    """modify_servers(changes) for the block, then modify_servers(restored) however it ends: a failed test
    leaves the next one the directory it expects."""
    modify_servers(changes)
    try:
        yield
    finally:
        modify_servers(restored)


@contextlib.contextmanager
def listening(host, *specs):
    """Stand-in listeners on more ports of a lab host ("8444/tcp"), as a service moved or enabled after the
    host started would open; stopped (by PID) on leaving."""
    started = client.run(
        host, "sh", "-c", 'python3 /opt/lab/listeners.py "$@" >/dev/null 2>&1 & echo $!', "listen", *specs
    )
    pid = started.stdout.strip()
    try:
        yield
    finally:
        client.run(host, "kill", pid)


# --- `python -m lab flows`, the judge ---------------------------------------------------------------


def flows(*args):
    result = client.lab("flows", "--json", *args, check=False)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    report["exit"] = result.returncode
    return report


def find(report, source, destination, port, **match):
    found = [
        f
        for f in report["flows"]
        if f["source"] == source
        and f["destination"] == destination
        and f["port"] == port
        and all(f[k] == v for k, v in match.items())
    ]
    assert found, f"no flow {source} -> {destination}:{port} {match}"
    return found


def results(report, source, destination, port, **match):
    return {(f["family"], f["result"]) for f in find(report, source, destination, port, **match)}
