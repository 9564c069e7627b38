"""Never lock the operator out, never leave a host half-open: preflight, rollback, bad input, faults."""

import os
import subprocess
import tempfile
import threading
import time

import pytest
from support import LOCAL_ONLY, OPERATIONS, PUBLIC, PYINFRA, REPO, ZIMBRA_FQDN, deploy, zmprov, zmprov_calls
from test_deploy import answering, zimbra_address

from lab import client
from zimbra_firewall.safety import Switch

LAB_MGMT = ["10.77.1.0/24", "fd5a:7e3c:91b2:1::/64"]


def group_data(**values):
    """A --group-data folder whose lab.py overrides the given keys (written as Python literals)."""
    folder = tempfile.mkdtemp(prefix="zfw-group-data-")
    with open(os.path.join(folder, "lab.py"), "w") as f:
        f.write("".join(f"{key} = {value!r}\n" for key, value in values.items()))
    return folder


def host_state():
    """What a refused run must leave exactly as it was."""
    return (
        client.run("zimbra", "ufw", "status", "verbose").stdout,
        client.run("zimbra", "ufw", "show", "added").stdout,
        client.run("zimbra", "sh", "-c", "ls /etc/ufw/applications.d; cat /etc/default/ufw").stdout,
        zmprov("-l", "gs", "-e", ZIMBRA_FQDN).stdout,
        [c for c in zmprov_calls() if c["argv"] != ["-l", "gs", "-e", ZIMBRA_FQDN]],
    )


def ssh_works():
    ssh = client.status()["ssh"]
    return (
        subprocess.run(
            ["ssh", "-F", ssh["config"], "-o", "BatchMode=yes", "-o", "ConnectTimeout=2", "zimbra", "true"],
            capture_output=True,
            timeout=10,
        ).returncode
        == 0
    )


def wait_for_rollback(seconds=30):
    """Until SSH is back AND the restore has finished: SSH can answer while `ufw reload` is still loading
    the restored rules, and a probe then would see that moment, not the result."""
    deadline = time.monotonic() + seconds
    restored = "test -s /var/lib/zimbra-firewall/rollbacks.log && ! test -e /var/lib/zimbra-firewall/restoring"
    while not (ssh_works() and client.run("zimbra", "sh", "-c", restored, check=False).returncode == 0):
        assert time.monotonic() < deadline, "SSH, or the restored firewall, never came back"
        time.sleep(0.2)


HOSTILE = [
    ("management_subnets", ["10.77.1.1/24"]),
    ("management_subnets", ["10.77.1.0/33"]),
    ("management_subnets", ["zimbra.example.com/24"]),
    ("management_subnets", "10.77.1.0/24"),
    ("management_subnets", []),
    ("exposure_overrides", {"public": ["0/tcp"]}),
    ("exposure_overrides", {"public": ["65536/tcp"]}),
    ("exposure_overrides", {"public": ["abc"]}),
    ("exposure_overrides", {"public": ["7071/tcp"], "local-only": ["7071/tcp"]}),
    ("exposure_overrides", ["80/tcp"]),
    ("optional_groups", ["chatt"]),
    ("profile_names", {"public": "Zimbra/Public", "local-only": "Zimbra Local", "intra": "Zimbra Intra"}),
    ("profile_names", {"public": "Z" * 65, "local-only": "Zimbra Local", "intra": "Zimbra Intra"}),
    ("managment_subnets", LAB_MGMT),
    ("optional_groups", "chat"),
    ("rule_comment", "zfw'; ufw disable; '"),
    ("profile_names", {"public": "Zimbra $(reboot)", "local-only": "Zimbra Local", "intra": "Zimbra Intra"}),
    ("memcached_bind_addresses", ["127.0.0.1 -l 0.0.0.0"]),
    ("memcached_client_servers", ["`id`"]),
    ("firewall_ssh_port", 0),
    ("rollback_seconds", "120"),
    ("default_incoming", "drop"),
    ("zimbra_nodes", ["10.77.0.0/16", "::/0"]),
]


@pytest.mark.parametrize("key, value", HOSTILE, ids=[f"{k}={v!r}"[:60] for k, v in HOSTILE])
def test_hostile_input_stops_the_run_before_any_command(fresh_lab, key, value):
    before = host_state()
    result = deploy("--group-data", group_data(**{key: value}))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"group_data {key}" in output, output[-2000:]
    assert "Starting operation" not in output
    assert host_state() == before


def test_a_profile_entry_never_exceeds_fifteen_ports_on_a_real_ufw(fresh_lab):
    """16 intra ports are split into two entries that ufw loads (the case above only lacks zimbra_nodes)."""
    ports = [f"{p}/tcp" for p in range(20000, 20016)]
    result = deploy("--group-data", group_data(exposure_overrides={"intra": ports}, zimbra_nodes=["10.77.2.0/24"]))
    assert result.returncode == 0, result.stderr[-2000:]
    assert client.probe("outside", "10.77.0.10", ["7072/tcp", "8080/tcp"]) == {"7072/tcp": "open", "8080/tcp": "open"}


def test_ipv6_subnet_while_ufw_ipv6_is_off_fails_that_host_untouched(fresh_lab):
    client.run("zimbra", "sed", "-i", "s/^IPV6=yes/IPV6=no/", "/etc/default/ufw")
    before = host_state()
    result = deploy()
    assert result.returncode != 0 and "IPV6=no" in result.stdout + result.stderr
    assert host_state() == before


def test_preflight_refuses_when_the_controller_is_outside_the_management_subnets(fresh_lab):
    before = host_state()
    result = deploy("--group-data", group_data(management_subnets=["10.77.2.0/24"]))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "outside management_subnets" in output and "10.77.1.1" in output
    assert host_state() == before


def test_preflight_refuses_a_firewall_ssh_port_other_than_the_one_in_use(fresh_lab):
    result = deploy("--group-data", group_data(firewall_ssh_port=2222))
    assert result.returncode != 0 and "port 22" in result.stdout + result.stderr
    assert client.run("zimbra", "ufw", "status").stdout.strip() == "Status: inactive"


def cut_off_and_rolled_back():
    """A deploy that cuts SSH off (its management subnet is not the controller's; the preflight overridden),
    failed, and its rollback after 5 s finished."""
    cutting = group_data(management_subnets=["10.77.2.0/24"], allow_lockout_risk=True, rollback_seconds=5)
    started = time.monotonic()
    result = deploy("--group-data", cutting)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    # the new connection fails, or gets through once the restore has run and the disarm finds the arm gone
    assert "a new SSH connection did not get through" in output or "the rollback fired at " in output, output
    assert "Traceback" not in output
    wait_for_rollback()
    print(f"access restored {time.monotonic() - started:.1f} s after the deploy started (rollback_seconds=5)")


def test_a_change_that_cuts_ssh_off_is_rolled_back_and_reported(fresh_lab):
    cut_off_and_rolled_back()
    assert client.run("zimbra", "ufw", "status").stdout.strip() == "Status: inactive"
    assert client.run("zimbra", "test", "-e", "/var/lib/zimbra-firewall/armed", check=False).returncode == 1
    rerun = deploy()
    assert rerun.returncode == 0
    assert "ROLLBACK happened" in rerun.stdout + rerun.stderr
    assert answering("outside", zimbra_address(fresh_lab, "ipv4")) == PUBLIC
    assert all(r["no_change"] == 1 for r in deploy().ops.values())


def test_a_cut_on_an_active_firewall_is_rolled_back_to_the_rules_the_kernel_had(fresh_lab):
    """The usual case in production: the firewall is up and a policy change cuts SSH off. The restored
    files are not enough: the kernel's rules must be the old ones again (found on a VM)."""
    assert deploy().returncode == 0
    cutting = group_data(management_subnets=["10.77.2.0/24"], allow_lockout_risk=True, rollback_seconds=5)
    assert deploy("--group-data", cutting).returncode != 0
    wait_for_rollback()
    assert answering("mgmt", zimbra_address(fresh_lab, "ipv4")) == PUBLIC | LOCAL_ONLY
    assert answering("outside", zimbra_address(fresh_lab, "ipv4")) == PUBLIC
    rerun = deploy()
    assert "ROLLBACK happened" in rerun.stdout + rerun.stderr
    assert {op: r["no_change"] for op, r in rerun.ops.items()} == {
        op: 0 if op == "Earlier rollbacks" else 1 for op in OPERATIONS
    }


def test_ufw_is_never_active_without_the_ssh_rule(fresh_lab):
    """Watch the host through a whole first deploy: whenever ufw is active, SSH from mgmt is allowed."""
    seen, done = [], threading.Event()

    def watch():
        while not done.is_set():
            out = client.run("zimbra", "sh", "-c", "ufw status | head -1; ufw show added", check=False).stdout
            seen.append(out)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert deploy().returncode == 0
    finally:
        done.set()
        watcher.join()
    active = [s for s in seen if s.startswith("Status: active")]
    assert active, "the watcher never saw ufw active"
    assert all("allow from 10.77.1.0/24 to any port 22 proto tcp" in s for s in active)


def test_a_second_deploy_while_one_is_changing_the_firewall_refuses_clearly(fresh_lab):
    switch = Switch.new()  # another deploy's arm, its timer running
    client.run("zimbra", "sh", "-c", *switch.arm_arguments(600))
    before = host_state()
    result = deploy()
    assert result.returncode != 0
    assert "another deploy is changing this firewall" in result.stdout + result.stderr
    assert host_state() == before
    client.run("zimbra", "sh", "-c", *switch.disarm_arguments(keep=False))


def test_two_deploys_at_once_end_converged(fresh_lab):
    runs = [
        subprocess.Popen(
            [PYINFRA, "-y", "inventories/lab.py", "deploy.py"],
            cwd=REPO,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    outputs = [(run.wait(timeout=300), run.stdout.read()) for run in runs]
    assert any(code == 0 for code, _ in outputs)
    for code, output in outputs:
        assert code == 0 or "another deploy is changing this firewall" in output, output[-2000:]
    assert all(r["no_change"] == 1 for r in deploy().ops.values())


def test_an_ldap_that_cannot_be_read_fails_the_host_untouched_and_a_rerun_converges(fresh_lab):
    slapd = client.run("zimbra", "cat", "/opt/zimbra/data/ldap/slapd.pid").stdout.strip()
    client.run("zimbra", "kill", slapd)
    for read, message in (
        ("ldap", "LDAP at ldap://zimbra.zfw.test:389 does not answer"),  # zmprov would not get an answer either
        ("zmprov", "ERROR: service.FAILURE"),  # Zimbra's own message, as zmprov printed it
    ):
        result = deploy("--data", f"zimbra_read={read}")
        output = result.stdout + result.stderr
        assert result.returncode != 0
        # the host fails with a sentence in the preflight, and the run ends as pyinfra's runs end: no crash
        assert "cannot read Zimbra's servers (LDAP, then zmprov): " in output and message in output, output[-3000:]
        assert "Traceback" not in output
        assert client.run("zimbra", "ufw", "status").stdout.strip() == "Status: inactive"
    client.run(
        "zimbra",
        "/usr/sbin/slapd",
        "-f",
        "/opt/zimbra/conf/slapd.conf",
        "-h",
        "ldap:///",
        "-u",
        "zimbra",
        "-g",
        "zimbra",
    )
    assert deploy().returncode == 0
    assert all(r["no_change"] == 1 for r in deploy().ops.values())


def test_memcached_that_cannot_start_gets_its_previous_binding_back(fresh_lab):
    result = deploy("--group-data", group_data(memcached_bind_addresses=["192.0.2.99"]))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "the previous binding is restored" in output
    assert zmprov("-l", "gs", ZIMBRA_FQDN, "zimbraMemcachedBindAddress").stdout == f"# name {ZIMBRA_FQDN}\n\n"
    listening = client.run("zimbra", "ss", "-Hlnt", "sport = :11211").stdout
    assert "*:11211" in listening or "0.0.0.0:11211" in listening


def use_iptables_legacy():
    """ufw on iptables-legacy (Ubuntu 20.04's default) takes the xtables lock; iptables-nft does not."""
    for tool in ("iptables", "ip6tables"):
        client.run("zimbra", "update-alternatives", "--quiet", "--set", tool, f"/usr/sbin/{tool}-legacy")


def hold_xtables_lock(seconds):
    client.run("zimbra", "sh", "-c", f"flock /run/xtables.lock sleep {seconds} </dev/null >/dev/null 2>&1 &")


def test_a_briefly_held_xtables_lock_is_waited_for(fresh_lab):
    use_iptables_legacy()
    hold_xtables_lock(4)
    result = deploy()
    assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]
    assert answering("outside", zimbra_address(fresh_lab, "ipv4")) == PUBLIC


def test_an_xtables_lock_held_too_long_stops_with_a_clear_error(fresh_lab):
    use_iptables_legacy()
    hold_xtables_lock(30)
    result = deploy("--group-data", group_data(xtables_lock_wait=2))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "stayed held by another process for 2 s" in output
    assert client.run("zimbra", "ufw", "status").stdout.strip() == "Status: inactive"
    assert client.run("zimbra", "test", "-e", "/etc/ufw/applications.d/zimbra", check=False).returncode == 1
