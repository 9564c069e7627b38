"""The exposure audit's judgement on reads captured from the lab (tests/fixtures/audit/: the raw output of
facts/audit.py ExposureRead on a fresh single server, after the deploy, after drift, and on the cluster's
mailbox and proxy after the deploy), and on rules written for one question each."""

import dataclasses
import ipaddress
import json
import os
import re

import jsonschema
import pytest

from facts.audit import ExposureRead
from zimbra_firewall.audit import (
    FAILING,
    Listener,
    Ruleset,
    Source,
    apply_probe,
    as_json,
    audit_node,
    decide,
    link_local_addresses,
    nginx_looks,
    observed_firewalld,
    observed_ruleset,
    parse_listeners,
    probe_plan,
    unread_node,
)
from zimbra_firewall.audit_report import render_html, render_text
from zimbra_firewall.firewalld import parse_state
from zimbra_firewall.policy import build_policy, catalogue_cache, topology_attributes
from zimbra_firewall.settings import read_settings
from zimbra_firewall.ufw import parse_status, rule_of_tuple, status_read, view_rule

HERE = os.path.dirname(os.path.abspath(__file__))
LAB_MGMT = ["10.77.1.0/24", "fd5a:7e3c:91b2:1::/64"]  # group_data/all.py
DEPLOY = "pyinfra -y inventories/lab.py deploy.py"
PUBLIC = {"25/tcp", "443/tcp", "465/tcp", "587/tcp", "993/tcp", "995/tcp"}


def read(name, *changes):
    """A captured read; changes: (old, new) texts, each replaced once, and each must be there."""
    with open(os.path.join(HERE, "fixtures", "audit", f"{name}.txt")) as f:
        text = f.read()
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new, 1)
    return ExposureRead().process(text.splitlines())


def audited(name, host_name="zimbra", *changes, **settings):
    node_read = read(name, *changes)
    return judged(node_read, host_name, **settings), node_read


def judged(node_read, host_name="zimbra", **settings):
    policy = build_policy(read_settings({"management_subnets": LAB_MGMT, **settings}), node_read.topology)
    return audit_node(host_name, node_read, policy, catalogue_cache(), DEPLOY, policy.warnings)


def verdicts(node):
    return {(f.verdict, f.port) for f in node.findings}


def sockets(node, port, proto="tcp"):
    return [s for s in node.sockets if s.port == port and s.proto == proto]


def test_the_read_is_one_command_asking_ldap_for_named_attributes_only():
    command = ExposureRead().command(topology_attributes(), "ldap", 60)
    assert "ss -Hlnptu" in command and "ldapsearch" in command and "zimbraSSLPrivateKey" not in command
    assert not re.search(r"(^|[;&|(] *)ufw ", command)  # ufw's state from its files: ufw's Python never starts


def test_listeners_keep_family_binding_and_process():
    listeners = read("single-fresh").listeners
    by = {(item.proto, item.address, item.port): item for item in listeners}
    assert by[("tcp", "*", 7071)].process == "python3"  # dual stack: ss prints *
    assert by[("tcp", "0.0.0.0", 22)].process == "sshd" and ("tcp", "::", 22) in by  # IPv6 only: [::]
    assert by[("tcp", "127.0.0.1", 7306)].loopback and not by[("tcp", "*", 7071)].loopback
    assert by[("udp", "*", 514)].pid is not None
    assert parse_listeners("tcp LISTEN 0 5 127.0.0.53%lo:53 0.0.0.0:*\n") == [Listener("tcp", "127.0.0.53", 53)]


# ss writes the device a socket is bound to after the address, after IPv6's brackets too (dhclient binds so)
SS_DHCP = (
    'udp   UNCONN 0      0      0.0.0.0%eth0:68        0.0.0.0:*    users:(("dhclient",pid=612,fd=7))\n'
    'udp   UNCONN 0      0      [fe80::a00:27ff:fe4e:1f8d]%eth0:546  [::]:*  users:(("dhclient",pid=640,fd=5))\n'
)


def test_a_socket_bound_to_a_device_is_read_in_either_family():
    assert [(item.address, item.port) for item in parse_listeners(SS_DHCP)] == [
        ("0.0.0.0", 68),
        ("fe80::a00:27ff:fe4e:1f8d", 546),
    ]


def test_fresh_server_every_restricted_port_is_too_open_and_the_audit_fails():
    node, _ = audited("single-fresh")
    assert node.ufw["active"] is False and node.failed
    too_open = {port for verdict, port in verdicts(node) if verdict == "too open"}
    assert {"7071/tcp", "389/tcp", "11211/tcp", "22/tcp", "7072/tcp", "8443/tcp", "53/udp", "514/udp"} <= too_open
    assert not too_open & PUBLIC
    assert {v for v, _ in verdicts(node)} == {"too open"}
    finding = next(f for f in node.findings if f.port == "7071/tcp")
    assert "reachable from world" in finding.detail and finding.fix == [f"{DEPLOY} --limit zimbra"]
    # public ports are ok from the world, loopback-only services stay loopback whatever the firewall
    assert all(s.verdict == "ok" and s.reach == ["world"] for s in sockets(node, 25))
    assert all(s.reach == ["loopback only"] and s.verdict == "ok" for s in sockets(node, 7306))


def test_deployed_server_is_all_ok():
    node, _ = audited("single-deployed")
    assert node.findings == [] and not node.failed
    assert node.ufw == {"active": True, "active6": True, "incoming": "deny", "outgoing": "allow", "ipv6": True}
    reach = {s.address: s.reach for s in sockets(node, 7071)}
    assert reach == {"*": ["10.77.1.0/24", "fd5a:7e3c:91b2:1::/64"]}
    assert {s.address: s.reach for s in sockets(node, 11211)} == {
        "127.0.0.1": ["loopback only"],
        "10.77.0.10": [],
        "fd5a:7e3c:91b2::a": [],
    }


def test_drift_is_named_with_the_command_that_fixes_it():
    node, _ = audited("single-drift")
    assert verdicts(node) == {
        ("too open", "7071/tcp"),
        ("unknown listener", "4444/tcp"),
        ("memcached unreachable from proxy", "11211/tcp"),
        ("rule without listener", "4444/udp"),
        ("rule without listener", "7071/udp"),
    }
    fixes = {f.port: f.fix for f in node.findings if f.verdict != "rule without listener"}
    assert fixes["7071/tcp"] == ["ufw delete allow 7071"]
    assert fixes["4444/tcp"][0] == "ufw delete allow 4444"
    assert "+zimbraMemcachedBindAddress 10.77.0.10" in fixes["11211/tcp"][0]
    unknown = next(f for f in node.findings if f.verdict == "unknown listener")
    assert "python3 (pid" in unknown.detail and "world" in unknown.detail
    assert node.failed and [f.verdict for f in node.findings][:2] == ["too open", "unknown listener"]


def test_cluster_peers_are_named():
    node, _ = audited("cluster-mailbox", "mailbox")
    assert node.findings == []
    assert sockets(node, 7072)[0].reach == ["proxy.zfw.test"]
    assert set(sockets(node, 7025)[0].reach) == {*LAB_MGMT, "mta.zfw.test"}
    assert set(sockets(node, 514, "udp")[0].reach) == {
        "ldap.zfw.test",
        "mailbox-2.zfw.test",
        "mta.zfw.test",
        "proxy.zfw.test",
    }
    proxy, _ = audited("cluster-proxy", "proxy")
    assert proxy.findings == [] and {s.verdict for s in sockets(proxy, 11211)} == {"ok"}


def test_memcached_filtered_from_a_peer_proxy_is_found():
    """The cluster's proxy runs memcached; were nginx on another proxy, ufw would keep it out."""
    node_read = read("cluster-proxy")
    topology = node_read.topology
    other = dataclasses.replace(
        next(s for s in topology.servers if s.name.startswith("mailbox")), services=frozenset({"proxy"})
    )
    servers = tuple(other if s.name == other.name else s for s in topology.servers)
    node_read = dataclasses.replace(node_read, topology=dataclasses.replace(topology, servers=servers))
    policy = build_policy(read_settings({"management_subnets": LAB_MGMT}), read("cluster-proxy").topology)
    node = audit_node("proxy", node_read, policy, catalogue_cache(), DEPLOY)
    found = [f for f in node.findings if f.verdict == "memcached unreachable from proxy"]
    assert found and f"ufw keeps {other.hostname}" in found[0].detail
    assert found[0].fix[0].startswith("ufw allow from 10.77.0.1") and "port 11211 proto tcp" in found[0].fix[0]


# --- how one packet is judged --------------------------------------------------------------------------


def tuple_rules(*lines):
    return tuple((rule_of_tuple(f"### tuple ### {line}"), (line,)) for line in lines)


def world(version=4):
    import ipaddress

    return Source(ipaddress.ip_network("0.0.0.0/0" if version == 4 else "::/0"), "world", "world")


LISTENER = Listener("tcp", "*", 7071)
OWN = ["10.0.0.5", "fd00::5"]


def test_first_matching_rule_decides_then_the_default():
    deny_then_allow = Ruleset(
        True,
        "deny",
        True,
        {
            4: tuple_rules("deny tcp 7071 0.0.0.0/0 any 0.0.0.0/0 in", "allow tcp 7071 0.0.0.0/0 any 0.0.0.0/0 in"),
            6: (),
        },
    )
    assert decide(deny_then_allow, world(), LISTENER, OWN).reachable is False
    assert decide(deny_then_allow, world(6), LISTENER, OWN).via == "default deny incoming"
    allowing = dataclasses.replace(deny_then_allow, rules={4: (), 6: ()}, incoming="allow")
    assert decide(allowing, world(), LISTENER, OWN).reachable is True
    assert (
        decide(dataclasses.replace(allowing, active=False, incoming="deny"), world(), LISTENER, OWN).via
        == "ufw inactive"
    )
    no_v6 = Ruleset(True, "allow", False, {4: (), 6: ()})
    assert decide(no_v6, world(6), LISTENER, OWN).reachable is False  # ufw: IPV6=no drops IPv6 but loopback


def test_a_rule_on_loopback_opens_nothing_to_other_hosts():
    loopback = Ruleset(True, "deny", True, {4: tuple_rules("allow any any 0.0.0.0/0 any 0.0.0.0/0 in_lo"), 6: ()})
    assert decide(loopback, world(), LISTENER, OWN).reachable is False
    on_eth1 = Ruleset(True, "deny", True, {4: tuple_rules("allow tcp 7071 0.0.0.0/0 any 0.0.0.0/0 in_eth1"), 6: ()})
    assert decide(on_eth1, world(), LISTENER, OWN).reachable is True


def test_a_rule_for_one_address_of_the_host_or_a_narrower_source_does_not_open_the_port_to_all():
    to_other_address = Ruleset(True, "deny", True, {4: tuple_rules("allow tcp 7071 10.0.0.9 any 0.0.0.0/0 in"), 6: ()})
    assert decide(to_other_address, world(), LISTENER, OWN).reachable is False
    narrow = Ruleset(True, "deny", True, {4: tuple_rules("allow tcp 7000:7100 0.0.0.0/0 any 10.9.0.0/16 in"), 6: ()})
    assert decide(narrow, world(), LISTENER, OWN).reachable is False
    assert decide(Ruleset(True, "deny", True, {4: (), 6: ()}), world(), Listener("tcp", "127.0.0.1", 7071), OWN) is None
    view = view_rule(("allow", "from", "10.9.0.0/16", "to", "10.0.0.5", "port", "7071", "proto", "tcp"))
    assert str(view.destinations[0]) == "10.0.0.5/32"


# --- the active check ---------------------------------------------------------------------------------


def test_probe_results_agree_or_become_findings():
    node, node_read = audited("single-deployed")
    node_read = dataclasses.replace(node_read, controller="10.77.1.1", reached_at="10.77.0.10")
    target, ports = probe_plan(node_read)
    assert target == "10.77.0.10" and {22, 25, 7071, 8080} <= set(ports) and 7306 not in ports
    answering = {"22/tcp", *PUBLIC, "80/tcp", "110/tcp", "143/tcp", "389/tcp", "7025/tcp", "7071/tcp", "7073/tcp"}
    results = {str(p): "open" if f"{p}/tcp" in answering else "filtered" for p in ports}
    results |= {"8080": "open", "7073": "filtered"}
    apply_probe(node, node_read, {"address": target, "local": "", "results": results})
    assert sockets(node, 7071)[0].probe["agrees"] is True
    assert sockets(node, 8080)[0].probe == {
        "from": "10.77.1.1",
        "to": "10.77.0.10",
        "observed": "open",
        "computed": "blocked",
        "agrees": False,
    }
    # got in where the rules say blocked: exposure, failing; kept out where they say reachable: a warning
    assert {(f.verdict, f.port) for f in node.findings} == {
        ("probe got in", "8080/tcp"),
        ("probe disagrees", "7073/tcp"),
    }
    assert node.failed


def test_a_probe_kept_out_where_the_rules_let_it_in_is_a_warning_alone():
    node, node_read = audited("single-deployed")
    node_read = dataclasses.replace(node_read, controller="10.77.1.1", reached_at="10.77.0.10")
    target, ports = probe_plan(node_read)
    answering = {"22/tcp", *PUBLIC, "80/tcp", "110/tcp", "143/tcp", "389/tcp", "7025/tcp", "7071/tcp"}
    results = {str(p): "open" if f"{p}/tcp" in answering else "filtered" for p in ports}
    apply_probe(node, node_read, {"address": target, "local": "", "results": results})
    assert {(f.verdict, f.port) for f in node.findings} == {("probe disagrees", "7073/tcp")}
    assert not node.failed  # a disagreement that way is for a person to look at, not a failed audit


# --- outputs ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema():
    with open(os.path.join(os.path.dirname(HERE), "docs", "audit.schema.json")) as f:
        return json.load(f)


@pytest.mark.parametrize(
    "fixtures", [["single-fresh"], ["single-deployed"], ["single-drift"], ["cluster-mailbox", "cluster-proxy"]]
)
def test_json_follows_the_documented_schema(schema, fixtures):
    nodes = [audited(name, name)[0] for name in fixtures]
    document = json.loads(json.dumps(as_json(nodes, "2026-11-29T20:00:00+00:00")))
    jsonschema.validate(document, schema)
    assert document["summary"]["failed"] == [n.name for n in nodes if n.failed]


def test_schema_rejects_a_verdict_it_does_not_document(schema):
    document = json.loads(json.dumps(as_json([audited("single-drift")[0]], "now")))
    document["nodes"][0]["findings"][0]["verdict"] = "fine"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema)


def test_terminal_table_puts_findings_first_and_groups_what_is_ok():
    text = render_text(as_json([audited("single-drift")[0]], "now"))
    lines = text.splitlines()
    assert lines[0].startswith("Exposure audit: 1 node(s)") and "too open 1" in lines[0]
    first_ok = next(i for i, line in enumerate(lines) if line.strip().startswith("ok "))
    assert all(not line.strip().startswith("ok ") for line in lines[:first_ok])
    assert any("fix: ufw delete allow 7071" in line for line in lines[:first_ok])
    assert any(re.search(r"ok\s+world: 25 443 465 587 993 995$", line) for line in lines)


def test_html_page_is_one_file_with_the_matrix_and_the_fixes():
    page = render_html(as_json([audited("single-drift")[0], audited("single-deployed", "zimbra-2")[0]], "now"))
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no external asset
    rows = re.findall(r"<tr><th class='node'>([^<]*)</th>", page)
    assert rows == ["node", "zimbra", "zimbra-2"]
    assert "data-verdict='too open'" in page and "data-verdict='unknown listener'" in page
    assert "<code>ufw delete allow 7071</code>" in page


def test_failing_verdicts_are_exposure_an_open_relay_or_rules_the_audit_could_not_judge():
    assert FAILING == {"too open", "unknown listener", "probe got in", "rules not loaded", "relay trusted too broadly"}


def test_a_node_not_read_is_reported_and_fails_the_audit(schema):
    document = json.loads(json.dumps(as_json([unread_node("ghost", "could not connect")], "now")))
    jsonschema.validate(document, schema)
    assert document["summary"]["failed"] == ["ghost"]
    text = render_text(document)
    assert "ghost  \n  NOT AUDITED" in text and "ERROR: could not connect" in text


def test_a_host_without_ufw_is_judged_unfiltered():
    node_read = read("single-deployed", ("\nufw=yes\n", "\n"))
    assert node_read.status["active"] is False and "ufw is not installed" in node_read.ufw_error
    node = judged(node_read)
    assert ("too open", "7071/tcp") in verdicts(node) and "ufw is not installed" in node.error


def test_memcached_where_a_proxy_resolves_the_node_elsewhere_is_found():
    """Split DNS: the proxy's nginx resolves the memcached node's name to an address the node does not have."""
    node_read = read("cluster-proxy")
    policy = build_policy(read_settings({"management_subnets": LAB_MGMT}), node_read.topology)
    looks = nginx_looks(node_read.topology, [node_read.topology])
    assert looks == {"proxy.zfw.test": "10.77.0.12"}
    assert audit_node("proxy", node_read, policy, catalogue_cache(), DEPLOY, nginx_looks=looks).findings == []
    elsewhere = audit_node(
        "proxy", node_read, policy, catalogue_cache(), DEPLOY, nginx_looks={"proxy.zfw.test": "192.0.2.7"}
    )
    [finding] = elsewhere.findings
    assert (
        finding.verdict == "memcached unreachable from proxy"
        and "to 192.0.2.7, not an address of this host" in finding.detail
    )


# --- firewalld hosts: the same judgement on firewalld's configuration (tests/fixtures/firewalld/, captured on
# the lab's firewalld host: RHEL's fresh zone, after the deploy, after drift), with the same sockets


def audited_firewalld(state):
    node_read = dataclasses.replace(read("single-deployed"), status={}, firewalld=firewalld_state(state))
    policy = build_policy(read_settings({"management_subnets": LAB_MGMT}), node_read.topology)
    return audit_node("zimbra", node_read, policy, catalogue_cache(), DEPLOY, policy.warnings)


def firewalld_state(name):
    with open(os.path.join(HERE, "fixtures", "firewalld", f"{name}.txt")) as f:
        return parse_state(f.read())


def test_a_deployed_firewalld_host_is_judged_like_a_ufw_one():
    node = audited_firewalld("state-deployed")
    assert node.firewall == "firewalld" and node.complete and not node.failed
    assert node.ufw == {"active": True, "active6": True, "incoming": "deny", "outgoing": "allow", "ipv6": True}
    assert {s.port: s.reach for s in node.sockets if s.port in (25, 7071, 11211) and s.proto == "tcp"} == {
        25: ["world"],
        7071: LAB_MGMT,
        11211: [],
    }
    # RHEL's dhcpv6-client stays in the zone (it widens nothing) and is said to open a port nobody serves
    assert verdicts(node) == {("rule without listener", "546/udp")}


def test_firewalld_nodes_follow_the_schema_and_say_whose_rules_were_judged(schema):
    nodes = [audited_firewalld(name) for name in ("state-deployed", "state-drift-permanent", "state-fresh")]
    document = json.loads(json.dumps(as_json(nodes, "now")))
    jsonschema.validate(document, schema)
    assert {n["firewall"] for n in document["nodes"]} == {"firewalld"}
    assert "firewalld running, default zone deny; last rollback" in render_text(as_json(nodes[:1], "now"))


def test_drift_in_firewalld_is_too_open_with_the_firewall_cmd_that_removes_it():
    node = audited_firewalld("state-drift-permanent")
    assert node.failed
    by_port = {f.port: f for f in node.findings if f.verdict == "too open"}
    assert by_port["80/tcp"].fix == [
        "firewall-cmd --permanent --zone=public --remove-service=http && firewall-cmd --reload"
    ]
    assert "reachable from world" in by_port["7071/tcp"].detail
    rich = """rule family="ipv4" port port="7071" protocol="tcp" accept"""
    assert by_port["7071/tcp"].fix == [
        f"firewall-cmd --permanent --zone=public --remove-rich-rule='{rich}' && firewall-cmd --reload"
    ]
    # a rich rule accepting everything from one subnet opens every port to it, and is named as the rule
    assert "reachable from 10.77.2.0/24" in by_port["11211/tcp"].detail
    assert ("rule without listener", "9100/tcp") in verdicts(node)


def test_rhels_fresh_zone_is_ssh_open_to_the_world_and_zimbra_closed():
    node = audited_firewalld("state-fresh")
    assert node.ufw["incoming"] == "reject"
    assert {port for verdict, port in verdicts(node) if verdict == "too open"} == {"22/tcp"}
    assert ("too closed", "443/tcp") in verdicts(node) and ("rule without listener", "9090/tcp") in verdicts(node)


def firewalld_variant(zones=None, policies=None, dispatched=None, drifting=False, public=""):
    """RHEL's fresh firewalld (public: ssh, dhcpv6-client, cockpit) with more zones, policies or public's rules."""
    state = firewalld_state("state-fresh")
    path, text = state.zones["public"]
    all_zones = {**state.zones, "public": (path, text.replace("</zone>", public + "</zone>"))}
    all_zones.update({name: (f"/etc/firewalld/zones/{name}.xml", xml) for name, xml in (zones or {}).items()})
    found = {**state.policies, **{n: (f"/etc/firewalld/policies/{n}.xml", x) for n, x in (policies or {}).items()}}
    return dataclasses.replace(
        state, zones=all_zones, policies=found, dispatched=dispatched or state.dispatched, drifting=drifting
    )


def ssh_from(state, network, port=22):
    source = Source(ipaddress.ip_network(network), "rule", network)
    return decide(observed_firewalld(state), source, Listener("tcp", "*", port), ["10.77.0.10"]).reachable


OUTSIDE = "10.77.2.0/24"
SOURCE_ZONE = '<zone target="{}"><source address="10.77.2.0/24"/></zone>'
REJECT_SSH = '<rule family="ipv4"><source address="10.77.2.0/24"/><service name="ssh"/><reject/></rule>'
POLICY = '<policy target="{}" priority="{}"><ingress-zone name="ANY"/><egress-zone name="HOST"/>{}</policy>'


@pytest.mark.parametrize(
    "state, network, reachable",
    [
        # a zone bound to a source: its target decides for that source (DROP here), the others go on
        (firewalld_variant({"drop": SOURCE_ZONE.format("DROP")}, dispatched=("drop", "public")), OUTSIDE, False),
        (firewalld_variant({"drop": SOURCE_ZONE.format("DROP")}, dispatched=("drop", "public")), "10.77.3.0/24", True),
        # target default rejects there, unless zone drifting (RHEL 8) lets the packet fall through to public
        (firewalld_variant({"mine": SOURCE_ZONE.format("default")}, dispatched=("mine", "public")), OUTSIDE, False),
        (
            firewalld_variant({"mine": SOURCE_ZONE.format("default")}, dispatched=("mine", "public"), drifting=True),
            OUTSIDE,
            True,
        ),
        (firewalld_variant({"open": SOURCE_ZONE.format("ACCEPT")}, dispatched=("open", "public")), OUTSIDE, True),
        # the default zone alone: its reject surely applies; beside an interface zone it may not: left out
        (firewalld_variant(public=REJECT_SSH), OUTSIDE, False),
        (
            firewalld_variant({"internal": "<zone/>"}, dispatched=("internal", "public"), public=REJECT_SSH),
            OUTSIDE,
            True,
        ),
        # a drop of ICMP closes no port; an accept with a priority below 0 comes before the reject
        (firewalld_variant(public='<rule family="ipv4"><icmp-type name="echo-request"/><drop/></rule>'), OUTSIDE, True),
        (
            firewalld_variant(
                public=REJECT_SSH + REJECT_SSH.replace("<rule ", '<rule priority="-10" ').replace("reject", "accept")
            ),
            OUTSIDE,
            True,
        ),
        # a policy before the zones (priority below 0) decides first; one inside them (above 0) only adds
        (firewalld_variant(policies={"p": POLICY.format("CONTINUE", -5, REJECT_SSH)}), OUTSIDE, False),
        (firewalld_variant(policies={"p": POLICY.format("DROP", 100, "")}), OUTSIDE, True),
        (firewalld_variant(policies={"p": POLICY.format("DROP", -5, "")}), OUTSIDE, False),
        # a policy from one source-bound zone: its DROP holds that zone's sources alone
        (
            firewalld_variant(
                {"mine": SOURCE_ZONE.format("ACCEPT")},
                {"p": POLICY.format("DROP", -5, "").replace('"ANY"', '"mine"')},
                dispatched=("mine", "public"),
            ),
            "10.77.3.0/24",
            True,
        ),
    ],
)
def test_firewalld_is_judged_in_its_own_order_and_what_keeps_out_only_where_it_surely_applies(
    state, network, reachable
):
    assert ssh_from(state, network) is reachable


def test_a_firewalld_whose_zone_dispatch_cannot_be_read_is_not_judged():
    state = dataclasses.replace(firewalld_state("state-deployed"), dispatched=())
    assert "firewalld 2.x" in state.problem and firewalld_state("state-deployed").problem == ""


# --- rules for one interface or one address, IPv6's corners, ufw's own accepts (issue 23) --------------------
# The tuple lines follow ufw 0.36's, as captured in tests/fixtures/ufw/user-rules-varied.txt (`in_eth0` is an
# `in on eth0` rule's interface)


def rules_first(name, v4_line, v6_line, *changes):
    """A captured read with one rule put first in user.rules and one in user6.rules."""
    node_read = read(name, *changes)
    v4, v6 = node_read.rule_files
    marker = "### RULES ###\n"
    v4 = v4.replace(marker, f"{marker}### tuple ### {v4_line}\n", 1)
    v6 = v6.replace(marker, f"{marker}### tuple ### {v6_line}\n", 1)
    return dataclasses.replace(node_read, rule_files=(v4, v6))


def source_row(node, port, network, proto="tcp"):
    """How one source network was judged for the port's socket bound to every address."""
    return source_row_of(next(s for s in sockets(node, port, proto) if s.address == "*"), network)


def source_row_of(socket, network):
    return next(row for row in socket.sources if row["network"] == network)


def test_an_interface_deny_before_a_world_allow_leaves_the_port_open_on_other_interfaces():
    """`ufw deny in on eth9 to any port 7071` then the drift's captured `ufw allow 7071`: iptables' -i eth9
    keeps the deny to eth9, so 7071 stays open to the world everywhere else (it was judged too closed)."""
    node_read = rules_first(
        "single-drift", "deny tcp 7071 0.0.0.0/0 any 0.0.0.0/0 in_eth9", "deny tcp 7071 ::/0 any ::/0 in_eth9"
    )
    node = judged(node_read)
    assert ("too open", "7071/tcp") in verdicts(node) and ("too closed", "7071/tcp") not in verdicts(node)
    assert node.failed and sockets(node, 7071)[0].reach == ["world"]
    world = source_row(node, 7071, "0.0.0.0/0")
    assert world["reachable"] and world["via"] == "rule: ufw allow 7071 (in on an interface other than eth9)"
    assert next(f for f in node.findings if f.port == "7071/tcp").fix == ["ufw delete allow 7071"]


def test_a_rule_for_one_interface_decides_that_interface_alone():
    allow_on_eth1 = "allow tcp 7071 0.0.0.0/0 any 0.0.0.0/0 in_eth1"
    deny_everywhere = "deny tcp 7071 0.0.0.0/0 any 0.0.0.0/0 in"
    first_on_eth1 = Ruleset(True, "deny", True, {4: tuple_rules(allow_on_eth1, deny_everywhere), 6: ()})
    decision = decide(first_on_eth1, world(), LISTENER, OWN)
    assert decision.reachable and decision.where == "in on eth1"  # an allow for one interface is enough
    first_everywhere = Ruleset(True, "deny", True, {4: tuple_rules(deny_everywhere, allow_on_eth1), 6: ()})
    decision = decide(first_everywhere, world(), LISTENER, OWN)
    assert decision.reachable is False and decision.where == ""  # one rule decides every path: none is named


def test_interface_rules_captured_from_ufw_are_read_with_their_interface():
    with open(os.path.join(HERE, "fixtures", "ufw", "user-rules-varied.txt")) as f:
        v4, _, v6 = f.read().partition("@@zimbra-firewall@@6\n")
    status = {"active": True, "active6": True, "incoming": "deny", "ipv6": True}
    observed = observed_ruleset(status, (v4, v6))
    outsider = Source(ipaddress.ip_network("203.0.113.0/24"), "rule", "203.0.113.0/24")
    # `ufw allow in on eth0 from 203.0.113.0/24`: every port, on eth0 alone
    decision = decide(observed, outsider, Listener("tcp", "*", 9999), OWN)
    assert decision.reachable and decision.where == "in on eth0"
    assert decision.rule == ("allow", "in", "on", "eth0", "from", "203.0.113.0/24")
    limited = decide(observed, world(), Listener("tcp", "*", 2222), OWN)  # `ufw limit in on eth0 … 2222`
    assert limited.reachable and limited.where == "in on eth0"


def test_a_deny_to_one_address_of_the_host_leaves_its_other_addresses_open():
    """`ufw deny to 10.77.0.10 port 7071` before the drift's `ufw allow 7071`, on a host that also has
    10.77.0.20: iptables' -d keeps the deny to 10.77.0.10."""
    node_read = rules_first(
        "single-drift",
        "deny tcp 7071 10.77.0.10 any 0.0.0.0/0 in",
        "deny tcp 7071 fd5a:7e3c:91b2::a any ::/0 in",
        ("10.77.0.10 fd5a:7e3c:91b2::a \n", "10.77.0.10 10.77.0.20 fd5a:7e3c:91b2::a \n"),
    )
    node = judged(node_read)
    world4 = source_row(node, 7071, "0.0.0.0/0")
    assert world4["reachable"] and world4["via"] == "rule: ufw allow 7071 (to 10.77.0.20)"
    # IPv6: the host's one global address is denied, its link-local one (fe80::, every host on the link reaches
    # it) is not
    assert source_row(node, 7071, "::/0")["via"] == "rule: ufw allow 7071 (to fe80::7a:aff:fe4d:a)"
    assert ("too open", "7071/tcp") in verdicts(node)


def test_a_socket_bound_to_one_address_is_judged_at_that_address_alone():
    deny_one = Ruleset(
        True,
        "deny",
        True,
        {4: tuple_rules("deny tcp 7071 10.0.0.5 any 0.0.0.0/0 in", "allow tcp 7071 0.0.0.0/0 any 0.0.0.0/0 in"), 6: ()},
    )
    own = ["10.0.0.5", "10.0.0.6"]
    assert decide(deny_one, world(), Listener("tcp", "10.0.0.5", 7071), own).reachable is False
    assert decide(deny_one, world(), Listener("tcp", "10.0.0.6", 7071), own).reachable is True  # not its address
    assert decide(deny_one, world(), Listener("tcp", "0.0.0.0", 7071), own).where == "to 10.0.0.6"


SS_MAPPED = (
    'tcp   LISTEN 0      50     [::ffff:10.0.0.5]:7071          *:*    users:(("java",pid=901,fd=41))\n'
    'tcp   LISTEN 0      50     [::ffff:127.0.0.1]:8005          *:*    users:(("java",pid=901,fd=42))\n'
)


def test_a_socket_on_an_ipv4_mapped_address_is_an_ipv4_socket_of_that_address():
    mapped, loopback = parse_listeners(SS_MAPPED)
    assert (mapped.address, mapped.port, mapped.process) == ("10.0.0.5", 7071, "java")
    assert loopback.loopback and loopback.address == "127.0.0.1"
    open_v4 = Ruleset(True, "deny", True, {4: tuple_rules("allow tcp 7071 0.0.0.0/0 any 0.0.0.0/0 in"), 6: ()})
    assert decide(open_v4, world(6), mapped, OWN) is None  # no IPv6 packet reaches it
    assert decide(open_v4, world(), mapped, OWN).reachable is True


def chain_status(v4, v6):
    return (
        "@@zimbra-firewall@@part\n0\n0\n@@zimbra-firewall@@\n",
        f"@@zimbra-firewall@@part\n{v4}\n{v6}\n@@zimbra-firewall@@\n",
    )


def test_the_status_read_tests_both_families_chains_in_its_one_command():
    command = status_read(60)
    assert "iptables -n -L ufw-user-input" in command and "ip6tables -n -L ufw6-user-input" in command
    with open(os.path.join(HERE, "fixtures", "ufw", "default-ufw.txt")) as f:
        defaults = f.read()
    status = parse_status("0\n1\n", defaults)
    assert (status["active"], status["active6"], status["ipv6"]) == (True, False, True)
    # a kernel without IPv6: ip6tables cannot start (3); no IPv6 rule is in force, and the read goes on
    assert parse_status("0\n3\n", defaults)["active6"] is False
    with pytest.raises(ValueError):
        parse_status("0\n", defaults)  # a read that lost a line is no answer


def test_ipv6_rules_not_loaded_while_ipv4_ones_are_leave_ipv6_unfiltered(schema):
    node, _ = audited("single-deployed", "zimbra", chain_status(0, 1))
    assert node.ufw["active"] is True and node.ufw["active6"] is False and node.failed
    assert ("too open", "7071/tcp") in verdicts(node)
    world6 = source_row(node, 7071, "::/0")
    assert world6["reachable"] and world6["via"] == "ufw's IPv6 rules not loaded"
    assert source_row(node, 7071, "0.0.0.0/0")["reachable"] is False  # IPv4's rules still hold
    assert any("ufw's IPv6 rules are not loaded (no ufw6-user-input chain)" in w for w in node.warnings)
    assert next(f for f in node.findings if f.port == "7071/tcp").fix[0].startswith("ufw reload")
    document = json.loads(json.dumps(as_json([node], "now")))
    jsonschema.validate(document, schema)
    assert "IPv6 on but NOT LOADED" in render_text(document)
    # and the other way round: IPv4 passes unfiltered, IPv6 is judged by its rules
    node, _ = audited("single-deployed", "zimbra", chain_status(1, 0))
    assert source_row(node, 7071, "0.0.0.0/0")["via"] == "ufw's IPv4 rules not loaded"
    assert source_row(node, 7071, "::/0")["reachable"] is False
    assert source_row(node, 7071, "fd5a:7e3c:91b2:1::/64")["reachable"] is True


def test_ipv6_rules_not_loaded_are_no_warning_where_no_socket_takes_ipv6():
    """A kernel without IPv6: ip6tables has nothing to load, and no socket is judged for IPv6."""
    node_read = read("single-deployed", chain_status(0, 3))
    ipv4_only = tuple(item for item in node_read.listeners if "." in item.address)
    node = judged(dataclasses.replace(node_read, listeners=ipv4_only))
    assert node.ufw["active6"] is False and not any("not loaded" in w for w in node.warnings)


def test_ipv6_off_in_ufw_has_no_ipv6_chain_and_that_is_no_warning():
    node, _ = audited("single-deployed", "zimbra", chain_status(0, 1), ("IPV6=yes", "IPV6=no"))
    assert source_row(node, 7071, "::/0")["via"] == "IPV6=no"
    assert not any("not loaded" in w for w in node.warnings)


# /proc/net/if_inet6's first column (the kernel prints each address as 32 hex digits): a global address, the
# link-local one, loopback
IF_INET6 = "fd5a7e3c91b20000000000000000000a fe800000000000000a0027fffe4e1f8d 00000000000000000000000000000001"
LINK_ONLY = (
    ("10.77.0.10 fd5a:7e3c:91b2::a \n", "10.77.0.10 \n"),  # hostname -I: no IPv6 address but link-local ones
    ("\nufw=yes\n", f"\nif_inet6={IF_INET6.split(' ', 1)[1]}\nufw=yes\n"),
)


def test_link_local_addresses_are_read_from_if_inet6():
    assert link_local_addresses(IF_INET6) == ("fe80::a00:27ff:fe4e:1f8d",)
    assert read("single-deployed", *LINK_ONLY).link_local == ("fe80::a00:27ff:fe4e:1f8d",)
    assert "/proc/net/if_inet6" in ExposureRead().command(topology_attributes(), "ldap", 60)


def test_a_host_whose_only_ipv6_addresses_are_link_local_is_judged_for_ipv6_there():
    fresh, _ = audited("single-fresh", "zimbra", *LINK_ONLY)
    assert source_row(fresh, 7071, "::/0") == {
        "network": "::/0",
        "kind": "world",
        "name": "world",
        "reachable": True,
        "expected": False,
        "via": "ufw inactive",
    }
    deployed, _ = audited("single-deployed", "zimbra", *LINK_ONLY)
    assert source_row(deployed, 7071, "fd5a:7e3c:91b2:1::/64")["reachable"] is True
    assert source_row(deployed, 7071, "::/0")["reachable"] is False and not deployed.findings


WITH_DHCP = ("@@zimbra-firewall@@part\nudp ", f"@@zimbra-firewall@@part\n{SS_DHCP}udp ")


def test_a_dhcp_client_is_reachable_from_anyone_sending_from_port_67_and_that_is_no_finding():
    node, _ = audited("single-deployed", "zimbra", WITH_DHCP, *LINK_ONLY)
    [dhcp] = sockets(node, 68, "udp")
    assert (dhcp.service, dhcp.expected, dhcp.reach, dhcp.verdict) == (
        "DHCP client (replies from port 67)",
        "ufw built-in",
        ["world"],
        "ok",
    )
    assert source_row_of(dhcp, "0.0.0.0/0")["via"] == (
        "rule: /etc/ufw/before.rules: -A ufw-before-input -p udp --sport 67 --dport 68 -j ACCEPT"
    )
    # IPv6's: from and to link-local addresses alone
    [dhcp6] = sockets(node, 546, "udp")
    assert dhcp6.reach == ["fe80::/10"] and dhcp6.verdict == "ok" and dhcp6.expected == "ufw built-in"
    assert not node.findings and not node.failed
    # ufw's before.rules come before every user rule: a deny does not close it
    denied = rules_first(
        "single-deployed", "deny udp 68 0.0.0.0/0 any 0.0.0.0/0 in", "deny udp 546 ::/0 any ::/0 in", WITH_DHCP
    )
    assert sockets(judged(denied), 68, "udp")[0].reach == ["world"]


def test_a_dhcp_client_on_a_fresh_server_is_no_finding_and_dhcpv6_is_too_open_as_all_is_there():
    node, _ = audited("single-fresh", "zimbra", WITH_DHCP)
    assert "68/udp" not in {port for _, port in verdicts(node)} and sockets(node, 68, "udp")[0].reach == ["world"]
    # ufw inactive: DHCPv6's port takes any on-link sender, where ufw would take link-local ones alone
    [finding] = [f for f in node.findings if f.port == "546/udp"]
    assert finding.verdict == "too open" and finding.fix == [f"{DEPLOY} --limit zimbra"]


def test_ufws_own_accepts_are_not_firewallds():
    node_read = dataclasses.replace(
        read("single-deployed", WITH_DHCP), status={}, firewalld=firewalld_state("state-deployed")
    )
    [dhcp] = sockets(judged(node_read), 68, "udp")
    assert dhcp.reach == [] and dhcp.expected == "unknown" and dhcp.verdict == "ok"
