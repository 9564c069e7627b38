"""What a run will change on one node, in the words an admin would type: said per node before anything
changes (with --dry, and at the top of a real run). Pure: ufw's state as read, the node's policy and
Zimbra's memcached attributes as they are in; lines out. The same planners as the operations', so the plan
cannot differ from what runs."""

import shlex
from collections.abc import Iterable, Mapping

from zimbra_firewall import firewalld
from zimbra_firewall.firewalld import State
from zimbra_firewall.firewalld_policy import arguments as firewalld_arguments
from zimbra_firewall.policy import Policy
from zimbra_firewall.ufw import (
    PROFILE_PATH,
    changes_pending,
    plan_defaults,
    plan_profiles,
    plan_rules,
    profile_file_ports,
)
from zimbra_firewall.ufw_policy import rule_arguments
from zimbra_firewall.zimbra import memcached_change

ZMPROV = "/opt/zimbra/bin/zmprov"


def node_plan(
    state: Mapping | State,
    policy: Policy,
    memcached: Mapping[str, Iterable[str]],
    refused: str = "",
    firewall: str = "ufw",
) -> list[str]:
    """state: the backend's state fact (facts.ufw.UfwState's, facts.firewalld.FirewalldState's); memcached: the
    node's memcached attributes as Zimbra has them; refused: why the preflight refuses the node (then nothing
    else is planned); firewall: the host's backend."""
    if firewall == "firewalld" and not refused:
        assert isinstance(state, State)
        refused = "; ".join(firewalld.problems(state, **firewalld_arguments(policy)))
    if refused:
        return [f"nothing: the preflight refuses this host ({refused})"]
    if firewall == "firewalld":
        assert isinstance(state, State)
        lines = firewalld_lines(state, policy)
    else:
        assert not isinstance(state, State)
        lines = ufw_lines(state, policy)
    change = memcached_change(memcached, policy.memcached)
    if change.arguments:
        lines.append(shlex.join([ZMPROV, "-l", "ms", policy.server, *change.arguments]))
        lines += ["zmmemcachedctl restart"] if change.restart else []
        lines += [shlex.join([ZMPROV, "rmcc", policy.server])] if change.reload_clients else []
    return lines


def rollback_line(policy: Policy, what: str) -> str:
    return f"arm the rollback: {what} come back in {policy.rollback_seconds} s unless a new SSH connection gets through"


def ufw_lines(state: Mapping, policy: Policy) -> list[str]:
    lines = []
    if changes_pending(
        state, policy.profiles, rule_arguments(policy), policy.default_incoming, policy.default_outgoing
    ):
        lines.append(rollback_line(policy, "ufw's files and the kernel's rules"))
    if plan_profiles(state["profiles"], policy.profiles) is not None:
        replaced = sorted(set(profile_file_ports(state["profiles"] or "")) - {p.name for p in policy.profiles})
        written = "; ".join(f"[{p.name}] ports={p.ports}" for p in policy.profiles)
        lines.append(f"write {PROFILE_PATH}: {written}" + (f" (it held {', '.join(replaced)})" if replaced else ""))
        lines += [shlex.join(["ufw", "app", "update", p.name]) for p in policy.profiles]
    rules = plan_rules(state["rules"], **rule_arguments(policy), host_apps=state["apps"])
    lines += [shlex.join(["ufw", *rule]) for rule in rules.add]
    lines += [f"{_delete(rule)}   # no longer wanted" for rule in rules.delete_owned]
    for rule, ports in zip(rules.delete_widening, rules.opened, strict=True):
        lines.append(f"{_delete(rule)}   # opens {', '.join(str(p) for p in ports)} wider than the policy")
    lines += [f"{_delete(rule)}   # not this deploy's (purge_unmanaged_rules)" for rule in rules.delete_unmanaged]
    for value, direction in plan_defaults(state, policy.default_incoming, policy.default_outgoing):
        lines.append(f"ufw default {value} {direction}   # its files and kernel chains, without ufw's reload")
    if not state["active"]:
        lines.append("ufw --force enable")
    return lines


def firewalld_lines(state: State, policy: Policy) -> list[str]:
    if not firewalld.changes_pending(state, **firewalld_arguments(policy)):
        return []
    found = firewalld.plan(state, **firewalld_arguments(policy))
    lines = [rollback_line(policy, "firewalld's files (and, reloaded, its rules)")]
    for path in sorted(found.writes):
        zone = next((z for z in found.zones if z.path == path), None)
        if zone is None:
            lines.append(f"write {path}")
            continue
        why = [
            f"remove {entry.element} (opens {', '.join(map(str, ports)) or 'a named service'})"
            for entry, ports in zone.removed
        ]
        why += [f"remove {entry.element} (purge_unmanaged_rules)" for entry in zone.purged]
        why += [f"target {zone.target[1]}"] if zone.target[1] else []
        lines.append(f"write {path}: {'; '.join(why)}")
    lines += [f"rm {path}   # no longer wanted" for path in found.removes]
    lines.append("firewall-cmd --reload   # after firewall-cmd --check-config")
    return lines


def _delete(rule: tuple[str, ...]) -> str:
    return shlex.join(["ufw", "--force", "delete", *rule])
