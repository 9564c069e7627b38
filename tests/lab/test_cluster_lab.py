"""The lab's cluster topology and `python -m lab flows`: nodes that really talk to each other, judged
from Zimbra's own flow tables."""

import pytest
from support import find, flows, results, zmprov

from lab import client

NGINX_MEMCACHE = "/opt/zimbra/conf/nginx/includes/nginx.conf.memcache"


def host(lab, name):
    return next(h for h in lab["hosts"] if h["name"] == name)


@pytest.fixture
def cluster():
    client.lab("down")
    client.lab("up", "--topology", "cluster")
    return client.status()


def test_status_gives_every_nodes_roles_and_addresses(cluster):
    roles = {h["name"]: set(h["roles"]) for h in cluster["hosts"]}
    assert {"ldap", "stats"} == roles["ldap"]
    assert {"mta", "amavis", "opendkim"} <= roles["mta"]
    assert {"proxy", "memcached"} <= roles["proxy"]
    assert {"mailbox", "logger", "spell"} <= roles["mailbox"]
    assert "mailbox" in roles["mailbox-2"] and "logger" not in roles["mailbox-2"]
    assert roles["mgmt"] == roles["outside"] == set()
    addresses = [(h["ipv4"], h["ipv6"]) for h in cluster["hosts"]]
    assert len(set(addresses)) == len(addresses) == 7


def test_fresh_cluster_every_legitimate_flow_works(cluster):
    report = flows()
    assert report["summary"]["broken"] == 0 and report["exit"] == 0, [
        f for f in report["flows"] if f["verdict"] == "broken"
    ]
    both = {(4, "ok"), (6, "ok")}
    for name in ("mta", "proxy", "mailbox", "mailbox-2", "ldap"):
        assert results(report, name, "ldap", 389, expect="allow") == both
        assert results(report, name, "mailbox", 514, expect="allow") == both  # the logger recorded it
    for mailbox in ("mailbox", "mailbox-2"):
        assert results(report, "mta", mailbox, 7025, expect="allow") == both
        assert results(report, "mta", mailbox, 7073, expect="allow") == both
        assert results(report, "mta", mailbox, 7071, expect="allow") == both  # spam training
        assert results(report, "mta", mailbox, 8443, expect="allow") == both
        for port in (7072, 8443, 7993, 7995):
            assert results(report, "proxy", mailbox, port, expect="allow") == both
    assert results(report, "mailbox", "mailbox-2", 7071, expect="allow") == both
    assert results(report, "outside", "mta", 25, expect="allow") == both
    assert results(report, "outside", "proxy", 993, expect="allow") == both
    nginx = find(report, "proxy", "proxy", 11211, kind="nginx-memcache")
    assert [(f["address"], f["result"]) for f in nginx] == [(host(cluster, "proxy")["ipv4"], "ok")]
    assert nginx[0]["detail"].startswith("VERSION ")
    # what must fail is judged too; with no firewall at all, it gets through
    for source, destination, port in [
        ("outside", "mailbox", 7071),
        ("mta", "proxy", 11211),
        ("proxy", "mailbox", 7025),
        ("mta", "mailbox", 7072),
        ("outside", "ldap", 389),
    ]:
        assert results(report, source, destination, port, expect="deny") == both
    assert results(report, "mailbox", "proxy", 11211, expect="deny", kind="memcache") == {(4, "ok")}
    assert report["summary"]["exposed"] > 0


def test_a_firewall_that_cuts_flows_is_caught(cluster):
    """The judge must see what a careless firewall breaks: SSH-only ufw on a mailbox stops delivery
    (LMTP), route lookups and the logger's syslog, and closes what must be closed."""
    client.run("mailbox", "ufw", "allow", "22/tcp")
    client.run("mailbox", "ufw", "--force", "enable")
    report = flows()
    assert report["exit"] == 1
    assert results(report, "mta", "mailbox", 7025, expect="allow") == {(4, "blocked"), (6, "blocked")}
    assert results(report, "proxy", "mailbox", 7072, expect="allow") == {(4, "blocked"), (6, "blocked")}
    syslog = find(report, "mta", "mailbox", 514, expect="allow")
    assert {f["result"] for f in syslog} == {"blocked"}
    assert all(f["detail"].startswith("not recorded") for f in syslog)
    assert results(report, "outside", "mailbox", 7071, expect="deny") == {(4, "blocked"), (6, "blocked")}
    # the other mailbox is untouched
    assert results(report, "mta", "mailbox-2", 7025, expect="allow") == {(4, "ok"), (6, "ok")}
    text = client.lab("flows", check=False)
    assert text.returncode == 1 and "LEGITIMATE FLOWS THAT FAIL" in text.stdout


def test_memcached_on_loopback_only_breaks_the_proxys_route_cache(cluster):
    zmprov("-l", "ms", "proxy.zfw.test", "zimbraMemcachedBindAddress", "127.0.0.1", host="proxy")
    client.run("proxy", "runuser", "-u", "zimbra", "--", "/opt/zimbra/bin/zmmemcachedctl", "restart")
    report = flows()
    nginx = find(report, "proxy", "proxy", 11211, kind="nginx-memcache")
    assert [(f["result"], f["detail"]) for f in nginx] == [("blocked", "refused")]
    assert report["exit"] == 1 and report["summary"]["broken"] == 1


def test_memcached_on_loopback_only_breaks_the_route_cache_on_a_single_server_too():
    client.lab("down")
    client.lab("up")
    assert flows()["summary"]["broken"] == 0
    zmprov("-l", "ms", "zimbra.zfw.test", "zimbraMemcachedBindAddress", "127.0.0.1")
    client.run("zimbra", "runuser", "-u", "zimbra", "--", "/opt/zimbra/bin/zmmemcachedctl", "restart")
    nginx = find(flows(), "zimbra", "zimbra", 11211, kind="nginx-memcache")
    assert [(f["address"], f["result"]) for f in nginx] == [("10.77.0.10", "blocked")]


def test_nginx_memcache_names_each_memcached_by_its_resolved_host_name_never_its_bind_address():
    client.lab("down")
    client.lab("up", "--topology", "cluster", "--proxies", "2")
    expected = (
        "# generated like zmproxyconfgen does\nmemcache\n{\n"
        "  servers   10.77.0.12:11211;\n  servers   10.77.0.13:11211;\n}\n"
    )
    for proxy in ("proxy", "proxy-2"):
        assert client.run(proxy, "cat", NGINX_MEMCACHE).stdout == expected
    report = flows()
    assert report["summary"]["broken"] == 0
    # each proxy reaches both memcached servers; that is legitimate, and judged through nginx's file
    assert {f["destination"] for f in find(report, "proxy-2", "proxy", 11211, kind="nginx-memcache")} == {"proxy"}
    assert not [
        f
        for f in report["flows"]
        if f["source"] == "proxy" and f["destination"] == "proxy-2" and f["port"] == 11211 and f["expect"] == "deny"
    ]
    assert results(report, "mgmt", "proxy-2", 11211, expect="deny") == {(4, "ok"), (6, "ok")}
    # the bind address plays no part; the port does
    zmprov(
        "-l",
        "ms",
        "proxy-2.zfw.test",
        "zimbraMemcachedBindAddress",
        "10.77.0.99",
        "zimbraMemcachedBindPort",
        "11311",
        host="proxy",
    )
    client.run("proxy", "runuser", "-u", "zimbra", "--", "/opt/zimbra/libexec/zmproxyconfgen")
    assert client.run("proxy", "cat", NGINX_MEMCACHE).stdout == expected.replace("13:11211", "13:11311")


def test_nginx_memcache_of_a_single_server_names_its_lan_address():
    client.lab("down")
    client.lab("up")
    assert client.run("zimbra", "cat", NGINX_MEMCACHE).stdout == (
        "# generated like zmproxyconfgen does\nmemcache\n{\n  servers   10.77.0.10:11211;\n}\n"
    )


def test_flows_follow_the_attributes_that_switch_them(cluster):
    zmprov(
        "-l",
        "mcf",
        "zimbraReverseProxySSLToUpstreamEnabled",
        "FALSE",
        "zimbraReverseProxyAdminEnabled",
        "TRUE",
        "zimbraMemcachedClientServerList",
        "proxy.zfw.test:11211",
        host="mta",
    )
    report = flows()
    assert report["summary"]["broken"] == 0
    for port in (8080, 7143, 7110, 7071):
        assert results(report, "proxy", "mailbox-2", port, expect="allow") == {(4, "ok"), (6, "ok")}
    assert results(report, "proxy", "mailbox-2", 7993, expect="deny") == {(4, "ok"), (6, "ok")}
    assert results(report, "mailbox", "proxy", 11211, expect="allow", kind="memcache") == {(4, "ok")}
    # a port attribute moves the flow
    zmprov("-l", "ms", "mailbox-2.zfw.test", "zimbraLmtpBindPort", "7125", host="mta")
    moved = flows()
    assert results(moved, "mta", "mailbox-2", 7125, expect="allow") == {(4, "blocked"), (6, "blocked")}
    assert {f["detail"] for f in find(moved, "mta", "mailbox-2", 7125)} == {"refused"}
    assert not [f for f in moved["flows"] if (f["destination"], f["port"], f["expect"]) == ("mailbox-2", 7025, "allow")]


def test_zmprov_gas_and_gamcs_print_zimbras_formats(cluster):
    every = zmprov("-l", "gas", host="mta").stdout
    assert sorted(every.splitlines()) == sorted(
        f"{n}.zfw.test" for n in ("ldap", "mta", "proxy", "mailbox", "mailbox-2")
    )
    assert every.endswith("\n")
    assert sorted(zmprov("-l", "gas", "mailbox", host="mta").stdout.splitlines()) == [
        "mailbox-2.zfw.test",
        "mailbox.zfw.test",
    ]
    assert zmprov("-l", "gas", "memcached", host="mailbox").stdout == "proxy.zfw.test\n"
    assert zmprov("gamcs", host="mailbox-2").stdout == "proxy.zfw.test:11211 \n"
    # every node reaches the one LDAP through its own localconfig
    assert zmprov("-l", "gs", "mta.zfw.test", "zimbraServiceEnabled", host="mailbox-2").stdout == (
        "# name mta.zfw.test\nzimbraServiceEnabled: amavis\nzimbraServiceEnabled: opendkim\n"
        "zimbraServiceEnabled: stats\nzimbraServiceEnabled: mta\n\n"
    )
    url = client.run("mailbox", "runuser", "-u", "zimbra", "--", "/opt/zimbra/bin/zmlocalconfig", "ldap_url").stdout
    assert url.strip() == "ldap_url = ldap://ldap.zfw.test:389"


def test_nodes_listen_only_on_their_roles_ports_bound_as_zimbra_binds_them(cluster):
    def listening(name):
        out = client.run(name, "ss", "-Hlntu").stdout
        return {line.split()[4] for line in out.splitlines()}

    mta, proxy, mailbox = listening("mta"), listening("proxy"), listening("mailbox")
    assert {"*:25", "*:465", "*:587", "127.0.0.1:10024", "127.0.0.1:8465", "127.0.0.1:7171"} <= mta
    assert not any(a.endswith((":7071", ":7025", ":11211", ":389")) for a in mta)
    assert {"*:443", "*:993", "0.0.0.0:11211"} <= proxy and not any(a.endswith(":7025") for a in proxy)
    assert {"*:7025", "*:7071", "*:7072", "*:8443", "*:514", "127.0.0.1:7306"} <= mailbox
    assert not any(a.endswith((":25", ":443")) for a in mailbox)
    assert not any(a.endswith(":514") for a in listening("mailbox-2"))  # the logger is on `mailbox` only


def test_listen_all_opens_every_catalogue_port_everywhere():
    client.lab("down")
    client.lab("up", "--topology", "cluster", "--mailboxes", "1", "--listen", "all")
    mta = client.run("mta", "ss", "-Hlnt").stdout
    assert "*:7071" in mta and "*:7306" in mta and "127.0.0.1" not in mta
    assert client.status()["listen"] == "all"
    assert flows()["summary"]["broken"] == 0


def test_a_node_is_added_registered_and_removed_between_two_runs(cluster):
    added = client.lab("add", "mailbox-3", "--roles", "mailbox")
    assert "registered" in added.stderr
    lab = client.status()
    new = host(lab, "mailbox-3")
    assert new["running"] and new["ipv4"] == "10.77.0.15" and "mailbox" in new["roles"]
    assert "mailbox-3.zfw.test" in zmprov("-l", "gas", "mailbox", host="mta").stdout.split()
    assert new["ipv4"] in client.run("proxy", "getent", "ahostsv4", "mailbox-3.zfw.test").stdout
    report = flows()
    assert report["summary"]["broken"] == 0
    assert results(report, "mta", "mailbox-3", 7025, expect="allow") == {(4, "ok"), (6, "ok")}
    assert results(report, "proxy", "mailbox-3", 7072, expect="allow") == {(4, "ok"), (6, "ok")}
    assert results(report, "mailbox-3", "mailbox", 514, expect="allow") == {(4, "ok"), (6, "ok")}
    # a second memcached server reaches every proxy's nginx configuration
    client.lab("add", "cache", "--roles", "memcached")
    cache = host(client.status(), "cache")
    assert f"  servers   {cache['ipv4']}:11211;" in client.run("proxy", "cat", NGINX_MEMCACHE).stdout
    nginx = find(flows(), "proxy", "cache", 11211, kind="nginx-memcache")
    assert [f["result"] for f in nginx] == ["ok"]

    client.lab("remove", "mailbox-3")
    client.lab("remove", "cache")
    assert "mailbox-3.zfw.test" not in zmprov("-l", "gas", host="mta").stdout
    assert "10.77.0.16" not in client.run("proxy", "cat", NGINX_MEMCACHE).stdout
    assert [h["name"] for h in client.status()["hosts"]] == [h["name"] for h in cluster["hosts"]]
    report = flows()
    assert report["summary"]["broken"] == 0
    assert not [f for f in report["flows"] if "mailbox-3" in (f["source"], f["destination"])]
    assert client.run("proxy", "getent", "hosts", "mailbox-3.zfw.test", check=False).returncode == 2


def test_cluster_commands_refuse_bad_input_in_one_line(cluster):
    for args, words in [
        (["add", "mailbox-2", "--roles", "mailbox"], "already"),
        (["add", "mailbox-9", "--roles", "mailbox,webserver"], "unknown roles webserver"),
        (["add", "Bad_Name", "--roles", "mailbox"], "node name"),
        (["add", "ldap-2", "--roles", "ldap"], "one LDAP master"),
        (["remove", "ldap"], "cannot be removed"),
        (["remove", "mgmt"], "no Zimbra node"),
    ]:
        result = client.lab(*args, check=False)
        assert result.returncode == 1 and words in result.stderr and len(result.stderr.splitlines()) == 1, args
    client.lab("down")
    for args, words in [
        (["up", "--topology", "cluster", "--proxies", "0"], "at least one proxy"),
        (["up", "--topology", "cluster", "--mailboxes", "28"], "at most 30"),
    ]:
        result = client.lab(*args, check=False)
        assert result.returncode == 1 and words in result.stderr, result.stderr
    assert client.status()["status"] == "down"
    client.lab("up")
    single = client.lab("add", "mailbox-2", "--roles", "mailbox", check=False)
    assert single.returncode == 1 and "cluster" in single.stderr
