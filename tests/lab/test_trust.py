"""The trust boundary on the lab's cluster: hostile values written into the real LDAP as an attacker with the
zimbra LDAP password would (ldapadd on the LDAP node), names that resolve to addresses no peer has, a peer
whose name stops resolving, a state folder someone else could write. The deploy and the audit run through
the real pyinfra; `python -m lab flows` judges."""

import base64
import glob
import subprocess

import pytest
from support import PYINFRA, REPO, deploy, flows, results, servers_modified, zmprov
from test_cluster_deploy import NODES, assert_converged, failures, rules_on

from lab import client

PWNED = "/tmp/zfw-pwned"
# each payload, if anything ever ran it, leaves its own file behind
HOSTILE = [
    # (cn, zimbraServiceHostname, services, other attributes)
    (f"-e;system(q(touch {PWNED}-cn))", None, ["mta"], {}),
    ("evil1.zfw.test", f"-e;system(q(touch {PWNED}-perl))", ["mta"], {}),
    ("evil2.zfw.test", "a'b", ["mta"], {}),
    ("evil3.zfw.test", f"$(touch {PWNED}-subst)", ["mailbox"], {}),
    ("evil4.zfw.test", f"`touch {PWNED}-tick`", ["mailbox"], {}),
    ("evil5.zfw.test", "mta.zfw.test 10.77.2.10", ["mailbox"], {}),  # outside's address, passed off as mta's
    (f"$(touch {PWNED}-cn2)", None, ["mta"], {}),
    ("*", None, ["mta"], {}),
    ("evil6.zfw.test", "evil6.zfw.test\x1b]0;owned\x07", ["mta"], {}),
    (
        "evil7.zfw.test",
        None,
        ["mailbox"],
        {"zimbraAdminPort": ["7071 proto udp"], "zimbraSpellCheckURL": [f"http://$(touch {PWNED}-url)@mailbox:1/"]},
    ),
    # these resolve (through every node's hosts file) to addresses no peer can have
    ("zero4.zfw.test", None, ["mta"], {}),
    ("zero6.zfw.test", None, ["mta"], {}),
    ("multicast.zfw.test", None, ["mta"], {}),
]
HOSTS_LINES = "0.0.0.0 zero4.zfw.test\n:: zero6.zfw.test\n224.0.0.1 multicast.zfw.test\n"
# ldapadd and ldapdelete on the LDAP node, bound as Zimbra's tools bind (the zimbra LDAP password)
DIRECTORY = "import sys; sys.path.insert(0, '/opt/zimbra/common/lib/lab'); import standin; "
ADD_ENTRIES = DIRECTORY + "standin.Directory(standin.read_localconfig()).add(sys.stdin.read())"
DELETE_ENTRY = DIRECTORY + "standin.Directory(standin.read_localconfig()).delete(sys.argv[1])"


def b64(text):
    return base64.b64encode(text.encode()).decode()


def dn(cn):
    """The entry's DN, its cn escaped as RFC 4514 wants (the value itself stays as the attacker wrote it)."""
    escaped = "".join(f"\\{c}" if c in ',+"\\<>;=' else c for c in cn)
    return f"cn={escaped},cn=servers,cn=zimbra"


def ldif(cn, hostname, services, attributes):
    """A server entry, every value base64 (ldapadd takes anything that way, as an attacker's would)."""
    lines = [f"dn:: {b64(dn(cn))}", "objectClass: zimbraServer", f"cn:: {b64(cn)}"]
    lines.append(f"zimbraServiceHostname:: {b64(hostname if hostname is not None else cn)}")
    lines += [f"zimbraServiceEnabled: {s}" for s in services]
    lines += [f"{name}:: {b64(value)}" for name, values in attributes.items() for value in values]
    return "\n".join(lines)


def pwned_files():
    """Files any payload made: on every node, and on the controller (this machine)."""
    found = glob.glob(f"{PWNED}*")
    for node in NODES:
        listed = client.run(node, "sh", "-c", f"ls {PWNED}* 2>/dev/null; true").stdout.split()
        found += [f"{node}:{name}" for name in listed]
    return found


def all_rules():
    return {node: rules_on(node) for node in NODES}


@pytest.fixture(scope="module")
def cluster(deployed_cluster):
    """The deployed cluster's rules, node by node: what no hostile value may change."""
    return all_rules()


@pytest.fixture
def hostile_ldap(cluster):
    entries = "\n\n".join(ldif(*entry) for entry in HOSTILE)
    client.run("ldap", "python3", "-c", ADD_ENTRIES, input=entries + "\n")
    for node in NODES:
        client.run(node, "sh", "-c", f"cp /etc/hosts /etc/hosts.zfw && printf '{HOSTS_LINES}' >> /etc/hosts")
    yield
    for cn, *_ in HOSTILE:
        client.run("ldap", "python3", "-c", DELETE_ENTRY, dn(cn))
    for node in NODES:
        client.run(node, "sh", "-c", "mv /etc/hosts.zfw /etc/hosts")


@pytest.mark.parametrize("read", ["ldap", "zmprov"])
def test_hostile_ldap_values_run_nothing_widen_nothing_and_are_each_named(cluster, hostile_ldap, read):
    listed = zmprov("-l", "gas", host="ldap").stdout
    assert "evil1.zfw.test" in listed and f"$(touch {PWNED}-cn2)" in listed  # the attacker's entries are there
    result = deploy("--data", f"zimbra_read={read}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert pwned_files() == []
    # every node says each refused value once, safely, and the run's last lines count them
    for text in (
        "left out: cn '-e;system(q(touch /tmp/zfw-pwned-cn))': not a host name",
        "left out: cn '$(touch /tmp/zfw-pwned-cn2)': not a host name",
        "server evil1.zfw.test left out: zimbraServiceHostname '-e;system(q(touch /tmp/zfw-pwned-perl))'",
        "server evil2.zfw.test left out: zimbraServiceHostname 'a\\'b'",
        "server evil5.zfw.test left out: zimbraServiceHostname 'mta.zfw.test 10.77.2.10'",
        "server evil6.zfw.test left out: zimbraServiceHostname 'evil6.zfw.test\\x1b]0;owned\\x07'",
        "server evil7.zfw.test: zimbraAdminPort '7071 proto udp' left out: not a port number",
        "peer zero4.zfw.test resolves on this node to 0.0.0.0, the unspecified address",
        "peer zero6.zfw.test resolves on this node to ::, the unspecified address",
        "peer multicast.zfw.test resolves on this node to 224.0.0.1, a multicast address",
    ):
        for node in NODES:
            said = [line for line in output.splitlines() if line.strip().startswith(f"{node}: ") and text in line]
            assert len(said) == 1, (node, text)
    assert "\x1b]0;owned" not in output
    assert "values from Zimbra's LDAP, DNS or the hosts were left out on 5 node(s)" in output
    # the nodes' rules are exactly those of the clean install: nothing for the hostile names, nothing wider
    assert all_rules() == cluster
    report = flows("--strict")
    assert report["exit"] == 0 and failures(report) == []
    audit = run_audit()
    assert audit.returncode == 0, (audit.stdout + audit.stderr)[-3000:]
    assert "warning: untrusted value left out: server evil1.zfw.test left out" in audit.stdout
    assert pwned_files() == []


def run_audit():
    command = [PYINFRA, "-y", "inventories/lab.py", "audit.py"]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_a_peer_whose_name_stops_resolving_keeps_its_rules_and_its_flows(cluster):
    client.run("mailbox", "sh", "-c", "cp /etc/hosts /etc/hosts.zfw && sed -i '/mta.zfw.test/d' /etc/hosts")
    try:
        result = deploy()
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        assert "mailbox: peer mta.zfw.test gives no usable address on this node now: its rules keep" in output
        assert all_rules() == cluster
        report = flows()
        assert results(report, "mta", "mailbox", 7025, expect="allow") == {(4, "ok"), (6, "ok")}
        assert results(report, "mta", "mailbox", 7073, expect="allow") == {(4, "ok"), (6, "ok")}
    finally:
        client.run("mailbox", "mv", "/etc/hosts.zfw", "/etc/hosts")
    assert_converged()


def test_a_server_removed_from_ldap_loses_its_rules_even_where_its_name_no_longer_resolves(cluster):
    for node in NODES:
        client.run(node, "sh", "-c", "cp /etc/hosts /etc/hosts.zfw && echo '10.77.0.50 ghost.zfw.test' >> /etc/hosts")
    try:
        zmprov("-l", "cs", "ghost.zfw.test", "zimbraServiceEnabled", "mta", host="ldap")
        assert deploy().returncode == 0
        assert "allow from 10.77.0.50 to any port 7025,7071,7073,8443 proto tcp" in rules_on("mailbox")
        client.run("mailbox", "sed", "-i", "/ghost.zfw.test/d", "/etc/hosts")  # DNS down for it, on one node
        assert_converged()
        assert "allow from 10.77.0.50 to any port 7025,7071,7073,8443 proto tcp" in rules_on("mailbox")
        zmprov("-l", "ds", "ghost.zfw.test", host="ldap")
        assert deploy().returncode == 0
        for node in NODES:
            assert "10.77.0.50" not in rules_on(node), node
            kept = client.run(node, "cat", "/var/lib/zimbra-firewall/addresses").stdout
            assert "ghost" not in kept and "mta.zfw.test\tfd5a:7e3c:91b2::b 10.77.0.11\n" in kept, node
    finally:
        for node in NODES:
            client.run(node, "mv", "/etc/hosts.zfw", "/etc/hosts")
        zmprov("-l", "ds", "ghost.zfw.test", host="ldap", check=False)
    assert all_rules() == cluster


def test_the_state_folder_is_roots_alone_and_refused_when_someone_else_could_write_it(cluster):
    for node in NODES:
        listing = client.run(node, "stat", "-c", "%U %a", "/var/lib/zimbra-firewall").stdout.split()
        assert listing == ["root", "700"], node
        files = client.run(node, "find", "/var/lib/zimbra-firewall", "-type", "f", "-perm", "/077").stdout
        assert files == "", (node, files)
    # a change is pending on mailbox-2, and its state folder has been made the zimbra user's
    client.run("mailbox-2", "ufw", "allow", "7071")
    client.run("mailbox-2", "chown", "zimbra", "/var/lib/zimbra-firewall")
    try:
        before = rules_on("mailbox-2")
        result = deploy()
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert "refusing to use /var/lib/zimbra-firewall: it is not root's alone (owner zimbra, mode 700)" in output
        assert rules_on("mailbox-2") == before
        assert client.run("mailbox-2", "test", "-e", "/var/lib/zimbra-firewall/armed", check=False).returncode == 1
    finally:
        client.run("mailbox-2", "chown", "root", "/var/lib/zimbra-firewall")
    assert deploy().returncode == 0
    assert all_rules() == cluster


def test_a_rule_for_someone_elses_profile_that_opens_an_admin_port_to_all_is_deleted(cluster):
    profile = "[SomeProfile]\ntitle=x\ndescription=x\nports=80,7071/tcp\n"
    client.run("mailbox-2", "sh", "-c", f"printf '{profile}' > /etc/ufw/applications.d/some && ufw allow SomeProfile")
    address = next(h for h in client.status()["hosts"] if h["name"] == "mailbox-2")["ipv4"]
    assert client.probe("outside", address, ["7071/tcp"]) == {"7071/tcp": "open"}
    try:
        result = deploy()
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        removed = "removing unmanaged rule that opens 80/tcp, 7071/tcp wider than the policy: ufw allow SomeProfile"
        assert f"mailbox-2: {removed}" in output
        assert client.probe("outside", address, ["7071/tcp"]) == {"7071/tcp": "filtered"}
        assert all_rules() == cluster
    finally:
        client.run("mailbox-2", "rm", "/etc/ufw/applications.d/some")


def test_ldap_values_that_would_move_a_port_onto_ssh_or_open_a_non_imapd_node_change_no_rule(cluster):
    """The proxy's HTTPS moved onto SSH (zimbraMailSSLProxyPort 22), its IMAPS onto the mailboxes' admin port
    (7071, local-only in the catalogue); a mailbox naming the MTA, with a port of its choosing, as an imapd
    upstream: every node's rules stay exactly as they were, and the run names the refusals."""
    changes = [
        ("proxy", "zimbraMailSSLProxyPort", "22"),
        ("proxy", "zimbraImapSSLProxyBindPort", "7071"),
        ("mailbox", "zimbraReverseProxyUpstreamImapServers", "mta.zfw.test:3306"),
    ]
    put_back = [
        ("proxy", "zimbraMailSSLProxyPort", "443"),
        ("proxy", "zimbraImapSSLProxyBindPort", "993"),
        ("mailbox", "zimbraReverseProxyUpstreamImapServers", ""),
    ]
    with servers_modified(changes, put_back):
        result = deploy()
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        assert "zimbraMailSSLProxyPort puts HTTPS webmail/SOAP/ActiveSync on 22/tcp: the SSH port; refused" in output
        assert "zimbraImapSSLProxyBindPort puts IMAPS on 7071/tcp: 7071/tcp is local-only here" in output
        assert all_rules() == cluster
