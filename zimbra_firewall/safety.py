"""Never lock the operator out: the preflight check, and the dead-man's switch (snapshot ufw, arm a
timer that restores it, disarm once a new SSH connection got through: the shell scripts in rollback/).
Pure but for reading those scripts.
"""

import functools
import ipaddress
import os

from .ufw import SECTION, parse_defaults

STATE_DIR = "/var/lib/zimbra-firewall"
ROLLBACK_LOG = f"{STATE_DIR}/rollbacks.log"  # restore.sh writes it
TIMER_UNIT = "zimbra-firewall-rollback"
ROLLBACK_SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rollback")


def parse_preflight(text: str) -> dict:
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


def preflight_problem(policy, found: dict) -> str | None:
    """Why this host must be left untouched, or None. found: the Preflight fact."""
    if not found["zimbra"]:
        return "not a Zimbra server: /opt/zimbra is missing"
    if not found["ufw"]:
        return "ufw is not installed (apt-get install ufw)"
    if policy.problem:
        return f"cannot read Zimbra's servers (LDAP, then zmprov): {policy.problem}"
    if policy.needs_ipv6 and not found["ipv6"]:
        return (
            "IPv6 subnets are configured but /etc/default/ufw has IPV6=no, so ufw would ignore their rules; "
            "set IPV6=yes"
        )
    risk = lockout_risk(policy, found["ssh_connection"])
    if risk and not policy.allow_lockout_risk:
        return f"refusing to touch the firewall: {risk} (allow_lockout_risk overrides)"
    return None


def lockout_risk(policy, ssh_connection: str | None) -> str | None:
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


@functools.cache
def rollback_script(name: str) -> str:
    """The text of zimbra_firewall/rollback/NAME.sh (arm, restore, disarm): shipped with the deploy, checked
    with shellcheck, and run on the host with `sh -c TEXT NAME ARGS…`."""
    with open(os.path.join(ROLLBACK_SCRIPTS, f"{name}.sh")) as f:
        return f.read()


def arm_arguments(seconds: int) -> tuple[str, ...]:
    """`sh -c` arguments that lock, snapshot and arm the restore timer."""
    return (rollback_script("arm"), "arm", STATE_DIR, str(seconds), TIMER_UNIT, rollback_script("restore"))


def disarm_arguments() -> tuple[str, ...]:
    return (rollback_script("disarm"), "disarm", STATE_DIR, TIMER_UNIT)
