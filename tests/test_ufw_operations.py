"""The ufw operations, state in → commands out (as pyinfra's own operation tests do): plain values, no
Zimbra, so any pyinfra deploy can use them; and the rollback's "will ufw change" agrees with them."""

import os
import shlex
import subprocess
from types import SimpleNamespace

import pytest
from pyinfra.context import ctx_host
from test_policy import policy

from facts.safety import Preflight, RollbackState
from facts.ufw import UfwState
from tasks import run, ufw
from tasks.safety import firewall_will_change, report_rollbacks
from zimbra_firewall.ufw import as_profiles, parse_state, render_profiles
from zimbra_firewall.ufw_policy import rule_arguments, ufw_rules

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "ufw")
LOCK = "flock -w 60 /run/xtables.lock true"
SSH = ("allow", "from", "10.0.0.0/8", "to", "any", "port", "22", "proto", "tcp")


def state(name, **changes):
    with open(os.path.join(FIXTURES, f"{name}.txt")) as f:
        return {**parse_state(f.read()), **changes}


class FakeHost:
    """What the operations use of pyinfra's host: its name, the UfwState fact and noop()."""

    def __init__(self, ufw_state):
        self.name = "web1"
        self.state = SimpleNamespace(is_executing=True)
        self.ufw_state = ufw_state
        self.rollback_state = {"unfinished": "", "armed": False, "log": ""}
        self.noops = []
        self.reads = 0

    def get_fact(self, fact, **_kwargs):
        if fact is RollbackState:
            return self.rollback_state
        if fact is Preflight:  # a ufw host
            return {"zimbra": True, "ufw": True, "firewalld": False, "firewalld_running": False}
        assert fact is UfwState
        self.reads += 1
        return self.ufw_state

    def noop(self, message):
        self.noops.append(message)


def commands(operation, ufw_state, **arguments):
    """The shell commands an operation yields on a host in this state: each step is ONE remote command, whose
    script is returned line by line after its `set -e` and its wait for the xtables lock."""
    fake = FakeHost(ufw_state)
    with ctx_host.use(fake):
        produced = [command.get_raw_value() for command in operation._inner(**arguments)]
    if not produced:
        return [], fake.noops
    assert len(produced) == 1, produced
    words = shlex.split(produced[0])
    assert words[:2] == ["sh", "-c"] and len(words) == 3, produced
    lines = words[2].split("\n")
    assert lines[0] == "set -e" and lines[1].startswith(f"{LOCK} ||"), lines[:2]
    return lines[2:], fake.noops


def test_an_operation_declared_as_changing_ufw_has_the_next_one_plan_against_ufw_as_it_left_it():
    fake = FakeHost(state("state-fresh"))  # inactive

    def enable_by_hand():  # an operation's body that enables ufw and says nothing to any cache
        fake.ufw_state = {**fake.ufw_state, "active": True}
        yield "ufw --force enable"

    with ctx_host.use(fake):
        assert ufw.current_state(60)["active"] is False
        list(enable_by_hand())
        # undeclared, the next operation plans against the read made before: it would enable ufw again
        assert [c.get_raw_value() for c in ufw.enabled._inner()] != [] and fake.reads == 1
        list(run.changes(UfwState)(enable_by_hand)())
        assert list(ufw.enabled._inner()) == [] and fake.noops == ["ufw is already active"] and fake.reads == 2
        # and one read serves every later operation
        assert list(ufw.enabled._inner()) == [] and fake.reads == 2


def test_a_web_server_gets_its_profile_written_and_loaded():
    produced, _ = commands(
        ufw.app_profiles, state("state-fresh"), profiles={"Web": "80,443/tcp"}, path="/etc/ufw/applications.d/web"
    )
    assert "\n".join(produced).startswith(
        "printf %s '# Managed by zimbra-firewall: edits are replaced on the next run.\n\n"
        "[Web]\ntitle=Web\ndescription=\nports=80,443/tcp\n' > /etc/ufw/applications.d/web\n"
    )
    text = render_profiles(as_profiles({"Web": "80,443/tcp"}))
    again, noops = commands(
        ufw.app_profiles,
        state("state-fresh", profiles=text.rstrip("\n")),
        profiles={"Web": "80,443/tcp"},
        path="/etc/ufw/applications.d/web",
    )
    assert again == [] and noops == ["ufw profiles in /etc/ufw/applications.d/web are up to date"]


@pytest.mark.parametrize("fails", [False, True, "no ufw"])
def test_the_profile_update_runs_ufws_own_script_isolated_and_a_failure_puts_the_file_back(tmp_path, fails):
    """Run in a shell where `ufw` is a stand-in whose #! interpreter records its arguments (no firewall is
    touched): ufw's interpreter, isolated (-I), runs ufw's script with `app update NAME`; when that fails, the
    profile file reads as before, so the next run makes the change again."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_python, record = tmp_path / "python", tmp_path / "args"
    fake_ufw = (tmp_path if fails == "no ufw" else bin_dir) / "ufw"  # not where the shell looks: no ufw found
    fake_python.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\nexit {int(bool(fails))}\n')
    fake_ufw.write_text(f"#! {fake_python}\n")
    for script in (fake_python, fake_ufw):
        script.chmod(0o755)
    profile = tmp_path / "web"
    profile.write_text("old text\n")
    lines, _ = commands(
        ufw.app_profiles, state("state-fresh", profiles="old text"), profiles={"Web": "80/tcp"}, path=str(profile)
    )
    shell = subprocess.run(
        ["sh", "-c", "set -e\n" + "\n".join(lines)],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    if fails != "no ufw":
        arguments = record.read_text().splitlines()
        assert arguments[:2] == ["-I", "-c"] and arguments[2] == ufw.APP_UPDATE
        assert arguments[3:] == [str(fake_ufw), "app", "update", "Web"]
    assert (shell.returncode, profile.read_text()) == (
        (1, "old text\n") if fails else (0, render_profiles(as_profiles({"Web": "80/tcp"})))
    )


def test_rules_are_added_tagged_and_what_widens_a_restriction_is_deleted():
    current = state(
        "state-fresh",
        rules=[
            ("allow", "5432/tcp"),  # someone opened the database to the world
            ("allow", "from", "10.1.0.0/16", "to", "any", "port", "5432", "proto", "tcp"),  # within the restriction
            ("allow", "from", "192.0.2.0/24", "to", "any", "app", "Web", "comment", "web-fw"),  # owned, not wanted
        ],
    )
    arguments = dict(
        rules=[SSH, ("allow", "Web")],
        owner="web-fw",
        restrictions={"5432/tcp": ["10.1.0.0/16"]},
        apps={"Web": "80,443/tcp"},
    )
    produced, _ = commands(ufw.rules, current, **arguments)
    assert produced == [
        "LC_ALL=C ufw allow from 10.0.0.0/8 to any port 22 proto tcp comment web-fw",
        "LC_ALL=C ufw allow Web comment web-fw",
        "LC_ALL=C ufw --force delete allow from 192.0.2.0/24 to any app Web comment web-fw",
        "LC_ALL=C ufw --force delete allow 5432/tcp",
    ]
    as_wanted = state(
        "state-fresh", rules=[(*SSH, "comment", "web-fw"), ("allow", "Web", "comment", "web-fw"), current["rules"][1]]
    )
    assert commands(ufw.rules, as_wanted, **arguments) == ([], ["ufw rules are as wanted"])
    purged, _ = commands(ufw.rules, as_wanted, **arguments, purge=True)
    assert purged == ["LC_ALL=C ufw --force delete allow from 10.1.0.0/16 to any port 5432 proto tcp"]


def test_defaults_and_enabling_change_only_what_differs():
    fresh = state("state-fresh")
    produced, _ = commands(ufw.default_policy, fresh, incoming="reject", outgoing="allow")
    # what `ufw default reject incoming` writes, and the kernel's policy chains in one transaction per family:
    # never `ufw default` itself, which disables and enables an active firewall
    assert produced[1] == "sed -i 's/^DEFAULT_INPUT_POLICY=.*/DEFAULT_INPUT_POLICY=\"REJECT\"/' /etc/default/ufw"
    assert [line.split(" then ")[1].split(" | ")[1] for line in produced if line.startswith("if ")] == [
        "iptables-restore -n -w 60; fi",
        "ip6tables-restore -n -w 60; fi",
    ]
    assert "'-A ufw-reject-input -j REJECT' '-A ufw-skip-to-policy-input -j REJECT' COMMIT" in produced[3]
    assert not any("ufw default" in line or "reload" in line for line in produced)
    assert produced[-1].endswith('LC_ALL=C ufw logging "${level:-low}" >/dev/null')
    assert commands(ufw.default_policy, fresh, incoming="deny", outgoing="allow")[0] == []
    assert commands(ufw.enabled, fresh)[0] == ["LC_ALL=C ufw --force enable"]
    assert commands(ufw.enabled, state("state-fresh", active=True)) == ([], ["ufw is already active"])


def test_bad_values_are_refused_before_anything_runs():
    from pyinfra.api import OperationValueError

    for operation, arguments in [
        (ufw.rules, dict(rules=[SSH], owner="x'; ufw disable")),
        (ufw.rules, dict(rules=[()], owner="web-fw")),
        (ufw.default_policy, dict(incoming="drop")),
        (ufw.app_profiles, dict(profiles={})),
    ]:
        with pytest.raises(OperationValueError):
            commands(operation, state("state-fresh"), **arguments)


@pytest.mark.parametrize("fixture", ["state-fresh", "state-deployed-and-drift"])
@pytest.mark.parametrize("overrides", [{}, {"purge_unmanaged_rules": True}, {"default_outgoing": "deny"}])
def test_the_rollback_is_armed_exactly_when_an_operation_would_change_ufw(fixture, overrides):
    p = policy(management_subnets=["10.77.1.0/24", "fd5a:7e3c:91b2:1::/64"], **overrides)
    current = state(fixture)
    would_change = any(
        commands(operation, current, **arguments)[0]
        for operation, arguments in [
            (ufw.app_profiles, dict(profiles=p.profiles)),
            (ufw.rules, rule_arguments(p)),
            (ufw.default_policy, dict(incoming=p.default_incoming, outgoing=p.default_outgoing)),
            (ufw.enabled, {}),
        ]
    )
    fake = FakeHost(current)
    with ctx_host.use(fake):
        assert firewall_will_change(p) is would_change is True  # both fixtures differ from the policy somewhere


def converged(p):
    """ufw's state once the policy `p` is in force."""
    return state(
        "state-fresh",
        active=True,
        rules=[(*rule, "comment", p.comment) for rule in ufw_rules(p)],
        profiles=render_profiles(p.profiles).rstrip("\n"),
    )


def test_a_converged_firewall_arms_no_rollback_and_no_operation_changes_anything():
    p = policy(management_subnets=["10.77.1.0/24", "fd5a:7e3c:91b2:1::/64"])
    for operation, arguments in [
        (ufw.app_profiles, dict(profiles=p.profiles)),
        (ufw.rules, rule_arguments(p)),
        (ufw.default_policy, dict(incoming=p.default_incoming, outgoing=p.default_outgoing)),
        (ufw.enabled, {}),
    ]:
        assert commands(operation, converged(p), **arguments)[0] == []
    fake = FakeHost(converged(p))
    with ctx_host.use(fake):
        assert firewall_will_change(p) is False


def test_after_a_recovery_of_an_earlier_rollback_the_arm_decides_on_the_firewall_as_the_recovery_left_it():
    p = policy(management_subnets=["10.77.1.0/24", "fd5a:7e3c:91b2:1::/64"])
    fake = FakeHost(converged(p))  # read while deploy.py loads: the unconfirmed change, as the policy wants it
    fake.rollback_state = {"unfinished": "stale-arm", "armed": False, "log": ""}
    with ctx_host.use(fake):
        run.prefetch([(UfwState, {"profile_path": ufw.PROFILE_PATH, "lock_wait": 60})])
        recovery = list(report_rollbacks._inner())
        assert recovery and fake.reads == 1
        fake.ufw_state = state("state-fresh")  # the recovery put back the snapshot of before: ufw inactive
        assert firewall_will_change(p) is True and fake.reads == 2
