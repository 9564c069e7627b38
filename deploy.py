"""Lock down a Zimbra server's network exposure: the seed article's steps, done idempotently and safely.

pyinfra -y inventories/<env>.py deploy.py        (--dry shows the plan and changes nothing)
"""

from pyinfra import host, logger
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import python

from tasks import safety, ufw, zimbra
from zimbra_firewall.policy import PolicyError, build_policy

# Every group_data value is checked here, for every host, before any host changes.
try:
    policy = build_policy(host.data.dict())
except PolicyError as error:
    raise PyinfraError(f"{host.name}: {error}") from None
for warning in policy.warnings:
    logger.warning(f"{host.name}: {warning}")

# 0. A host that is not a Zimbra server with ufw, or whose firewall would cut this SSH connection off, fails
#    here alone and untouched; rollbacks since the last run are reported; a rollback is armed before ufw changes
safety.preflight(name="Preflight", policy=policy)
safety.report_rollbacks(name="Earlier rollbacks")
armed = safety.arm_rollback(name="Rollback armed", policy=policy, seconds=policy.rollback_seconds)
# 1. ufw application profiles for Zimbra: one public, one local-only
wait = policy.xtables_lock_wait
ufw.app_profiles(name="Zimbra ufw profiles", profiles=policy.profiles, lock_wait=wait)
# 2. SSH first, then the public profile from anywhere and the local-only one from the management subnets
ufw.rules(name="ufw rules", **policy.rule_arguments, lock_wait=wait)
# 3. Default deny incoming, allow outgoing
ufw.default_policy(
    name="ufw default policies", incoming=policy.default_incoming, outgoing=policy.default_outgoing, lock_wait=wait
)
# 4. Enable ufw, last; then prove a NEW connection gets through before the rollback is disarmed
ufw.enabled(name="ufw enabled", lock_wait=wait)
python.call(name="New SSH connection", function=safety.confirm_new_connection, _if=armed.did_change)
safety.disarm_rollback(name="Rollback disarmed", _if=armed.did_change)
# 5. memcached bound where configured (127.0.0.1), restarted only when that changed
zimbra.memcached_binding(
    name="memcached binding", attributes=policy.memcached, read=policy.memcached_read, _sudo=True, _sudo_user="zimbra"
)
