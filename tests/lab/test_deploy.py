"""The deploy on the lab: a fresh Zimbra host hardened, proven by probes from other hosts."""

import pytest
from support import LOCAL_ONLY, OPERATIONS, PUBLIC, ZIMBRA_FQDN, deploy, flows, zmprov, zmprov_calls

from lab import client
from scripts.reachability import catalogue_specs


def zimbra_address(lab, family):
    return next(h[family] for h in lab["hosts"] if h["name"] == "zimbra")


def answering(viewer, address):
    return {spec for spec, state in client.probe(viewer, address, catalogue_specs()).items() if state == "open"}


@pytest.fixture(scope="module")
def deployed():
    """One fresh lab, deployed once; the read-only tests below share it."""
    client.lab("down")
    client.lab("up")
    first = deploy()
    assert first.returncode == 0, first.stdout + first.stderr
    first.zmprov_calls = zmprov_calls()
    return client.status(), first


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_outside_reaches_exactly_the_public_mail_ports(deployed, family):
    lab, _ = deployed
    assert answering("outside", zimbra_address(lab, family)) == PUBLIC
    filtered = client.probe("outside", zimbra_address(lab, family), ["11211/tcp", "11211/udp", "7071/tcp"])
    assert set(filtered.values()) == {"filtered"}


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_management_reaches_local_only_ports_and_ssh_but_not_internal_ones(deployed, family):
    lab, _ = deployed
    assert answering("mgmt", zimbra_address(lab, family)) == PUBLIC | LOCAL_ONLY


def memcached_listeners():
    listening = client.run("zimbra", "ss", "-Hlnt", "sport = :11211").stdout.split()
    return sorted(w for w in listening if w.endswith(":11211"))


def test_memcached_listens_on_loopback_and_where_nginx_looks_without_udp(deployed):
    assert memcached_listeners() == ["10.77.0.10:11211", "127.0.0.1:11211", "[fd5a:7e3c:91b2::a]:11211"]
    assert client.run("zimbra", "ss", "-Hlnu", "sport = :11211").stdout == ""
    # nginx's memcached address (ProxyConfGen: the resolved host name) answers; from off the host it is filtered
    nginx = client.run("zimbra", "cat", "/opt/zimbra/conf/nginx/includes/nginx.conf.memcache").stdout
    assert "  servers   10.77.0.10:11211;" in nginx
    report = flows("--strict")
    assert report["summary"]["broken"] == report["summary"]["exposed"] == 0
    assert [f["result"] for f in report["flows"] if f["kind"] == "nginx-memcache"] == ["ok"]
    for viewer in ("outside", "mgmt"):
        assert set(client.probe(viewer, "10.77.0.10", ["11211/tcp", "11211/udp"]).values()) == {"filtered"}


def test_zmprov_shows_the_new_values(deployed):
    assert zmprov("-l", "gs", ZIMBRA_FQDN, "zimbraMemcachedBindAddress", "zimbraMemcachedClientServerList").stdout == (
        f"# name {ZIMBRA_FQDN}\nzimbraMemcachedBindAddress: 127.0.0.1\nzimbraMemcachedBindAddress: fd5a:7e3c:91b2::a\n"
        "zimbraMemcachedBindAddress: 10.77.0.10\nzimbraMemcachedClientServerList: 127.0.0.1\n\n"
    )


def test_first_run_changed_every_step_and_called_zmprov_once(deployed):
    _, first = deployed
    assert {op: r["success"] for op, r in first.ops.items()} == {
        # a fresh ufw already denies, and has no rule to remove
        op: 0 if op in ("Preflight", "Earlier rollbacks", "ufw rules removed", "ufw default policies") else 1
        for op in OPERATIONS
    }
    own = [c["argv"][:2] for c in first.zmprov_calls if c["caller"] == ""]
    assert own == [["-l", "ms"], ["rmcc", ZIMBRA_FQDN]]  # the client list changed: mailboxd re-reads it


def test_second_run_changes_nothing_and_runs_no_zmprov(deployed):
    calls = len(zmprov_calls())
    again = deploy()
    assert again.returncode == 0
    assert {op: r["no_change"] for op, r in again.ops.items()} == {op: 1 for op in OPERATIONS}
    assert zmprov_calls()[calls:] == []  # neither zmprov nor zmmemcachedctl (which calls zmprov) ran


def test_zmprov_read_path_costs_gas_gs_and_gcf_and_agrees_with_ldap(deployed):
    calls = len(zmprov_calls())
    again = deploy("--data", "zimbra_read=zmprov")
    assert again.returncode == 0
    assert all(r["no_change"] == 1 for r in again.ops.values())
    assert [c["argv"][:2] for c in zmprov_calls()[calls:]] == [["-l", "gas"], ["-l", "gs"], ["-l", "gcf"]]


def test_drift_is_repaired_and_reported(deployed):
    lab, _ = deployed
    client.run("zimbra", "ufw", "allow", "7071")
    client.run("zimbra", "ufw", "allow", "OpenSSH")
    client.run("zimbra", "ufw", "allow", "5666/tcp")  # a monitoring agent's port: no Zimbra port
    zmprov("-l", "ms", ZIMBRA_FQDN, "zimbraMemcachedBindAddress", "0.0.0.0")
    client.run("zimbra", "sed", "-i", "s/^ports=25,/ports=7072,25,/", "/etc/ufw/applications.d/zimbra")
    assert "7071/tcp" in answering("outside", zimbra_address(lab, "ipv4"))
    repaired = deploy()
    assert repaired.returncode == 0
    changed = {op for op, r in repaired.ops.items() if r["success"]}
    assert changed == {
        "Rollback armed",
        "Zimbra ufw profiles",
        "ufw rules removed",  # only: the drift added rules, it removed none of ours
        "New SSH connection",
        "Rollback disarmed",
        "memcached binding",  # and its previous values kept, for undo.py
    }
    output = repaired.stdout + repaired.stderr
    assert "removing unmanaged rule that opens 7071/tcp wider than the policy: ufw allow 7071" in output
    # SSH open to everyone widens the policy (SSH from the management subnets only)
    assert "removing unmanaged rule that opens 22/tcp wider than the policy: ufw allow OpenSSH" in output
    assert "keeping unmanaged rule: ufw allow 5666/tcp" in output
    assert answering("outside", zimbra_address(lab, "ipv4")) == PUBLIC
    client.run("zimbra", "ufw", "delete", "allow", "5666/tcp")
    assert memcached_listeners() == ["10.77.0.10:11211", "127.0.0.1:11211", "[fd5a:7e3c:91b2::a]:11211"]
    assert all(r["no_change"] == 1 for r in deploy().ops.values())
