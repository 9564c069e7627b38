"""The deploy on a real VM running firewalld (the Vagrantfile's ZFW_FIREWALL=firewalld: the box's firewalld
started and enabled, ufw off, as on the RHEL family), with its own kernel, systemd and boot: the same
reachability as the ufw VM, the rollback by a systemd timer, and a restart while armed, where the boot unit
must put firewalld's files back before firewalld.service loads them."""

import pytest
from support import FIREWALLD_OPERATIONS, LOCAL_ONLY, PUBLIC
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

# every file of firewalld's permanent configuration, with its content
FIREWALLD_FILES = "cd /etc/firewalld && find . -type f | sort | xargs sha256sum"


@pytest.fixture(scope="module")
def vm():
    with zimbra_vm(ZFW_FIREWALL="firewalld") as booted:
        yield booted


@pytest.fixture(scope="module")
def deployed(vm):
    return first_deploy(vm)


def test_the_deploy_found_firewalld_and_changed_it_with_one_reload(deployed):
    assert {"7071/tcp", "22/tcp"} <= deployed["before"]  # the box's zone: the stand-in's listeners open to all
    assert {op: r["success"] for op, r in deployed["first"].ops.items()} == {
        op: 0 if op in ("Preflight", "Earlier rollbacks") else 1 for op in FIREWALLD_OPERATIONS
    }


def test_the_internet_and_the_management_network_reach_what_they_reach_on_the_ufw_vm(deployed):
    assert answering(deployed, OUTSIDE) == PUBLIC
    assert answering(deployed, deployed["management"]) == PUBLIC | LOCAL_ONLY


def test_the_owned_policy_is_permanent_in_force_and_firewalld_starts_on_boot(deployed):
    host = deployed["host"]
    assert host.service("firewalld").is_enabled and host.service("firewalld").is_running
    in_force = host.check_output("firewall-cmd --info-policy zimbra-firewall")
    assert "services: zimbra-public" in in_force
    assert 'rule family="ipv4" source address="192.168.56.0/24" service name="zimbra-local" accept' in in_force
    # nothing lives in the runtime alone, to vanish at the next reload or boot
    assert in_force == host.check_output("firewall-cmd --permanent --info-policy zimbra-firewall")


def test_second_run_changes_nothing(deployed):
    again = deploy_vm()
    assert again.returncode == 0, again.stdout + again.stderr
    assert {op: r["no_change"] for op, r in again.ops.items()} == {op: 1 for op in FIREWALLD_OPERATIONS}


def test_a_restart_while_armed_comes_back_with_the_snapshots_configuration(deployed):
    """Armed by hand as a deploy arms it, a port added to the permanent zone, then `systemctl reboot`: the unit
    the arm installed puts firewalld's files back before firewalld.service starts from them, so the port is
    neither in the files nor in force after the boot; the next deploy reports it and converges."""
    before = deployed["host"].check_output(FIREWALLD_FILES)
    back = arm_change_and_reboot(deployed, "firewall-cmd -q --permanent --add-port=9999/tcp", "firewalld")
    assert back.check_output(FIREWALLD_FILES) == before
    assert back.service("firewalld").is_running
    assert "9999" not in back.check_output("firewall-cmd --list-all")
    assert not back.file("/var/lib/zimbra-firewall/armed").exists
    assert "the host restarted before the change was confirmed" in back.file(ROLLBACK_LOG).content_string
    again = deploy_vm()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "ROLLBACK happened" in again.stdout + again.stderr


def test_a_change_that_cuts_ssh_off_is_rolled_back_by_a_systemd_timer(deployed, tmp_path):
    assert "restored firewalld's configuration" in cut_off_and_wait_for_the_rollback(deployed, tmp_path)
    assert answering(deployed, deployed["management"]) == PUBLIC | LOCAL_ONLY
    again = deploy_vm()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "ROLLBACK happened" in again.stdout + again.stderr


def test_audit_after_the_rollback_judges_firewalld_clean_and_the_probe_agrees(deployed, tmp_path):
    node = audited_node(tmp_path)
    # Debian's zone keeps dhcpv6-client (the deploy keeps what opens no restricted port), and this VM runs no
    # DHCPv6 client: a true warning, nothing failing
    assert node["firewall"] == "firewalld"
    assert [(f["verdict"], f["port"]) for f in node["findings"]] == [("rule without listener", "546/udp")]
    assert "restored firewalld's configuration" in node["rollback"]["last"] and not node["rollback"]["armed"]
    probed = [s for s in node["sockets"] if s["probe"]]
    assert probed and all(s["probe"]["agrees"] for s in probed)
    assert {s["port"] for s in probed if s["probe"]["observed"] == "open"} >= {22, 25, 7071}
