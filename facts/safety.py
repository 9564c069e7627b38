"""Facts for the safety steps: what the preflight check needs to know, in one command."""

from pyinfra.api import FactBase

from facts.zimbra import ZIMBRA_HOME
from zimbra_firewall.firewalld import FIREWALLD_RUNNING, SHIPPED_DIR
from zimbra_firewall.safety import (
    parse_preflight,
    parse_rollback_state,
    parse_undo_record,
    rollback_state_read,
    undo_record_read,
)
from zimbra_firewall.ufw import SECTION


class Preflight(FactBase):
    """
    Whether the host is a Zimbra server, which firewalls it has (ufw; firewalld, whether it runs and has
    policy objects), ufw's IPv6 setting, and the controller's SSH connection as the host sees it:
    ``{"zimbra": True, "ufw": True, "firewalld": False, "firewalld_running": False, "firewalld_policies":
    False, "ipv6": True, "ssh_connection": "10.0.0.5 50022 10.0.0.10 22"}`` (None when unknown). Read it with
    ``_sudo=False``: sudo drops ``$SSH_CONNECTION``.
    """

    def command(self) -> str:
        return (
            f'echo "ssh_connection=$SSH_CONNECTION"; test -d {ZIMBRA_HOME} && echo zimbra=yes; '
            'PATH="$PATH:/usr/sbin:/sbin" command -v ufw >/dev/null && echo ufw=yes; '
            'PATH="$PATH:/usr/sbin:/sbin" command -v firewall-cmd >/dev/null && echo firewalld=yes; '
            f"{FIREWALLD_RUNNING} && echo firewalld_running=yes; "
            f"[ -d {SHIPPED_DIR}/policies ] && echo firewalld_policies=yes; "
            f"echo {SECTION}; cat /etc/default/ufw 2>/dev/null; true"
        )

    def process(self, output: list[str]) -> dict:
        return parse_preflight("\n".join(output))


class RollbackState(FactBase):
    """
    The dead-man's switch on this host: what an earlier run left unfinished (``unfinished``: ``restore`` for
    a restore cut short, ``stale-arm`` for an arm whose timer is gone, else ``""``), whether another arm is
    live, and the rollbacks not yet reported: ``{"unfinished": "", "armed": False, "log": "<lines>"}``.
    """

    def command(self) -> str:
        return rollback_state_read()

    def process(self, output: list[str]) -> dict:
        return parse_rollback_state("\n".join(output) + "\n")


class UndoRecord(FactBase):
    """
    What undo.py can put back on this host: the record the last deploy that changed it kept
    (/var/lib/zimbra-firewall/last): ``{"exists": True, "since": "<the deploy's arm time>", "firewall": True,
    "memcached": {"zimbraMemcachedBindAddress": [...]}, "problem": ""}``.
    """

    @staticmethod
    def default() -> dict:
        """What a host without a record has (and what a read that failed gives)."""
        return {"exists": False, "since": "", "firewall": False, "memcached": {}, "problem": ""}

    def command(self) -> str:
        return undo_record_read()

    def process(self, output: list[str]) -> dict:
        return parse_undo_record("\n".join(output) + "\n")
