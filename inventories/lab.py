"""The rehearsal lab's Zimbra hosts, read from `python -m lab status --json` (bring it up first)."""

import json
import os
import subprocess
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_status = subprocess.run(
    [sys.executable, "-m", "lab", "status", "--json"], cwd=_REPO, check=True, capture_output=True, text=True
)
_lab = json.loads(_status.stdout)
if _lab["status"] != "up":
    sys.exit("the lab is not up: run `python -m lab up` (as root) first")

_ssh = {
    "ssh_config_file": _lab["ssh"]["config"],
    "ssh_key": _lab["ssh"]["key"],
    "ssh_user": _lab["ssh"]["user"],
    "ssh_known_hosts_file": _lab["ssh"]["known_hosts"],
    "ssh_strict_host_key_checking": "yes",
    # the controller reaches the lab from inside its network namespace, as SSH does (ProxyCommand): so must
    # the audit's active check, or its connections would leave through this machine's own default route
    "audit_probe_via": f"ip netns exec {_lab['netns']}",
}

zimbra_servers = [(host["name"], dict(_ssh)) for host in _lab["hosts"] if host["role"] == "zimbra"]
