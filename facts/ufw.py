"""Facts about ufw (its state, in one command) and the text of a file."""

from pyinfra.api import FactBase, FactProcessError, QuoteString, StringCommand

from zimbra_firewall.ufw import NO_FILE, SECTION, parse_state, read_user_rules, status_read


class UfwState(FactBase):
    """
    Everything the ufw operations compare against, in ONE command (reads are what a no-op run costs):
    ``{"active": True, "incoming": "deny", "outgoing": "allow", "ipv6": True, "rules": [("allow", "22/tcp"),
    ...], "profiles": "<text of the profile file>" or None}``. Rules are those `ufw show added` prints, read
    from ufw's user rule files without starting ufw's Python (readable while ufw is inactive); policies come
    from /etc/default/ufw (which holds them while inactive too).
    Whether ufw is active is tested as ``ufw status`` does (zimbra_firewall.ufw.status_read), waiting at
    most ``lock_wait`` seconds for the xtables lock.
    """

    @staticmethod
    def default() -> dict:
        """What a host without ufw has (during planning; the preflight fails such a host before anything runs)."""
        return {
            "active": False,
            "incoming": "unknown",
            "outgoing": "unknown",
            "ipv6": True,
            "rules": [],
            "profiles": None,
        }

    def requires_command(self, profile_path: str, lock_wait: int = 60) -> str:
        return "ufw"

    def command(self, profile_path: str, lock_wait: int = 60) -> StringCommand:
        return StringCommand(
            f"{status_read(lock_wait)} && echo {SECTION} && {{ {read_user_rules()}; }} && echo {SECTION} && {{ cat",
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


class FileText(FactBase):
    """The text of a file (without its final newline), empty when it does not exist."""

    def command(self, path: str) -> StringCommand:
        return StringCommand("cat", QuoteString(path), "2>/dev/null", "||", "true")

    def process(self, output):
        return "\n".join(output)
