"""The policy in ufw's words: the rules, restrictions and profile ports that the ufw operations
(tasks/ufw.py) and planners (zimbra_firewall/ufw.py) take, as `ufw show added` prints them. The one place
where the policy's networks and ports become ufw's text."""

from zimbra_firewall.access import Allow, Network
from zimbra_firewall.policy import Policy
from zimbra_firewall.ufw import chunk_ports


def source_word(network: Network) -> str:
    """ufw's word for a source: one host's address alone, as `ufw show added` prints it, else the CIDR."""
    return str(network.network_address) if network.prefixlen == network.max_prefixlen else str(network)


def allow_rules(allow: Allow) -> list[tuple[str, ...]]:
    """The ufw rules (argument tuples) of one Allow: one per multiport entry ufw can hold."""
    if allow.source is None:
        if allow.profile:
            return [("allow", allow.profile)]
        return [("allow", entry) for entry in chunk_ports(allow.ports).split("|")]
    source = source_word(allow.source)
    if allow.profile:
        return [("allow", "from", source, "to", "any", "app", allow.profile)]
    if not allow.ports:
        return [("allow", "from", source)]
    rules: list[tuple[str, ...]] = []
    for entry in chunk_ports(allow.ports).split("|"):
        spec, _, proto = entry.rpartition("/")
        rules.append(("allow", "from", source, "to", "any", "port", spec, "proto", proto))
    return rules


def ufw_rules(policy: Policy) -> tuple[tuple[str, ...], ...]:
    """Every rule of the policy, in its order (SSH first), before ufw.rules adds the owner's tag."""
    return tuple(rule for allow in policy.allows for rule in allow_rules(allow))


def ufw_restrictions(policy: Policy) -> dict[str, list[str]]:
    """{ports text: [sources]}: the non-public ports and the only sources that may reach them."""
    return {chunk_ports(r.ports): [source_word(source) for source in r.sources] for r in policy.restricted}


def rule_arguments(policy: Policy) -> dict:
    """ufw.rules' arguments (and the rule planner's) for this policy."""
    return {
        "rules": ufw_rules(policy),
        "owner": policy.comment,
        "restrictions": ufw_restrictions(policy),
        "apps": {profile.name: profile.ports for profile in policy.profiles},
        "purge": policy.purge_unmanaged,
    }
