"""The exposure audit on the lab: real sockets, real ufw, judged; the hosts left byte-identical; the report's
claims checked by connecting from the controller, `mgmt` and `outside`."""

import json
import os
import shutil
import subprocess
import sys

import jsonschema
import pytest
from PIL import Image
from support import PYINFRA, REPO, ZIMBRA_FQDN, deploy, zmprov, zmprov_calls

from lab import client

# what a host is, for "changed nothing": every file's path, type, mode, owner and content outside the logs,
# the kernel's firewall rules (without their packet counters) and the listening sockets. Not LMDB's lock.mdb:
# slapd writes its reader table there for any search (a slot per reading thread), as runtime state like /run
SNAPSHOT = r"""
dirs="/etc /opt /root /srv /tmp /usr/local /var"
skip="-path /var/log -o -path /var/cache -o -path /opt/zimbra/log -o -name lock.mdb"
find $dirs \( $skip \) -prune -o -printf '%p %y %m %u %g %s\n' 2>/dev/null | sort
find $dirs \( $skip \) -prune -o -type f -print0 2>/dev/null | sort -z | xargs -0 sha256sum
for save in iptables-save ip6tables-save; do $save | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'; done
ss -Hlnptu
"""
INTRA = {"7072/tcp", "7110/tcp", "7143/tcp", "7993/tcp", "7995/tcp", "8080/tcp", "8443/tcp", "53/udp", "514/udp"}
STRAY = (
    "import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
    "s.bind(('0.0.0.0', 4444)); s.listen(); time.sleep(600)"
)
OK_GREEN, TOO_OPEN_RED, UNKNOWN_PURPLE = (0x43, 0xA0, 0x47), (0xE5, 0x39, 0x35), (0x8E, 0x24, 0xAA)
SLATE = (0x37, 0x47, 0x4F)  # the matrix's header row and node column
# zimbraMtaMyNetworks as Zimbra's installer writes it (zmsetup.pl: `zmserverips -n`, the host's own subnets)
INSTALLER_MYNETWORKS = "127.0.0.0/8 [::1]/128 10.77.0.0/24 [fd5a:7e3c:91b2::]/64"


def audit(tmp_path, *data):
    """Run the audit as a user does; .report: its JSON, .html: the path of its page."""
    json_path, html_path = tmp_path / "audit.json", tmp_path / "audit.html"
    for path in (json_path, html_path):
        path.unlink(missing_ok=True)
    extra = [word for item in data for word in ("--data", item)]
    command = [PYINFRA, "inventories/lab.py", "audit.py", "--data", f"audit_json={json_path}"]  # as from cron: no -y
    command += ["--data", f"audit_html={html_path}", *extra]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert json_path.exists(), result.stdout + result.stderr
    result.report, result.html, result.json_path = json.loads(json_path.read_text()), html_path, json_path
    return result


def node(report, name="zimbra"):
    return next(n for n in report["nodes"] if n["name"] == name)


def findings(report, name="zimbra"):
    return {(f["verdict"], f["port"]) for f in node(report, name)["findings"]}


def ports_judged(report, verdict, name="zimbra"):
    return {port for v, port in findings(report, name) if v == verdict}


def snapshot(host):
    return client.run(host, "sh", "-c", SNAPSHOT).stdout


@pytest.fixture(scope="module")
def schema():
    with open(os.path.join(REPO, "docs", "audit.schema.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def single():
    client.lab("down")
    client.lab("up")
    return client.status()


@pytest.fixture
def deployed(single):
    """The single server deployed (a no-op when an earlier test deployed it already)."""
    result = deploy()
    assert result.returncode == 0, result.stderr[-3000:]


def test_fresh_server_is_too_open_fails_and_is_left_byte_identical(single, tmp_path, schema):
    before, calls = snapshot("zimbra"), zmprov_calls()
    result = audit(tmp_path)
    assert result.returncode != 0 and "the audit fails on 1 node(s): zimbra" in result.stderr
    jsonschema.validate(result.report, schema)
    assert {"7071/tcp", "389/tcp", "11211/tcp", "22/tcp"} | INTRA <= ports_judged(result.report, "too open")
    assert node(result.report)["ufw"]["active"] is False
    assert "too open" in result.stdout.splitlines()[0]
    assert snapshot("zimbra") == before and zmprov_calls() == calls  # read-only, and no JVM started
    # the snapshot does see what changes a host: the deploy's work
    done = deploy()
    assert done.returncode == 0, done.stderr[-3000:]
    assert snapshot("zimbra") != before


def test_after_the_deploy_everything_is_ok_and_the_audit_passes(deployed, tmp_path, schema):
    result = audit(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    jsonschema.validate(result.report, schema)
    zimbra = node(result.report)
    assert zimbra["findings"] == [] and zimbra["ufw"]["active"] and zimbra["complete"]
    reach = {(s["port"], s["address"]): s["reach"] for s in zimbra["sockets"]}
    assert reach[(7071, "*")] == ["10.77.1.0/24", "fd5a:7e3c:91b2:1::/64"]
    assert reach[(25, "*")] == ["world"] and reach[(11211, "10.77.0.10")] == []
    assert "Exposure audit: 1 node(s)" in result.stdout and "no finding" in result.stdout


def test_reachability_the_audit_computes_is_what_mgmt_outside_and_the_controller_see(deployed, tmp_path):
    result = audit(tmp_path, "audit_probe=true")
    assert result.returncode == 0, result.stdout + result.stderr
    probed = [s for s in node(result.report)["sockets"] if s["probe"]]
    assert {(s["port"], s["probe"]["observed"]) for s in probed} >= {(7071, "open"), (8080, "filtered")}
    assert all(s["probe"]["agrees"] and s["probe"]["from"] == "10.77.1.1" for s in probed)
    judge = [sys.executable, "scripts/reachability.py", "--audit", str(result.json_path)]
    checked = subprocess.run(judge, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0 and ", 0 disagree" in checked.stdout, checked.stdout + checked.stderr
    # the judge can fail: the same report claiming SMTP blocked from the world
    for socket in node(result.report)["sockets"]:
        for source in socket["sources"]:
            if socket["port"] == 25 and source["kind"] == "world":
                source["reachable"] = False
    result.json_path.write_text(json.dumps(result.report))
    lying = subprocess.run(judge, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert lying.returncode == 1 and "25/tcp: probe open, audit says blocked" in lying.stdout


@pytest.mark.parametrize(
    "add, remove, port, verdict, status",
    [
        # an accept with a match the audit does not read: taken as open to all, as the probe confirms
        (
            ["iptables", "-I", "INPUT", "-p", "tcp", "--dport", "8080", "-m", "ttl", "--ttl-gt", "0", "-j", "ACCEPT"],
            ["iptables", "-D", "INPUT", "-p", "tcp", "--dport", "8080", "-m", "ttl", "--ttl-gt", "0", "-j", "ACCEPT"],
            8080,
            "too open",
            1,
        ),
        # out where they say reachable (a table of nft's own, named but not read): worth a look, not a failure
        (
            ["nft", "add table inet lab; add chain inet lab input { type filter hook input priority 0; };"
             " add rule inet lab input tcp dport 7071 drop"],
            ["nft", "delete", "table", "inet", "lab"],
            7071,
            "probe disagrees",
            0,
        ),
    ],
    ids=["iptables-match-not-read", "nft-table"],
)  # fmt: skip
def test_a_firewall_rule_the_audit_cannot_read_is_named_and_judged_at_its_worst_or_found_by_the_probe(
    deployed, tmp_path, add, remove, port, verdict, status
):
    client.run("zimbra", *add)
    try:
        result = audit(tmp_path, "audit_probe=true")
    finally:
        client.run("zimbra", *remove)
    assert (verdict, f"{port}/tcp") in findings(result.report)
    assert ("not judged", "") in findings(result.report)
    assert result.returncode == status


def test_the_kernels_own_rules_are_judged_where_they_stand(single, deployed, tmp_path):
    """Beside ufw's files: an ACCEPT ahead of ufw's chains (7071) and one behind them (7072, for what no ufw
    rule decided), a DNAT publishing 8080 to another host through FORWARD (as Docker publishes a port), each
    `too open` with the command that removes it, as `outside` finds them; taken away, the audit passes."""
    mgmt = next(h for h in single["hosts"] if h["name"] == "mgmt")["ipv4"]
    zimbra = next(h for h in single["hosts"] if h["name"] == "zimbra")["ipv4"]
    forward = ["FORWARD", "-d", mgmt, "-p", "tcp", "--dport", "22", "-j", "ACCEPT"]
    changes = [
        (["iptables", "-I", "INPUT", "-p", "tcp", "--dport", "7071", "-j", "ACCEPT"], "-I", "-D"),
        (["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "7072", "-j", "ACCEPT"], "-A", "-D"),
        (["iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "8080", "-j", "DNAT"]
         + ["--to-destination", f"{mgmt}:22"], "-A", "-D"),
        (["iptables", "-t", "nat", "-A", "POSTROUTING", "-d", mgmt, "-p", "tcp", "--dport", "22", "-j", "MASQUERADE"],
         "-A", "-D"),
        (["iptables", "-I", *forward], "-I", "-D"),
    ]  # fmt: skip
    client.run("zimbra", "sysctl", "-qw", "net.ipv4.ip_forward=1")
    try:
        for command, _, _ in changes:
            client.run("zimbra", *command)
        seen = client.probe("outside", zimbra, ["7071/tcp", "7072/tcp", "8080/tcp"])
        result = audit(tmp_path)
    finally:
        for command, added, removed in changes:
            client.run("zimbra", *[removed if word == added else word for word in command])
        client.run("zimbra", "sysctl", "-qw", "net.ipv4.ip_forward=0")
    assert seen == {"7071/tcp": "open", "7072/tcp": "open", "8080/tcp": "open"}
    assert result.returncode == 1
    by_port = {f["port"]: f for f in node(result.report)["findings"] if f["verdict"] == "too open"}
    assert by_port["7071/tcp"]["fix"] == ["iptables -D INPUT -p tcp -m tcp --dport 7071 -j ACCEPT"]
    assert by_port["7072/tcp"]["fix"] == ["iptables -D INPUT -p tcp -m tcp --dport 7072 -j ACCEPT"]
    assert f"published through DNAT to {mgmt}:22" in by_port["8080/tcp"]["detail"]
    admin = [s for s in node(result.report)["sockets"] if s["port"] == 7071 and s["address"] == "*"]
    assert admin[0]["reach"] == ["world"]
    assert audit(tmp_path).returncode == 0


def test_a_deny_for_one_interface_hides_nothing_on_the_others(single, deployed, tmp_path):
    """`ufw allow 7071` with `deny in on eth9 … 7071` ahead of it: the host's eth0 still lets the world in,
    as `outside` finds; the audit says `too open`, naming the path, and the fix that removes the allow."""
    zimbra = next(h for h in single["hosts"] if h["name"] == "zimbra")["ipv4"]
    deny = ["deny", "in", "on", "eth9", "to", "any", "port", "7071", "proto", "tcp"]
    client.run("zimbra", "ufw", "allow", "7071")
    client.run("zimbra", "ufw", "insert", "1", *deny)
    try:
        seen = client.probe("outside", zimbra, ["7071/tcp"])
        result = audit(tmp_path)
    finally:
        client.run("zimbra", "ufw", "--force", "delete", *deny)
        client.run("zimbra", "ufw", "--force", "delete", "allow", "7071")
    assert seen == {"7071/tcp": "open"}
    assert result.returncode == 1
    by_port = {f["port"]: f for f in node(result.report)["findings"] if f["verdict"] == "too open"}
    assert by_port["7071/tcp"]["fix"] == ["ufw delete allow 7071"]
    world = [
        source
        for socket in node(result.report)["sockets"]
        if socket["port"] == 7071 and socket["proto"] == "tcp"
        for source in socket["sources"]
        if source["network"] == "0.0.0.0/0"
    ]
    assert {source["via"] for source in world} == {"rule: ufw allow 7071 (in on an interface other than eth9)"}
    assert audit(tmp_path).returncode == 0


def test_ufw_rules_not_loaded_into_the_kernel_fail_the_audit(deployed, tmp_path):
    """user.rules written by hand without a reload (or by `ufw app update` under SSH with ufw 0.36): the file
    the audit judges is not what the kernel applies."""
    rules = client.run("zimbra", "cat", "/etc/ufw/user.rules").stdout
    edited = rules.replace("### END RULES ###", "### tuple ### allow tcp 9999 0.0.0.0/0 any 0.0.0.0/0 in\n"
                           "-A ufw-user-input -p tcp --dport 9999 -j ACCEPT\n\n### END RULES ###")  # fmt: skip
    client.run("zimbra", "sh", "-c", 'printf "%s" "$1" > /etc/ufw/user.rules', "write", edited)
    try:
        result = audit(tmp_path)
    finally:
        client.run("zimbra", "sh", "-c", 'printf "%s" "$1" > /etc/ufw/user.rules', "write", rules)
    assert result.returncode == 1
    assert ("rules not loaded", "") in findings(result.report)
    [finding] = [f for f in node(result.report)["findings"] if f["verdict"] == "rules not loaded"]
    assert "1 rules only in the file, 0 only in the kernel" in finding["detail"]
    assert audit(tmp_path).returncode == 0


@pytest.fixture
def drift(deployed):
    """On the deployed server: ufw allow 7071, a stray listener on 4444 with its rule, memcached bound to
    loopback only; undone after."""
    client.run("zimbra", "ufw", "allow", "7071")
    pid = client.run("zimbra", "sh", "-c", f'nohup python3 -c "{STRAY}" >/dev/null 2>&1 & echo $!').stdout.strip()
    client.run("zimbra", "ufw", "allow", "4444")
    zmprov("ms", "zimbra.zfw.test", "zimbraMemcachedBindAddress", "127.0.0.1")
    client.run("zimbra", "runuser", "-u", "zimbra", "--", "/opt/zimbra/bin/zmmemcachedctl", "restart")
    yield
    client.run("zimbra", "kill", pid)
    client.run("zimbra", "ufw", "delete", "allow", "4444")
    again = deploy()  # deletes the widening 7071 rule, binds memcached where nginx looks again
    assert again.returncode == 0, again.stderr[-3000:]


def test_drift_is_found_and_fails_the_audit(drift, tmp_path, schema):
    result = audit(tmp_path)
    assert result.returncode != 0
    jsonschema.validate(result.report, schema)
    found = findings(result.report)
    assert ("too open", "7071/tcp") in found
    assert ("unknown listener", "4444/tcp") in found
    assert ("memcached unreachable from proxy", "11211/tcp") in found
    assert ("rule without listener", "4444/udp") in found  # `ufw allow 4444` opens UDP too
    by_port = {f["port"]: f for f in node(result.report)["findings"]}
    assert by_port["7071/tcp"]["fix"] == ["ufw delete allow 7071"]
    assert "python3 (pid" in by_port["4444/tcp"]["detail"]
    text = result.stdout
    assert text.index("too open") < text.index("unknown listener") < text.index(" ok ")
    shot = screenshot(result.html, os.environ.get("ZFW_AUDIT_SCREENSHOT") or str(tmp_path / "audit.png"))
    colours = matrix_colours(shot)
    # the matrix is on screen, with cells ok, too open and unknown listener (a cell is some 30 × 20 pixels)
    assert colours.get(OK_GREEN, 0) > 3000 and colours.get(TOO_OPEN_RED, 0) > 300, colours
    assert colours.get(UNKNOWN_PURPLE, 0) > 300, colours


def screenshot(html, png):
    """The page as headless Chromium (Debian's package) draws it."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: make setup installs it"
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    command += ["--window-size=1400,900", f"--screenshot={png}", f"file://{html}"]
    subprocess.run(command, check=True, capture_output=True, timeout=120, env={**os.environ, "HOME": "/tmp"})
    return png


def matrix_colours(png):
    """How many pixels of each colour the matrix has on the screenshot: the band of rows where its node column
    (slate, at the page's left margin) is; the badges and legend above and the findings below use the same
    colours."""
    with Image.open(png) as image:
        assert image.size == (1400, 900)
        rgb = image.convert("RGB")
        rows = [y for y in range(rgb.height) if rgb.getpixel((30, y)) == SLATE]
        assert rows, "no matrix on the screenshot"
        band = rgb.crop((0, rows[0], rgb.width, rows[-1] + 1))
        return {colour: count for count, colour in band.getcolors(maxcolors=1 << 20)}


def test_the_installers_relay_networks_fail_the_audit_and_a_lookup_table_is_a_warning(deployed, tmp_path):
    """The lab seeds the narrowed zimbraMtaMyNetworks (lab/topology.py); the installer's own subnets let every
    host there relay: the audit fails, with the zmprov that narrows it on the server's entry."""
    [seeded] = [
        line.split(": ", 1)[1]
        for line in zmprov("gs", "-e", ZIMBRA_FQDN).stdout.splitlines()
        if line.startswith("zimbraMtaMyNetworks: ")
    ]
    try:
        zmprov("ms", ZIMBRA_FQDN, "zimbraMtaMyNetworks", INSTALLER_MYNETWORKS)
        wide = audit(tmp_path)
        assert wide.returncode == 1 and ("relay trusted too broadly", "zimbraMtaMyNetworks") in findings(wide.report)
        relay = next(f for f in node(wide.report)["findings"] if f["verdict"] == "relay trusted too broadly")
        assert relay["fix"][0].startswith(f"zmprov ms {ZIMBRA_FQDN} zimbraMtaMyNetworks ")
        zmprov("ms", ZIMBRA_FQDN, "zimbraMtaMyNetworks", f"{seeded} hash:/etc/postfix/x")
        lookup = audit(tmp_path)
        assert lookup.returncode == 0 and findings(lookup.report) == {("relay trust not judged", "zimbraMtaMyNetworks")}
    finally:
        zmprov("ms", ZIMBRA_FQDN, "zimbraMtaMyNetworks", seeded)


def test_cluster_peers_are_shown_by_name(tmp_path, schema):
    client.lab("down")
    client.lab("up", "--topology", "cluster")
    done = deploy()
    assert done.returncode == 0, done.stderr[-3000:]
    result = audit(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    jsonschema.validate(result.report, schema)
    mailbox = node(result.report, "mailbox")
    reach = {s["port"]: s["reach"] for s in mailbox["sockets"] if s["address"] == "*"}
    assert reach[7072] == ["proxy.zfw.test"]
    assert "mta.zfw.test" in reach[7025] and "10.77.1.0/24" in reach[7025]
    assert sorted(n["name"] for n in result.report["nodes"]) == ["ldap", "mailbox", "mailbox-2", "mta", "proxy"]
    assert result.report["summary"]["failed"] == []


def test_a_new_node_the_ldap_firewall_does_not_know_yet_is_judged_and_its_flows_shown_broken(tmp_path):
    """Runs after the cluster test: mailbox-3 registered in LDAP, not deployed yet. It cannot read LDAP itself
    (the LDAP node's firewall does not know it): it is judged on another node's read; the LDAP node's 389
    is too closed for it."""
    client.lab("add", "mailbox-3", "--roles", "mailbox")
    result = audit(tmp_path)
    assert result.returncode != 0  # mailbox-3 is fresh: its ufw is off
    new = node(result.report, "mailbox-3")
    assert any("cannot read Zimbra's LDAP itself: judged on what" in w for w in new["warnings"])
    assert "mailbox" in new["services"] and ("too open", "7071/tcp") in findings(result.report, "mailbox-3")
    too_closed = next(f for f in node(result.report, "ldap")["findings"] if f["port"] == "389/tcp")
    assert too_closed["verdict"] == "too closed" and "mailbox-3.zfw.test" in too_closed["detail"]
