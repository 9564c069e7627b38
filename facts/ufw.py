"""Facts about ufw: its state, in one command."""

from pyinfra.api import FactBase, FactProcessError, QuoteString, StringCommand

from zimbra_firewall.ufw import NO_FILE, SECTION, parse_state, read_app_profiles, read_user_rules, status_read


class UfwState(FactBase):
    """
    Everything the ufw operations compare against, in ONE command (reads are what a no-op run costs):
    ``{"active": True, "active6": True, "incoming": "deny", "outgoing": "allow", "ipv6": True, "rules":
    [("allow", "22/tcp"), ...], "apps": {"OpenSSH": (Port(22, 22, "tcp"),), ...}, "profiles": "<text of the
    profile file>" or None}`` ("active": ufw's IPv4 rules loaded, as `ufw status` tells; "active6": its IPv6
    ones). Rules are those `ufw show added` prints, read from ufw's user rule files without starting
    ufw's Python (readable while ufw is inactive); apps: what each application profile opens, from every
    profile file and from the ports ufw stored with the rules; policies come from /etc/default/ufw (which
    holds them while inactive too).
    Whether ufw is active is tested as ``ufw status`` does (zimbra_firewall.ufw.status_read), waiting at
    most ``lock_wait`` seconds for the xtables lock.
    """

    @staticmethod
    def default() -> dict:
        """What a host without ufw has (during planning; the preflight fails such a host before anything runs)."""
        return {
            "active": False,
            "active6": False,
            "incoming": "unknown",
            "outgoing": "unknown",
            "ipv6": True,
            "rules": [],
            "apps": {},
            "profiles": None,
        }

    def requires_command(self, profile_path: str, lock_wait: int = 60) -> str:
        return "ufw"

    def command(self, profile_path: str, lock_wait: int = 60) -> StringCommand:
        return StringCommand(
            f"{status_read(lock_wait)} && echo {SECTION} && {{ {read_user_rules()}; }} && echo {SECTION} && "
            f"{{ {read_app_profiles()}; }} && echo {SECTION} && {{ cat",
            QuoteString(profile_path),
            "2>/dev/null || echo",
            NO_FILE,
            "; }",
        )

    def process(self, output):
        try:
            return parse_state("\n".join(output))
        except ValueError as error:
            raise FactProcessError(str(error)) from None
