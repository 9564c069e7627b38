"""Whom Zimbra itself trusts past the firewall, judged by the audit: Postfix's relay networks on the MTA
(zimbraMtaMyNetworks) and the proxy's addresses on the mailbox servers (zimbraMailTrustedIP,
zimbraHttpThrottleSafeIPs). The reads are the lab cluster's captured LDAP (tests/fixtures/zimbra/), with the
attributes written into its LDIF as ldapsearch prints them."""

import base64
import ipaddress
import json
import os
import re

import jsonschema
import pytest

from facts.audit import ExposureRead
from facts.zimbra import ZimbraTopology
from lab import topology as lab_topology
from tasks.audit import Visit, judge
from zimbra_firewall.audit import FAILING, NodeAudit, add_trust_findings, as_json, proxy_trust_findings, relay_findings
from zimbra_firewall.audit_report import render_html, render_text
from zimbra_firewall.policy import build_policy, topology_attributes
from zimbra_firewall.settings import read_settings
from zimbra_firewall.trust import judge_mynetworks, mynetworks_patterns, postfix_items

HERE = os.path.dirname(os.path.abspath(__file__))
LAB_MGMT = ["10.77.1.0/24", "fd5a:7e3c:91b2:1::/64"]  # group_data/all.py
CONFIG = "cn=config,cn=zimbra"
# what the fix sets: loopback, every node of the cluster as the MTA resolves it, the management subnets
LEAST = (
    "127.0.0.0/8 [::1]/128 10.77.0.10/32 10.77.0.11/32 10.77.0.12/32 10.77.0.13/32 10.77.0.14/32 10.77.1.0/24 "
    "[fd5a:7e3c:91b2::a]/128 [fd5a:7e3c:91b2::b]/128 [fd5a:7e3c:91b2::c]/128 [fd5a:7e3c:91b2::d]/128 "
    "[fd5a:7e3c:91b2::e]/128 [fd5a:7e3c:91b2:1::]/64"
)
PROXY_V6 = "[fd5a:7e3c:91b2:0:0:0:0:c]"  # the proxy's IPv6 address as mailboxd compares it (Jetty's form)


def topology(node, ldif=None, drop=(), install="cluster"):
    """The cluster (or single server) as `node` read it, with `ldif` ({dn: [LDIF lines]}) added to those
    entries and the lines in `drop` taken out."""
    with open(os.path.join(HERE, "fixtures", "zimbra", f"topology-{install}-{node}.txt")) as f:
        lines = [line for line in f.read().splitlines() if line not in drop]
    for dn, added in (ldif or {}).items():
        at = lines.index(f"dn: {dn}") + 1
        lines[at:at] = added
    return ZimbraTopology().process(lines)


def server(name):
    return f"cn={name}.zfw.test,cn=servers,cn=zimbra"


def judged(node, ldif=None, drop=(), install="cluster"):
    read = topology(node, ldif, drop, install)
    policy = build_policy(read_settings({"management_subnets": LAB_MGMT}), read)
    return read, policy


def relay(value=None, own=None):
    """The MTA's relay findings with zimbraMtaMyNetworks `value` in cn=config and `own` on its entry."""
    ldif = {}
    if value is not None:
        ldif[CONFIG] = [f"zimbraMtaMyNetworks: {value}"]
    if own is not None:
        ldif[server("mta")] = [f"zimbraMtaMyNetworks: {own}"]
    return relay_findings(*judged("mta", ldif))


def verdicts(findings):
    return [(f.verdict, f.port) for f in findings]


def node_of(read, name):
    """A node whose sockets and rules were judged with no finding, to add the trust findings to."""
    this = read.this
    ufw = {"active": True, "active6": True, "incoming": "deny", "outgoing": "allow", "ipv6": True}
    return NodeAudit(
        name, this.hostname, sorted(this.services), "ldap", "", ufw, {"last": "", "armed": False}, [], [], []
    )


# --- Postfix's mynetworks on the MTA ------------------------------------------------------------------------


def test_mynetworks_open_to_the_world_fails_the_mta_with_the_zmprov_that_narrows_it():
    read, policy = judged("mta", {CONFIG: ["zimbraMtaMyNetworks: 127.0.0.0/8 [::1]/128 0.0.0.0/0"]})
    node = node_of(read, "mta")
    add_trust_findings(node, read, policy)
    [finding] = node.findings
    assert (finding.verdict, finding.port) == ("relay trusted too broadly", "zimbraMtaMyNetworks")
    assert finding.verdict in FAILING and node.failed
    assert "'0.0.0.0/0'" in finding.detail and "cn=config's, which it inherits" in finding.detail
    assert finding.fix[0] == f"zmprov mcf zimbraMtaMyNetworks '{LEAST}'"


def test_a_20_around_the_nodes_is_too_broad():
    [finding] = relay("127.0.0.0/8 [::1]/128 10.77.0.0/20")
    assert finding.verdict == "relay trusted too broadly" and "'10.77.0.0/20'" in finding.detail
    assert "installer" in finding.detail  # the MTA's own address is in it, as in the subnet zmsetup.pl writes


def test_the_installers_own_subnet_is_the_finding_and_the_detail_says_why():
    [finding] = relay("127.0.0.0/8 [::1]/128 10.77.0.0/24")
    assert finding.verdict == "relay trusted too broadly"
    assert "zmserverips -n" in finding.detail and "every other host of those subnets may relay" in finding.detail
    [elsewhere] = relay("127.0.0.0/8 [::1]/128 192.0.2.0/24")  # not the MTA's subnet: no word of the installer
    assert "installer" not in elsewhere.detail


def test_loopback_the_nodes_and_the_management_subnets_pass_as_the_installer_writes_them():
    assert relay("127.0.0.0/8 [::1]/128 10.77.1.0/24") == []
    assert relay("127.0.0.0/8, [::1]/128,10.77.1.0/24 , 10.77.0.11 10.77.0.13/32 [::ffff:127.0.0.0]/104") == []
    assert relay(LEAST) == []


def test_ipv6_networks_are_judged_in_brackets_and_a_bare_one_is_not_judged():
    assert relay("127.0.0.0/8 [::1]/128 [fd5a:7e3c:91b2:1::]/64 [fd5a:7e3c:91b2::b] [fd5a:7e3c:91b2::d]/128") == []
    [wide] = relay("127.0.0.0/8 [::1]/128 [fd5a:7e3c:91b2::]/48")
    assert wide.verdict == "relay trusted too broadly" and "'[fd5a:7e3c:91b2::]/48'" in wide.detail
    [bare] = relay("127.0.0.0/8 ::/0")
    assert bare.verdict == "relay trust not judged" and "IPv6 outside []" in bare.detail


def test_host_names_files_and_lookup_tables_are_a_warning_of_their_own():
    findings = relay("127.0.0.0/8 mail.example.com hash:/opt/zimbra/conf/relay /etc/postfix/nets 0.0.0.0/0")
    assert verdicts(findings) == [
        ("relay trusted too broadly", "zimbraMtaMyNetworks"),
        ("relay trust not judged", "zimbraMtaMyNetworks"),
    ]
    unjudged = findings[1]
    assert unjudged.verdict not in FAILING
    assert "'mail.example.com' (a host name" in unjudged.detail
    assert "'hash:/opt/zimbra/conf/relay' (a type:table lookup" in unjudged.detail
    assert "'/etc/postfix/nets' (a file" in unjudged.detail


def test_a_servers_own_value_overrides_cn_configs_and_the_fix_goes_to_the_server():
    assert relay("0.0.0.0/0", own="127.0.0.0/8 [::1]/128") == []  # postfix gets the server's value
    [finding] = relay("127.0.0.0/8 [::1]/128", own="127.0.0.0/8 10.0.0.0/8")
    assert "this server's own value" in finding.detail
    assert finding.fix[0] == f"zmprov ms mta.zfw.test zimbraMtaMyNetworks '{LEAST}'"


def test_every_value_of_a_multi_valued_mynetworks_counts():
    read, policy = judged(
        "mta", {server("mta"): ["zimbraMtaMyNetworks: 127.0.0.0/8", "zimbraMtaMyNetworks: 172.16.0.0/12"]}
    )
    assert verdicts(relay_findings(read, policy)) == [("relay trusted too broadly", "zimbraMtaMyNetworks")]


def test_a_mynetworks_set_nowhere_is_not_judged():
    [finding] = relay()
    assert finding.verdict == "relay trust not judged" and "set neither here nor in cn=config" in finding.detail


def test_only_mta_nodes_are_judged_for_relaying():
    ldif = {CONFIG: ["zimbraMtaMyNetworks: 0.0.0.0/0"]}
    assert relay_findings(*judged("mailbox", ldif)) == [] and relay_findings(*judged("proxy", ldif)) == []


def test_a_hostile_mynetworks_reaches_the_report_escaped_and_never_the_fix():
    hostile = "0.0.0.0/0 $(reboot) '; rm -rf / #\n\x1b[31mred\u202e"
    encoded = base64.b64encode(hostile.encode()).decode()
    read, policy = judged("mta", {CONFIG: [f"zimbraMtaMyNetworks:: {encoded}"]})
    findings = relay_findings(read, policy)
    assert verdicts(findings) == [
        ("relay trusted too broadly", "zimbraMtaMyNetworks"),
        ("relay trust not judged", "zimbraMtaMyNetworks"),
    ]
    for finding in findings:
        assert finding.fix[0] == f"zmprov mcf zimbraMtaMyNetworks '{LEAST}'"
        assert not re.search("[\x00-\x1f\x7f\u202e]", finding.detail)
    assert "\\x1b[31mred\\u202e" in findings[1].detail


# --- the proxy's addresses on the mailbox servers ---------------------------------------------------------


def test_trusted_ips_without_the_proxy_warn_the_mailbox_nodes_with_the_zmprov_that_adds_it():
    read, policy = judged(
        "mailbox", {CONFIG: ["zimbraMailTrustedIP: 10.0.0.99", "zimbraHttpThrottleSafeIPs: 10.0.0.99"]}
    )
    node = node_of(read, "mailbox")
    add_trust_findings(node, read, policy)
    assert verdicts(node.findings) == [
        ("proxy not trusted", "zimbraMailTrustedIP"),
        ("proxy not trusted", "zimbraHttpThrottleSafeIPs"),
    ]
    assert not node.failed
    trusted = node.findings[0]
    assert f"proxy.zfw.test (10.77.0.12, {PROXY_V6})" in trusted.detail and "ZimbraInvalidLoginFilter" in trusted.detail
    assert trusted.fix[0] == f"zmprov mcf +zimbraMailTrustedIP 10.77.0.12 +zimbraMailTrustedIP '{PROXY_V6}'"
    assert "zmmailboxdctl restart" in trusted.fix[1]


def test_trusted_ips_with_the_proxy_pass():
    values = [
        "zimbraMailTrustedIP: 10.77.0.12",
        f"zimbraMailTrustedIP: {PROXY_V6}",
        f"zimbraHttpThrottleSafeIPs: 10.77.0.0/24,{PROXY_V6}",
    ]
    assert proxy_trust_findings(*judged("mailbox", {CONFIG: values})) == []


def test_a_proxy_address_written_otherwise_than_mailboxd_compares_it_is_not_trusted():
    values = ["zimbraMailTrustedIP: 10.77.0.0/24", "zimbraMailTrustedIP: fd5a:7e3c:91b2::c"]  # a network, ::
    [finding] = [f for f in proxy_trust_findings(*judged("mailbox", {CONFIG: values})) if f.port.endswith("IP")]
    assert finding.fix[0] == f"zmprov mcf +zimbraMailTrustedIP 10.77.0.12 +zimbraMailTrustedIP '{PROXY_V6}'"


def test_a_mailbox_servers_own_trusted_ips_get_the_fix_on_the_server():
    read, policy = judged("mailbox", {server("mailbox"): ["zimbraMailTrustedIP: 10.0.0.99"]})
    [finding] = [f for f in proxy_trust_findings(read, policy) if f.port == "zimbraMailTrustedIP"]
    assert finding.fix[0].startswith("zmprov ms mailbox.zfw.test +zimbraMailTrustedIP 10.77.0.12 ")


def test_no_proxy_node_in_the_cluster_no_proxy_finding():
    read, policy = judged("mailbox", drop=["zimbraServiceEnabled: proxy"])
    assert not any("proxy" in s.services for s in read.servers)
    assert proxy_trust_findings(read, policy) == []


def test_only_mailbox_nodes_are_judged_for_trusting_the_proxy():
    assert proxy_trust_findings(*judged("mta")) == [] and proxy_trust_findings(*judged("proxy")) == []


def test_the_dosfilter_never_throttles_a_proxy_that_is_a_mailbox_server_over_ipv4():
    """DoSFilter.java adds every mailbox server's address (as Java writes it) to its whitelist itself."""
    read, policy = judged("mailbox", {server("proxy"): ["zimbraServiceEnabled: mailbox"]})
    [finding] = [f for f in proxy_trust_findings(read, policy) if f.port == "zimbraHttpThrottleSafeIPs"]
    assert finding.fix[0] == f"zmprov mcf +zimbraHttpThrottleSafeIPs '{PROXY_V6}'"


@pytest.mark.parametrize("install, node", [("cluster", "mta"), ("cluster", "mailbox"), ("single", "ldap")])
def test_what_the_lab_seeds_is_what_the_audits_fixes_set(install, node):
    """The lab's LDAP holds a hardened site's values (lab/topology.py directory), so a deployed lab audits
    clean; the installer's own subnets fail (test_the_installers_own_subnet_is_the_finding…)."""
    seeded = lab_topology.directory([h for h in lab_topology.hosts_for(install) if h.role == "zimbra"])
    mailboxd = ("zimbraMailTrustedIP", "zimbraHttpThrottleSafeIPs")
    ldif = {CONFIG: [f"{name}: {value}" for name in mailboxd for value in seeded["config"][name]]}
    for entry in seeded["servers"]:
        own = entry["attrs"].get("zimbraMtaMyNetworks", [])
        ldif[f"cn={entry['name']},cn=servers,cn=zimbra"] = [f"zimbraMtaMyNetworks: {value}" for value in own]
    read, policy = judged(node, ldif, install=install)
    assert {"mta", "mailbox"} & read.this.services
    assert relay_findings(read, policy) == [] and proxy_trust_findings(read, policy) == []


# --- the read, the run, and the report -------------------------------------------------------------------


def test_the_audit_run_judges_each_node_for_its_trust_too():
    """tasks/audit.py's judgement of a node read from the lab's cluster: its LDAP trusts the proxy's addresses
    (what the lab seeds); without them, both lists lack the proxy."""
    with open(os.path.join(HERE, "fixtures", "audit", "cluster-mailbox.txt")) as f:
        lines = f.read().splitlines()
    settings = read_settings({"management_subnets": LAB_MGMT})
    trusting = Visit("mailbox", settings, ExposureRead().process(lines))
    assert verdicts(judge(trusting, [trusting]).findings) == []
    untrusted = [line for line in lines if not line.startswith(("zimbraMailTrustedIP:", "zimbraHttpThrottleSafeIPs:"))]
    assert len(untrusted) < len(lines)
    visit = Visit("mailbox", settings, ExposureRead().process(untrusted))
    assert verdicts(judge(visit, [visit]).findings) == [
        ("proxy not trusted", "zimbraMailTrustedIP"),
        ("proxy not trusted", "zimbraHttpThrottleSafeIPs"),
    ]


def test_the_attributes_are_asked_for_in_the_audits_one_ldap_read():
    command = ExposureRead().command(topology_attributes(), "ldap", 60)
    assert command.count("ldapsearch -x") == 1
    asked = re.search(r"ldapsearch -x .*?\(cn=config\)\)\)\" ([^2]*) 2>", command).group(1).split()
    assert {"zimbraMtaMyNetworks", "zimbraMailTrustedIP", "zimbraHttpThrottleSafeIPs"} <= set(asked)


def test_the_report_shows_the_trust_findings_in_json_text_and_html():
    mta, mta_policy = judged("mta", {CONFIG: ["zimbraMtaMyNetworks: 0.0.0.0/0 mail.example.com"]})
    mailbox, mailbox_policy = judged("mailbox")
    nodes = [node_of(mta, "mta"), node_of(mailbox, "mailbox")]
    add_trust_findings(nodes[0], mta, mta_policy)
    add_trust_findings(nodes[1], mailbox, mailbox_policy)
    document = json.loads(json.dumps(as_json(nodes, "now")))
    with open(os.path.join(os.path.dirname(HERE), "docs", "audit.schema.json")) as f:
        jsonschema.validate(document, json.load(f))
    assert document["summary"]["failed"] == ["mta"]
    counts = document["summary"]["findings"]
    assert (counts["relay trusted too broadly"], counts["relay trust not judged"], counts["proxy not trusted"]) == (
        1,
        1,
        2,
    )
    text = render_text(document)
    assert re.search(r"relay trusted too broadly +zimbraMtaMyNetworks +postfix lets relay", text)
    assert f"fix: zmprov mcf zimbraMtaMyNetworks '{LEAST}'" in text
    page = render_html(document)
    for verdict in ("relay trusted too broadly", "relay trust not judged", "proxy not trusted"):
        assert re.search(rf"<span><i style='background:#[0-9a-f]{{6}}'></i>{verdict}</span>", page)  # legend
        assert f">{verdict}</span></td><td>zimbra" in page  # the findings table


# --- Postfix's list syntax --------------------------------------------------------------------------------


def test_postfix_splits_at_commas_and_spaces_but_not_inside_braces():
    assert postfix_items("a,b  c,\td {e, f} g{h") == ["a", "b", "c", "d", "{e, f}", "g{h"]


def test_a_negated_network_takes_its_addresses_out_of_what_follows():
    trusted = [ipaddress.ip_network("10.77.0.0/25")]
    assert judge_mynetworks("!10.77.0.128/25 10.77.0.0/24", trusted).wider == ()
    assert [p.text for p in judge_mynetworks("10.77.0.0/24 !10.77.0.128/25", trusted).wider] == ["10.77.0.0/24"]
    assert [p.negated for p in mynetworks_patterns("!!10.0.0.1 !10.0.0.2")] == [False, True]


def test_a_server_value_too_long_to_read_whole_is_judged_on_what_was_read_not_taken_as_inherited():
    assert verdicts(relay(value=LEAST, own="0.0.0.0/0" + " " * 10240 + LEAST)) == [
        ("relay trusted too broadly", "zimbraMtaMyNetworks"),
        ("relay trust not judged", "zimbraMtaMyNetworks"),
    ]
