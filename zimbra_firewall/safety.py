"""Never lock the operator out: the preflight check, and the shell of the dead-man's switch
(snapshot ufw, arm a timer that restores it, disarm once a new SSH connection got through). Pure.
"""

import ipaddress

from .ufw import SECTION, parse_defaults

STATE_DIR = "/var/lib/zimbra-firewall"
ARMED = f"{STATE_DIR}/armed"
# the restore and the disarm each claim ARMED by renaming it: whichever renames first decides
RESTORING = f"{STATE_DIR}/restoring"
DISARMING = f"{STATE_DIR}/disarming"
ROLLBACK_LOG = f"{STATE_DIR}/rollbacks.log"
TIMER_UNIT = "zimbra-firewall-rollback"


def parse_preflight(text):
    """The preflight read (key=value lines, a SECTION line, /etc/default/ufw) → {'zimbra', 'ufw', 'ipv6',
    'ssh_connection'}."""
    head, _, defaults = text.partition(SECTION)
    values = dict(line.split("=", 1) for line in head.splitlines() if "=" in line)
    return {
        "zimbra": values.get("zimbra") == "yes",
        "ufw": values.get("ufw") == "yes",
        "ipv6": parse_defaults(defaults)["ipv6"],
        "ssh_connection": values.get("ssh_connection", "").strip() or None,
    }


def preflight_problem(policy, found):
    """Why this host must be left untouched, or None. found: the Preflight fact."""
    if not found["zimbra"]:
        return "not a Zimbra server: /opt/zimbra is missing"
    if not found["ufw"]:
        return "ufw is not installed (apt-get install ufw)"
    if policy.needs_ipv6 and not found["ipv6"]:
        return (
            "IPv6 subnets are configured but /etc/default/ufw has IPV6=no, so ufw would ignore their rules; "
            "set IPV6=yes"
        )
    risk = lockout_risk(policy, found["ssh_connection"])
    if risk and not policy.allow_lockout_risk:
        return f"refusing to touch the firewall: {risk} (allow_lockout_risk overrides)"
    return None


def lockout_risk(policy, ssh_connection):
    """Why applying the policy could cut the controller off, or None. ssh_connection: $SSH_CONNECTION
    as the host sees it ("client-ip client-port server-ip server-port")."""
    words = (ssh_connection or "").split()
    if len(words) != 4:
        return (
            "cannot tell the controller's address (no SSH_CONNECTION on the host), so cannot check that "
            "SSH stays reachable"
        )
    client, server_port = ipaddress.ip_address(words[0]), int(words[3])
    if getattr(client, "ipv4_mapped", None):
        client = client.ipv4_mapped
    if server_port != policy.ssh_port:
        return (
            f"the controller reaches SSH on port {server_port}, but firewall_ssh_port is {policy.ssh_port}: "
            "the firewall would close the port in use"
        )
    if not any(client in net for net in policy.management_subnets):
        return (
            f"the controller reaches this host from {client}, outside management_subnets "
            f"({', '.join(str(n) for n in policy.management_subnets)}): enabling the firewall would cut it off"
        )
    return None


def restore_script(seconds):
    """Put ufw back as the snapshot had it, and say so in the rollback log."""
    return f"""d={RESTORING}
mv {ARMED} "$d" 2>/dev/null || exit 0
tar -C / -xf "$d/snapshot.tar"
# `enable` on an active ufw leaves the kernel's rules as they are: `reload` loads the restored files
if [ "$(cat "$d/was")" = active ]; then ufw --force enable && ufw reload; else ufw --force disable; fi
echo "$(date -u +%FT%TZ) restored the ufw rules and policies of $(cat "$d/since"): no new SSH connection \
from the controller confirmed the change within {seconds} s" >> {ROLLBACK_LOG}
rm -rf "$d"
"""


def arm_script(seconds):
    """Take the lock (one changing deploy at a time), snapshot ufw, and start the rollback timer:
    a systemd timer where systemd runs, a detached process where it does not."""
    restore = restore_script(seconds).replace("'", "'\"'\"'")
    return f"""set -e
mkdir -p {STATE_DIR}
if [ -e {RESTORING} ] || ! mkdir {ARMED} 2>/dev/null; then
  echo "another deploy is changing this firewall (rollback armed since $(cat {ARMED}/since 2>/dev/null)); \
retry when it is done" >&2
  exit 75
fi
date -u +%FT%TZ > {ARMED}/since
tar -C / -cf {ARMED}/snapshot.tar etc/ufw etc/default/ufw
if LC_ALL=C ufw status | grep -q '^Status: active'; then echo active; else echo inactive; fi > {ARMED}/was
printf '%s' '{restore}' > {STATE_DIR}/restore.sh
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null; then
  # --collect: a restore that failed must not keep the unit's name from the next run;
  # AccuracySec: systemd would otherwise fire up to a minute late
  systemd-run --quiet --collect --unit={TIMER_UNIT} --on-active={seconds}s --timer-property=AccuracySec=1s \\
    /bin/sh {STATE_DIR}/restore.sh
  echo systemd > {ARMED}/timer
else
  setsid sh -c 'sleep {seconds}; exec /bin/sh {STATE_DIR}/restore.sh' </dev/null >/dev/null 2>&1 &
  echo $! > {ARMED}/timer
fi
"""


DISARM_SCRIPT = f"""d={DISARMING}
if ! mv {ARMED} "$d" 2>/dev/null; then
  echo "the rollback timer fired before the change was confirmed: the firewall is back as it was" >&2
  exit 1
fi
timer=$(cat "$d/timer")
if [ "$timer" = systemd ]; then
  systemctl stop {TIMER_UNIT}.timer {TIMER_UNIT}.service 2>/dev/null || true
else
  kill -- "-$timer" 2>/dev/null || kill "$timer" 2>/dev/null || true
fi
rm -rf "$d"
"""
