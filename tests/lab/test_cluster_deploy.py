"""The deploy on the lab's cluster (ldap, mta, proxy + memcached, mailbox + logger, mailbox-2): each node's
rules from Zimbra's LDAP, judged by `python -m lab flows`, whose flow tables the lab keeps on its own."""

import json
import os
import subprocess
import sys
import threading

import pytest
from support import REPO, deploy, flows, listening, results, servers_modified, zmprov, zmprov_calls

from lab import client

NODES = ("ldap", "mta", "proxy", "mailbox", "mailbox-2")
# what each kind of node answers from anywhere, and from the management subnets besides (SSH, local-only)
PUBLIC = {
    "ldap": set(),
    "mta": {"25/tcp", "465/tcp", "587/tcp"},
    "proxy": {"443/tcp", "993/tcp", "995/tcp"},
    "mailbox": set(),
    "mailbox-2": set(),
}
LOCAL_ONLY = {
    "ldap": {"22/tcp", "389/tcp"},
    "mta": {"22/tcp"},
    "proxy": {"22/tcp", "80/tcp", "110/tcp", "143/tcp"},
    "mailbox": {"22/tcp", "7025/tcp", "7071/tcp", "7073/tcp"},
    "mailbox-2": {"22/tcp", "7025/tcp", "7071/tcp", "7073/tcp"},
}


def failures(report):
    """The flows judged wrong, one line each (what a failed assertion shows)."""
    return [
        f"{f['verdict']}: {f['source']} -> {f['destination']} {f['port']}/{f['proto']} IPv{f['family']} "
        f"expected {f['expect']}, {f['result']} ({f['what']})"
        for f in report["flows"]
        if f["verdict"] != "pass"
    ]


def rules_on(node):
    return client.run(node, "ufw", "show", "added").stdout


def assert_converged():
    """A rerun changes nothing on any node and starts no zmprov."""
    calls = {node: len(zmprov_calls(node)) for node in NODES}
    again = deploy()
    assert again.returncode == 0, again.stderr[-3000:]
    changed = {op: row for op, row in again.ops.items() if row["success"] or row["error"]}
    assert changed == {}, changed
    assert {node: len(zmprov_calls(node)) for node in NODES} == calls


def test_after_the_deploy_every_legitimate_flow_works_and_every_other_is_blocked(deployed_cluster):
    report = flows("--strict")
    assert report["exit"] == 0 and failures(report) == []
    summary = report["summary"]
    assert summary["broken"] == summary["exposed"] == 0 and summary["pass"] == len(report["flows"]) > 500
    # the run said which address it used for each peer
    assert "ldap: ldap.zfw.test runs ldap stats; peers: mailbox-2.zfw.test=fd5a:7e3c:91b2::e,10.77.0.14" in (
        deployed_cluster.stderr + deployed_cluster.stdout
    )


def test_non_peers_are_blocked_by_name(deployed_cluster):
    report = flows()
    blocked = {(4, "blocked"), (6, "blocked")}
    for source, destination, port in [
        ("mta", "mailbox", 7072),
        ("mta", "proxy", 11211),
        ("proxy", "mailbox", 7025),
        ("outside", "ldap", 389),
        ("outside", "mailbox", 7071),
        ("mgmt", "mailbox", 7072),
    ]:
        assert results(report, source, destination, port, expect="deny") == blocked, (source, destination, port)
    # an empty client list: the mailbox has no business with memcached
    assert results(report, "mailbox", "proxy", 11211, expect="deny", kind="memcache") == {(4, "blocked")}
    for port in (7025, 7071, 8443):  # LMTP, and spam training's admin auth and https
        assert results(report, "mta", "mailbox", port, expect="allow") == {(4, "ok"), (6, "ok")}


def test_each_node_answers_outside_on_its_public_ports_and_mgmt_also_on_its_local_ones(deployed_cluster):
    specs = sorted(
        {"22/tcp", "11211/tcp", "11211/udp", "7072/tcp", "8443/tcp", "636/tcp"}
        | set().union(*PUBLIC.values(), *LOCAL_ONLY.values())
    )
    lab = client.status()
    for node in NODES:
        server = next(h for h in lab["hosts"] if h["name"] == node)
        for family in ("ipv4", "ipv6"):
            for viewer, expected in (("outside", PUBLIC[node]), ("mgmt", PUBLIC[node] | LOCAL_ONLY[node])):
                seen = client.probe(viewer, server[family], specs)
                assert {s for s in specs if seen[s] == "open"} == expected, (viewer, node, family)


def test_memcached_is_bound_where_nginx_looks_and_a_rerun_changes_nothing(deployed_cluster):
    bind = zmprov("-l", "gs", "proxy.zfw.test", "zimbraMemcachedBindAddress", host="proxy").stdout
    assert sorted(filter(None, bind.splitlines()[1:])) == [
        "zimbraMemcachedBindAddress: 10.77.0.12",
        "zimbraMemcachedBindAddress: 127.0.0.1",
        "zimbraMemcachedBindAddress: fd5a:7e3c:91b2::c",
    ]
    assert "10.77.0.12:11211" in client.run("proxy", "ss", "-Hltn", "sport = 11211").stdout
    assert_converged()


def test_a_client_list_opens_memcached_to_that_mailbox_and_reloads_it(deployed_cluster):
    zmprov("-l", "ms", "mailbox.zfw.test", "zimbraMemcachedClientServerList", "proxy.zfw.test:11211", host="mailbox")
    before = flows()
    assert results(before, "mailbox", "proxy", 11211, kind="memcache") == {(4, "blocked")}
    result = deploy()
    assert result.returncode == 0, result.stderr[-3000:]
    after = flows("--strict")
    assert failures(after) == []
    assert results(after, "mailbox", "proxy", 11211, kind="memcache") == {(4, "ok")}
    assert "allow from 10.77.0.13 to any port 22,11211 proto tcp" in rules_on("proxy")
    # a mailbox with memcached of its own would get 127.0.0.1; this one keeps the admin's list
    assert zmprov("-l", "gs", "mailbox.zfw.test", "zimbraMemcachedClientServerList", host="mailbox").stdout.endswith(
        "zimbraMemcachedClientServerList: proxy.zfw.test:11211\n\n"
    )
    assert_converged()
    zmprov("-l", "ms", "mailbox.zfw.test", "zimbraMemcachedClientServerList", "", host="mailbox")
    assert deploy().returncode == 0
    assert "11211" not in rules_on("proxy")


def test_a_mailbox_added_then_removed_gets_its_flows_then_leaves_no_rule(deployed_cluster):
    client.lab("add", "mailbox-3", "--roles", "mailbox")
    report = flows()
    # LDAP (and the others) do not know it yet: its flows are blocked until the next run
    assert results(report, "mailbox-3", "ldap", 389, expect="allow") == {(4, "blocked"), (6, "blocked")}
    result = deploy()
    assert result.returncode == 0, result.stderr[-3000:]
    report = flows("--strict")
    assert failures(report) == []
    assert results(report, "mta", "mailbox-3", 7025, expect="allow") == {(4, "ok"), (6, "ok")}
    assert results(report, "mailbox-3", "mailbox", 514, expect="allow") == {(4, "ok"), (6, "ok")}
    assert "allow from 10.77.0.15 to any port 22,389 proto tcp" in rules_on("ldap")

    client.lab("remove", "mailbox-3")
    result = deploy()
    assert result.returncode == 0, result.stderr[-3000:]
    for node in NODES:
        text = rules_on(node)
        assert "10.77.0.15" not in text and "fd5a:7e3c:91b2::f" not in text, node
    assert failures(flows("--strict")) == []


def test_a_topology_change_on_the_deployed_cluster_opens_nothing_at_any_moment(deployed_cluster):
    """Probers in `outside` and `mgmt` through a node's arrival and departure: no port that every policy on
    the way closes to them ever answers."""
    from test_fail_closed import assert_nothing_opened, both_families, probing

    hosts = {h["name"]: h for h in client.status()["hosts"]}

    def on(node, *ports):
        return both_families(ports, hosts[node]["ipv4"], hosts[node]["ipv6"])

    plan = {
        "outside": {
            "closed": on("ldap", 389, 22) + on("mailbox", 7071, 7025) + on("proxy", 11211) + on("mailbox-2", 8443),
            "open": on("mta", 25) + on("proxy", 443),
        },
        "mgmt": {
            "closed": on("mailbox", 7072) + on("proxy", 11211) + on("mailbox-2", 8443),
            "open": on("mailbox", 7071),
        },
    }
    for change in (("add", "mailbox-3", "--roles", "mailbox"), ("remove", "mailbox-3")):
        with probing(plan) as reports:
            client.lab(*change)
            result = deploy()
        output = result.stdout + result.stderr
        assert result.returncode == 0, [line for line in output.splitlines() if "rror" in line or "arn" in line]
        assert_nothing_opened(reports, f"cluster, {change[0]} mailbox-3", plan)
    assert failures(flows("--strict")) == []


# the ufw cluster last: the tests below go on with the lab it leaves (deployed, mailbox-3 added)
@pytest.mark.parametrize("firewalld", ["ldap,proxy,mailbox", ""], ids=["mixed-ufw-firewalld", "ufw"])
def test_a_watcher_sees_no_legitimate_flow_fail_through_a_fresh_deploy_and_a_topology_change(firewalld):
    """`lab flows` in a loop while the deploy runs: a flow that worked before a run never fails during
    it. The one exception allowed is memcached's own restart when its binding changes (a check of memcached,
    nginx's or mailboxd's, `refused` for that moment, or `closed without a reply` when the kernel accepted
    the connection just as memcached stopped: zmmemcachedctl restart is stop then start; nginx falls back to
    route lookups meanwhile); a firewall never filters it. On ufw nodes alone, and with ldap, proxy and the first
    mailbox on firewalld (RHEL's zone at first: the flows to them start broken, and must then hold)."""
    client.lab("down")
    client.lab("up", "--topology", "cluster", "--firewalld", firewalld)
    for change in ("fresh", "topology"):
        if change == "topology":
            client.lab("add", "mailbox-3", "--roles", "mailbox")
        baseline = {flow_key(f) for f in flows()["flows"] if f["expect"] == "allow" and f["result"] == "ok"}
        seen, stop = [], threading.Event()
        watcher = threading.Thread(target=watch, args=(seen, stop))
        watcher.start()
        try:
            result = deploy()
        finally:
            stop.set()
            watcher.join()
        assert result.returncode == 0, result.stderr[-3000:]
        assert len(seen) >= 2, "the watcher did not run during the deploy"
        broken = [f for report in seen for f in report["flows"] if flow_key(f) in baseline and f["result"] != "ok"]
        restart = [
            f
            for f in broken
            if f["kind"] in ("memcache", "nginx-memcache") and f["detail"] in ("refused", "closed without a reply")
        ]
        assert [f for f in broken if f not in restart] == [], change
        # must-fail flows are judged by the other tests. Here one "connected" once in CI (ldap → mailbox-2:8735,
        # right after the topology change), as another did later (ldap → proxy 22/tcp IPv6): most likely the
        # judge itself, which took a connect that failed at once on the source's side for a connection until
        # lab/guest/tcpconnect.py (conntrack's TIME_WAIT is not it: a reconnect from the same source port, made
        # before ufw was enabled, is blocked after it)
        assert flows()["summary"]["broken"] == 0, change
    assert flows("--strict")["summary"]["exposed"] == 0
    assert_converged()


def flow_key(flow):
    return (flow["source"], flow["destination"], flow["port"], flow["proto"], flow["family"], flow["kind"])


def watch(seen, stop):
    while not stop.is_set():
        run = subprocess.run(
            [sys.executable, "-m", "lab", "flows", "--json"], cwd=REPO, capture_output=True, text=True, check=False
        )
        if run.returncode in (0, 1):
            seen.append(json.loads(run.stdout))


def test_drift_on_one_node_is_repaired_there_and_the_others_are_left_alone(deployed_cluster):
    client.run("mailbox-2", "ufw", "allow", "7071")
    client.run(
        "mailbox-2",
        "ufw",
        "--force",
        "delete",
        "allow",
        "from",
        "10.77.0.11",
        "to",
        "any",
        "port",
        "7025,7071,7073,8443",
        "proto",
        "tcp",
    )
    assert results(flows(), "mta", "mailbox-2", 7025, expect="allow") == {(4, "blocked"), (6, "ok")}
    repaired = deploy()
    assert repaired.returncode == 0, repaired.stderr[-3000:]
    assert {op: row["success"] for op, row in repaired.ops.items() if row["success"]} == {
        "Rollback armed": 1,
        "ufw rules added": 1,
        "ufw rules removed": 1,
        "New SSH connection": 1,
        "Rollback disarmed": 1,
    }
    assert "mailbox-2: removing unmanaged rule that opens 7071/tcp wider than the policy: ufw allow 7071" in (
        repaired.stdout + repaired.stderr
    )
    assert failures(flows("--strict")) == []


def test_a_sites_own_flow_reaches_exactly_its_port_on_the_nodes_it_names(deployed_cluster, tmp_path):
    """extra_allows: `outside` (standing for a monitoring host) reaches 7071 on the node running the logger,
    nowhere else; the same narrow rule typed by hand stays there (tagged) and is deleted where it widens; the
    audit judges it ok; without the setting the rules go."""
    outside = next(h for h in client.status()["hosts"] if h["name"] == "outside")
    sources = [f"{outside['ipv4']}/32", f"{outside['ipv6']}/128"]
    (tmp_path / "lab.py").write_text(f"extra_allows = {[{'port': '7071/tcp', 'from': sources, 'on': ['logger']}]!r}\n")
    by_hand = ["ufw", "allow", "from", outside["ipv4"], "to", "any", "port", "7071", "proto", "tcp"]
    for node in ("mailbox", "mailbox-2"):
        client.run(node, *by_hand)
    opened = deploy("--group-data", str(tmp_path))
    output = opened.stdout + opened.stderr
    assert opened.returncode == 0, output[-3000:]
    # on the node the flow is for, ufw gives the hand-typed rule the deploy's tag instead of adding a twin
    narrow = f"allow from {outside['ipv4']} to any port 7071 proto tcp"
    assert rules_on("mailbox").count(narrow) == 1 and f"{narrow} comment 'zimbra-firewall'" in rules_on("mailbox")
    widening = "mailbox-2: removing unmanaged rule that opens 7071/tcp wider than the policy: ufw "
    assert widening + " ".join(by_hand[1:]) in output
    report = flows("--strict", "--allow", "outside:mailbox:7071/tcp")
    assert failures(report) == []
    assert results(report, "outside", "mailbox", 7071, expect="allow") == {(4, "ok"), (6, "ok")}
    assert results(report, "outside", "mailbox-2", 7071, expect="deny") == {(4, "blocked"), (6, "blocked")}
    assert flows()["summary"]["exposed"] > 0  # the judge without --allow calls it what it would be: exposed
    audit_json = tmp_path / "audit.json"
    audited = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "pyinfra"), "inventories/lab.py", "audit.py", "--group-data"]
        + [str(tmp_path), "--data", f"audit_json={audit_json}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert audited.returncode == 0, audited.stdout + audited.stderr
    mailbox = next(n for n in json.loads(audit_json.read_text())["nodes"] if n["name"] == "mailbox")
    assert mailbox["findings"] == []
    admin = [s for s in mailbox["sockets"] if s["port"] == 7071 and s["proto"] == "tcp"]
    reached = {source["name"] for s in admin for source in s["sources"] if source["reachable"]}
    assert {outside["ipv4"], outside["ipv6"]} <= {name.split("/")[0] for name in reached}
    assert {s["verdict"] for s in admin} == {"ok"}
    closed = deploy()
    assert closed.returncode == 0, closed.stderr[-3000:]
    assert outside["ipv4"] not in rules_on("mailbox")
    assert failures(flows("--strict")) == []


def test_a_moved_proxy_port_and_imapd_are_opened_where_ldap_says_and_the_old_port_closes(deployed_cluster):
    """nginx moved to 8444 (zimbraMailSSLProxyPort on the proxy) and imapd enabled on mailbox-2, named in
    mailbox's zimbraReverseProxyUpstreamImapServers, each with a listener as the restarted service would have:
    after the deploy the world reaches 8444 and no longer 443 (ufw's profile reloaded into the kernel, though
    pyinfra runs it under SSH), the proxies reach imapd's 8143/8993 and the mailboxes its 8143, nobody else; a
    rerun changes nothing; put back, 443 is open again and imapd's ports closed."""
    moved = [
        ("proxy", "zimbraMailSSLProxyPort", "8444"),
        ("mailbox-2", "+zimbraServiceEnabled", "imapd"),
        ("mailbox", "zimbraReverseProxyUpstreamImapServers", "mailbox-2.zfw.test"),
    ]
    put_back = [
        ("proxy", "zimbraMailSSLProxyPort", "443"),
        ("mailbox-2", "-zimbraServiceEnabled", "imapd"),
        ("mailbox", "zimbraReverseProxyUpstreamImapServers", ""),
    ]
    with servers_modified(moved, put_back):
        with listening("proxy", "8444/tcp"), listening("mailbox-2", "8143/tcp", "8993/tcp"):
            result = deploy()
            assert result.returncode == 0, result.stderr[-3000:]
            report = flows("--strict")
            assert failures(report) == []
            assert results(report, "outside", "proxy", 8444, expect="allow") == {(4, "ok"), (6, "ok")}
            assert results(report, "outside", "proxy", 443, expect="deny") == {(4, "blocked"), (6, "blocked")}
            for port in (8143, 8993):
                assert results(report, "proxy", "mailbox-2", port, expect="allow") == {(4, "ok"), (6, "ok")}
                assert results(report, "outside", "mailbox-2", port, expect="deny") == {
                    (4, "blocked"),
                    (6, "blocked"),
                }
            assert results(report, "mailbox", "mailbox-2", 8143, expect="allow") == {(4, "ok"), (6, "ok")}
            assert results(report, "mta", "mailbox-2", 8993, expect="deny") == {(4, "blocked"), (6, "blocked")}
            assert_converged()
    assert deploy().returncode == 0
    report = flows("--strict")
    assert failures(report) == []
    assert results(report, "outside", "proxy", 443, expect="allow") == {(4, "ok"), (6, "ok")}
    assert "8143" not in rules_on("mailbox-2") and "8444" not in rules_on("proxy")


def test_in_ipv4_mode_a_peers_ipv6_rule_goes_only_for_the_clients_that_follow_the_mode(deployed_cluster):
    """zimbraIPMode ipv4 in cn=config (what Zimbra's installer writes on a host with IPv4): the MTA's LMTP
    (postfix), nginx's route lookup and the Java clients use IPv4 alone, so their IPv6 rules go and the judge
    expects IPv6 blocked there; saslauthd (7073), LDAP and syslog keep both families."""
    zmprov("-l", "mcf", "zimbraIPMode", "ipv4", host="ldap")
    try:
        result = deploy()
        assert result.returncode == 0, result.stderr[-3000:]
        report = flows("--strict")
        assert failures(report) == []
        assert results(report, "mta", "mailbox", 7025, expect="allow") == {(4, "ok")}
        assert results(report, "mta", "mailbox", 7025, expect="deny") == {(6, "blocked")}
        assert results(report, "mta", "mailbox", 7073, expect="allow") == {(4, "ok"), (6, "ok")}
        assert results(report, "mailbox-2", "ldap", 389, expect="allow") == {(4, "ok"), (6, "ok")}
        assert "allow from fd5a:7e3c:91b2::b to any port 7073 proto tcp" in rules_on("mailbox")
        assert_converged()
    finally:
        zmprov("-l", "mcf", "zimbraIPMode", "", host="ldap")
    assert deploy().returncode == 0
    assert failures(flows("--strict")) == []
    assert "allow from fd5a:7e3c:91b2::b to any port 7025,7071,7073,8443 proto tcp" in rules_on("mailbox")
