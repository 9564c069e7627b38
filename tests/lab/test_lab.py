"""The rehearsal lab itself: hosts, isolation, teardown, and the Zimbra stand-in's fidelity."""

import json
import os
import shutil
import subprocess

import pytest
from support import ZIMBRA_FQDN, zmprov, zmprov_calls

from lab import client


def machine_network_state():
    """What the lab must never change in the machine's own namespaces."""
    state = {
        "links": subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout,
        "addrs": subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True).stdout,
        "routes4": subprocess.run(["ip", "route"], capture_output=True, text=True).stdout,
        "routes6": subprocess.run(["ip", "-6", "route"], capture_output=True, text=True).stdout,
        "iptables": open("/proc/net/ip_tables_names").read() if os.path.exists("/proc/net/ip_tables_names") else "",
        "ip6tables": open("/proc/net/ip6_tables_names").read() if os.path.exists("/proc/net/ip6_tables_names") else "",
        "netns": subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout,
        "loops": subprocess.run(["losetup", "-l", "-n"], capture_output=True, text=True).stdout,
    }
    if shutil.which("nft"):
        state["nft"] = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    return state


def lab_leftovers():
    """Processes and mounts that belong to a lab."""
    state_dir = "/run/zimbra-firewall-lab"
    with open("/proc/self/mountinfo") as f:
        mounts = [line for line in f if state_dir in line or "zfwlab" in line or line.split()[4] == "/run/netns"]
    procs = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if state_dir.encode() in f.read():
                    procs.append(pid)
        except OSError:
            pass
    return mounts, procs, os.path.exists(state_dir)


@pytest.mark.parametrize("shape", [["--zimbra-hosts", "2"], ["--topology", "cluster"]], ids=["single", "cluster"])
def test_lab_changes_nothing_in_the_machine_and_leaves_nothing_behind(shape):
    client.lab("down")
    before = machine_network_state()
    client.lab("up", *shape)
    if "cluster" in shape:
        client.lab("add", "mailbox-3", "--roles", "mailbox")
        client.lab("remove", "mailbox-2")
    during = machine_network_state()
    zimbra = next(h["name"] for h in client.status()["hosts"] if h["role"] == "zimbra")
    client.run(zimbra, "ufw", "--force", "enable")
    client.run(zimbra, "ufw", "deny", "7071/tcp")
    assert machine_network_state() == during, "ufw inside a lab host changed the machine's own firewall"
    client.lab("down")
    assert machine_network_state() == before
    assert lab_leftovers() == ([], [], False)
    # only the lab's own namespace appeared while it was up
    assert during["netns"].split() == ["zfwlab"] + before["netns"].split()
    assert {k: v for k, v in during.items() if k != "netns"} == {k: v for k, v in before.items() if k != "netns"}


def test_up_and_down_are_idempotent(fresh_lab):
    again = client.lab("up")
    assert "already up" in again.stderr
    client.lab("down")
    client.lab("down")
    assert client.status()["status"] == "down"


def test_status_json_lists_every_host_with_addresses_and_ssh_target(fresh_lab):
    hosts = {h["name"]: h for h in fresh_lab["hosts"]}
    assert {n: h["role"] for n, h in hosts.items()} == {"zimbra": "zimbra", "mgmt": "mgmt", "outside": "outside"}
    # a single server holds every role, proxy and memcached included
    assert {"ldap", "mta", "mailbox", "logger", "proxy", "memcached"} <= set(hosts["zimbra"]["roles"])
    for host in hosts.values():
        assert host["running"]
        assert host["ipv4"].startswith("10.77.") and host["ipv6"].startswith("fd5a:7e3c:91b2:")
        assert host["ssh_target"] == f"root@{host['ipv4']}"


def test_fresh_zimbra_answers_admin_port_from_outside_before_hardening(fresh_lab):
    zimbra = next(h for h in fresh_lab["hosts"] if h["name"] == "zimbra")
    result = client.run("outside", "nc", "-zv", "-w", "3", zimbra["ipv4"], "7071")
    assert "succeeded" in result.stderr
    assert client.probe("outside", zimbra["ipv6"], ["7071/tcp", "53/udp", "11211/tcp"]) == {
        "7071/tcp": "open",
        "53/udp": "open",
        "11211/tcp": "open",
    }


def test_ssh_with_pinned_host_keys_reaches_hosts_from_the_management_subnet(fresh_lab):
    ssh = fresh_lab["ssh"]
    out = subprocess.run(
        ["ssh", "-F", ssh["config"], "-o", "BatchMode=yes", "zimbra", "echo $SSH_CONNECTION"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == fresh_lab["controller"]["ipv4"]
    # a changed host key is refused: no blanket "strict checking off"
    with open(ssh["known_hosts"]) as f:
        pinned = f.read()
    try:
        with open(ssh["known_hosts"], "w") as f:
            f.write(pinned.replace("AAAA", "AAAB", 1))
        bad = subprocess.run(
            ["ssh", "-F", ssh["config"], "-o", "BatchMode=yes", "zimbra", "true"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert bad.returncode != 0
    finally:
        with open(ssh["known_hosts"], "w") as f:
            f.write(pinned)


def test_exec_passes_arguments_through_and_returns_exit_status(fresh_lab):
    result = client.run("mgmt", "sh", "-c", 'printf "%s|" "$@"; exit 7', "sh", "a b", "'c'", check=False)
    assert (result.stdout, result.returncode) == ("a b|'c'|", 7)


def test_bad_input_gives_one_line_errors(fresh_lab):
    for args, words in [
        (["exec", "nosuchhost", "--", "true"], "no lab host"),
        (["up", "--zimbra-hosts", "3"], "another shape"),
    ]:
        result = client.lab(*args, check=False)
        assert result.returncode == 1 and words in result.stderr and len(result.stderr.splitlines()) == 1
    client.lab("down")
    result = client.lab("up", "--zimbra-hosts", "0", check=False)
    assert result.returncode == 1 and "--zimbra-hosts" in result.stderr
    not_root = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", client.sys.executable, "-m", "lab", "up"],
        cwd=client.REPO,
        capture_output=True,
        text=True,
    )
    assert not_root.returncode == 1 and "needs root" in not_root.stderr


# --- the Zimbra stand-in ------------------------------------------------------------------------


def test_zmprov_gs_prints_zimbras_format(fresh_lab):
    zmprov("-l", "ms", ZIMBRA_FQDN, "zimbraMemcachedBindAddress", "10.0.0.5", "zimbraMemcachedBindAddress", "127.0.0.1")
    result = zmprov(
        "-l", "gs", "ZIMBRA.zfw.test", "zimbramemcachedbindport", "nosuchattribute", "ZIMBRAMEMCACHEDBINDADDRESS"
    )
    assert result.stdout == (
        f"# name {ZIMBRA_FQDN}\n"
        "zimbraMemcachedBindAddress: 10.0.0.5\n"
        "zimbraMemcachedBindAddress: 127.0.0.1\n"
        "zimbraMemcachedBindPort: 11211\n"
        "\n"
    )
    only_own = zmprov("-l", "gs", "-e", ZIMBRA_FQDN, "zimbraMemcachedBindPort")
    assert only_own.stdout == f"# name {ZIMBRA_FQDN}\n\n"


def test_zmprov_errors_go_to_stderr_with_exit_2(fresh_lab):
    result = zmprov("-l", "gs", "nosuch.example.com", check=False)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.strip() == "ERROR: account.NO_SUCH_SERVER (no such server: nosuch.example.com)"
    mixed = zmprov(
        "-l",
        "ms",
        ZIMBRA_FQDN,
        "zimbraMemcachedBindAddress",
        "1.1.1.1",
        "+zimbraMemcachedBindAddress",
        "2.2.2.2",
        check=False,
    )
    assert mixed.returncode == 2 and "can't mix +attrName/-attrName with attrName" in mixed.stderr
    unknown = zmprov("-l", "ms", ZIMBRA_FQDN, "zimbraNoSuchThing", "x", check=False)
    assert unknown.returncode == 2 and "invalid attr name: zimbraNoSuchThing" in unknown.stderr


def test_zmprov_ms_add_remove_delete_and_global_inheritance(fresh_lab):
    def values(*attrs):
        return zmprov("-l", "gs", ZIMBRA_FQDN, *attrs).stdout.splitlines()[1:-1]

    zmprov("-l", "ms", ZIMBRA_FQDN, "+zimbraMemcachedBindAddress", "10.0.0.1", "+zimbraMemcachedBindAddress", "::1")
    zmprov("-l", "ms", ZIMBRA_FQDN, "-zimbraMemcachedBindAddress", "10.0.0.1")
    assert values("zimbraMemcachedBindAddress") == ["zimbraMemcachedBindAddress: ::1"]
    zmprov("-l", "ms", ZIMBRA_FQDN, "zimbraMemcachedBindAddress", "")
    assert values("zimbraMemcachedBindAddress") == []
    zmprov("-l", "mcf", "zimbraMemcachedClientServerList", "mc1:11211")
    assert (
        zmprov("-l", "gacf", "zimbraMemcachedClientServerList").stdout == "zimbraMemcachedClientServerList: mc1:11211\n"
    )
    assert values("zimbraMemcachedClientServerList") == ["zimbraMemcachedClientServerList: mc1:11211"]
    zmprov("-l", "ms", ZIMBRA_FQDN, "zimbraMemcachedClientServerList", "127.0.0.1")
    assert values("zimbraMemcachedClientServerList") == ["zimbraMemcachedClientServerList: 127.0.0.1"]


def test_ldapsearch_with_localconfig_credentials_sees_what_zmprov_shows(fresh_lab):
    zmprov("-l", "ms", ZIMBRA_FQDN, "zimbraMemcachedBindAddress", "127.0.0.1")
    config = client.run(
        "zimbra",
        "runuser",
        "-u",
        "zimbra",
        "--",
        "/opt/zimbra/bin/zmlocalconfig",
        "-s",
        "-m",
        "shell",
        "ldap_url",
        "zimbra_ldap_userdn",
        "zimbra_ldap_password",
    ).stdout
    values = dict(line.rstrip(";").split("=", 1) for line in config.splitlines())
    password = values["zimbra_ldap_password"].strip("'")
    out = client.run(
        "zimbra",
        "env",
        "LDAPTLS_CACERT=/opt/zimbra/conf/ca/ca.pem",
        "/opt/zimbra/common/bin/ldapsearch",
        "-x",
        "-ZZ",
        "-LLL",
        "-H",
        values["ldap_url"].strip("'"),
        "-D",
        values["zimbra_ldap_userdn"].strip("'"),
        "-y",
        "/dev/stdin",
        "-b",
        f"cn={ZIMBRA_FQDN},cn=servers,cn=zimbra",
        "zimbraMemcachedBindAddress",
        input=password,
    ).stdout
    assert "zimbraMemcachedBindAddress: 127.0.0.1" in out
    wrong = client.run(
        "zimbra",
        "/opt/zimbra/common/bin/ldapsearch",
        "-x",
        "-LLL",
        "-H",
        "ldap://127.0.0.1",
        "-D",
        "uid=zimbra,cn=admins,cn=zimbra",
        "-w",
        "wrong",
        "-b",
        "cn=zimbra",
        check=False,
    )
    assert wrong.returncode == 49  # invalid credentials: the directory really checks the bind


def test_every_zmprov_call_is_logged_with_its_caller(fresh_lab):
    before = len(zmprov_calls())
    zmprov("-l", "gs", ZIMBRA_FQDN, "zimbraId")
    calls = zmprov_calls()[before:]
    assert [(c["argv"], c["user"], c["caller"]) for c in calls] == [
        (["-l", "gs", ZIMBRA_FQDN, "zimbraId"], "zimbra", "")
    ]


def test_zmmemcachedctl_refuses_root_and_really_rebinds_memcached(fresh_lab):
    refused = client.run("zimbra", "/opt/zimbra/bin/zmmemcachedctl", "status", check=False)
    assert refused.returncode != 0 and "zimbra" in refused.stdout
    listening = client.run("zimbra", "ss", "-Hlnt", "sport = :11211").stdout
    assert "0.0.0.0:11211" in listening and "[::]:11211" in listening
    assert client.run("zimbra", "ss", "-Hlnu", "sport = :11211").stdout == ""  # -U 0: no UDP
    zmprov("-l", "ms", ZIMBRA_FQDN, "zimbraMemcachedBindAddress", "127.0.0.1")
    client.run("zimbra", "runuser", "-u", "zimbra", "--", "/opt/zimbra/bin/zmmemcachedctl", "restart")
    listening = client.run("zimbra", "ss", "-Hlnt", "sport = :11211").stdout.split()
    assert [w for w in listening if w.endswith(":11211")] == ["127.0.0.1:11211"]
    assert client.probe("mgmt", "10.77.0.10", ["11211/tcp"]) == {"11211/tcp": "closed"}
    status = client.run("zimbra", "runuser", "-u", "zimbra", "--", "/opt/zimbra/bin/zmmemcachedctl", "status")
    assert status.returncode == 0


def test_fresh_zimbra_host_looks_like_a_fresh_install(fresh_lab):
    assert client.run("zimbra", "ufw", "status").stdout.strip() == "Status: inactive"
    assert client.run("zimbra", "ls", "/etc/ufw/applications.d").stdout.split().count("zimbra") == 0
    gs = zmprov("-l", "gs", ZIMBRA_FQDN, "zimbraMemcachedBindAddress", "zimbraMemcachedClientServerList")
    assert gs.stdout == f"# name {ZIMBRA_FQDN}\n\n"
    hostname = client.run("zimbra", "runuser", "-u", "zimbra", "--", "/opt/zimbra/bin/zmhostname").stdout
    assert hostname.strip() == ZIMBRA_FQDN
    assert json.loads(client.lab("status", "--json").stdout)["zmprov_delay"] == 0


# --- the VM lab (python -m lab vms): what needs no VM -----------------------------------------------


def test_vm_lab_without_its_tools_says_what_to_install_and_starts_nothing():
    result = subprocess.run(
        [client.sys.executable, "-m", "lab", "vms", "up"],
        cwd=client.REPO,
        capture_output=True,
        text=True,
        env=dict(os.environ, PATH="/nonexistent"),
    )
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    assert all(words in result.stderr for words in ("apt-get install", "vagrant", "libvirt-daemon-system"))
    assert not os.path.exists("/run/zimbra-firewall-vms")


def test_vm_lab_commands_before_up_fail_clearly():
    result = client.lab("vms", "run", "--", "true", check=False)
    assert result.returncode == 1 and "not up" in result.stderr and "vms up" in result.stderr
    assert json.loads(client.lab("vms", "status", "--json").stdout) == {"status": "down"}
