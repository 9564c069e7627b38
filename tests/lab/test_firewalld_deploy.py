"""The deploy on firewalld hosts (RHEL, Rocky, Alma, Oracle Linux): a lab Zimbra host running Debian's
firewalld 1.3 (nftables, in its own network namespace) with RHEL's default zone, judged as the ufw hosts
are: probes from other hosts over IPv4 and IPv6, `lab flows --strict`, a prober racing every change, the
rollback, a second run that changes nothing."""

import glob

import pytest
from support import FIREWALLD_OPERATIONS as OPERATIONS
from support import LOCAL_ONLY, PUBLIC, deploy, flows
from test_audit import audit
from test_audit import findings as audit_findings
from test_audit import node as audit_node
from test_deploy import answering, zimbra_address
from test_fail_closed import assert_nothing_opened, both_families, probing
from test_safety import cut_off_and_rolled_back, group_data
from test_trust import ADD_ENTRIES, DELETE_ENTRY, HOSTILE, HOSTS_LINES, PWNED, dn, ldif, run_audit

from lab import client
from zimbra_firewall.audit import FAILING

# RHEL's fresh zone lets ssh in from everyone and nothing of Zimbra's: ports closed before and after the
# first deploy, and the one each viewer reaches throughout
FIRST = {
    "outside": {"closed": both_families([7071, 389, 11211]), "open": []},
    "mgmt": {"closed": both_families([7072, 11211, 8443]), "open": both_families([22])},
}
# a deployed host: closed before and after a change, and open throughout
DEPLOYED = {
    "outside": {"closed": both_families([7071, 389, 11211, 22]), "open": both_families([25])},
    "mgmt": {"closed": both_families([7072, 11211, 8443]), "open": both_families([22])},
}


def firewalld_lab():
    client.lab("down")
    client.lab("up", "--firewalld", "all")
    return client.status()


@pytest.fixture(scope="module")
def deployed():
    """A fresh firewalld host, deployed once while probers watch; the read-only tests below share it."""
    lab = firewalld_lab()
    with probing(FIRST) as reports:
        first = deploy()
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    return lab, first, reports


def test_the_lab_host_runs_firewalld_as_rhel_ships_it():
    firewalld_lab()
    assert client.status()["hosts"][0]["firewall"] == "firewalld"
    zone = client.run("zimbra", "firewall-cmd", "--list-services").stdout.split()
    assert sorted(zone) == ["cockpit", "dhcpv6-client", "ssh"]
    assert client.run("zimbra", "sh", "-c", "command -v ufw", check=False).returncode != 0
    assert answering("outside", zimbra_address(client.status(), "ipv4")) == {"22/tcp"}


def test_the_first_deploy_opened_nothing_closed_and_changed_firewalld_once(deployed):
    _, first, reports = deployed
    assert_nothing_opened(reports, "first deploy on firewalld", FIRST)
    assert {op: r["success"] for op, r in first.ops.items()} == {
        op: 0 if op in ("Preflight", "Earlier rollbacks") else 1 for op in OPERATIONS
    }
    output = first.stdout + first.stderr
    assert 'removing from zone public (opens 22/tcp wider than the policy): <service name="ssh" />' in output
    assert 'removing from zone public (named for removal): <service name="cockpit" />' in output
    assert 'keeping in zone public: <service name="dhcpv6-client" />' in output


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_outside_and_management_reach_what_they_reach_on_a_ufw_host(deployed, family):
    lab, _, _ = deployed
    assert answering("outside", zimbra_address(lab, family)) == PUBLIC
    assert answering("mgmt", zimbra_address(lab, family)) == PUBLIC | LOCAL_ONLY
    filtered = client.probe("outside", zimbra_address(lab, family), ["11211/tcp", "11211/udp", "7071/tcp"])
    assert set(filtered.values()) == {"filtered"}


def test_every_flow_the_judge_knows_is_as_it_must_be(deployed):
    report = flows("--strict")
    assert report["summary"]["broken"] == report["summary"]["exposed"] == 0


def test_what_firewalld_holds_is_the_owned_policy_and_the_pruned_zone(deployed):
    owned = client.run("zimbra", "firewall-cmd", "--info-policy", "zimbra-firewall").stdout
    assert "ingress-zones: ANY" in owned and "egress-zones: HOST" in owned and "services: zimbra-public" in owned
    assert 'rule family="ipv4" source address="10.77.1.0/24" service name="zimbra-local" accept' in owned
    assert client.run("zimbra", "firewall-cmd", "--list-services").stdout.split() == ["dhcpv6-client"]
    assert client.run("zimbra", "firewall-cmd", "--permanent", "--zone=public", "--get-target").stdout.strip() == "DROP"


def test_a_second_run_changes_nothing(deployed):
    again = deploy()
    assert again.returncode == 0
    assert {op: r["no_change"] for op, r in again.ops.items()} == {op: 1 for op in OPERATIONS}


def test_the_audit_judges_firewalld_as_it_judges_ufw_and_its_fix_works(deployed, tmp_path):
    """After the deploy: no failing verdict, 7071 reachable from the management subnets alone, the controller's
    probe agreeing with firewalld's rules. A rich rule opening 7071 to everyone: `too open`, exit 1, with the
    firewall-cmd that takes it away; run, the audit passes again."""
    clean = audit(tmp_path, "audit_probe=True")
    assert clean.returncode == 0, (clean.stdout + clean.stderr)[-3000:]
    zimbra = audit_node(clean.report)
    assert zimbra["firewall"] == "firewalld" and zimbra["complete"] and zimbra["ufw"]["incoming"] == "deny"
    assert not {verdict for verdict, _ in audit_findings(clean.report)} & FAILING
    admin = [s for s in zimbra["sockets"] if s["port"] == 7071 and s["proto"] == "tcp"]
    assert {name for s in admin for name in s["reach"]} == {"10.77.1.0/24", "fd5a:7e3c:91b2:1::/64"}
    assert {s["probe"]["agrees"] for s in zimbra["sockets"] if s.get("probe")} == {True}
    rule = 'rule family="ipv4" port port="7071" protocol="tcp" accept'
    client.run("zimbra", "firewall-cmd", "-q", "--permanent", "--add-rich-rule", rule)
    client.run("zimbra", "firewall-cmd", "-q", "--reload")
    drifted = audit(tmp_path, "audit_probe=True")
    assert drifted.returncode == 1
    assert ("too open", "7071/tcp") in audit_findings(drifted.report)
    finding = next(f for f in audit_node(drifted.report)["findings"] if f["port"] == "7071/tcp")
    assert finding["fix"] == [
        f"firewall-cmd --permanent --zone=public --remove-rich-rule='{rule}' && firewall-cmd --reload"
    ]
    client.run("zimbra", "sh", "-c", finding["fix"][0])
    assert audit(tmp_path).returncode == 0


def test_drift_in_files_and_at_runtime_is_repaired_by_one_reload_that_opens_nothing(deployed):
    lab, _, _ = deployed
    client.run("zimbra", "firewall-cmd", "-q", "--permanent", "--add-service=http")
    client.run(
        "zimbra", "firewall-cmd", "-q", "--permanent", "--add-rich-rule", 'rule port port="7071" protocol="tcp" accept'
    )
    client.run("zimbra", "firewall-cmd", "-q", "--reload")
    client.run("zimbra", "firewall-cmd", "-q", "--add-port=389/tcp")  # runtime only: no file says it
    client.run("zimbra", "firewall-cmd", "-q", "--add-forward-port=port=2222:proto=tcp:toport=22")  # and SSH on 2222
    assert client.probe("outside", zimbra_address(lab, "ipv4"), ["2222/tcp"]) == {"2222/tcp": "open"}
    assert {"80/tcp", "7071/tcp", "389/tcp"} <= answering("outside", zimbra_address(lab, "ipv4"))
    closed_throughout = {"outside": {"closed": both_families([11211, 7072]), "open": both_families([25])}}
    with probing(closed_throughout) as reports:
        repaired = deploy()
    assert repaired.returncode == 0
    assert_nothing_opened(reports, "drift repair on firewalld", closed_throughout)
    changed = {op for op, r in repaired.ops.items() if r["success"]}
    assert changed == {
        "Rollback armed",
        "firewalld configuration",
        "firewalld reloaded",
        "New SSH connection",
        "Rollback disarmed",
    }
    output = repaired.stdout + repaired.stderr
    assert 'removing from zone public (opens 80/tcp wider than the policy): <service name="http" />' in output
    assert "opens 7071/tcp wider than the policy" in output
    for family in ("ipv4", "ipv6"):
        assert answering("outside", zimbra_address(lab, family)) == PUBLIC
    assert client.probe("outside", zimbra_address(lab, "ipv4"), ["2222/tcp"]) == {"2222/tcp": "filtered"}
    assert all(r["no_change"] == 1 for r in deploy().ops.values())


def test_an_admins_policy_to_the_host_is_pruned_of_what_widens_and_keeps_the_rest(deployed):
    admin = (
        '<?xml version="1.0" encoding="utf-8"?>\n<policy target="CONTINUE"><ingress-zone name="ANY"/>'
        '<egress-zone name="HOST"/><service name="https"/><port port="7071" protocol="tcp"/></policy>\n'
    )
    client.run("zimbra", "sh", "-c", "cat > /etc/firewalld/policies/admin.xml && firewall-cmd -q --reload", input=admin)
    assert "7071/tcp" in answering("outside", "10.77.0.10")
    pruned = deploy()
    output = pruned.stdout + pruned.stderr
    assert pruned.returncode == 0, output
    assert (
        'removing from policy admin (opens 7071/tcp wider than the policy): <port port="7071" protocol="tcp" />'
        in output
    )
    # https is a shipped service that only the policy names: read, and judged by its ports (443, public)
    assert 'keeping in policy admin: <service name="https" />' in output
    assert answering("outside", "10.77.0.10") == PUBLIC
    assert all(r["no_change"] == 1 for r in deploy().ops.values())


def test_the_prober_sees_a_port_firewalld_opens_for_a_second(deployed):
    """The witness can fail: a runtime port open for about a second is seen from outside."""
    watched = {"outside": {"closed": both_families([7071]), "open": []}}
    with probing(watched) as reports:
        client.run(
            "zimbra", "sh", "-c", "firewall-cmd -q --add-port=7071/tcp; sleep 1; firewall-cmd -q --remove-port=7071/tcp"
        )
    assert reports["outside"]["targets"]["10.77.0.10:7071"]["connected"] > 0


def test_a_policy_change_on_an_active_firewalld_opens_nothing(deployed):
    with probing(DEPLOYED) as reports:
        changed = deploy("--data", "default_incoming=reject")
    assert changed.returncode == 0
    assert_nothing_opened(reports, "target DROP → REJECT on firewalld", DEPLOYED)
    assert (
        client.run("zimbra", "firewall-cmd", "--permanent", "--zone=public", "--get-target").stdout.strip() == "REJECT"
    )
    assert set(client.probe("outside", "10.77.0.10", ["7071/tcp"]).values()) == {"closed"}  # refused, not dropped
    assert deploy().returncode == 0


def test_a_change_that_cuts_ssh_off_is_rolled_back_to_rhels_zone():
    lab = firewalld_lab()
    cut_off_and_rolled_back()
    assert sorted(client.run("zimbra", "firewall-cmd", "--list-services").stdout.split()) == [
        "cockpit",
        "dhcpv6-client",
        "ssh",
    ]
    assert client.run("zimbra", "ls", "/etc/firewalld/zones", "/etc/firewalld/policies").stdout.split() == [
        "/etc/firewalld/policies:",
        "/etc/firewalld/zones:",
    ]
    assert answering("outside", zimbra_address(lab, "ipv4")) == {"22/tcp"}
    rerun = deploy()
    assert rerun.returncode == 0 and "ROLLBACK happened" in rerun.stdout + rerun.stderr
    assert answering("outside", zimbra_address(lab, "ipv4")) == PUBLIC
    assert all(r["no_change"] == 1 for r in deploy().ops.values())


def firewalld_files():
    """What a refused run, or one fed hostile values, must leave exactly as it was."""
    return client.run(
        "zimbra", "sh", "-c", "cd /etc/firewalld && find . -type f | sort | xargs cat; firewall-cmd --list-all"
    ).stdout


@pytest.mark.parametrize(
    "key, value",
    [
        ("rule_comment", "zfw'; firewall-cmd --panic-on; '"),
        ("profile_names", {"public": "Zimbra $(reboot)", "local-only": "Zimbra Local", "intra": "Zimbra Intra"}),
        ("firewall", "firewalld; reboot"),
        ("firewalld_remove_services", ["ssh --zone=trusted"]),
        ("firewalld_accept_zones", ["public/../../x"]),
    ],
)
def test_hostile_configuration_stops_the_run_before_any_command_on_firewalld(deployed, key, value):
    before = firewalld_files()
    result = deploy("--group-data", group_data(**{key: value}))
    output = result.stdout + result.stderr
    assert result.returncode != 0 and f"group_data {key}" in output, output[-2000:]
    assert "Starting operation" not in output
    assert firewalld_files() == before


def test_hostile_ldap_values_run_nothing_and_widen_nothing_on_firewalld(deployed):
    """The trust boundary's payloads (tests/lab/test_trust.py), written into the firewalld host's own LDAP: no
    payload runs, each is named, firewalld's files stay as they were, the audit passes."""
    before = firewalld_files()
    client.run("zimbra", "python3", "-c", ADD_ENTRIES, input="\n\n".join(ldif(*entry) for entry in HOSTILE) + "\n")
    client.run("zimbra", "sh", "-c", f"cp /etc/hosts /etc/hosts.zfw && printf '{HOSTS_LINES}' >> /etc/hosts")
    try:
        result = deploy()
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        for text in (
            "left out: cn '$(touch /tmp/zfw-pwned-cn2)': not a host name",
            "server evil1.zfw.test left out: zimbraServiceHostname '-e;system(q(touch /tmp/zfw-pwned-perl))'",
            "server evil7.zfw.test: zimbraAdminPort '7071 proto udp' left out: not a port number",
            "peer zero4.zfw.test resolves on this node to 0.0.0.0, the unspecified address",
        ):
            assert text in output, text
        assert "\x1b]0;owned" not in output
        assert firewalld_files() == before
        found = client.run("zimbra", "sh", "-c", f"ls {PWNED}* 2>/dev/null; true").stdout.split()
        assert found == [] and glob.glob(f"{PWNED}*") == []
        assert run_audit().returncode == 0
    finally:
        for cn, *_ in HOSTILE:
            client.run("zimbra", "python3", "-c", DELETE_ENTRY, dn(cn))
        client.run("zimbra", "mv", "/etc/hosts.zfw", "/etc/hosts")
