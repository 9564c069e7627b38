"""Lock down a Zimbra server's network exposure: the seed article's steps, done idempotently and safely,
each node's rules derived from what Zimbra's LDAP records about the whole install.

pyinfra -y inventories/<env>.py deploy.py        (--dry shows the plan and changes nothing)
"""

from pyinfra import host
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import python

from tasks import firewalld, plan, report, run, safety, ufw, zimbra
from zimbra_firewall.firewalld_policy import arguments as firewalld_arguments
from zimbra_firewall.policy import PolicyError, build_policy, topology_attributes
from zimbra_firewall.safety import FIREWALLD_RECORD, Switch
from zimbra_firewall.settings import read_settings
from zimbra_firewall.ufw_policy import rule_arguments
from zimbra_firewall.zimbra import memcached_change

# Every group_data value is checked here, for every host, before any host changes; then one read of
# Zimbra's LDAP (no JVM) gives this node's services, ports and peers, resolved as this node resolves them.
# Every read the steps make is made here, at once (pyinfra loads this file for every host together).
try:
    settings = read_settings(host.data.dict())
    attributes, read = topology_attributes(), settings.zimbra_read
    run.prefetch(zimbra.reads(attributes, read) + safety.reads())
    topology = zimbra.read_topology(attributes, read)
    policy = build_policy(settings, topology)
    run.prefetch(safety.firewall_reads(policy))  # ufw's or firewalld's, whichever this host runs
except PolicyError as error:
    raise PyinfraError(f"{host.name}: {error}") from None
report.node_view(topology, policy.warnings, policy.refused)
plan.show(policy, topology)

# 0. A host that is not a Zimbra server with its firewall, whose LDAP cannot be read, or whose firewall would
#    cut this SSH connection off, fails here alone and untouched; what an earlier run left is finished; a
#    rollback is armed before the firewall changes, and every firewall step runs only while it holds
safety.preflight(name="Preflight", policy=policy)
safety.report_rollbacks(name="Earlier rollbacks")
switch, wait = Switch.new(policy.xtables_lock_wait), policy.xtables_lock_wait
armed = safety.arm_rollback(name="Rollback armed", policy=policy, switch=switch, seconds=policy.rollback_seconds)
if safety.firewall(policy) == "firewalld":
    # 1-4 on firewalld: a service per profile, one owned policy object (SSH, the public service from anywhere,
    #    the local-only one from the management subnets, each peer's ports from its addresses) and the zones
    #    pruned of what widens it, written as permanent configuration; then ONE reload puts it all in force
    configuration = firewalld_arguments(policy)
    record = FIREWALLD_RECORD
    firewalld.configured(name="firewalld configuration", **configuration, record=record, guard=switch.guard)
    firewalld.applied(name="firewalld reloaded", record=record, guard=switch.guard)
else:
    # 1. ufw application profiles for Zimbra: one public, one local-only
    ufw.app_profiles(name="Zimbra ufw profiles", profiles=policy.profiles, lock_wait=wait, guard=switch.guard)
    # 2. SSH first, then the public profile from anywhere, the local-only one from the management subnets and
    #    each peer's ports from its addresses: added on every node before any rule is deleted anywhere
    rules = rule_arguments(policy)
    ufw.rules(name="ufw rules added", **rules, changes="add", lock_wait=wait, guard=switch.guard)
    ufw.rules(name="ufw rules removed", **rules, changes="delete", lock_wait=wait, guard=switch.guard)
    # 3. Default deny incoming, allow outgoing
    incoming, outgoing = policy.default_incoming, policy.default_outgoing
    ufw.default_policy(
        name="ufw default policies", incoming=incoming, outgoing=outgoing, lock_wait=wait, guard=switch.guard
    )
    # 4. Enable ufw, last
    ufw.enabled(name="ufw enabled", lock_wait=wait, guard=switch.guard)
# then prove a NEW connection gets through before the rollback is disarmed
python.call(name="New SSH connection", function=safety.confirm_new_connection, _if=armed.did_change)
safety.disarm_rollback(name="Rollback disarmed", switch=switch, _if=armed.did_change)
#    and, the change confirmed, the addresses the peers' rules came from, for a run in which a name does not
#    resolve
zimbra.addresses_kept(name="Peer addresses kept", addresses=policy.addresses, kept=topology.last_known)
# 5. memcached bound where the proxies' nginx looks for it (its 11211 rule exists by now), restarted only
#    when that changed; then, in the same command, its previous values kept for undo.py
current = topology.this.attributes if topology.this else {}
zimbra.memcached_binding(
    name="memcached binding",
    server=policy.server,
    current=current,
    attributes=policy.memcached,
    then=safety.memcached_undo_keeping(switch, memcached_change(current, policy.memcached).undo),
)
