"""Lock down a Zimbra server's network exposure: the seed article's steps, done idempotently and safely.

    pyinfra -y inventories/<env>.py deploy.py        (--dry shows the plan and changes nothing)
"""

from pyinfra import host, logger
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import python

from facts.safety import SshConnection
from facts.zimbra import ZimbraServer
from tasks import safety, ufw, zimbra
from zimbra_firewall.policy import PolicyError, build_policy
from zimbra_firewall.safety import lockout_risk

# Every group_data value is checked here, for every host, before any host changes.
try:
    policy = build_policy(host.data.dict())
except PolicyError as error:
    raise PyinfraError(f"{host.name}: {error}") from None
for warning in policy.warnings:
    logger.warning(f"{host.name}: {warning}")

# A host that is not a Zimbra server with ufw (and IPv6 where needed) fails alone, untouched.
server = host.get_fact(ZimbraServer, needs_ipv6=policy.needs_ipv6)
risk = lockout_risk(policy, host.get_fact(SshConnection, _sudo=False))
if server and risk and not policy.allow_lockout_risk:
    python.raise_exception(PyinfraError, f"refusing to touch the firewall: {risk} (allow_lockout_risk overrides)",
                           name="Preflight")
elif server:
    safety.report_rollbacks(name="Earlier rollbacks")
    # Snapshot ufw and arm a rollback timer, only when the firewall is about to change
    armed = safety.arm_rollback(name="Rollback armed", policy=policy, seconds=policy.rollback_seconds)
    # 1. ufw application profiles for Zimbra: one public, one local-only
    wait = policy.xtables_lock_wait
    ufw.app_profiles(name="Zimbra ufw profiles", profiles=policy.profiles, lock_wait=wait)
    # 2. SSH first, then the public profile from anywhere and the local-only one from the management subnets
    ufw.rules(name="ufw rules", policy=policy, lock_wait=wait)
    # 3. Default deny incoming, allow outgoing
    ufw.default_policy(name="ufw default policies", incoming=policy.default_incoming,
                       outgoing=policy.default_outgoing, lock_wait=wait)
    # 4. Enable ufw, last; then prove a NEW connection gets through before the rollback is disarmed
    ufw.enabled(name="ufw enabled", lock_wait=wait)
    python.call(name="New SSH connection", function=safety.confirm_new_connection, _if=armed.did_change)
    safety.disarm_rollback(name="Rollback disarmed", _if=armed.did_change)
    # 5. memcached bound where configured (127.0.0.1), restarted only when that changed
    zimbra.memcached_binding(name="memcached binding", attributes=policy.memcached, read=policy.memcached_read,
                             _sudo=True, _sudo_user="zimbra")
