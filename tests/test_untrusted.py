"""The trust boundary: values from Zimbra's LDAP, DNS and the hosts, hostile ones included, checked before they
reach a command or a rule (zimbra_firewall/untrusted.py), through the topology read and the policy."""

import base64
import ipaddress
import os

import pytest
from test_cluster_policy import V4, V6, cluster_policy, peer_ports, resolving
from test_policy import FIXTURES, topology

from facts.zimbra import ZimbraTopology
from zimbra_firewall.audit import audit_node
from zimbra_firewall.policy import build_policy, catalogue_cache
from zimbra_firewall.settings import read_settings
from zimbra_firewall.topology import parse_resolved, render_addresses
from zimbra_firewall.ufw import SECTION, Port, plan_rules
from zimbra_firewall.ufw_policy import rule_arguments, ufw_rules
from zimbra_firewall.untrusted import (
    Refused,
    checked,
    endpoint,
    host_and_port,
    host_name,
    mode,
    peer_address_problem,
    port_number,
    shown,
    terminal_safe,
    url,
)
from zimbra_firewall.untrusted import address as ip

MGMT = ["10.10.0.0/24", "fd00:10::/64"]


def rule_sources(p, proto="tcp"):
    """{source address: set of port numbers} of every single-address rule of the policy."""
    ports = {}
    for rule in ufw_rules(p):
        if rule[1:2] == ("from",) and "port" in rule and rule[-1] == proto and "/" not in rule[2]:
            ports.setdefault(rule[2], set()).update(int(n) for n in rule[6].split(","))
    return ports


HOSTILE_NAMES = [
    "-e;system(q(id))",  # perl takes it for code after -e
    "--version",
    "a'b",  # xargs stopped the whole read on it
    "$(touch /tmp/pwned)",
    "`id`",
    "mail;reboot",
    "mta.zfw.test 10.66.6.6",  # a space: the resolver's output must not read "10.66.6.6" as mta's address
    "mta.zfw.test\t10.66.6.6",
    "mail\nhost",
    "two  spaces",
    "x" * 300,
    "a." + "b" * 64 + ".test",  # a label over 63 characters
    "mail-.example.com",
    "-mail.example.com",
    "mäil.example.com",
    "mail\x1b]0;owned\x07.example.com",
    "mail\u202e.example.com",
    "",
    ".",
    "a..b",
    "mail_server.example.com",
]


@pytest.mark.parametrize("text", HOSTILE_NAMES, ids=[repr(n)[:30] for n in HOSTILE_NAMES])
def test_a_hostile_host_name_is_refused(text):
    with pytest.raises(Refused):
        host_name(text)


def test_host_names_and_address_literals_pass_as_written():
    assert host_name("mail.example.com") == "mail.example.com"
    assert host_name("mail.example.com.") == "mail.example.com"
    assert host_name("10.0.0.5") == "10.0.0.5" and host_name("fd00::5") == "fd00::5"
    assert host_name("a" * 63 + ".example.com")


@pytest.mark.parametrize(
    "text", ["0", "-1", "65536", "99999", "²", "٣", "7071 proto udp", " 7071", "7071\n", "", "0x1f"]
)
def test_a_hostile_port_is_refused(text):
    with pytest.raises(Refused):
        port_number(text)


def test_ports_are_ascii_digits_in_range():
    assert port_number("1") == 1 and port_number("65535") == 65535 and port_number("07071") == 7071


def test_a_port_attribute_may_say_0_for_not_used_and_nothing_else_outside_the_range():
    assert checked("port", "0") == "0" and checked("port", "07071") == "7071"
    for text in ("00", "-0", "0 ", "65536"):
        with pytest.raises(Refused):
            checked("port", text)


@pytest.mark.parametrize(
    "text",
    [
        "http://user:secret@spell.example.com:7780/aspell.php",
        "http://evil@mailbox.zfw.test/",
        "http://spell.example.com:99999/",
        "http://spell.example.com:²/",
        "http://spell example.com/",
        "http://$(id)/",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://[::1/",
        "http://spell.example.com:7780/\x1b[2J",
    ],
)
def test_a_hostile_url_is_refused(text):
    with pytest.raises(Refused):
        url(text)


def test_urls_and_host_ports_give_host_and_port():
    assert url("http://mailbox-2.zfw.test:7780/aspell.php") == ("mailbox-2.zfw.test", 7780)
    assert url("HTTPS://Spell.example.com/") == ("Spell.example.com", None)
    assert url("http://[fd00::5]:7780/") == ("fd00::5", 7780)
    assert host_and_port("mail.example.com:11211") == ("mail.example.com", 11211)
    assert host_and_port("[fd00::5]:11211") == ("fd00::5", 11211)
    assert host_and_port("fd00::5") == ("fd00::5", None)
    assert endpoint("mail.example.com") == ("mail.example.com", None)
    for text in ("-x:11211", "mail.example.com:-1", "[fd00::5]x", "[nothing]:1", "mail.example.com:11211:1"):
        with pytest.raises(Refused):
            endpoint(text)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("::ffff:10.0.0.1", "IPv4-mapped"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "zone"),
        ("169.254.1.1", "link-local"),
        ("255.255.255.255", "broadcast"),
        ("10.0.0.1", None),
        ("fd5a:7e3c:91b2::b", None),
        ("203.0.113.7", None),
    ],
)
def test_addresses_no_peer_can_have(text, problem):
    found = peer_address_problem(ipaddress.ip_address(text))
    assert (found is None) if problem is None else problem in found


@pytest.mark.parametrize("text", ["2001:db8::5%1", "fd00::1%\x1b[2J", "fe80::1%a\nb"])
def test_an_address_with_a_zone_is_refused_everywhere_an_address_or_a_name_is_taken(text):
    # ipaddress takes any text after %; ufw refuses the address: one such value would fail every node's run
    for check in (ip, host_name, host_and_port):
        with pytest.raises(Refused, match="zone"):
            check(text)


def test_a_value_is_shown_without_anything_a_terminal_acts_on():
    assert shown("mail\x1b]0;owned\x07\nx") == "'mail\\x1b]0;owned\\x07\\x0ax'"
    assert shown("a\u202eb") == "'a\\u202eb'" and shown("it's") == "'it\\'s'"
    assert shown("x" * 500).endswith("… (500 characters)") and len(shown("x" * 500)) < 150
    assert terminal_safe("sshd\x1b[2J ok\n·–…\n") == "sshd\\x1b[2J ok\n·–…\n"


# --- the topology read fed hostile LDAP ------------------------------------------------------------------


def fixture_text(name):
    with open(os.path.join(FIXTURES, f"topology-{name}.txt")) as f:
        return f.read()


def ldif_value(name, value):
    """An attribute line as ldapsearch prints it: base64 when the value is not plain text."""
    plain = value.isascii() and value.isprintable() and not value.startswith((" ", ":", "<"))
    return f"{name}: {value}" if plain else f"{name}:: {base64.b64encode(value.encode()).decode()}"


def server_entry(cn, hostname=None, services=("mailbox", "mta"), **attributes):
    lines = [ldif_value("dn", f"cn={cn},cn=servers,cn=zimbra"), ldif_value("cn", cn)]
    lines.append(ldif_value("zimbraServiceHostname", hostname if hostname is not None else cn))
    lines += [ldif_value("zimbraServiceEnabled", s) for s in services]
    lines += [ldif_value(name, v) for name, values in attributes.items() for v in values]
    return "\n".join(lines) + "\n"


def hostile_read(node, entries, resolved="", last_known=""):
    """A captured cluster read with hostile server entries added to what LDAP said, and resolver lines."""
    head, own, body, names, kept = fixture_text(f"cluster-{node}").split(f"\n{SECTION}\n")
    body = body.rstrip("\n") + "\n\n" + "\n".join(entries)
    text = f"\n{SECTION}\n".join([head, own, body, names.rstrip("\n") + "\n" + resolved, last_known or kept])
    return ZimbraTopology().process(text.splitlines())


HOSTILE_ENTRIES = [
    server_entry("-e;system(q(id))"),
    server_entry("evil1.zfw.test", "-e;system(q(touch /tmp/pwned))"),
    server_entry("evil2.zfw.test", "a'b"),
    server_entry("evil3.zfw.test", "$(touch /tmp/pwned)"),
    server_entry("evil4.zfw.test", "mta.zfw.test 10.66.6.6"),
    server_entry("evil5.zfw.test", "mail\x1b]0;owned\x07"),
    server_entry("good.zfw.test", services=("mailbox",), zimbraAdminPort=["7071 proto udp"]),
    server_entry("ports.zfw.test", services=("mta",), zimbraLmtpBindPort=["²"], zimbraMtaAuthPort=["99999"]),
    server_entry("spell.zfw.test", services=("mailbox",), zimbraSpellCheckURL=["http://x@mailbox.zfw.test:7780/"]),
    server_entry("flags.zfw.test", services=("proxy", "mail`id`box"), zimbraReverseProxyAdminEnabled=["yes;id"]),
]


@pytest.mark.parametrize("text", ["https;id", "https\n", "$(id)", "-x", "", "http s", "ｈｔｔｐｓ", "h" * 33])
def test_a_hostile_mode_is_refused(text):
    with pytest.raises(Refused):
        mode(text)


def test_a_mail_mode_is_a_word_and_a_hostile_one_opens_no_mail_port_to_the_mta():
    assert mode("Redirect") == "REDIRECT"
    text = fixture_text("cluster-mailbox").replace(
        "zimbraServiceHostname: mailbox.zfw.test", "zimbraServiceHostname: mailbox.zfw.test\nzimbraMailMode: https;id"
    )
    read = ZimbraTopology().process(text.splitlines())
    assert "server mailbox.zfw.test: zimbraMailMode 'https;id' left out" in "\n".join(read.refused)
    p = build_policy(read_settings({"management_subnets": MGMT}), read)
    assert peer_ports(p)[V4["mta"]] == {7025, 7071, 7073, 8443}  # cn=config's https, never the refused value


def test_hostile_server_entries_are_left_out_and_the_others_keep_their_rules():
    clean = cluster_policy("mailbox")
    read = hostile_read(
        "mailbox",
        HOSTILE_ENTRIES,
        resolved="mta.zfw.test 10.66.6.6\t\ngood.zfw.test\t10.77.0.99\nports.zfw.test\t10.77.0.98\n"
        "spell.zfw.test\t10.77.0.97\nflags.zfw.test\t10.77.0.96 not-an-address\n",
    )
    names = {s.name for s in read.servers}
    assert not names & {"-e;system(q(id))", "evil1.zfw.test", "evil2.zfw.test", "evil3.zfw.test", "evil4.zfw.test"}
    assert "evil5.zfw.test" not in names
    refused = "\n".join(read.refused)
    # each named once, with the entry, the attribute and the value shown safely
    assert "server entry 'cn=-e;system(q(id)),cn=servers,cn=zimbra' left out: cn '-e;system(q(id))'" in refused
    assert "server evil1.zfw.test left out: zimbraServiceHostname '-e;system(q(touch /tmp/pwned))'" in refused
    assert "server good.zfw.test: zimbraAdminPort '7071 proto udp' left out: not a port number" in refused
    assert "zimbraLmtpBindPort '\\xb2' left out" in refused and "zimbraMtaAuthPort '99999' left out" in refused
    assert "zimbraSpellCheckURL 'http://x@mailbox.zfw.test:7780/' left out: a URL with user information" in refused
    assert "zimbraServiceEnabled 'mail`id`box' left out" in refused
    assert "zimbraReverseProxyAdminEnabled 'yes;id' left out" in refused
    assert "flags.zfw.test resolved to 'not-an-address'" in refused
    assert "\x1b" not in refused and "mail\\x1b]0;owned\\x07" in refused
    p = build_policy(read_settings({"management_subnets": MGMT}), read)
    assert p.refused == read.refused
    # the real peers' rules are exactly what they were; the valid extra entries get theirs, at the defaults
    extra = rule_sources(p)
    added = ("10.77.0.99", "10.77.0.98", "10.77.0.97", "10.77.0.96")
    assert {a: ports for a, ports in extra.items() if a not in added} == rule_sources(clean)
    assert extra["10.77.0.99"] == {22, 7071, 8443}  # good: a mailbox, its own port unusable, cn=config's 7071
    assert extra["10.77.0.98"] == {7025, 7071, 7073, 8443}  # ports: an MTA, at the defaults (spam training too)
    assert "10.66.6.6" not in extra and extra["10.77.0.97"] == {22, 7071, 8443}  # spell: no URL, no 7780 flow
    assert extra["10.77.0.96"] == {7072, 7993, 7995, 8443}  # flags: a proxy; its admin proxy switch unreadable


def test_this_nodes_own_entry_made_hostile_fails_the_host():
    text = fixture_text("cluster-mailbox").replace(
        "zimbraServiceHostname: mailbox.zfw.test", ldif_value("zimbraServiceHostname", "$(id)")
    )
    read = ZimbraTopology().process(text.splitlines())
    assert read.this is None
    assert "no server entry cn='mailbox.zfw.test',cn=servers,cn=zimbra in Zimbra's LDAP" in read.error
    assert "left out" in read.error


def test_a_hostile_localconfig_name_and_zimbras_message_are_shown_safely():
    text = fixture_text("single-ldap").replace("zimbra.zfw.test\n", "-e;id\x1b[2J\n", 1)
    read = ZimbraTopology().process(text.splitlines())
    assert read.this is None and read.error.startswith("zimbra_server_hostname in localconfig.xml is '-e;id\\x1b[2J'")
    message = "LDAP says \x1b]0;owned\x07\nsecond line"
    failed = f"zimbra.zfw.test\n{SECTION}\n\n{SECTION}\nfailed\n{message}\n{SECTION}\n{SECTION}"
    read = ZimbraTopology().process(failed.splitlines())
    assert read.error == "LDAP says \\x1b]0;owned\\x07 second line"


def test_ldif_that_is_not_utf8_or_not_base64_is_refused_not_a_crash():
    entries = [
        "dn: cn=bin.zfw.test,cn=servers,cn=zimbra\ncn: bin.zfw.test\nzimbraServiceHostname:: //79\n",
        "dn: cn=b64.zfw.test,cn=servers,cn=zimbra\ncn: b64.zfw.test\nzimbraServiceHostname:: !!notbase64\n",
    ]
    read = hostile_read("mailbox", entries)
    assert not {s.name for s in read.servers} & {"bin.zfw.test", "b64.zfw.test"} and len(read.refused) == 2


# --- peer addresses --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["0.0.0.0", "::", "224.0.0.1", "127.0.0.2", "::ffff:10.0.0.1", "fe80::1"])
def test_a_peer_resolving_to_an_address_no_peer_has_gets_no_rule_for_it(bad):
    p = cluster_policy("ldap", resolving(topology("cluster-ldap"), "mta.", (bad, V4["mta"])))
    assert peer_ports(p)[V4["mta"]] == {389} and str(ip(bad)) not in {rule[2] for rule in ufw_rules(p)}
    assert any(f"mta.zfw.test resolves on this node to {ip(bad)}" in w for w in p.warnings)


def test_peer_networks_bound_where_peers_may_be():
    p = cluster_policy("ldap", peer_networks=["10.77.0.0/24"])
    assert peer_ports(p) == {V4["mta"]: {389}, V4["proxy"]: {389}, V4["mailbox"]: {22, 389}, V4["mailbox-2"]: {22, 389}}
    assert "peer mta.zfw.test resolves on this node to fd5a:7e3c:91b2::b, outside peer_networks" in "\n".join(
        p.warnings
    )


def test_the_audit_reports_a_peer_outside_peer_networks():
    from test_audit_verdicts import read

    node_read = read("cluster-mailbox")
    p = build_policy(read_settings({"management_subnets": MGMT, "peer_networks": ["10.77.0.0/24"]}), node_read.topology)
    node = audit_node("mailbox", node_read, p, catalogue_cache(), "pyinfra -y x deploy.py", p.warnings)
    assert any("outside peer_networks" in w for w in node.warnings)


# --- fail static: a name that does not resolve keeps its rules --------------------------------------------


def test_a_peer_that_does_not_resolve_keeps_the_addresses_it_had():
    kept = (V6["mta"], V4["mta"])
    read = resolving(topology("cluster-mailbox"), "mta.", (), last_known=kept)
    p = cluster_policy("mailbox", read)
    assert peer_ports(p) == peer_ports(cluster_policy("mailbox"))
    assert ufw_rules(p) == ufw_rules(cluster_policy("mailbox"))
    assert "peer mta.zfw.test gives no usable address on this node now: its rules keep the addresses it had" in (
        "\n".join(p.warnings)
    )
    # resolving to a refused address only is no better than not resolving
    read = resolving(topology("cluster-mailbox"), "mta.", ("0.0.0.0",), last_known=kept)
    assert peer_ports(cluster_policy("mailbox", read)) == peer_ports(cluster_policy("mailbox"))
    # without a kept address there is nothing to keep
    read = resolving(topology("cluster-mailbox"), "mta.", (), last_known=())
    assert V4["mta"] not in peer_ports(cluster_policy("mailbox", read))


def test_the_kept_addresses_are_what_the_rules_used_and_read_back_the_same():
    p = cluster_policy("mailbox")
    text = render_addresses(p.addresses)
    assert f"mta.zfw.test\t{V6['mta']} {V4['mta']}\n" in text and text.count("\n") == 5
    assert parse_resolved(text) == (dict((name, tuple(found)) for name, found in p.addresses), [])
    read = hostile_read("mailbox", [], last_known=text)
    assert dict(read.last_known) == dict(p.addresses)
    assert next(s for s in read.servers if s.name == "mta.zfw.test").last_known == (V6["mta"], V4["mta"])
    # the file read back through the same checks: a line an attacker wrote there is dropped
    assert parse_resolved("mta.zfw.test\t0.0.0.0/0 10.0.0.1\n$(id)\t10.0.0.2\n")[0] == {"mta.zfw.test": ("10.0.0.1",)}


def test_this_node_keeps_its_memcached_binding_while_its_name_does_not_resolve():
    read = resolving(topology("cluster-proxy"), "proxy.", (), last_known=(V6["proxy"], V4["proxy"]))
    assert cluster_policy("proxy", read).memcached == cluster_policy("proxy").memcached


# --- rules of app profiles the deploy does not own -------------------------------------------------------


def test_an_unmanaged_app_rule_whose_profile_opens_a_restricted_port_is_deleted():
    p = cluster_policy("mailbox")
    arguments = rule_arguments(p)
    current = [
        ("allow", "SomeProfile"),
        ("allow", "Monitoring"),
        ("allow", "from", "10.10.0.0/24", "to", "any", "app", "Admin"),
    ]
    host_apps = {
        "SomeProfile": (Port(80, 80, "tcp"), Port(7071, 7071, "tcp")),  # 7071 is local-only
        "Monitoring": (Port(9100, 9100, "tcp"),),  # no Zimbra port
        "Admin": (Port(7071, 7071, "tcp"),),  # from the management subnet: within the policy
    }
    plan = plan_rules(current, **arguments, host_apps=host_apps)
    assert plan.delete_widening == (("allow", "SomeProfile"),)
    assert plan.kept_unmanaged == (
        ("allow", "Monitoring"),
        ("allow", "from", "10.10.0.0/24", "to", "any", "app", "Admin"),
    )
    # a profile nobody knows the ports of may open any restricted port: its rule goes
    assert plan_rules([("allow", "Unknown")], **arguments).delete_widening == (("allow", "Unknown"),)


def test_a_rule_on_a_source_port_or_app_opens_every_port_and_goes():
    from zimbra_firewall.ufw import command_of_tuple

    # as ufw prints `### tuple ### allow tcp any 0.0.0.0/0 53 0.0.0.0/0 in`: any port, from source port 53
    from_port_53 = command_of_tuple("### tuple ### allow tcp any 0.0.0.0/0 53 0.0.0.0/0 in")
    assert from_port_53 == ("allow", "from", "any", "port", "53", "proto", "tcp")
    from_app = ("allow", "from", "any", "app", "Monitoring")
    to_app = ("allow", "to", "any", "app", "Monitoring")
    apps = {"Monitoring": (Port(9100, 9100, "tcp"),)}
    rules = [from_port_53, from_app, to_app]
    plan = plan_rules(rules, **rule_arguments(cluster_policy("mailbox")), host_apps=apps)
    assert plan.delete_widening == (from_port_53, from_app)
    assert Port(7071, 7071, "tcp") in plan.opened[0]
    assert plan.kept_unmanaged == (to_app,)


def test_the_hows_to_zimbra_rule_is_deleted_on_its_stored_ports_after_its_profile_is_gone():
    from zimbra_firewall.ufw import stored_app_ports

    stored = (
        "files\n### tuple ### allow tcp 25,80,110,143,443,465,587,993,995,3443,5222,5223,7071,9071 0.0.0.0/0 any "
        f"0.0.0.0/0 Zimbra - in\n{SECTION}6\n"
    )
    apps = stored_app_ports(stored)
    assert Port(7071, 7071, "tcp") in apps["Zimbra"]
    # with a route rule, the rules come from `ufw show added`; the ports stored in the files still count
    with_route = f"show-added\nufw allow Zimbra\nufw route allow in on wg0 out on eth0\n{SECTION}files\n" + stored[6:]
    assert stored_app_ports(with_route) == apps
    plan = plan_rules([("allow", "Zimbra")], **rule_arguments(cluster_policy("mailbox")), host_apps=apps)
    assert plan.delete_widening == (("allow", "Zimbra"),)
