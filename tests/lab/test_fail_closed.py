"""Fail closed: no ufw step and no rollback ever opens the host, even for a moment, and the rollback never
races the deploy. A prober in `outside` and in `mgmt` connects every 10 ms, over IPv4 and IPv6, to ports that
both the old and the new policy close, and to one each keeps open, while the change runs."""

import contextlib
import json
import subprocess
import sys
import time
import uuid

import pytest
from support import OPERATIONS, REPO, deploy
from test_safety import group_data, ssh_works, wait_for_rollback

from lab import client
from zimbra_firewall.safety import STATE_DIR, Switch

V4, V6 = "10.77.0.10", "fd5a:7e3c:91b2::a"


def both_families(ports, v4=V4, v6=V6):
    return [f"{v4}:{port}" for port in ports] + [f"[{v6}]:{port}" for port in ports]


# who probes what on the single server: ports closed to that viewer before and after every change below, and
# one it may reach
SINGLE = {
    "outside": {"closed": both_families([7071, 389, 11211, 22]), "open": both_families([25])},
    "mgmt": {"closed": both_families([7072, 11211, 8443]), "open": both_families([22])},
}


@contextlib.contextmanager
def probing(plan=SINGLE):
    """Probers in each viewer of `plan` for the length of the block; yields the dict their reports fill."""
    stop = f"/tmp/stop-prober-{uuid.uuid4().hex[:8]}"
    runs = {
        viewer: subprocess.Popen(
            [sys.executable, "-m", "lab", "exec", viewer, "--", "python3", "/opt/lab/prober.py", "--stop", stop]
            + targets["closed"]
            + targets["open"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for viewer, targets in plan.items()
    }
    reports = {}
    time.sleep(1.0)  # every prober has its first answers before the change begins
    try:
        yield reports
    finally:
        time.sleep(1.0)  # and after it
        for viewer, run in runs.items():
            client.run(viewer, "touch", stop)
            reports[viewer] = json.loads(run.communicate(timeout=60)[0])


def assert_nothing_opened(reports, what, plan=SINGLE):
    """No connect to a closed port got through; every open one answered; the numbers said."""
    for viewer, report in reports.items():
        counts = report["targets"]
        tried = sum(c["tried"] for c in counts.values())
        opened = {t: counts[t]["connected"] for t in plan[viewer]["closed"]}
        print(f"{what}: {viewer} tried {tried} connects in {report['seconds']} s; through to closed ports: {opened}")
        assert all(n == 0 for n in opened.values()), (viewer, opened)
        for target in plan[viewer]["open"]:
            assert counts[target]["connected"] > 0, (viewer, target, counts[target])


def kernel_rules():
    """The kernel's rules of both families, without counters: what a restore must put back exactly."""
    normalize = "sed -e '/^#/d' -e 's/ \\[[0-9]*:[0-9]*\\]$//'"
    return client.run("zimbra", "sh", "-c", f"iptables-save | {normalize}; ip6tables-save | {normalize}").stdout


def ufw_files():
    return client.run("zimbra", "sh", "-c", "cat /etc/ufw/user.rules /etc/ufw/user6.rules /etc/default/ufw").stdout


def arm_by_hand(seconds):
    """The dead-man's switch armed as a deploy arms it, with this repository's scripts: its Switch."""
    switch = Switch.new()
    client.run("zimbra", "sh", "-c", *switch.arm_arguments(seconds))
    return switch


@pytest.fixture
def deployed():
    client.lab("down")
    client.lab("up")
    result = deploy()
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_the_prober_sees_the_moment_ufw_reload_opens_the_host(deployed):
    """The witness can fail: `ufw reload` (disable, then enable) lets the world in for seconds."""
    with probing() as reports:
        client.run("zimbra", "ufw", "reload")
    opened = reports["outside"]["targets"][f"{V4}:7071"]["connected"]
    print(f"ufw reload: {opened} connects from outside to 7071 got through")
    assert opened > 0


def test_a_restore_of_an_active_firewall_opens_nothing_and_puts_the_kernel_back_exactly(deployed):
    before = (kernel_rules(), ufw_files())
    arm_by_hand(5)
    client.run("zimbra", "ufw", "allow", "from", "10.77.2.0/24", "to", "any", "port", "8080", "proto", "tcp")
    assert kernel_rules() != before[0]
    with probing() as reports:
        wait_for_rollback()
    assert_nothing_opened(reports, "restore of an active firewall")
    assert (kernel_rules(), ufw_files()) == before
    log = client.run("zimbra", "cat", f"{STATE_DIR}/rollbacks.log").stdout
    assert "restored the ufw rules and policies of" in log and "FAILED" not in log


def ufw_chains():
    """The filter table's ufw chains and their rules, without counters."""
    rules = client.run("zimbra", "iptables-save", "-t", "filter").stdout.splitlines()
    return [line.split(" [")[0] for line in rules if line.startswith((":ufw", "-A ufw"))]


def test_a_restore_leaves_other_programs_rules_of_meanwhile_and_drops_ufw_files_made_since(deployed):
    before = ufw_chains()
    arm_by_hand(5)
    client.run("zimbra", "ufw", "allow", "8080/tcp")
    # what fail2ban does while the change waits for its confirmation: its own chain, a ban, a hook in INPUT
    ban = "iptables -N f2b-sshd && iptables -A f2b-sshd -s 10.77.2.99 -j REJECT && iptables -I INPUT -j f2b-sshd"
    client.run("zimbra", "sh", "-c", ban)
    client.run("zimbra", "sh", "-c", "printf '[Extra]\\nports=7071/tcp\\n' > /etc/ufw/applications.d/extra")
    wait_for_rollback()
    assert ufw_chains() == before
    kernel = client.run("zimbra", "iptables-save", "-t", "filter").stdout
    assert "-A f2b-sshd -s 10.77.2.99/32 -j REJECT" in kernel and "-A INPUT -j f2b-sshd" in kernel
    assert client.run("zimbra", "test", "-e", "/etc/ufw/applications.d/extra", check=False).returncode == 1
    log = client.run("zimbra", "cat", f"{STATE_DIR}/rollbacks.log").stdout
    assert "restored the ufw rules and policies of" in log and "FAILED" not in log


def test_a_default_policy_change_on_an_active_firewall_opens_nothing_and_is_what_ufw_default_gives(deployed):
    for policy in ("reject", "deny"):
        with probing() as reports:
            result = deploy("--data", f"default_incoming={policy}")
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert result.ops["ufw default policies"]["success"] == 1
        assert_nothing_opened(reports, f"default incoming {policy}")
        assert f"Default: {policy} (incoming)" in client.run("zimbra", "ufw", "status", "verbose").stdout
        # the kernel and the files are what ufw itself makes of them: a reload (now, with no prober) changes nothing
        ours = (kernel_rules(), ufw_files())
        client.run("zimbra", "ufw", "reload")
        assert (kernel_rules(), ufw_files()) == ours


def test_a_deploy_that_adds_and_removes_rules_opens_nothing(deployed):
    for nodes in (["10.77.3.0/24", "fd5a:7e3c:91b2:3::/64"], []):
        with probing() as reports:
            result = deploy("--group-data", group_data(zimbra_nodes=nodes))
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert result.ops["ufw rules added" if nodes else "ufw rules removed"]["success"] == 1
        assert_nothing_opened(reports, f"rules for zimbra_nodes {nodes}")


def test_arm_fails_the_host_untouched_when_the_kernels_rules_cannot_be_read():
    client.lab("down")
    client.lab("up")
    broken = "printf '#!/bin/sh\\necho broken >&2; exit 1\\n' > /usr/sbin/iptables-save"
    client.run("zimbra", "sh", "-c", f"mv /usr/sbin/iptables-save /usr/sbin/iptables-save.real && {broken}")
    client.run("zimbra", "chmod", "755", "/usr/sbin/iptables-save")
    before = (ufw_files(), client.run("zimbra", "ufw", "status").stdout)
    result = deploy()
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "cannot read the kernel's IPv4 rules (iptables-save: broken); nothing was changed" in output
    assert (ufw_files(), client.run("zimbra", "ufw", "status").stdout) == before
    assert client.run("zimbra", "test", "-e", f"{STATE_DIR}/armed", check=False).returncode == 1
    client.run("zimbra", "mv", "/usr/sbin/iptables-save.real", "/usr/sbin/iptables-save")
    assert deploy().returncode == 0


def test_the_rollback_firing_mid_deploy_stops_that_host_and_the_other_finishes(tmp_path):
    """A step held back (here by another program's xtables lock) past rollback_seconds: the restore waits for
    the step or goes first, puts the firewall back, and the next step finds the arm gone: the host stops,
    saying so. pyinfra runs each step on every host before the next, so the other host, waiting too, has a
    longer timer (its own host data)."""
    client.lab("down")
    client.lab("up", "--zimbra-hosts", "2")
    inventory = tmp_path / "lab.py"  # the lab's inventory (group "lab"), zimbra-2 with a timer of its own
    inventory.write_text(
        f"import sys\nsys.path.insert(0, {REPO!r})\nfrom inventories.lab import zimbra_servers as _lab\n"
        "zimbra_servers = [(n, {**d, 'rollback_seconds': 120} if n == 'zimbra-2' else d) for n, d in _lab]\n"
    )
    before = (ufw_files(), client.run("zimbra", "ufw", "status").stdout)
    # once this run has armed the first host, hold the xtables lock there for longer than its timer
    client.run(
        "zimbra",
        "sh",
        "-c",
        f"(while [ ! -s {STATE_DIR}/armed/token ]; do sleep 0.05; done; flock /run/xtables.lock sleep 12) "
        "</dev/null >/dev/null 2>&1 &",
    )
    result = deploy("--group-data", group_data(rollback_seconds=5), inventory=str(inventory))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    stopped = [line for line in output.splitlines() if "the rollback fired at " in line]
    assert stopped and all(line.strip().startswith("[zimbra] ") for line in stopped), stopped
    assert "the firewall is back as it was; nothing more was changed" in stopped[0]
    assert result.ops["Rollback armed"]["success"] == 2
    # zimbra-2 finished; zimbra stopped (pyinfra counts a stopped host an error in every step after)
    assert result.ops["Rollback disarmed"] == {"hosts": 2, "success": 1, "error": 1, "no_change": 0}
    assert ssh_works()
    assert (ufw_files(), client.run("zimbra", "ufw", "status").stdout) == before
    rerun = deploy()
    assert rerun.returncode == 0 and "ROLLBACK happened" in rerun.stdout + rerun.stderr


def stop_the_timer():
    """Kill the dead-man's switch's timer process (no systemd in the lab: a detached process)."""
    pid = client.run("zimbra", "cat", f"{STATE_DIR}/armed/timer").stdout.strip()
    client.run("zimbra", "sh", "-c", f"kill -9 -- -{pid} 2>/dev/null || kill -9 {pid}")


def test_an_arm_whose_timer_is_gone_is_restored_by_the_next_run(deployed):
    before = (kernel_rules(), ufw_files())
    arm_by_hand(600)
    client.run("zimbra", "ufw", "allow", "9999/tcp")
    stop_the_timer()
    result = deploy()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "an earlier change was never confirmed and its rollback timer is gone" in output
    assert (kernel_rules(), ufw_files()) == before
    again = deploy()
    assert (
        "ROLLBACK happened" in again.stdout + again.stderr and "the next run restored it" in again.stdout + again.stderr
    )
    assert all(r["no_change"] == 1 for op, r in again.ops.items() if op != "Earlier rollbacks")


def test_a_restore_cut_short_after_the_files_is_finished_by_the_next_run(deployed):
    before = (kernel_rules(), ufw_files())
    arm_by_hand(600)
    client.run("zimbra", "ufw", "allow", "9999/tcp")
    stop_the_timer()
    # what a restore killed right after writing ufw's files leaves: the files back, the kernel not
    snapshot = f"{STATE_DIR}/restoring/snapshot.tar"
    client.run("zimbra", "sh", "-c", f"mv {STATE_DIR}/armed {STATE_DIR}/restoring && tar -C / -xf {snapshot}")
    assert ufw_files() == before[1] and "9999" in kernel_rules()
    result = deploy()
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "an earlier restore was cut short: finishing it" in result.stdout + result.stderr
    assert (kernel_rules(), ufw_files()) == before
    assert {op: r["no_change"] for op, r in deploy().ops.items()} == {
        op: 0 if op == "Earlier rollbacks" else 1 for op in OPERATIONS
    }


def test_a_restore_that_fails_says_so_now_and_the_next_run_reports_it_as_a_failure(deployed):
    arm_by_hand(600)
    client.run("zimbra", "ufw", "allow", "9999/tcp")
    stop_the_timer()
    # a snapshot the kernel refuses: the restore's transaction fails whole, and the kernel keeps its rules
    client.run(
        "zimbra",
        "sed",
        "-i",
        "/^\\*filter/,/^COMMIT$/s/^COMMIT$/-A ufw-user-input -j NO-SUCH-CHAIN\\nCOMMIT/",
        f"{STATE_DIR}/armed/iptables.rules",
    )
    result = deploy()
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "FAILED to restore the ufw rules and policies of" in output and "iptables-restore failed" in output
    assert ssh_works() and "9999" in kernel_rules()
    again = deploy()
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "ROLLBACK FAILED: " in again.stdout + again.stderr
