"""What the VM test modules share: the Zimbra VM of the Vagrantfile brought up (with the firewall a module asks
for) and destroyed, probes from this side, the rollback and reboot steps, the audit's JSON."""

import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

import testinfra
import testinfra.backend
import testinfra.host
import vagrant
from support import REPO, deploy

from scripts.reachability import catalogue_specs
from zimbra_firewall.safety import Switch

PROBE = os.path.join(REPO, "lab/guest/probe.py")
# an address of this side standing for the internet: outside every subnet of group_data/vagrant.py
OUTSIDE = "192.168.57.1"
ROLLBACK_LOG = "/var/lib/zimbra-firewall/rollbacks.log"


@contextlib.contextmanager
def zimbra_vm(**settings: str):
    """`vagrant up` of the Zimbra VM (stand-in provisioned; `settings`: the Vagrantfile's ZFW_* variables);
    destroyed on leaving whatever happens."""
    machine = vagrant.Vagrant(root=REPO, quiet_stdout=False, quiet_stderr=False, env=dict(os.environ, **settings))
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


def deploy_vm(*args):
    return deploy(*args, inventory="inventories/vagrant.py")


def first_deploy(vm) -> dict:
    """What the internet reached before, then the first deploy, which must succeed: the VM's dict with both."""
    before = answering(vm, OUTSIDE)
    first = deploy_vm()
    assert first.returncode == 0, first.stdout + first.stderr
    return {**vm, "first": first, "before": before}


def cut_off_and_wait_for_the_rollback(vm, tmp_path) -> str:
    """A deploy that cuts SSH off (the controller's network no longer a management subnet, the preflight
    overridden) fails; the rollback's systemd timer fires: the log line it writes last, once the firewall's
    rules of before are in force."""
    (tmp_path / "vagrant.py").write_text(
        "management_subnets = ['192.168.56.0/24']\nallow_lockout_risk = True\nrollback_seconds = 20\n"
    )
    cut = deploy_vm("--group-data", str(tmp_path))
    assert cut.returncode != 0
    log = vm["host"].file(ROLLBACK_LOG)
    deadline = time.monotonic() + 180
    while not log.exists:
        assert time.monotonic() < deadline, "the rollback did not fire"
        time.sleep(5)
    assert "-- No entries --" not in vm["host"].check_output(
        "journalctl --no-pager -u zimbra-firewall-rollback.service"
    )
    return log.content_string


def arm_change_and_reboot(vm, change: str, firewall: str = "ufw"):
    """Arm the rollback by hand as a deploy does (for `firewall`), make `change`, then `systemctl reboot`:
    a testinfra host on a new connection once the VM is back."""
    vm["host"].check_output(shlex.join(["sh", "-c", *Switch.new().arm_arguments(600, firewall)]))
    vm["host"].check_output(change)
    vm["host"].run("systemctl reboot")
    time.sleep(10)
    deadline = time.monotonic() + 600
    while True:
        try:
            back = fresh_host(vm["ssh_config"])
            if back.run("true").rc == 0:
                return back
        except Exception:  # the VM is still booting
            pass
        assert time.monotonic() < deadline, "the VM did not come back"
        time.sleep(5)


def fresh_host(ssh_config):
    """A testinfra host on a new SSH connection (testinfra.get_host would hand back its cached, dead one)."""
    backend = testinfra.backend.get_backend("paramiko://zimbra", ssh_config=ssh_config, sudo=True)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host


def audited_node(tmp_path) -> dict:
    """The audit as a user runs it, with the controller's active check: the VM's node in its JSON."""
    report = tmp_path / "audit.json"
    command = [os.path.join(os.path.dirname(sys.executable), "pyinfra"), "-y", "inventories/vagrant.py", "audit.py"]
    command += ["--data", f"audit_json={report}", "--data", "audit_probe=true"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(report.read_text())["nodes"][0]
