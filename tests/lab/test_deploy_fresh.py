"""The deploy against fresh lab hosts: a dry run, and a host that is not a Zimbra server."""

import os
import re
import tempfile

from support import REPO, deploy, zmprov_calls
from test_deploy import answering, zimbra_address

from lab import client
from zimbra_firewall.ufw import parse_rules, parse_show_added, read_user_rules


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


def test_the_rule_read_agrees_with_ufw_show_added_on_every_rule_shape(fresh_lab):
    """The state read takes ufw's rules from user.rules/user6.rules without ufw's Python: on real ufw, it
    must list exactly what `ufw show added` lists, route rules (printed by ufw itself) included."""
    for rule in [
        "allow 7071",
        "allow OpenSSH",
        "deny out 25/tcp",
        "allow log 8080/tcp",
        "limit in on eth0 to any port 2222 proto tcp",
        "reject from 192.0.2.0/24 to any port 53 proto udp comment 'with spaces and é'",
        "allow from fd00::/64 to any port 10024:10032 proto tcp",
        "deny from 198.51.100.7",
        "allow out on eth0 to 203.0.113.9 port 443 proto tcp",
        "allow proto udp from 10.0.0.0/8 port 123 to any port 123",
        "insert 1 deny from 192.0.2.66",
        "route allow in on eth0 out on eth1",
    ]:
        client.run("zimbra", "sh", "-c", f"ufw {rule} >/dev/null")
        shown = parse_show_added(client.run("zimbra", "sh", "-c", "LC_ALL=C ufw show added").stdout)
        assert parse_rules(client.run("zimbra", "sh", "-c", read_user_rules()).stdout) == shown, rule
    assert shown[0] == ("deny", "from", "192.0.2.66") and any(r[0] == "route" for r in shown)
