"""The exposure audit's read of a node: everything it judges, in ONE command."""

import ipaddress

from pyinfra.api import FactBase, FactProcessError

from facts.zimbra import ZimbraTopology
from zimbra_firewall.audit import NodeRead, link_local_addresses, parse_listeners, unmapped
from zimbra_firewall.firewalld import FIREWALLD_RUNNING, parse_state, state_read
from zimbra_firewall.kernel import SHIPPED_BEFORE_RULES, kernel_view
from zimbra_firewall.safety import FIREWALLD_RECORD, ROLLBACK_LOG, STATE_DIR
from zimbra_firewall.ufw import SECTION, USER_RULES, parse_status, sections, status_read

PART = f"{SECTION}part"


class ExposureRead(FactBase):
    """
    A node as the audit sees it: Zimbra's servers (the deploy's topology read: LDAP, no JVM), every
    listening socket with its process (``ss``), ufw's state and rule files, or firewalld's configuration
    where firewalld runs (its files and dispatch, no firewall-cmd), the kernel's tables (iptables-save,
    ip6tables-save, nft's table names) with the before.rules templates ufw ships, the last rollback and
    whether one is armed, and the controller's address (``$SSH_CONNECTION``): a
    ``zimbra_firewall.audit.NodeRead``. Read it as root (``ss`` names other users' processes only to root);
    it changes nothing.
    """

    def requires_command(self, attributes: tuple[str, ...], read: str = "ldap", lock_wait: int = 60) -> str:
        return "ss"

    def command(self, attributes: tuple[str, ...], read: str = "ldap", lock_wait: int = 60) -> str:
        v4, v6 = USER_RULES
        parts = [
            f"( {ZimbraTopology().command(attributes, read)} )",
            "ss -Hlnptu",
            f"( {status_read(lock_wait)} ) 2>&1",
            f"cat {v4} 2>/dev/null",
            f"cat {v6} 2>/dev/null",
            # hostname -I (the topology's read) leaves out IPv6's link-local addresses: they are read here
            "echo if_inet6=$(cut -d' ' -f1 /proc/net/if_inet6 2>/dev/null); "
            # sudo drops $SSH_CONNECTION from the environment it gives; sudo itself, this shell's parent, has it
            "echo ssh_connection=${SSH_CONNECTION:-$(tr '\\0' '\\n' < /proc/$PPID/environ 2>/dev/null | "
            "sed -n 's/^SSH_CONNECTION=//p')}; "
            f'PATH="$PATH:/usr/sbin:/sbin" command -v ufw >/dev/null && '
            f"echo ufw=yes; {FIREWALLD_RUNNING} && echo firewalld=yes; test -d {STATE_DIR}/armed && echo armed=yes; "
            f'echo "rollback=$(cat {ROLLBACK_LOG}.reported {ROLLBACK_LOG} 2>/dev/null | tail -n 1)"',
            f"if {FIREWALLD_RUNNING}; then {state_read(FIREWALLD_RECORD)}; fi",
            # the kernel's own tables: what ufw's files do not say (zimbra_firewall/kernel.py)
            "iptables-save 2>/dev/null",
            "ip6tables-save 2>/dev/null",
            "command -v nft >/dev/null && nft -j list tables 2>/dev/null",
            f"cat {SHIPPED_BEFORE_RULES[4]} 2>/dev/null",
            f"cat {SHIPPED_BEFORE_RULES[6]} 2>/dev/null",
        ]
        return f"; echo {PART}; ".join(parts)

    def process(self, output: list[str]) -> NodeRead:
        parts = sections(output, PART)
        if len(parts) != 12:
            raise FactProcessError(f"unexpected output of the audit read ({len(parts)} parts)")
        topology_text, sockets, status_text, user_rules, user6_rules, misc, firewalld_text = parts[:7]
        iptables, ip6tables, nft, shipped, shipped6 = parts[7:]
        values = dict(line.split("=", 1) for line in misc.splitlines() if "=" in line)
        status, error, firewalld = {}, "", None
        if values.get("firewalld") == "yes":
            try:
                state = parse_state(firewalld_text)
            except ValueError as failure:
                error = f"cannot read firewalld's configuration: {failure}"
            else:  # not judged where what lets packets in cannot be told: an honest "cannot say"
                firewalld, error = (None, state.problem) if state.problem else (state, "")
        elif values.get("ufw") != "yes":  # nothing filters: judged as an inactive ufw
            status = {"active": False, "active6": False, "incoming": "unknown", "outgoing": "unknown", "ipv6": True}
            error = "ufw is not installed (apt-get install ufw, then run the deploy)"
        else:
            chain, _, defaults = status_text.partition(f"{SECTION}\n")
            try:
                status = parse_status(chain, defaults)
            except ValueError as failure:
                error = f"cannot read ufw's state: {failure}"
        # client, its port, server address, port (IPv4 clients of a dual-stack sshd may show as ::ffff:a.b.c.d)
        connection = [_unmapped(word) for word in values.get("ssh_connection", "").split()]
        return NodeRead(
            topology=ZimbraTopology().process(topology_text.splitlines()),
            listeners=tuple(parse_listeners(sockets)),
            status=status,
            rule_files=(user_rules, user6_rules),
            rollback_last=values.get("rollback", "").strip(),
            rollback_armed=values.get("armed") == "yes",
            ufw_error=error,
            controller=connection[0] if len(connection) == 4 else "",
            reached_at=connection[2] if len(connection) == 4 else "",
            firewalld=firewalld,
            link_local=link_local_addresses(values.get("if_inet6", "")),
            kernel=kernel_view(iptables, ip6tables, nft, (shipped, shipped6)),
        )


def _unmapped(word: str) -> str:
    try:
        address = ipaddress.ip_address(word)
    except ValueError:
        return word  # a port
    return str(unmapped(address))
