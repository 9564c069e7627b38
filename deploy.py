"""Lock down a Zimbra server's network exposure: the seed article's steps, done idempotently.

    pyinfra -y inventories/<env>.py deploy.py        (--dry shows the plan and changes nothing)
"""

from pyinfra import host, logger

from facts.zimbra import ZimbraServer
from tasks import ufw, zimbra
from zimbra_firewall.policy import build_policy

# Every group_data value is checked here, for every host, before any host changes.
policy = build_policy(host.data.dict())
for warning in policy.warnings:
    logger.warning(f"{host.name}: {warning}")

# A host that is not a Zimbra server with ufw (and IPv6 where needed) fails alone, untouched.
if host.get_fact(ZimbraServer, needs_ipv6=policy.needs_ipv6):
    # 1. ufw application profiles for Zimbra: one public, one local-only
    ufw.app_profiles(name="Zimbra ufw profiles", profiles=policy.profiles)
    # 2. SSH first, then the public profile from anywhere and the local-only one from the management subnets
    ufw.rules(name="ufw rules", policy=policy)
    # 3. Default deny incoming, allow outgoing
    ufw.default_policy(name="ufw default policies", incoming=policy.default_incoming,
                       outgoing=policy.default_outgoing)
    # 4. Enable ufw, last
    ufw.enabled(name="ufw enabled")
    # 5. memcached bound where configured (127.0.0.1), restarted only when that changed
    binding = zimbra.memcached_binding(name="memcached binding", attributes=policy.memcached,
                                       read=policy.memcached_read, _sudo=True, _sudo_user="zimbra")
    zimbra.memcached_restart(name="memcached restart", _if=binding.did_change, _sudo=True, _sudo_user="zimbra")
