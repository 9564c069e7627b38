"""Capture tests/fixtures again from the lab (real ufw, real kernel tables, the stand-in's LDAP), in the states
the unit tests judge: run as root, with no lab up, after changing a read's command.

    .venv/bin/python tests/capture_fixtures.py        # brings the lab up and down (single, then cluster)

Writes tests/fixtures/audit/*.txt (facts.audit.ExposureRead's raw output), ufw/state-*.txt (facts.ufw.UfwState's)
and kernel/* (iptables-save, ip6tables-save and ufw's rule files of a deployed server, then with another
program's rules beside ufw's). The firewalld and LDAP fixtures are captured by their own tests' recipes."""

import os
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [TESTS, os.path.dirname(TESTS)]  # support; the repository's packages
sys.path.append(os.path.join(TESTS, "lab"))  # the lab tests' recipes, after the lab package of the same name

from support import REPO, deploy, zmprov  # noqa: E402
from test_audit import STRAY  # noqa: E402
from test_journey import HOWTO  # noqa: E402

from facts.audit import ExposureRead  # noqa: E402
from facts.ufw import UfwState  # noqa: E402
from lab import client  # noqa: E402
from zimbra_firewall.policy import topology_attributes  # noqa: E402
from zimbra_firewall.ufw import PROFILE_PATH  # noqa: E402

FIXTURES = os.path.join(REPO, "tests", "fixtures")
MGMT_V4 = "10.77.1.10"
# another program's rules beside ufw's (kernel/drift-*): an ACCEPT ahead of ufw's chains and one behind them,
# one with a match the audit does not read, and a port published through DNAT and FORWARD, as Docker does
KERNEL_DRIFT = [
    ["iptables", "-I", "INPUT", "-p", "tcp", "--dport", "7071", "-j", "ACCEPT"],
    ["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "7072", "-j", "ACCEPT"],
    ["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "8443", "-m", "ttl", "--ttl-gt", "0", "-j", "ACCEPT"],
    ["iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "8080", "-j", "DNAT"]
    + ["--to-destination", f"{MGMT_V4}:22"],
    ["iptables", "-I", "FORWARD", "-d", MGMT_V4, "-p", "tcp", "--dport", "22", "-j", "ACCEPT"],
]
VARIED_RULES = [
    ["limit", "2222/tcp"],
    ["allow", "in", "on", "eth0", "to", "any", "port", "6001", "proto", "tcp"],
    ["allow", "from", "10.0.0.0/8", "to", "10.77.0.10", "port", "6002", "proto", "tcp"],
    ["allow", "6003:6010/tcp"],
    ["deny", "6011"],
    ["reject", "6012/udp"],
    ["allow", "log", "6013/tcp"],
    ["allow", "from", "fd00::/8", "to", "any", "port", "6014", "proto", "tcp", "comment", "a spaced comment"],
]
# after the input chain's echo-request accept
BEFORE_EDIT = (
    "/ufw-before-input -p icmp --icmp-type echo-request -j ACCEPT/a -A ufw-before-input -p tcp --dport 7071 -j ACCEPT"
)


def write(relative: str, text: str) -> None:
    with open(os.path.join(FIXTURES, relative), "w") as f:
        f.write(text)
    print(f"captured {relative} ({len(text.splitlines())} lines)")


def exposure(host: str) -> str:
    command = ExposureRead().command(attributes=topology_attributes(), read="ldap", lock_wait=60)
    return client.run(host, "sh", "-c", command).stdout


def ufw_state(host: str = "zimbra") -> str:
    return client.run(host, "sh", "-c", UfwState().command(PROFILE_PATH).get_raw_value()).stdout


def shell(host: str, text: str) -> str:
    return client.run(host, "sh", "-c", text).stdout


def deployed() -> None:
    result = deploy()
    assert result.returncode == 0, result.stderr[-3000:]


def single() -> None:
    client.lab("down")
    client.lab("up")
    write("audit/single-fresh.txt", exposure("zimbra"))
    write("ufw/state-fresh.txt", ufw_state())
    for step in HOWTO:
        client.run("zimbra", *step)
    write("ufw/state-howto.txt", ufw_state())
    client.lab("down")
    client.lab("up")
    deployed()
    write("audit/single-deployed.txt", exposure("zimbra"))
    write("ufw/state-deployed.txt", ufw_state())
    write("kernel/deployed-iptables-save.txt", shell("zimbra", "iptables-save"))
    write("kernel/deployed-ip6tables-save.txt", shell("zimbra", "ip6tables-save"))
    write("kernel/deployed-user.rules", shell("zimbra", "cat /etc/ufw/user.rules"))
    write("kernel/deployed-user6.rules", shell("zimbra", "cat /etc/ufw/user6.rules"))
    for step in KERNEL_DRIFT:
        client.run("zimbra", *step)
    write("kernel/drift-iptables-save.txt", shell("zimbra", "iptables-save"))
    for step in KERNEL_DRIFT:
        client.run("zimbra", *[{"-I": "-D", "-A": "-D"}.get(word, word) for word in step])
    # an admin's edit of before.rules, loaded: an accept ahead of every user rule
    shell("zimbra", f"cp /etc/ufw/before.rules /tmp/before.rules && sed -i '{BEFORE_EDIT}' /etc/ufw/before.rules")
    client.run("zimbra", "ufw", "reload")
    write("kernel/before-edited-iptables-save.txt", shell("zimbra", "iptables-save"))
    shell("zimbra", "mv /tmp/before.rules /etc/ufw/before.rules && ufw reload")
    # the audit's drift: a widening rule, a stray listener with its rule, memcached where nginx does not look
    client.run("zimbra", "ufw", "allow", "7071")
    client.run("zimbra", "sh", "-c", f'nohup python3 -c "{STRAY}" >/dev/null 2>&1 &')
    client.run("zimbra", "ufw", "allow", "4444")
    zmprov("ms", "zimbra.zfw.test", "zimbraMemcachedBindAddress", "127.0.0.1")
    client.run("zimbra", "runuser", "-u", "zimbra", "--", "/opt/zimbra/bin/zmmemcachedctl", "restart")
    write("audit/single-drift.txt", exposure("zimbra"))
    client.lab("down")
    client.lab("up")
    deployed()
    for step in (["ufw", "allow", "7071"], ["ufw", "allow", "OpenSSH"], ["ufw", "deny", "out", "25/tcp"]):
        client.run("zimbra", *step)
    write("ufw/state-deployed-and-drift.txt", ufw_state())
    # ufw's rule shapes, loaded, beside their files: what `rules not loaded` compares
    for rule in VARIED_RULES:
        client.run("zimbra", "ufw", *rule)
    for family, save in (("", "iptables-save"), ("6", "ip6tables-save")):
        write(f"kernel/varied-{save}.txt", shell("zimbra", save))
        write(f"kernel/varied-user{family}.rules", shell("zimbra", f"cat /etc/ufw/user{family}.rules"))


def cluster() -> None:
    client.lab("down")
    client.lab("up", "--topology", "cluster")
    deployed()
    write("audit/cluster-mailbox.txt", exposure("mailbox"))
    write("audit/cluster-proxy.txt", exposure("proxy"))


if __name__ == "__main__":
    os.makedirs(os.path.join(FIXTURES, "kernel"), exist_ok=True)
    try:
        single()
        cluster()
    finally:
        client.lab("down")
