"""Put each node back as it was before the last deploy that changed it: ufw's files and the kernel's ufw
rules, and memcached's attributes (restarted when its binding changes), through the same dead-man's switch
as a deploy (armed first, proven by a new SSH connection, rolled back otherwise). The undo record is used up:
a second undo refuses, as does a host no deploy has changed.

pyinfra inventories/<env>.py undo.py        (--dry shows what comes back and changes nothing)
"""

from pyinfra import host
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import python

from tasks import report, run, safety, undo, zimbra
from zimbra_firewall.policy import PolicyError, build_policy, topology_attributes
from zimbra_firewall.safety import Switch
from zimbra_firewall.settings import read_settings

try:
    settings = read_settings(host.data.dict())
    attributes, read = topology_attributes(), settings.zimbra_read
    run.prefetch(zimbra.reads(attributes, read) + safety.reads() + undo.reads())
    topology = zimbra.read_topology(attributes, read)
    policy = build_policy(settings, topology)
except PolicyError as error:
    raise PyinfraError(f"{host.name}: {error}") from None
record = undo.record()
report.undo_view(record)

safety.preflight(name="Preflight", policy=policy)
undo.record_present(name="Undo record", record=record)
switch, seconds = Switch.new(policy.xtables_lock_wait), policy.rollback_seconds
armed = safety.arm_rollback(
    name="Rollback armed", policy=policy, switch=switch, seconds=seconds, needed=record["firewall"]
)
undo.firewall_back(name="Firewall put back", switch=switch, _if=armed.did_change)
python.call(name="New SSH connection", function=safety.confirm_new_connection, _if=armed.did_change)
safety.disarm_rollback(name="Rollback disarmed", switch=switch, keep=False, _if=armed.did_change)
current = topology.this.attributes if topology.this else {}
zimbra.memcached_binding(
    name="memcached put back",
    server=policy.server,
    current=current,
    attributes=record["memcached"],
)
undo.record_used(name="Undo record used")
