"""The lab's probes judge a connect that fails on their own side (no route, no source address) as failed, never
as a connection: a selector reports such a socket writable with SO_ERROR 0, which read naively made a
blocked flow pass for an open one. Run in a network namespace of their own (nothing leaves this machine)."""

import json
import os
import subprocess
import sys

import pytest

from lab.runtime import GUEST_DIR

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace of its own needs root")

# no route in a new namespace: connect() fails at once; ::1 once lo is up: refused, nothing listens
UNROUTED, LOOPBACK = "fd00::1", "::1"


def in_own_namespace(script: str, *arguments: str, stdin: str = "") -> dict | list:
    shell = 'ip link set lo up && exec "$@"'
    command = ["unshare", "--net", "sh", "-c", shell, "sh", sys.executable, os.path.join(GUEST_DIR, script)]
    result = subprocess.run(command + list(arguments), input=stdin, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_probe_and_scan_say_failed_or_closed_never_open():
    assert in_own_namespace("probe.py", UNROUTED, "22/tcp") == {"22/tcp": "failed"}
    assert in_own_namespace("probe.py", LOOPBACK, "22/tcp") == {"22/tcp": "closed"}
    scanned = in_own_namespace("scan.py", "--ports", "20-29", UNROUTED)
    assert (scanned["open"], scanned["failed"]) == ([], 10)


def test_a_flow_check_that_cannot_leave_is_not_ok_and_says_why():
    checks = {"timeout": 1, "checks": [{"flow": 0, "kind": "connect", "address": UNROUTED, "family": 6, "port": 22}]}
    [outcome] = in_own_namespace("flowcheck.py", stdin=json.dumps(checks))
    assert outcome["ok"] is False and outcome["detail"] == "connect failed at once: Network is unreachable"


def test_the_prober_counts_no_connection_to_an_unreachable_target():
    report = in_own_namespace("prober.py", "--stop", "/nonexistent", "--most", "0.2", f"[{UNROUTED}]:22")
    counts = report["targets"][f"[{UNROUTED}]:22"]
    assert counts["tried"] > 0 and counts["failed"] == counts["tried"] and counts["connected"] == 0
