"""The deploy on a real VM (own kernel, systemd, boot): one Zimbra VM of the Vagrantfile with the stand-in,
driven by python-vagrant. Run by `make vm-test` inside the VM lab's namespace (python -m lab vms run);
the namespace side is both the controller (management network) and, from a second address, the internet.
"""

import pytest
from support import LOCAL_ONLY, OPERATIONS, PUBLIC, ZIMBRA_FQDN
from vm_support import (
    OUTSIDE,
    ROLLBACK_LOG,
    answering,
    arm_change_and_reboot,
    audited_node,
    cut_off_and_wait_for_the_rollback,
    deploy_vm,
    first_deploy,
    zimbra_vm,
)


@pytest.fixture(scope="module")
def vm():
    with zimbra_vm() as booted:
        yield booted


@pytest.fixture(scope="module")
def deployed(vm):
    return first_deploy(vm)


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
    again = deploy_vm()
    assert again.returncode == 0, again.stdout + again.stderr
    assert {op: r["no_change"] for op, r in again.ops.items()} == {op: 1 for op in OPERATIONS}


def test_a_change_that_cuts_ssh_off_is_rolled_back_by_a_systemd_timer(deployed, tmp_path):
    """The dead-man's switch on systemd: the timer is a transient unit (systemd-run), not a process."""
    assert "restored the ufw rules" in cut_off_and_wait_for_the_rollback(deployed, tmp_path)
    assert answering(deployed, deployed["management"]) == PUBLIC | LOCAL_ONLY
    again = deploy_vm()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "ROLLBACK happened" in again.stdout + again.stderr


def test_audit_after_the_rollback_is_clean_and_names_it(deployed, tmp_path):
    """Runs after the rollback test. Vagrant's user reads through sudo, which drops $SSH_CONNECTION: the read
    still finds the controller's address, so the active check runs, and agrees with the rules."""
    node = audited_node(tmp_path)
    assert node["findings"] == [] and node["ufw"]["active"]
    assert "restored the ufw rules" in node["rollback"]["last"] and not node["rollback"]["armed"]
    probed = [s for s in node["sockets"] if s["probe"]]
    assert probed and all(s["probe"]["agrees"] for s in probed)
    assert {s["port"] for s in probed if s["probe"]["observed"] == "open"} >= {22, 25, 7071}


def test_a_restart_while_armed_comes_back_with_the_snapshots_rules(deployed):
    """A change left unconfirmed by a restart (here: armed by hand, a rule added, then `systemctl reboot`):
    the unit the arm installed restores ufw's files before ufw.service loads them, so the unconfirmed rule is
    not in force after the boot; the next deploy reports it and converges."""
    rules = "iptables-save | sed -e '/^#/d' -e 's/ \\[[0-9]*:[0-9]*\\]$//'; cat /etc/ufw/user.rules"
    before = deployed["host"].check_output(rules)
    back = arm_change_and_reboot(deployed, "ufw allow 9999/tcp")
    assert back.check_output(rules) == before
    assert back.check_output("ufw status").startswith("Status: active")
    assert not back.file("/var/lib/zimbra-firewall/armed").exists
    assert "the host restarted before the change was confirmed" in back.file(ROLLBACK_LOG).content_string
    again = deploy_vm()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "ROLLBACK happened" in again.stdout + again.stderr
