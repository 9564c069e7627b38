"""Never lock the operator out: the preflight check, and the dead-man's switch (snapshot ufw, arm a
timer that restores it, disarm once a new SSH connection got through: the shell scripts in rollback/).
Pure but for reading those scripts.
"""

import functools
import ipaddress
import json
import os
import secrets
import shlex
from dataclasses import dataclass

from .ufw import SECTION, parse_defaults
from .untrusted import Refused, address, checked, port_number, shown

STATE_DIR = "/var/lib/zimbra-firewall"
ROLLBACK_LOG = f"{STATE_DIR}/rollbacks.log"  # restore.sh writes it
ADDRESSES_FILE = f"{STATE_DIR}/addresses"  # the addresses each server's rules used (tasks/zimbra.py)
FIREWALLD_RECORD = f"{STATE_DIR}/firewalld-applied"  # what the last reload applied (tasks/firewalld.py)
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
        **{key: values.get(key) == "yes" for key in ("firewalld", "firewalld_running", "firewalld_policies")},
        "ipv6": parse_defaults(defaults)["ipv6"],
        "ssh_connection": values.get("ssh_connection", "").strip() or None,
    }


def chosen_firewall(setting: str, found: dict) -> str:
    """The backend for this host: the setting's, or with `auto` firewalld where it runs (RHEL, Rocky, Alma,
    Oracle Linux run it by default), else ufw where installed, else firewalld where installed, else ufw (whose
    absence the preflight then reports)."""
    if setting != "auto":
        return setting
    if found.get("firewalld_running") or (found.get("firewalld") and not found["ufw"]):
        return "firewalld"
    return "ufw"


def firewall_problem(policy, found: dict, firewall: str) -> str | None:
    if firewall == "ufw":
        if not found["ufw"]:
            return "ufw is not installed (apt-get install ufw)"
        return None
    if not found["firewalld"]:
        return "firewalld is not installed (dnf install firewalld)"
    if not found["firewalld_running"]:
        return "firewalld is not running: start it (systemctl enable --now firewalld), then run the deploy again"
    if not found["firewalld_policies"]:
        return "firewalld is older than 0.9 (no policy objects, which this deploy's rules live in): update it"
    if policy.default_outgoing != "allow":
        return f"default_outgoing {policy.default_outgoing!r} is ufw's alone: firewalld filters nothing outgoing"
    return None


def preflight_problem(policy, found: dict, firewall: str = "ufw") -> str | None:
    """Why this host must be left untouched, or None. found: the Preflight fact; firewall: chosen_firewall's."""
    if not found["zimbra"]:
        return "not a Zimbra server: /opt/zimbra is missing"
    problem = firewall_problem(policy, found, firewall)
    if problem:
        return problem
    if policy.problem:
        return f"cannot read Zimbra's servers (LDAP, then zmprov): {policy.problem}"
    if firewall == "ufw" and policy.needs_ipv6 and not found["ipv6"]:
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
    try:
        client, server_port = address(words[0]), port_number(words[3])
    except (IndexError, Refused):
        return (
            f"cannot tell the controller's address (SSH_CONNECTION on the host is {shown(ssh_connection or '')}), "
            "so cannot check that SSH stays reachable"
        )
    if isinstance(client, ipaddress.IPv6Address) and client.ipv4_mapped:
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
    """The text of zimbra_firewall/rollback/NAME.sh (lib, arm, restore, disarm, recover): shipped with the
    deploy, checked with shellcheck, and run on the host with `sh -c TEXT NAME ARGS…`."""
    with open(os.path.join(ROLLBACK_SCRIPTS, f"{name}.sh")) as f:
        return f.read()


def with_lib(body: str) -> str:
    """A script that uses lib.sh's functions (state_dir, hold_arm, ufw_part, put_back_files…): lib.sh first."""
    return rollback_script("lib") + body


def restore_script() -> str:
    """restore.sh as its timer and the unit at boot run it, alone: lib.sh's functions in it."""
    return with_lib(rollback_script("restore"))


@dataclass(frozen=True)
class Switch:
    """One run's dead-man's switch on one host. Its token is written at arm time; every step that changes
    ufw, and the disarm, run `guard` first in their own command: under the state folder's lock (the restore
    takes it too: a step and a restore never run at once) and only while that token's arm still holds, so
    nothing changes the firewall after the rollback fired. lock_wait: the deploy's xtables_lock_wait."""

    token: str
    lock_wait: int = 60

    @classmethod
    def new(cls, lock_wait: int = 60) -> "Switch":
        return cls(secrets.token_hex(8), lock_wait)

    @property
    def guard(self) -> str:
        # a restore holds the lock for its two iptables-restore calls, each waiting at most 60 s
        wait = self.lock_wait + 150
        return with_lib(f"hold_arm {shlex.quote(STATE_DIR)} {shlex.quote(self.token)} {wait}")

    def arm_arguments(self, seconds: int, firewall: str = "ufw") -> tuple[str, ...]:
        """`sh -c` arguments that lock, snapshot `firewall`'s files (ufw's, firewalld's) and arm the restore timer."""
        arm = with_lib(rollback_script("arm"))
        return (arm, "arm", STATE_DIR, str(seconds), TIMER_UNIT, self.token, restore_script(), firewall)

    def disarm_arguments(self, keep: bool = True) -> tuple[str, ...]:
        """keep: the snapshot becomes the undo record (undo.py's); an undo's own is not kept."""
        script = with_lib(rollback_script("disarm"))
        return (script, "disarm", STATE_DIR, TIMER_UNIT, self.token, "60", "keep" if keep else "drop")

    def keep_memcached_arguments(self, undo: tuple[str, ...]) -> tuple[str, ...]:
        """`sh -c` arguments that add to the undo record the `zmprov ms` arguments putting memcached's previous
        values back: to this run's record when its firewall changed too, else to a new one."""
        body = (
            'state_dir "$1"; if [ "$(cat "$1/last/token" 2>/dev/null)" != "$2" ]; then rm -rf "$1/last"; '
            'mkdir "$1/last"; date -u +%FT%TZ > "$1/last/since"; printf "%s\\n" "$2" > "$1/last/token"; fi; '
            'printf %s "$3" > "$1/last/memcached"\n'
        )
        return (with_lib(body), "keep-memcached", STATE_DIR, self.token, json.dumps(list(undo)))

    def undo_arguments(self) -> tuple[str, ...]:
        """`sh -c` arguments that put the firewall of the undo record back (rollback/undo.sh), guarded."""
        return (with_lib(rollback_script("undo")), "undo", STATE_DIR, self.token, str(self.lock_wait + 150))


def reported_arguments(lines: int) -> tuple[str, ...]:
    """`sh -c` arguments that move the first `lines` lines of rollbacks.log, those just reported, to
    rollbacks.log.reported: under the state folder's lock, so a restore's line written since stays for the
    next run to report."""
    body = (
        'exec 9>>"$1/lock" && flock 9 && head -n "$2" "$1/rollbacks.log" >> "$1/rollbacks.log.reported" && '
        'sed -i "1,$2d" "$1/rollbacks.log" && { [ -s "$1/rollbacks.log" ] || rm "$1/rollbacks.log"; }'
    )
    return (body, "reported", STATE_DIR, str(lines))


def recover_arguments() -> tuple[str, ...]:
    """`sh -c` arguments that finish what an earlier run left: a restore cut short, an arm without its timer."""
    return (with_lib(rollback_script("recover")), "recover", STATE_DIR, TIMER_UNIT, restore_script())


def rollback_state_read() -> str:
    """Shell printing what parse_rollback_state reads: what is unfinished (as recover.sh would judge it, read
    without its lock), a SECTION line, the rollbacks not yet reported."""
    return with_lib(
        f's={shlex.quote(STATE_DIR)}; [ -d "$s/restoring" ] && echo unfinished=restore; '
        f'if [ -d "$s/armed" ]; then if timer_gone "$s" {TIMER_UNIT}; then echo unfinished=stale-arm; '
        f'else echo armed=since-$(cat "$s/armed/since" 2>/dev/null); fi; fi; echo {SECTION}; '
        f'cat "$s/rollbacks.log" 2>/dev/null; true'
    )


def parse_rollback_state(text: str) -> dict:
    """rollback_state_read's output → {'unfinished': 'restore' | 'stale-arm' | '', 'armed': bool, 'log': str}."""
    head, _, log = text.partition(f"{SECTION}\n")
    values = dict(line.split("=", 1) for line in head.splitlines() if "=" in line)
    return {"unfinished": values.get("unfinished", ""), "armed": "armed" in values, "log": log.rstrip("\n")}


def keep_addresses_arguments(text: str) -> tuple[str, ...]:
    """`sh -c` arguments that write the addresses file (zimbra_firewall.topology.render_addresses's text)."""
    body = 'state_dir "$1"; printf %s "$2" > "$1/addresses.new" && mv "$1/addresses.new" "$1/addresses"\n'
    return (with_lib(body), "keep-addresses", STATE_DIR, text)


UNDO_DIR = f"{STATE_DIR}/last"


def undo_record_read() -> str:
    """Shell printing what parse_undo_record reads: the undo record the last changing deploy kept."""
    return (
        f'd={shlex.quote(UNDO_DIR)}; if [ -d "$d" ]; then echo since=$(cat "$d/since" 2>/dev/null); '
        f'[ -f "$d/snapshot.tar" ] && echo firewall=yes; fi; echo {SECTION}; cat "$d/memcached" 2>/dev/null; true'
    )


def parse_undo_record(text: str) -> dict:
    """undo_record_read's output → {'exists', 'since', 'firewall', 'memcached': {attribute: [values]}}: what
    undo.py puts back. The memcached part is checked as a value from LDAP is (it came from there): a record
    that does not pass gives no memcached change, with the reason in 'problem'."""
    head, _, memcached = text.partition(f"{SECTION}\n")
    values = dict(line.split("=", 1) for line in head.splitlines() if "=" in line)
    record = {"exists": "since" in values, "since": values.get("since", ""), "firewall": "firewall" in values}
    record["memcached"], record["problem"] = {}, ""
    if memcached.strip():
        try:
            record["memcached"] = memcached_values(json.loads(memcached))
        except (ValueError, Refused) as why:
            record["problem"] = f"the record of memcached's previous values is not usable ({why})"
    return record


def memcached_values(arguments: list) -> dict[str, list[str]]:
    """`zmprov ms` arguments (attribute, value, …; '' unsets) → {attribute: [values]}, each checked."""
    kinds = {"zimbraMemcachedBindAddress": "address", "zimbraMemcachedBindPort": "port"}
    kinds["zimbraMemcachedClientServerList"] = "endpoint"
    if not isinstance(arguments, list) or len(arguments) % 2 or not all(isinstance(a, str) for a in arguments):
        raise Refused("not attribute and value pairs")
    wanted: dict[str, list[str]] = {}
    for name, value in zip(arguments[::2], arguments[1::2], strict=True):
        if name not in kinds:
            raise Refused(f"{shown(name)} is not a memcached attribute")
        wanted.setdefault(name, [])
        if value:
            wanted[name].append(checked(kinds[name], value))
    return wanted
