"""The admin's journey: a server set up by the how-to this project grew from (its Zimbra profile, `ufw allow
from <subnet>`, `ufw allow Zimbra`, `ufw enable`, memcached on 127.0.0.1), converged in one run with no closed
port opening on the way; then undo.py, which puts a node back as it was before the last deploy that changed
it, byte for byte."""

import json
import subprocess

import pytest
from support import OPERATIONS, PUBLIC, PYINFRA, REPO, ZIMBRA_FQDN, deploy, zmprov
from test_fail_closed import assert_nothing_opened, both_families, probing
from test_safety import group_data

from lab import client

MGMT_V4 = "10.77.1.0/24"
HOWTO_PROFILE = (
    "[Zimbra]\ntitle=Zimbra Collaboration Server\n"
    "description=Open source server for email, contacts, calendar, and more.\n"
    "ports=25,80,110,143,443,465,587,993,995,3443,5222,5223,7071,9071/tcp\n"
)
AS_ZIMBRA = ["runuser", "-u", "zimbra", "--"]
# the how-to's own steps, as its reader types them (ufw enable answers its prompt with --force here)
HOWTO = [
    ["ufw", "allow", "from", MGMT_V4],
    ["sh", "-c", f"printf '{HOWTO_PROFILE}' > /etc/ufw/applications.d/zimbra"],
    ["ufw", "allow", "Zimbra"],
    ["ufw", "--force", "enable"],
    [*AS_ZIMBRA, "/opt/zimbra/bin/zmprov", "ms", ZIMBRA_FQDN, "zimbraMemcachedBindAddress", "127.0.0.1"],
    [*AS_ZIMBRA, "/opt/zimbra/bin/zmprov", "ms", ZIMBRA_FQDN, "zimbraMemcachedClientServerList", "127.0.0.1"],
    [*AS_ZIMBRA, "/opt/zimbra/bin/zmmemcachedctl", "restart"],
]
LOCAL_ONLY_PORTS = [22, 80, 110, 143, 389, 7025, 7071, 7073]


def open_ports(viewer, address):
    """Every TCP port `viewer` connects to on `address`, by a full-range scan (1-65535)."""
    found = json.loads(client.run(viewer, "python3", "/opt/lab/scan.py", address).stdout)
    return set(found["open"])


def public_numbers():
    return {int(spec.split("/")[0]) for spec in PUBLIC}


@pytest.fixture
def howto_host():
    client.lab("down")
    client.lab("up")
    for step in HOWTO:
        client.run("zimbra", *step)


def test_a_server_set_up_by_the_how_to_converges_in_one_run_with_nothing_opening_on_the_way(howto_host):
    before = open_ports("outside", "10.77.0.10")
    # the how-to's exposure: its profile's ports, admin console and all, open to the world
    assert {7071, 9071, 80, 110, 143} <= before and 389 not in before
    plan = {"outside": {"closed": both_families([389, 11211, 7072, 8443, 22]), "open": both_families([25, 443])}}
    with probing(plan) as reports:
        result = deploy()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert_nothing_opened(reports, "the how-to's server converging", plan)
    # the run says what it replaced
    assert "(it held Zimbra)" in output
    assert "removing unmanaged rule that opens 80/tcp, 110/tcp, 143/tcp, 7071/tcp, 9071/tcp" in output
    assert "wider than the policy: ufw allow Zimbra\n" in output
    assert f"wider than the policy: ufw allow from {MGMT_V4}\n" in output
    # the exposure now: the public mail ports to the world, the local-only ones to the management subnets
    for address in ("10.77.0.10", "fd5a:7e3c:91b2::a"):
        assert open_ports("outside", address) == public_numbers(), address
    assert open_ports("mgmt", "10.77.0.10") == public_numbers() | set(LOCAL_ONLY_PORTS)
    assert "allow Zimbra" not in client.run("zimbra", "ufw", "show", "added").stdout
    bind = zmprov("-l", "gs", ZIMBRA_FQDN, "zimbraMemcachedBindAddress").stdout
    assert "zimbraMemcachedBindAddress: 10.77.0.10" in bind  # where nginx looks, not 127.0.0.1 alone
    again = deploy()
    assert {op: r["no_change"] for op, r in again.ops.items()} == {op: 1 for op in OPERATIONS}


def host_state():
    """What undo.py must put back exactly: the kernel's rules, ufw's files, memcached's attributes."""
    kernel = "sed -e '/^#/d' -e 's/ \\[[0-9]*:[0-9]*\\]$//'"
    files = "cd /etc/ufw && cat user.rules user6.rules ufw.conf applications.d/zimbra /etc/default/ufw"
    rules = client.run("zimbra", "sh", "-c", f"iptables-save | {kernel}; ip6tables-save | {kernel}; {files}").stdout
    memcached = zmprov("-l", "gs", ZIMBRA_FQDN, "zimbraMemcachedBindAddress", "zimbraMemcachedClientServerList")
    listening = client.run("zimbra", "ss", "-Hltn", "sport = :11211").stdout.split()
    return rules, memcached.stdout, sorted(word for word in listening if word.endswith(":11211"))


def undo(*args):
    command = [PYINFRA, "-y", "inventories/lab.py", "undo.py", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


def test_undo_puts_back_the_node_of_before_the_last_deploy_byte_for_byte_once(howto_host):
    first = deploy()
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    before = host_state()
    change = group_data(
        default_incoming="reject", memcached_bind_addresses=["127.0.0.1"], zimbra_nodes=["10.77.3.0/24"]
    )
    changed = deploy("--group-data", change)
    assert changed.returncode == 0, (changed.stdout + changed.stderr)[-3000:]
    assert host_state() != before
    with probing() as reports:
        result = undo()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "undo: puts back the firewall's files and rules as they were before the deploy of " in output
    assert_nothing_opened(reports, "undo")
    assert host_state() == before
    twice = undo()
    assert twice.returncode != 0
    assert (
        "nothing to undo: no deploy has changed this host since its last undo (or ever)" in twice.stdout + twice.stderr
    )
    assert host_state() == before


def test_undo_on_a_node_no_deploy_has_changed_refuses_and_changes_nothing():
    client.lab("down")
    client.lab("up")
    state = client.run("zimbra", "ufw", "status").stdout
    result = undo()
    assert result.returncode != 0
    assert "nothing to undo" in result.stdout + result.stderr
    assert client.run("zimbra", "ufw", "status").stdout == state
