"""Each node's policy from Zimbra's LDAP, on the topology reads captured from the lab's default cluster
(ldap, mta, proxy with memcached, mailbox with the logger, mailbox-2): ports by role, each intra port from
exactly the peers whose flows reach it, memcached where nginx looks."""

import dataclasses

from test_policy import MGMT, policy, ports, topology

from zimbra_firewall.policy import build_policy
from zimbra_firewall.safety import preflight_problem
from zimbra_firewall.settings import read_settings
from zimbra_firewall.ufw import Port, plan_rules
from zimbra_firewall.ufw_policy import rule_arguments, ufw_restrictions, ufw_rules

V4 = {
    "ldap": "10.77.0.10",
    "mta": "10.77.0.11",
    "proxy": "10.77.0.12",
    "mailbox": "10.77.0.13",
    "mailbox-2": "10.77.0.14",
}
V6 = {
    "ldap": "fd5a:7e3c:91b2::a",
    "mta": "fd5a:7e3c:91b2::b",
    "proxy": "fd5a:7e3c:91b2::c",
    "mailbox": "fd5a:7e3c:91b2::d",
    "mailbox-2": "fd5a:7e3c:91b2::e",
}


def resolving(read, prefix, addresses, last_known=None):
    """The read with the server whose name starts with `prefix` resolving to `addresses` (and, given, the
    addresses the last deploy kept for it)."""
    servers, this = [], read.this
    for server in read.servers:
        if server.name.startswith(prefix):
            kept = server.last_known if last_known is None else last_known
            changed = dataclasses.replace(server, addresses=addresses, last_known=kept)
            this = changed if server is read.this else this
            server = changed
        servers.append(server)
    return dataclasses.replace(read, servers=tuple(servers), this=this)


def peer_ports(p, spec_proto="tcp"):
    """{source address: set of port numbers} from the per-peer rules."""
    ports = {}
    for rule in ufw_rules(p):
        if rule[1] == "from" and "port" in rule and rule[-1] == spec_proto and rule[2] in {*V4.values(), *V6.values()}:
            for number in rule[6].split(","):
                ports.setdefault(rule[2], set()).add(int(number))
    return ports


def both(node, ports):
    return {V4[node]: set(ports), V6[node]: set(ports)}


def with_attributes(read, server_name, **attributes):
    """The read with one server's (effective) attributes changed, as if LDAP said so."""
    servers = []
    for server in read.servers:
        if server.name.startswith(server_name + "."):
            server = dataclasses.replace(server, attributes={**server.attributes, **attributes})
        servers.append(server)
    this = next(s for s in servers if s.name == read.this.name)
    return dataclasses.replace(read, this=this, servers=tuple(servers))


def cluster_policy(node, read=None, **overrides):
    return build_policy(read_settings({"management_subnets": MGMT, **overrides}), read or topology(f"cluster-{node}"))


def test_ldap_node_lets_every_peer_reach_ldap_and_mailboxes_reach_ssh():
    p = policy("cluster-ldap")
    assert [x.name for x in p.profiles] == ["Zimbra Local"] and p.profiles[0].ports == "389/tcp"
    assert ("allow", "Zimbra Public") not in ufw_rules(p)  # no public port on an LDAP node
    expected = {}
    for node in ("mta", "proxy"):
        expected |= both(node, {389})
    for node in ("mailbox", "mailbox-2"):
        expected |= both(node, {22, 389})  # zmrcd's remote management over SSH
    assert peer_ports(p) == expected
    assert p.memcached == {}


def test_mailbox_node_lets_each_port_in_from_exactly_the_roles_that_use_it():
    p = policy("cluster-mailbox")
    assert peer_ports(p) == {
        **both("mta", {7025, 7073, 7071, 8443}),  # LMTP, SASL auth, and spam training (admin auth, https)
        **both("proxy", {7072, 7993, 7995, 8443}),
        **both("mailbox-2", {22, 7071, 8443}),
    }
    # the logger: syslog from every other node
    assert peer_ports(p, "udp") == {
        address: {514} for node in ("ldap", "mta", "proxy", "mailbox-2") for address in (V4[node], V6[node])
    }
    assert ufw_restrictions(p)["7072,7993,7995/tcp"] == [V4["proxy"], V6["proxy"]]
    assert "11211," in next(k for k, v in ufw_restrictions(p).items() if v == [])


def test_proxy_node_binds_memcached_where_nginx_looks_and_lets_no_one_else_in():
    p = policy("cluster-proxy")
    assert [x.ports for x in p.profiles] == ["443,993,995/tcp", "80,110,143/tcp"]
    assert peer_ports(p) == {**both("mailbox", {22}), **both("mailbox-2", {22})}
    assert p.memcached == {"zimbraMemcachedBindAddress": ["127.0.0.1", V6["proxy"], V4["proxy"]]}
    assert p.warnings == ()


def test_a_client_list_naming_the_memcached_server_lets_that_mailbox_in():
    read = with_attributes(
        topology("cluster-proxy"), "mailbox", zimbraMemcachedClientServerList=("proxy.zfw.test:11211",)
    )
    assert peer_ports(cluster_policy("proxy", read)) == {**both("mailbox", {22, 11211}), **both("mailbox-2", {22})}


def test_plain_upstreams_and_the_admin_proxy_follow_the_proxys_attributes():
    read = with_attributes(
        topology("cluster-mailbox"),
        "proxy",
        zimbraReverseProxySSLToUpstreamEnabled=("FALSE",),
        zimbraReverseProxyAdminEnabled=("TRUE",),
    )
    assert peer_ports(cluster_policy("mailbox", read))[V4["proxy"]] == {7071, 7072, 8080, 7143, 7110}


def test_a_moved_port_attribute_moves_the_rules():
    read = with_attributes(
        topology("cluster-mailbox"), "mailbox", zimbraAdminPort=("7271",), zimbraLmtpBindPort=("7125",)
    )
    p = cluster_policy("mailbox", read)
    assert p.profiles[0].ports == "7073,7125,7271/tcp"  # local-only, from the management subnets
    assert peer_ports(p)[V4["mta"]] == {7073, 7125, 7271, 8443}
    assert peer_ports(p)[V4["mailbox-2"]] == {22, 7271, 8443}


def test_the_proxys_listen_ports_follow_its_attributes_and_0_closes_one():
    """nginx listens where the proxy's attributes say (Zimbra/zm-mailbox ProxyConfGen.java web.https.port,
    mail.imaps.port, ...): 443 moved to 8444 opens 8444 to everyone and not 443; 0 (Zimbra's "not used",
    as `zmproxyconfig -d` writes for the web ports) opens nothing."""
    read = with_attributes(
        topology("cluster-proxy"), "proxy", zimbraMailSSLProxyPort=("8444",), zimbraPop3SSLProxyBindPort=("0",)
    )
    p = cluster_policy("proxy", read)
    assert p.exposure["public"] == ports(993, 8444)
    assert [(x.name, x.ports) for x in p.profiles][0] == ("Zimbra Public", "993,8444/tcp")
    # the catalogue's public ports: a rule the admin typed for them is left alone, the deploy's own no longer opens them
    restricted = {port.first for r in p.restricted for port in r.ports}
    assert {443, 995} & restricted == set()
    assert cluster_policy("proxy").exposure["public"] == ports(443, 993, 995)


def test_a_port_attribute_of_0_opens_no_flow_to_it():
    read = with_attributes(topology("cluster-mailbox"), "mailbox", zimbraLmtpBindPort=("0",))
    p = cluster_policy("mailbox", read)
    assert peer_ports(p)[V4["mta"]] == {7071, 7073, 8443}
    assert "7025" not in p.profiles[0].ports


def in_ip_mode(read, mode):
    for server in read.servers:
        read = with_attributes(read, server.name.split(".")[0], zimbraIPMode=(mode,))
    return read


def test_ip_mode_narrows_the_families_of_the_flows_whose_clients_follow_it_and_only_those():
    """ipv4: postfix's LMTP (inet_protocols) and nginx's lookup (IP literals) use IPv4 alone, and so do the Java
    clients (preferIPv4Stack): their peers' IPv6 rules go; saslauthd (curl), nginx's upstreams (host names)
    and the others keep both families. ipv6: postfix and nginx's literals use IPv6 alone, Java both."""
    ports = peer_ports(cluster_policy("mailbox", in_ip_mode(topology("cluster-mailbox"), "ipv4")))
    assert ports[V4["mta"]] == {7025, 7071, 7073, 8443} and ports[V6["mta"]] == {7073}
    assert ports[V4["proxy"]] == {7072, 7993, 7995, 8443} and ports[V6["proxy"]] == {7993, 7995, 8443}
    assert ports[V4["mailbox-2"]] == {22, 7071, 8443} and V6["mailbox-2"] not in ports
    ports = peer_ports(cluster_policy("mailbox", in_ip_mode(topology("cluster-mailbox"), "ipv6")))
    assert ports[V4["mta"]] == {7071, 7073, 8443} and ports[V6["mta"]] == {7025, 7071, 7073, 8443}
    assert ports[V4["proxy"]] == {7993, 7995, 8443} and ports[V6["proxy"]] == {7072, 7993, 7995, 8443}
    both = peer_ports(cluster_policy("mailbox", in_ip_mode(topology("cluster-mailbox"), "both")))
    assert both == peer_ports(cluster_policy("mailbox"))
    assert both[V6["mta"]] == {7025, 7071, 7073, 8443}
    # memcached on the proxy: nginx (strict) and the mailboxes' client (Java) in ipv4 mode: IPv4 alone
    read = in_ip_mode(
        with_attributes(topology("cluster-proxy"), "mailbox", zimbraMemcachedClientServerList=("proxy.zfw.test",)),
        "ipv4",
    )
    ports = peer_ports(cluster_policy("proxy", read))
    assert 11211 in ports[V4["mailbox"]] and 11211 not in ports.get(V6["mailbox"], set())


def test_zimbra_nodes_subnets_replace_the_discovered_peers():
    p = policy("cluster-ldap", zimbra_nodes=["10.77.0.0/24"])
    intra = next(x for x in p.profiles if x.name == "Zimbra Intra")
    assert intra.ports == "22,389,636/tcp"
    assert ("allow", "from", "10.77.0.0/24", "to", "any", "app", "Zimbra Intra") in ufw_rules(p)
    assert peer_ports(p) == {}


def test_a_bind_list_without_nginxs_address_warns_naming_the_proxy():
    p = policy("cluster-proxy", memcached_bind_addresses=["127.0.0.1"])
    assert p.memcached == {"zimbraMemcachedBindAddress": ["127.0.0.1"]}
    assert p.warnings == (
        "memcached_bind_addresses leaves out 10.77.0.12, where proxy.zfw.test look for this memcached "
        "(nginx.conf.memcache): their route cache will be off",
    )


def test_a_host_name_resolving_to_an_address_the_host_lacks_is_not_bound_and_said_so():
    read = resolving(topology("cluster-proxy"), "proxy.", ("203.0.113.7", V4["proxy"]))
    p = cluster_policy("proxy", read)
    assert p.memcached["zimbraMemcachedBindAddress"] == ["127.0.0.1", V4["proxy"]]
    assert "resolves here to 203.0.113.7, which this host does not have" in p.warnings[0]


def test_an_unresolved_peer_gets_no_rule_and_a_warning():
    p = cluster_policy("ldap", resolving(topology("cluster-ldap"), "mta.", ()))
    assert V4["mta"] not in peer_ports(p)
    assert p.warnings == ("peer mta.zfw.test has no usable address on this node: no rule lets it in",)


def test_a_single_server_opens_nothing_to_peers_and_binds_memcached_to_its_lan_address():
    p = policy()
    assert peer_ports(p) == {} and Port(11211, 11211, "tcp") in p.exposure["intra"]
    assert p.memcached["zimbraMemcachedBindAddress"] == ["127.0.0.1", "fd5a:7e3c:91b2::a", "10.77.0.10"]


def test_an_unreadable_topology_fails_the_preflight_with_zimbras_message():
    read = dataclasses.replace(topology(), this=None, servers=(), error="ERROR: service.FAILURE (ldap down)")
    p = cluster_policy("ldap", read)
    assert p.memcached == {} and p.server == ""
    found = {"zimbra": True, "ufw": True, "ipv6": True, "ssh_connection": "10.10.0.5 50000 10.77.0.10 22"}
    assert preflight_problem(p, found) == (
        "cannot read Zimbra's servers (LDAP, then zmprov): ERROR: service.FAILURE (ldap down)"
    )


def with_services(read, server_name, *services):
    """The read with one server running these services too."""
    servers = []
    for server in read.servers:
        if server.name.startswith(server_name + "."):
            server = dataclasses.replace(server, services=server.services | set(services))
        servers.append(server)
    this = next(s for s in servers if s.name == read.this.name)
    return dataclasses.replace(read, this=this, servers=tuple(servers))


def without_services(read, server_name, *services):
    """The read with one server no longer running these services."""
    servers = []
    for server in read.servers:
        if server.name.startswith(server_name + "."):
            server = dataclasses.replace(server, services=server.services - set(services))
        servers.append(server)
    this = next(s for s in servers if s.name == read.this.name)
    return dataclasses.replace(read, this=this, servers=tuple(servers))


def test_without_a_proxy_the_mailboxes_serve_the_clients_on_the_proxys_ports():
    """No node runs the proxy and each mailbox's ports hold what a proxy-less install leaves there (443, 993,
    995, 80, 143, 110): they take the proxy ports' exposure, with a warning; the MTA's spam training needs no
    rule of its own to a public port. The proxy merely gone from LDAP (the ports still 8443, 7993, …) changes
    nothing: a value in LDAP never makes a backend port public."""
    gone = without_services(topology("cluster-mailbox"), "proxy", "proxy", "memcached")
    assert cluster_policy("mailbox", gone).exposure["public"] == ()
    proxyless = {
        "zimbraMailSSLPort": ("443",),
        "zimbraImapSSLBindPort": ("993",),
        "zimbraPop3SSLBindPort": ("995",),
        "zimbraMailPort": ("80",),
        "zimbraImapBindPort": ("143",),
        "zimbraPop3BindPort": ("110",),
    }
    p = cluster_policy("mailbox", with_attributes(gone, "mailbox", **proxyless))
    assert p.exposure["public"] == ports(443, 993, 995)
    assert {80, 110, 143} <= {port.first for port in p.exposure["local-only"]}
    assert peer_ports(p)[V4["mta"]] == {7025, 7071, 7073}
    assert V4["proxy"] not in peer_ports(p)
    assert any("no node runs the proxy: mailboxd serves 443/tcp" in w for w in p.warnings)
    assert not {443, 993, 995} & {port.first for r in p.restricted for port in r.ports}
    assert peer_ports(cluster_policy("mailbox"))[V4["proxy"]] == {7072, 7993, 7995, 8443}


def test_an_attribute_never_moves_a_port_onto_ssh_or_a_port_classed_otherwise():
    """zimbraMailSSLProxyPort=22 would open SSH to the world, =7071 the admin console: refused, the rule stays
    on 443, with a warning; a mailbox port moved onto 443 stays where it was too."""
    for number, clash in (
        ("22", "22/tcp: the SSH port"),
        ("7071", "7071/tcp: 7071/tcp is local-only here"),
    ):
        read = with_attributes(topology("cluster-proxy"), "proxy", zimbraMailSSLProxyPort=(number,))
        p = cluster_policy("proxy", read)
        assert p.exposure["public"] == ports(443, 993, 995), number
        assert f"zimbraMailSSLProxyPort puts HTTPS webmail/SOAP/ActiveSync on {clash}" in " ".join(p.warnings)
        ssh = [r.sources for r in p.restricted if Port(22, 22, "tcp") in r.ports]
        assert ssh and not [n for sources in ssh for n in sources if n.prefixlen == 0]
    read = with_attributes(topology("cluster-mailbox"), "mailbox", zimbraMailSSLPort=("443",))
    assert cluster_policy("mailbox", read).exposure["public"] == ()
    # two attributes on one new number: the second, classed otherwise, stays where it was
    read = with_attributes(topology("cluster-mailbox"), "mailbox", zimbraAdminPort=("9999",), zimbraMailPort=("9999",))
    p = cluster_policy("mailbox", read)
    assert Port(9999, 9999, "tcp") in p.exposure["local-only"] and Port(8080, 8080, "tcp") in p.exposure["intra"]


def test_spam_training_follows_the_mailboxs_mail_mode():
    """zmtrainsa on the MTA: admin auth on 7071, then https on zimbraMailSSLPort or http on zimbraMailPort as
    the mailbox's zimbraMailMode says (Zimbra/zm-mailbox SpamExtract.java getServerURL); no mode, no mail port."""
    for mode, mail_ports in [(("both",), {7071, 8080}), (("redirect",), {7071, 8443}), ((), {7071})]:
        read = with_attributes(topology("cluster-mailbox"), "mailbox", zimbraMailMode=mode)
        assert peer_ports(cluster_policy("mailbox", read))[V4["mta"]] == {7025, 7073} | mail_ports, mode


def test_imapd_is_reached_by_the_proxies_a_mailbox_sends_there_and_by_the_mailboxes():
    """nginx sends IMAP to the imapd servers an account's mailbox lists in zimbraReverseProxyUpstreamImapServers
    (Zimbra/zm-nginx-lookup-store NginxLookupExtension.java): with the list, the proxies reach imapd's 8143 and
    8993; without it IMAP stays on mailboxd and only the mailboxes reach imapd (8143, cache flushes)."""
    imapd = with_services(topology("cluster-ldap"), "ldap", "imapd")
    listed = with_attributes(imapd, "mailbox-2", zimbraReverseProxyUpstreamImapServers=("ldap.zfw.test",))
    assert peer_ports(cluster_policy("ldap", listed)) == {
        **both("mta", {389}),
        **both("proxy", {389, 8143, 8993}),
        **both("mailbox", {22, 389, 8143}),
        **both("mailbox-2", {22, 389, 8143}),
    }
    assert peer_ports(cluster_policy("ldap", imapd))[V4["proxy"]] == {389}
    elsewhere = with_attributes(imapd, "mailbox-2", zimbraReverseProxyUpstreamImapServers=("mailbox.zfw.test",))
    assert peer_ports(cluster_policy("ldap", elsewhere))[V4["proxy"]] == {389}
    # a name that runs no imapd, with a port written in: nothing opens there (nginx takes imapd's own port)
    hostile = with_attributes(
        topology("cluster-mta"), "mailbox-2", zimbraReverseProxyUpstreamImapServers=("mta.zfw.test:3306",)
    )
    assert V4["proxy"] not in peer_ports(cluster_policy("mta", hostile))
    port_written = with_attributes(imapd, "mailbox-2", zimbraReverseProxyUpstreamImapServers=("ldap.zfw.test:3306",))
    assert peer_ports(cluster_policy("ldap", port_written))[V4["proxy"]] == {389, 8143, 8993}
    mailbox = cluster_policy("mailbox", with_services(topology("cluster-mailbox"), "ldap", "imapd"))
    assert peer_ports(mailbox)[V4["ldap"]] == {7071}
    moved = with_attributes(listed, "ldap", zimbraRemoteImapSSLBindPort=("9993",))
    assert peer_ports(cluster_policy("ldap", moved))[V4["proxy"]] == {389, 8143, 9993}


def test_document_editing_opens_the_document_server_to_the_proxies_and_the_callback_to_it():
    read = with_services(topology("cluster-mailbox-2"), "mailbox-2", "onlyoffice")
    assert peer_ports(cluster_policy("mailbox-2", read))[V4["proxy"]] == {7072, 7084, 7085, 7993, 7995, 8443}
    read = with_services(topology("cluster-mailbox"), "mailbox-2", "onlyoffice")
    assert peer_ports(cluster_policy("mailbox", read))[V4["mailbox-2"]] == {22, 7071, 7074, 8443}


def test_the_license_daemon_is_reached_by_the_mailboxes_its_attribute_sends_there():
    read = with_services(topology("cluster-ldap"), "ldap", "license-daemon")
    for mailbox in ("mailbox", "mailbox-2"):
        read = with_attributes(read, mailbox, zimbraLicenseDaemonServerHost=("ldap.zfw.test",))
    ports = peer_ports(cluster_policy("ldap", read))
    assert ports[V4["mailbox"]] == ports[V4["mailbox-2"]] == {22, 389, 8081} and ports[V4["mta"]] == {389}
    # without the attribute nobody is let in: 8081 is among the ports no source may reach
    alone = cluster_policy("ldap", with_services(topology("cluster-ldap"), "ldap", "license-daemon"))
    closed = next(ports for ports, sources in ufw_restrictions(alone).items() if sources == [])
    assert ",8081," in closed and 8081 not in peer_ports(alone)[V4["mailbox"]]


def test_a_sites_own_flow_opens_its_port_to_exactly_its_sources_on_the_nodes_it_names():
    """A separate MariaDB host reading a mailbox's 7306 (loopback-only in the catalogue), a monitoring host's
    7071 on every node: rules from exactly those sources, and those rules are no longer widening."""
    extra = [
        {"port": "7306/tcp", "from": ["10.0.0.14/32"], "on": ["mailbox"]},
        {"port": "7071/tcp", "from": ["192.0.2.0/28", "2001:db8::/64"]},
        {"port": "25/tcp", "from": ["10.0.0.14/32"], "on": ["mta"]},
    ]
    mailbox = cluster_policy("mailbox", extra_allows=extra)
    rules = ufw_rules(mailbox)
    assert ("allow", "from", "10.0.0.14", "to", "any", "port", "7306", "proto", "tcp") in rules
    assert ("allow", "from", "192.0.2.0/28", "to", "any", "port", "7071", "proto", "tcp") in rules
    assert ("allow", "from", "2001:db8::/64", "to", "any", "port", "7071", "proto", "tcp") in rules
    restrictions = ufw_restrictions(mailbox)
    assert restrictions["7306/tcp"] == ["10.0.0.14"]
    assert {"192.0.2.0/28", "2001:db8::/64"} <= set(next(v for k, v in restrictions.items() if "7071" in k))
    assert mailbox.warnings == ()
    assert cluster_policy("mta", extra_allows=extra).warnings == (
        "extra_allows: 25/tcp left out on this node: it overlaps its public 25/tcp, which everyone reaches already "
        "(name the other ports alone)",
    )
    proxy = ufw_rules(cluster_policy("proxy", extra_allows=extra))
    assert not [r for r in proxy if "7306" in r] and [r for r in proxy if "7071" in r and "192.0.2.0/28" in r]
    # a narrow rule of the admin's for the same flow stays; the same port from anyone else still goes
    plan = plan_rules(
        [("allow", "from", "10.0.0.14", "to", "any", "port", "7306", "proto", "tcp"), ("allow", "7306/tcp")],
        **rule_arguments(mailbox),
    )
    assert plan.delete_widening == (("allow", "7306/tcp"),)


def test_a_sites_own_flow_stays_when_zimbra_nodes_replaces_the_peers():
    extra = [{"port": "7306/tcp", "from": ["10.0.0.14/32"]}]
    p = policy("cluster-ldap", zimbra_nodes=["10.77.0.0/24"], extra_allows=extra)
    assert ("allow", "from", "10.0.0.14", "to", "any", "port", "7306", "proto", "tcp") in ufw_rules(p)
    assert peer_ports(p) == {}


def test_a_sites_own_flow_to_a_port_of_a_group_that_is_off_keeps_the_narrow_rule():
    """9071 (admin_proxy off) is closed to everyone, except the sources a site's own flow names."""
    p = cluster_policy("proxy", extra_allows=[{"port": "9071/tcp", "from": ["10.0.0.0/24"]}])
    assert ufw_restrictions(p)["9071/tcp"] == ["10.0.0.0/24"]
    narrow = ("allow", "from", "10.0.0.14", "to", "any", "port", "9071", "proto", "tcp")
    assert plan_rules([narrow, ("allow", "9071/tcp")], **rule_arguments(p)).delete_widening == (("allow", "9071/tcp"),)
