"""The plan said per node before anything changes (zimbra_firewall/plan.py), on ufw states captured from the
lab's single server: fresh, converged, drifted, and set up by the how-to."""

import os

from test_policy import topology

from zimbra_firewall.plan import node_plan
from zimbra_firewall.policy import build_policy
from zimbra_firewall.settings import read_settings
from zimbra_firewall.ufw import parse_state

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "ufw")
LAB_MGMT = ["10.77.1.0/24", "fd5a:7e3c:91b2:1::/64"]  # group_data/lab.py, as the states were captured
DEPLOYED_MEMCACHED = {
    "zimbraMemcachedBindAddress": ("127.0.0.1", "fd5a:7e3c:91b2::a", "10.77.0.10"),
    "zimbraMemcachedClientServerList": ("127.0.0.1",),
}


def plan(state_name, memcached=None, **settings):
    with open(os.path.join(FIXTURES, f"{state_name}.txt")) as f:
        state = parse_state(f.read())
    read = topology("single-ldap")
    policy = build_policy(read_settings({"management_subnets": LAB_MGMT, **settings}), read)
    return node_plan(state, policy, read.this.attributes if memcached is None else memcached)


def test_a_fresh_server_gets_every_step_in_the_words_an_admin_types():
    lines = plan("state-fresh")
    assert lines[0].startswith("arm the rollback: ufw's files and the kernel's rules come back in 120 s")
    assert lines[1].startswith("write /etc/ufw/applications.d/zimbra: [Zimbra Public] ports=25,443,465,587,993,995/tcp")
    assert lines[2:9] == [
        "ufw app update 'Zimbra Public'",
        "ufw app update 'Zimbra Local'",
        "ufw allow from 10.77.1.0/24 to any port 22 proto tcp comment zimbra-firewall",
        "ufw allow from fd5a:7e3c:91b2:1::/64 to any port 22 proto tcp comment zimbra-firewall",
        "ufw allow 'Zimbra Public' comment zimbra-firewall",
        "ufw allow from 10.77.1.0/24 to any app 'Zimbra Local' comment zimbra-firewall",
        "ufw allow from fd5a:7e3c:91b2:1::/64 to any app 'Zimbra Local' comment zimbra-firewall",
    ]
    assert lines[9:] == [
        "ufw --force enable",
        "/opt/zimbra/bin/zmprov -l ms zimbra.zfw.test zimbraMemcachedBindAddress 127.0.0.1 "
        "zimbraMemcachedBindAddress fd5a:7e3c:91b2::a zimbraMemcachedBindAddress 10.77.0.10 "
        "zimbraMemcachedClientServerList 127.0.0.1",
        "zmmemcachedctl restart",
        "/opt/zimbra/bin/zmprov rmcc zimbra.zfw.test",
    ]


def test_a_converged_server_has_nothing_to_change():
    assert plan("state-deployed", DEPLOYED_MEMCACHED) == []


def test_drift_is_planned_away_with_the_reason_and_a_default_policy_without_reload():
    lines = plan("state-deployed-and-drift", DEPLOYED_MEMCACHED, default_incoming="reject")
    assert "ufw --force delete allow 7071   # opens 7071/tcp wider than the policy" in lines
    assert "ufw --force delete allow OpenSSH   # opens 22/tcp wider than the policy" in lines
    assert "ufw default reject incoming   # its files and kernel chains, without ufw's reload" in lines
    assert not any("enable" in line or "zmprov" in line for line in lines)
    kept = plan("state-deployed-and-drift", DEPLOYED_MEMCACHED, purge_unmanaged_rules=True)
    assert "ufw --force delete deny out 25/tcp   # not this deploy's (purge_unmanaged_rules)" in kept


def test_the_how_tos_server_is_told_what_is_replaced():
    lines = plan(
        "state-howto", {"zimbraMemcachedBindAddress": ("127.0.0.1",), "zimbraMemcachedClientServerList": ("127.0.0.1",)}
    )
    assert lines[1].endswith("(it held Zimbra)")
    assert (
        "ufw --force delete allow Zimbra   # opens 80/tcp, 110/tcp, 143/tcp, 7071/tcp, 9071/tcp wider than the policy"
        in lines
    )
    assert any(line.startswith("ufw --force delete allow from 10.77.1.0/24   # opens 53/tcp, 53/udp") for line in lines)
    assert "ufw --force enable" not in lines  # the how-to enabled it
    assert "zmmemcachedctl restart" in lines  # 127.0.0.1 alone: nginx's route cache was off


def test_a_refused_host_plans_nothing():
    with open(os.path.join(FIXTURES, "state-fresh.txt")) as f:
        state = parse_state(f.read())
    policy = build_policy(read_settings({"management_subnets": LAB_MGMT}), topology("single-ldap"))
    assert node_plan(state, policy, {}, refused="ufw is not installed") == [
        "nothing: the preflight refuses this host (ufw is not installed)"
    ]
