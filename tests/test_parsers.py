"""Parsers and the rule plan, on output captured from ufw 0.36 and the Zimbra stand-in in the lab."""

import os

from test_policy import policy, topology

from zimbra_firewall.policy import topology_attributes
from zimbra_firewall.safety import parse_preflight, preflight_problem
from zimbra_firewall.ufw import (
    Port,
    parse_defaults,
    parse_rules,
    parse_show_added,
    parse_state,
    plan_rules,
    render_profiles,
)
from zimbra_firewall.ufw_policy import rule_arguments, ufw_rules
from zimbra_firewall.zimbra import memcached_changes

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
TAG = ("comment", "zimbra-firewall")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return f.read()


def test_ufws_rule_files_read_as_ufw_show_added_prints_them():
    """42 rules of every shape (apps with spaces, log/log-all, in/out interfaces, ranges, v4/v6 only, source
    ports, inserted rules, comments with spaces and accents), captured from ufw 0.36 in the lab."""
    expected = parse_show_added(fixture("ufw/show-added-varied.txt"))
    assert len(expected) == 42
    assert parse_rules(fixture("ufw/user-rules-varied.txt")) == expected
    # a route rule is ufw's to print: the read then carries `ufw show added`'s own output
    assert parse_rules("show-added\n" + fixture("ufw/show-added-varied.txt")) == expected
    # with IPV6=no, ufw ignores user6.rules
    v4_only = parse_rules(fixture("ufw/user-rules-varied.txt"), ipv6=False)
    assert ("allow", "from", "fd00::/64", "to", "any", "port", "10024:10032", "proto", "tcp") not in v4_only
    assert len(v4_only) < len(expected)


def test_state_of_a_fresh_host_and_of_a_deployed_host_with_drift():
    fresh = parse_state(fixture("ufw/state-fresh.txt"))
    apps = fresh.pop("apps")
    assert fresh == {
        "active": False,
        "active6": False,
        "incoming": "deny",
        "outgoing": "allow",
        "ipv6": True,
        "rules": [],
        "profiles": None,
    }
    # Debian's own profiles, a port without a protocol meaning both
    assert apps["OpenSSH"] == (Port(22, 22, "tcp"),) and apps["DNS"] == (Port(53, 53, "tcp"), Port(53, 53, "udp"))
    assert apps["KTorrent"] == (Port(6881, 6881, "tcp"), Port(4444, 4444, "udp")) and len(apps) == 39
    state = parse_state(fixture("ufw/state-deployed-and-drift.txt"))
    assert (state["active"], state["incoming"], state["outgoing"], state["ipv6"]) == (True, "deny", "allow", True)
    assert state["rules"][3:6] == [("allow", "7071"), ("allow", "OpenSSH"), ("deny", "out", "25/tcp")]
    assert state["profiles"].startswith("# Managed by zimbra-firewall") and state["profiles"].endswith("7073/tcp")
    assert Port(7071, 7071, "tcp") in state["apps"]["Zimbra Local"]
    assert parse_defaults(fixture("ufw/default-ufw.txt")) == {"ipv6": True, "incoming": "deny", "outgoing": "allow"}
    # a file without the IPV6 line: ufw then loads no IPv6 rule (and drops IPv6 but on loopback)
    without = "\n".join(line for line in fixture("ufw/default-ufw.txt").splitlines() if not line.startswith("IPV6"))
    assert parse_defaults(without)["ipv6"] is False


def test_a_state_read_that_went_wrong_is_an_error_not_an_empty_firewall():
    for broken in ("", fixture("ufw/state-fresh.txt").replace("1\n", "4\n", 1)):
        try:
            parse_state(broken)
        except ValueError:
            continue
        raise AssertionError(f"accepted {broken[:20]!r}")


def test_preflight_on_the_zimbra_host_and_on_a_host_that_is_not_zimbra():
    zimbra = parse_preflight(fixture("ufw/preflight-zimbra.txt"))
    assert zimbra == {
        "zimbra": True,
        "ufw": True,
        "firewalld": False,
        "firewalld_running": False,
        "firewalld_policies": False,
        "ipv6": True,
        "ssh_connection": zimbra["ssh_connection"],
    }
    assert zimbra["ssh_connection"].startswith("10.77.1.1 ") and zimbra["ssh_connection"].endswith(" 22")
    lab = policy(management_subnets=["10.77.1.0/24"])
    assert preflight_problem(lab, zimbra) is None
    assert "outside management_subnets" in preflight_problem(policy(), zimbra)
    assert preflight_problem(policy(allow_lockout_risk=True), zimbra) is None
    assert "port 22" in preflight_problem(policy(management_subnets=["10.77.1.0/24"], firewall_ssh_port=2222), zimbra)
    assert "IPV6=no" in preflight_problem(
        policy(management_subnets=["10.77.1.0/24", "fd00:1::/64"]), {**zimbra, "ipv6": False}
    )
    other = parse_preflight(fixture("ufw/preflight-not-zimbra.txt"))
    assert (other["zimbra"], other["ufw"]) == (False, True)
    assert "not a Zimbra server" in preflight_problem(lab, other)
    assert "not installed" in preflight_problem(lab, {**zimbra, "ufw": False})


def test_show_added_gives_one_rule_per_line_with_comments_and_v6_twins_folded():
    assert parse_show_added(fixture("ufw/show-added-empty.txt")) == []
    rules = parse_show_added(fixture("ufw/show-added-deployed-and-drift.txt"))
    assert rules[:4] == [
        ("allow", "from", "10.77.1.0/24", "to", "any", "port", "22", "proto", "tcp", *TAG),
        ("allow", "Zimbra Public", *TAG),
        ("allow", "from", "10.77.1.0/24", "to", "any", "app", "Zimbra Local", *TAG),
        ("allow", "7071"),
    ]
    assert len(rules) == 9  # "allow 7071" applies to IPv4 and IPv6 but is listed once


def test_rule_plan_on_a_drifted_host():
    lab_policy = policy(management_subnets=["10.77.1.0/24", "fd5a:7e3c:91b2:1::/64"])
    ssh = {"OpenSSH": (Port(22, 22, "tcp"),)}  # /etc/ufw/applications.d/openssh-server
    drifted = parse_show_added(fixture("ufw/show-added-deployed-and-drift.txt"))
    plan = plan_rules(drifted, **rule_arguments(lab_policy), host_apps=ssh)
    assert plan.add == ()
    assert plan.delete_owned == ()
    # 7071 and SSH (the OpenSSH profile) open to all, and everything open to 10.1.1.0/24, widen the policy;
    # the rest is only listed
    assert plan.delete_widening == (("allow", "7071"), ("allow", "from", "10.1.1.0/24"), ("allow", "OpenSSH"))
    assert plan.opened[2] == (Port(22, 22, "tcp"),)
    assert plan.kept_unmanaged == (("deny", "5000:5010/udp"),)
    purge = plan_rules(
        parse_show_added(fixture("ufw/show-added-deployed-and-drift.txt")),
        **rule_arguments(
            policy(management_subnets=["10.77.1.0/24", "fd5a:7e3c:91b2:1::/64"], purge_unmanaged_rules=True)
        ),
        host_apps=ssh,
    )
    assert purge.delete_unmanaged == (("deny", "5000:5010/udp"),)


def test_rule_plan_adopts_untagged_twins_and_drops_owned_leftovers():
    p = policy()
    current = [
        ("allow", "from", "10.10.0.0/24", "to", "any", "port", "22", "proto", "tcp"),
        ("allow", "from", "192.168.9.0/24", "to", "any", "app", "Zimbra Local", *TAG),
    ]
    plan = plan_rules(current, **rule_arguments(p))
    assert plan.kept_unmanaged == () and plan.delete_widening == ()
    assert plan.delete_owned == (current[1],)
    assert (*ufw_rules(p)[0], *TAG) in plan.add  # re-added with the tag: ufw updates the untagged twin in place


def test_a_one_address_management_subnet_is_written_as_ufw_stores_it_and_a_converged_host_plans_nothing():
    # ufw keeps a host address without its /32 or /128 (ufw's util.normalize_address): a rule written with it
    # would never match the stored one, and the SSH rule would be deleted and re-added on every run
    p = policy(management_subnets=["10.10.0.5/32", "fd00:10::5/128"])
    assert ufw_rules(p)[:2] == (
        ("allow", "from", "10.10.0.5", "to", "any", "port", "22", "proto", "tcp"),
        ("allow", "from", "fd00:10::5", "to", "any", "port", "22", "proto", "tcp"),
    )
    stored = [(*rule, *TAG) for rule in ufw_rules(p)]
    assert not plan_rules(stored, **rule_arguments(p)).changes


def test_rendered_profile_is_what_ufw_reads():
    text = render_profiles(policy().profiles)
    assert "[Zimbra Public]\ntitle=Zimbra public mail services\n" in text
    assert "ports=80,110,143,389,7025,7071,7073/tcp\n" in text


def test_the_ldap_read_and_the_zmprov_read_see_the_same_install():
    ldap, zmprov = topology("single-ldap"), topology("single-zmprov")
    assert (ldap.source, zmprov.source) == ("ldap", "zmprov")
    assert ldap.own_addresses == zmprov.own_addresses == ("10.77.0.10", "fd5a:7e3c:91b2::a")
    for read in (ldap, zmprov):
        assert read.this.hostname == "zimbra.zfw.test" and read.peers == ()
        assert read.this.addresses == ("fd5a:7e3c:91b2::a", "10.77.0.10")
        assert {"ldap", "mta", "mailbox", "proxy", "memcached", "logger"} <= read.this.services
    # cn=config's values are inherited in LDAP; `zmprov gs` prints them already merged
    for name in topology_attributes():
        if name != "cn":
            assert ldap.this.attributes.get(name) == zmprov.this.attributes.get(name), name


def test_a_cluster_read_holds_every_server_with_its_addresses():
    read = topology("cluster-mta")
    assert read.this.name == "mta.zfw.test" and read.this.services == {"amavis", "mta", "opendkim", "stats"}
    assert [(s.name, s.addresses) for s in read.peers] == [
        ("ldap.zfw.test", ("fd5a:7e3c:91b2::a", "10.77.0.10")),
        ("mailbox-2.zfw.test", ("fd5a:7e3c:91b2::e", "10.77.0.14")),
        ("mailbox.zfw.test", ("fd5a:7e3c:91b2::d", "10.77.0.13")),
        ("proxy.zfw.test", ("fd5a:7e3c:91b2::c", "10.77.0.12")),
    ]
    mailbox = read.peers[2]
    assert mailbox.value("zimbraLmtpBindPort") == "7025"  # inherited from cn=config
    assert mailbox.value("zimbraReverseProxyLookupTarget") == "TRUE"  # its own


def test_a_failed_read_says_why():
    text = "zimbra.zfw.test\n@@zimbra-firewall@@\n\n@@zimbra-firewall@@\nfailed\nERROR: service.FAILURE (ldap down)\n"
    from facts.zimbra import ZimbraTopology

    read = ZimbraTopology().process(text.splitlines() + ["@@zimbra-firewall@@", "@@zimbra-firewall@@"])
    assert read.this is None and read.error == "ERROR: service.FAILURE (ldap down)"


def test_memcached_changes_ignore_order_and_unset_with_empty_value():
    current = {"zimbraMemcachedBindAddress": ["::1", "127.0.0.1"]}
    assert memcached_changes(current, {"zimbraMemcachedBindAddress": ["127.0.0.1", "::1"]}) == []
    assert memcached_changes(current, {"zimbraMemcachedBindAddress": []}) == ["zimbraMemcachedBindAddress", ""]
    assert memcached_changes({}, {"zimbraMemcachedClientServerList": ["a", "b"]}) == [
        "zimbraMemcachedClientServerList",
        "a",
        "zimbraMemcachedClientServerList",
        "b",
    ]


def test_the_topology_read_names_every_attribute_it_wants_and_never_the_private_key():
    from facts.zimbra import ZimbraTopology

    attributes = topology_attributes()
    assert {"zimbraServiceEnabled", "zimbraServiceHostname", "zimbraAdminPort", "zimbraLogHostname"} <= set(attributes)
    for read in ("ldap", "zmprov"):
        command = ZimbraTopology().command(attributes, read=read)
        assert "zimbraSSLPrivateKey" not in command and " -v" not in command  # `gas -v` would print the key
        assert " gs " in command or "ldapsearch" in command
    # the ldapsearch asks for exactly these attributes, after its filter
    assert '(cn=config)))" ' + " ".join(attributes) + " 2>" in ZimbraTopology().command(attributes)
