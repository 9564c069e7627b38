"""The deploy on a real VM (own kernel, systemd, boot): one Zimbra VM of the Vagrantfile with the stand-in,
driven by python-vagrant. Run by `make vm-test` inside the VM lab's namespace (python -m lab vms run);
the namespace side is both the controller (management network) and, from a second address, the internet.
"""

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

import pytest
import testinfra
import testinfra.backend
import testinfra.host
import vagrant
from support import LOCAL_ONLY, OPERATIONS, PUBLIC, REPO, ZIMBRA_FQDN, deploy

from scripts.reachability import catalogue_specs

PROBE = os.path.join(REPO, "lab/guest/probe.py")
# an address of this side standing for the internet: outside every subnet of group_data/vagrant.py
OUTSIDE = "192.168.57.1"


@pytest.fixture(scope="module")
def vm():
    """`vagrant up` of the Zimbra VM (stand-in provisioned); destroyed at the end whatever happens."""
    machine = vagrant.Vagrant(root=REPO, quiet_stdout=False, quiet_stderr=False)
    try:
        machine.up(vm_name="zimbra")
        ssh_config = tempfile.NamedTemporaryFile("w", suffix=".ssh_config", delete=False)
        with ssh_config:
            ssh_config.write(machine.ssh_config(vm_name="zimbra"))
        address = machine.hostname(vm_name="zimbra")
        management = json.loads(
            subprocess.run(["ip", "-j", "route", "get", address], check=True, capture_output=True, text=True).stdout
        )[0]
        # the VM answers OUTSIDE through its default route, which is this side
        subprocess.run(["ip", "addr", "replace", f"{OUTSIDE}/24", "dev", management["dev"]], check=True)
        host = testinfra.get_host("paramiko://zimbra", ssh_config=ssh_config.name, sudo=True)
        yield {"address": address, "management": management["prefsrc"], "host": host, "ssh_config": ssh_config.name}
    finally:
        machine.destroy()


def answering(vm, source):
    out = subprocess.run(
        [sys.executable, PROBE, "--source", source, vm["address"], *catalogue_specs()],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {spec for spec, state in json.loads(out).items() if state == "open"}


@pytest.fixture(scope="module")
def deployed(vm):
    before = answering(vm, OUTSIDE)
    first = deploy(inventory="inventories/vagrant.py")
    assert first.returncode == 0, first.stdout + first.stderr
    return {**vm, "first": first, "before": before}


def test_before_the_deploy_the_admin_console_is_open_to_the_internet(deployed):
    assert {"7071/tcp", "11211/tcp"} <= deployed["before"]


def test_first_run_changed_every_step(deployed):
    assert {op: r["success"] for op, r in deployed["first"].ops.items()} == {
        # a fresh ufw already denies, and has no rule to remove
        op: 0 if op in ("Preflight", "Earlier rollbacks", "ufw rules removed", "ufw default policies") else 1
        for op in OPERATIONS
    }


def test_the_internet_reaches_exactly_the_public_mail_ports(deployed):
    assert answering(deployed, OUTSIDE) == PUBLIC


def test_the_management_network_reaches_local_only_ports_and_ssh(deployed):
    assert answering(deployed, deployed["management"]) == PUBLIC | LOCAL_ONLY


def test_rules_are_in_the_kernel_and_ufw_starts_on_boot(deployed):
    host = deployed["host"]
    assert host.service("ufw").is_enabled
    assert "ENABLED=yes" in host.file("/etc/ufw/ufw.conf").content_string
    chain = host.check_output("iptables -S ufw-user-input")
    assert "--dports 25,443,465,587,993,995" in chain and "-s 192.168.56.0/24" in chain
    assert host.check_output("ufw status verbose").startswith("Status: active")


def test_memcached_is_rebound_to_loopback(deployed):
    host = deployed["host"]
    assert host.socket("tcp://127.0.0.1:11211").is_listening
    assert not host.socket("tcp://0.0.0.0:11211").is_listening
    shown = host.check_output(
        f"runuser -u zimbra -- /opt/zimbra/bin/zmprov -l gs {ZIMBRA_FQDN} "
        "zimbraMemcachedBindAddress zimbraMemcachedClientServerList"
    )
    assert "zimbraMemcachedBindAddress: 127.0.0.1" in shown and "zimbraMemcachedClientServerList: 127.0.0.1" in shown


def test_second_run_changes_nothing(deployed):
    again = deploy(inventory="inventories/vagrant.py")
    assert again.returncode == 0, again.stdout + again.stderr
    assert {op: r["no_change"] for op, r in again.ops.items()} == {op: 1 for op in OPERATIONS}


def test_a_change_that_cuts_ssh_off_is_rolled_back_by_a_systemd_timer(deployed, tmp_path):
    """The dead-man's switch on systemd: the timer is a transient unit (systemd-run), not a process."""
    host = deployed["host"]
    # overrides group_data/vagrant.py: the controller's network is no longer a management subnet
    (tmp_path / "vagrant.py").write_text(
        "management_subnets = ['192.168.56.0/24']\nallow_lockout_risk = True\nrollback_seconds = 20\n"
    )
    cut = deploy("--group-data", str(tmp_path), inventory="inventories/vagrant.py")
    assert cut.returncode != 0
    log = host.file("/var/lib/zimbra-firewall/rollbacks.log")
    deadline = time.monotonic() + 180
    # the restore writes its log line last, once ufw has reloaded the old rules
    while not log.exists:
        assert time.monotonic() < deadline, "the rollback did not fire"
        time.sleep(5)
    assert "restored the ufw rules" in log.content_string
    assert answering(deployed, deployed["management"]) == PUBLIC | LOCAL_ONLY
    assert "-- No entries --" not in host.check_output("journalctl --no-pager -u zimbra-firewall-rollback.service")
    again = deploy(inventory="inventories/vagrant.py")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "ROLLBACK happened" in again.stdout + again.stderr


def test_audit_after_the_rollback_is_clean_and_names_it(deployed, tmp_path):
    """Runs after the rollback test. Vagrant's user reads through sudo, which drops $SSH_CONNECTION: the read
    still finds the controller's address, so the active check runs, and agrees with the rules."""
    report = tmp_path / "audit.json"
    command = [os.path.join(os.path.dirname(sys.executable), "pyinfra"), "-y", "inventories/vagrant.py", "audit.py"]
    command += ["--data", f"audit_json={report}", "--data", "audit_probe=true"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    node = json.loads(report.read_text())["nodes"][0]
    assert node["findings"] == [] and node["ufw"]["active"]
    assert "restored the ufw rules" in node["rollback"]["last"] and not node["rollback"]["armed"]
    probed = [s for s in node["sockets"] if s["probe"]]
    assert probed and all(s["probe"]["agrees"] for s in probed)
    assert {s["port"] for s in probed if s["probe"]["observed"] == "open"} >= {22, 25, 7071}


def test_a_restart_while_armed_comes_back_with_the_snapshots_rules(deployed):
    """A change left unconfirmed by a restart (here: armed by hand, a rule added, then `systemctl reboot`):
    the unit the arm installed restores ufw's files before ufw.service loads them, so the unconfirmed rule is
    not in force after the boot; the next deploy reports it and converges."""
    from zimbra_firewall.safety import Switch

    host = deployed["host"]
    rules = "iptables-save | sed -e '/^#/d' -e 's/ \\[[0-9]*:[0-9]*\\]$//'; cat /etc/ufw/user.rules"
    before = host.check_output(rules)
    host.check_output(shlex.join(["sh", "-c", *Switch.new().arm_arguments(600)]))
    host.check_output("ufw allow 9999/tcp")
    assert "9999" in host.check_output(rules)
    host.run("systemctl reboot")
    time.sleep(10)
    deadline = time.monotonic() + 600
    while True:
        try:
            back = fresh_host(deployed["ssh_config"])
            if back.run("true").rc == 0:
                break
        except Exception:  # the VM is still booting
            pass
        assert time.monotonic() < deadline, "the VM did not come back"
        time.sleep(5)
    assert back.check_output(rules) == before
    assert back.check_output("ufw status").startswith("Status: active")
    assert not back.file("/var/lib/zimbra-firewall/armed").exists
    assert (
        "the host restarted before the change was confirmed"
        in back.file("/var/lib/zimbra-firewall/rollbacks.log").content_string
    )
    again = deploy(inventory="inventories/vagrant.py")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "ROLLBACK happened" in again.stdout + again.stderr


def fresh_host(ssh_config):
    """A testinfra host on a new SSH connection (testinfra.get_host would hand back its cached, dead one)."""
    backend = testinfra.backend.get_backend("paramiko://zimbra", ssh_config=ssh_config, sudo=True)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host
