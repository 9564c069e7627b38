"""The deploy against fresh lab hosts: a dry run, and a host that is not a Zimbra server."""

import os
import re
import tempfile

from support import REPO, deploy, zmprov_calls
from test_deploy import answering, zimbra_address

from lab import client


def test_dry_run_shows_the_plan_and_changes_nothing(fresh_lab):
    dry = deploy("--dry", yes=False)
    assert dry.returncode == 0
    plan = dry.stdout + dry.stderr
    for op in ("Zimbra ufw profiles", "ufw rules added", "ufw enabled", "memcached binding"):
        assert re.search(rf"{op}\s+1 \(zimbra\)", plan), plan
    assert client.run("zimbra", "ufw", "status").stdout.strip() == "Status: inactive"
    assert client.run("zimbra", "test", "-e", "/etc/ufw/applications.d/zimbra", check=False).returncode == 1
    assert [c for c in zmprov_calls() if c["caller"] == "" and "ms" in c["argv"]] == []
    assert {"7071/tcp", "11211/tcp"} <= answering("outside", zimbra_address(fresh_lab, "ipv4"))


def test_a_host_that_is_not_zimbra_fails_alone_untouched(fresh_lab):
    inventory = tempfile.NamedTemporaryFile("w", suffix=".py", dir=os.path.join(REPO, "inventories"), delete=False)
    with inventory:
        inventory.write(
            "from inventories.lab import _ssh, zimbra_servers\nlab = zimbra_servers + [('mgmt', dict(_ssh))]\n"
        )
    try:
        result = deploy(inventory=os.path.relpath(inventory.name, REPO))
    finally:
        os.unlink(inventory.name)
    output = result.stdout + result.stderr
    assert "not a Zimbra server" in output
    assert client.run("mgmt", "ufw", "status").stdout.strip() == "Status: inactive"
    assert client.run("zimbra", "ufw", "status").stdout.strip().startswith("Status: active")
