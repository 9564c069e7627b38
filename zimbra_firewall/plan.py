"""What a run will change on one node, in the words an admin would type: said per node before anything
changes (with --dry, and at the top of a real run). Pure: ufw's state as read, the node's policy and
Zimbra's memcached attributes as they are in; lines out. The same planners as the operations', so the plan
cannot differ from what runs."""

import shlex
from collections.abc import Iterable, Mapping

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


def node_plan(state: Mapping, policy: Policy, memcached: Mapping[str, Iterable[str]], refused: str = "") -> list[str]:
    """state: facts.ufw.UfwState's; memcached: the node's memcached attributes as Zimbra has them;
    refused: why the preflight refuses the node (then nothing else is planned)."""
    if refused:
        return [f"nothing: the preflight refuses this host ({refused})"]
    lines = []
    if changes_pending(
        state, policy.profiles, rule_arguments(policy), policy.default_incoming, policy.default_outgoing
    ):
        lines.append(
            f"arm the rollback: ufw's files and the kernel's rules come back in {policy.rollback_seconds} s "
            "unless a new SSH connection gets through"
        )
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
    change = memcached_change(memcached, policy.memcached)
    if change.arguments:
        lines.append(shlex.join([ZMPROV, "-l", "ms", policy.server, *change.arguments]))
        lines += ["zmmemcachedctl restart"] if change.restart else []
        lines += [shlex.join([ZMPROV, "rmcc", policy.server])] if change.reload_clients else []
    return lines


def _delete(rule: tuple[str, ...]) -> str:
    return shlex.join(["ufw", "--force", "delete", *rule])
