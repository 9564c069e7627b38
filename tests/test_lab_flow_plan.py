"""The lab's flow planner (lab/flows.py plan): which flows must work and which must fail, computed from
what a cluster's LDAP holds. Pure: no lab needed."""

import pytest

from lab import flows, topology
from lab.errors import LabError


def cluster(**server_overrides):
    """The lab's default cluster: its hosts (as `lab status` lists them) and its LDAP's content."""
    hosts = topology.hosts_for("cluster")
    directory = topology.directory([h for h in hosts if h.role == "zimbra"])
    servers = []
    for server in directory["servers"]:
        attrs = dict(server["attrs"], cn=[server["name"]])
        attrs.update(server_overrides.get(server["name"].split(".")[0], {}))
        servers.append(attrs)
    status = [dict(h.to_dict(), roles=list(h.services)) for h in hosts]
    return {"config": directory["config"], "servers": servers}, status


def planned(snapshot, status):
    return {
        (f["source"], f["destination"], f["port"], f["proto"], f["kind"]): f["expect"]
        for f in flows.plan(snapshot, status)
    }


def test_every_node_reaches_ldap_and_the_logger_and_the_mta_delivers_to_every_mailbox():
    plan = planned(*cluster())
    for node in ("ldap", "mta", "proxy", "mailbox", "mailbox-2"):
        assert plan[(node, "ldap", 389, "tcp", "connect")] == "allow"
        assert plan[(node, "mailbox", 514, "udp", "datagram")] == "allow"  # zimbraLogHostname names `mailbox`
    for mailbox in ("mailbox", "mailbox-2"):
        assert plan[("mta", mailbox, 7025, "tcp", "connect")] == "allow"
        assert plan[("proxy", mailbox, 7072, "tcp", "connect")] == "allow"
        assert plan[("proxy", mailbox, 8443, "tcp", "connect")] == "allow"
    assert plan[("proxy", None, None, "tcp", "nginx-memcache")] == "allow"


def test_what_no_zimbra_flow_uses_must_fail_but_site_policy_is_not_judged():
    plan = planned(*cluster())
    assert plan[("mta", "mailbox", 7072, "tcp", "connect")] == "deny"
    assert plan[("proxy", "mailbox", 7025, "tcp", "connect")] == "deny"
    assert plan[("mta", "proxy", 11211, "tcp", "connect")] == "deny"
    assert plan[("mailbox", "proxy", 11211, "tcp", "memcache")] == "deny"  # the client list is empty
    assert plan[("outside", "mailbox", 7071, "tcp", "connect")] == "deny"
    assert plan[("outside", "ldap", 389, "tcp", "connect")] == "deny"
    assert plan[("mgmt", "proxy", 11211, "tcp", "connect")] == "deny"
    assert plan[("mgmt", "mailbox", 7072, "tcp", "connect")] == "deny"
    assert plan[("outside", "proxy", 443, "tcp", "connect")] == "allow"
    # Zimbra leaves these to the site (80/110/143), or the seed how-to lets admins in (389, 7025)
    assert ("outside", "proxy", 80, "tcp", "connect") not in plan
    assert ("mgmt", "ldap", 389, "tcp", "connect") not in plan
    assert ("mgmt", "mailbox", 7025, "tcp", "connect") not in plan
    # loopback-only listeners and a node's own traffic are never judged
    assert not [key for key in plan if key[2] in (7306, 10024, 7171)]
    assert not [key for key, expect in plan.items() if expect == "deny" and key[0] == key[1]]


def test_flows_follow_the_switches_and_port_attributes_in_ldap():
    plain = {"zimbraReverseProxySSLToUpstreamEnabled": ["FALSE"], "zimbraReverseProxyAdminEnabled": ["TRUE"]}
    client_list = {"zimbraMemcachedClientServerList": ["proxy.zfw.test:11211"]}
    plan = planned(*cluster(proxy=plain, mailbox=client_list, **{"mailbox-2": {"zimbraLmtpBindPort": ["7125"]}}))
    assert plan[("proxy", "mailbox", 8080, "tcp", "connect")] == "allow"
    assert plan[("proxy", "mailbox", 7071, "tcp", "connect")] == "allow"
    assert plan[("proxy", "mailbox", 7993, "tcp", "connect")] == "deny"
    assert plan[("mailbox", "proxy", 11211, "tcp", "memcache")] == "allow"
    assert plan[("mailbox-2", "proxy", 11211, "tcp", "memcache")] == "deny"
    assert plan[("mta", "mailbox-2", 7125, "tcp", "connect")] == "allow"
    assert plan[("mta", "mailbox", 7025, "tcp", "connect")] == "allow"
    assert plan[("mta", "mailbox-2", 7025, "tcp", "connect")] == "deny"  # its listener stayed: nobody may use it


def test_the_mtas_spam_training_reaches_the_mailboxes_on_the_scheme_their_mail_mode_gives():
    plan = planned(*cluster(**{"mailbox-2": {"zimbraMailMode": ["both"]}}))
    assert plan[("mta", "mailbox", 7071, "tcp", "connect")] == "allow"
    assert plan[("mta", "mailbox", 8443, "tcp", "connect")] == "allow"  # the lab's cn=config: https
    assert plan[("mta", "mailbox", 8080, "tcp", "connect")] == "deny"
    assert plan[("mta", "mailbox-2", 8080, "tcp", "connect")] == "allow"
    assert plan[("mta", "mailbox-2", 8443, "tcp", "connect")] == "deny"
    assert plan[("proxy", "mailbox", 7071, "tcp", "connect")] == "deny"  # only the MTA's training


def test_clients_reach_the_proxy_where_its_attributes_say_nginx_listens():
    plan = planned(*cluster(proxy={"zimbraMailSSLProxyPort": ["8444"], "zimbraImapSSLProxyBindPort": ["9993"]}))
    assert plan[("outside", "proxy", 8444, "tcp", "connect")] == "allow"
    assert plan[("outside", "proxy", 9993, "tcp", "connect")] == "allow"
    assert plan[("outside", "proxy", 995, "tcp", "connect")] == "allow"
    # the old ports' listeners stay in the lab: nobody may reach them any more
    assert plan[("outside", "proxy", 443, "tcp", "connect")] == "deny"
    assert plan[("outside", "proxy", 993, "tcp", "connect")] == "deny"


def test_imapd_and_the_document_server_are_judged_where_ldap_enables_them():
    services = topology.ROLE_SERVICES["mailbox"]
    enabled = {"mailbox-2": {"zimbraServiceEnabled": [*services, "imapd", "onlyoffice"]}}
    # IMAP through imapd only for the accounts whose mailbox lists it (zimbraReverseProxyUpstreamImapServers)
    unlisted = planned(*cluster(**enabled))
    assert unlisted[("proxy", "mailbox-2", 8143, "tcp", "connect")] == "deny"
    assert unlisted[("mailbox", "mailbox-2", 8143, "tcp", "connect")] == "allow"
    listed = {"zimbraReverseProxyUpstreamImapServers": ["mailbox-2.zfw.test"]}
    snapshot, status = cluster(**enabled, mailbox=listed)
    plan = planned(snapshot, status)
    for port in (8143, 8993, 7084, 7085):
        assert plan[("proxy", "mailbox-2", port, "tcp", "connect")] == "allow"
        assert plan[("outside", "mailbox-2", port, "tcp", "connect")] == "deny"
        assert plan[("mta", "mailbox-2", port, "tcp", "connect")] == "deny"
    assert plan[("mailbox", "mailbox-2", 8143, "tcp", "connect")] == "allow"
    assert plan[("mailbox", "mailbox-2", 8993, "tcp", "connect")] == "deny"
    assert plan[("mailbox-2", "mailbox", 7074, "tcp", "connect")] == "allow"  # the document callback
    assert plan[("proxy", "mailbox", 7074, "tcp", "connect")] == "deny"
    assert ("proxy", "mailbox", 8143, "tcp", "connect") not in planned(*cluster())


def test_in_ipv4_mode_the_clients_that_follow_it_must_not_get_through_over_ipv6():
    snapshot, status = cluster()
    snapshot["config"]["zimbraIPMode"] = ["ipv4"]
    judged = {}
    for f in flows.plan(snapshot, status):
        judged.setdefault((f["source"], f["destination"], f["port"]), set()).add((f["expect"], f["families"]))
    assert judged[("mta", "mailbox", 7025)] == {("allow", (4,)), ("deny", (6,))}  # postfix: inet_protocols
    assert judged[("proxy", "mailbox", 7072)] == {("allow", (4,)), ("deny", (6,))}  # nginx's IP literal
    assert judged[("mailbox", "mailbox-2", 7071)] == {("allow", (4,)), ("deny", (6,))}  # Java, preferIPv4Stack
    assert judged[("mta", "mailbox", 7073)] == {("allow", (4, 6))}  # saslauthd's curl: the resolver's choice
    assert judged[("mta", "ldap", 389)] == {("allow", (4, 6))}
    snapshot["config"]["zimbraIPMode"] = ["ipv6"]
    judged = {
        (f["source"], f["destination"], f["port"], f["expect"]): f["families"] for f in flows.plan(snapshot, status)
    }
    assert judged[("mta", "mailbox", 7025, "allow")] == (6,) and judged[("mta", "mailbox", 7025, "deny")] == (4,)
    assert judged[("mailbox", "mailbox-2", 7071, "allow")] == (4, 6)


def test_a_node_in_ldap_without_a_lab_host_and_a_lab_host_not_in_ldap_are_left_out():
    snapshot, status = cluster()
    status = [h for h in status if h["name"] != "mailbox-2"]
    status.append(
        dict(
            topology.Host(
                "stray", "zimbra", "10.77.0.99", "fd5a:7e3c:91b2::99", topology.services_for(["mailbox"])
            ).to_dict(),
            roles=["mailbox"],
        )
    )
    plan = planned(snapshot, status)
    assert not [key for key in plan if "mailbox-2" in key[:2] or "stray" in key[:2]]


def test_a_sites_own_flow_is_judged_legitimate_and_only_that_one():
    snapshot, status = cluster()
    site = [flows.site_flow("outside:mailbox:7071/tcp", status)]
    plan = {
        (f["source"], f["destination"], f["port"], f["proto"], f["kind"]): f["expect"]
        for f in flows.plan(snapshot, status, site=site)
    }
    assert plan[("outside", "mailbox", 7071, "tcp", "connect")] == "allow"
    assert plan[("outside", "mailbox-2", 7071, "tcp", "connect")] == "deny"
    assert plan[("outside", "mailbox", 7072, "tcp", "connect")] == "deny"


@pytest.mark.parametrize(
    "spec, words",
    [
        ("outside:mailbox:7071", "write SOURCE:DESTINATION:PORT/PROTO"),
        ("outside:mailbox:0/tcp", "write SOURCE:DESTINATION:PORT/PROTO"),
        ("outside:mailbox:7071/sctp", "tcp or udp"),
        ("outside:nowhere:7071/tcp", "no lab host 'nowhere'"),
        ("outside:mailbox:7071/tcp:x", "write SOURCE"),
    ],
)
def test_a_bad_site_flow_is_refused_in_one_line(spec, words):
    with pytest.raises(LabError) as error:
        flows.site_flow(spec, cluster()[1])
    assert words in str(error.value) and "\n" not in str(error.value)
