"""The policy in firewalld's words: the service definitions, the owned policy object's grants and what the
zones are to be, as the firewalld operations (tasks/firewalld.py) and planner (zimbra_firewall/firewalld.py)
take them. The one place where the policy's networks and ports become firewalld's."""

from zimbra_firewall.access import Allow
from zimbra_firewall.firewalld import TARGETS, Grant, Service, Wanted, object_name, render_policy
from zimbra_firewall.policy import Policy
from zimbra_firewall.ufw import ports_of_text

DESCRIPTION = "What zimbra-firewall lets in to this Zimbra server, before any zone's own rules"


def services(policy: Policy) -> tuple[Service, ...]:
    """A service definition per profile (zimbra-public, zimbra-local, zimbra-intra)."""
    return tuple(
        Service(object_name(p.name), ports_of_text(p.ports), p.title or p.name, p.description) for p in policy.profiles
    )


def grant(allow: Allow) -> Grant:
    return Grant(allow.source, object_name(allow.profile) if allow.profile else "", allow.ports)


def policy_name(policy: Policy) -> str:
    """The owned policy object's name: the deploy's owner tag."""
    return object_name(policy.comment)


def policy_text(policy: Policy) -> str:
    return render_policy(policy_name(policy), [grant(allow) for allow in policy.allows], DESCRIPTION)


def wanted_zones(policy: Policy) -> Wanted:
    return Wanted(
        target=TARGETS[policy.default_incoming],
        restrictions=policy.restricted,
        remove_services=policy.remove_services,
        purge=policy.purge_unmanaged,
        accept_zones=policy.accept_zones,
    )


def arguments(policy: Policy) -> dict:
    """firewalld.configured's arguments (and the planner's) for this policy."""
    return {
        "services": services(policy),
        "policy_name": policy_name(policy),
        "policy_text": policy_text(policy),
        "wanted": wanted_zones(policy),
    }
