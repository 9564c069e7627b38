"""Facts about firewalld: its configuration and what is in force, in one command."""

from pyinfra.api import FactBase, FactProcessError

from zimbra_firewall.firewalld import State, parse_state, state_read


class FirewalldState(FactBase):
    """
    Everything the firewalld operations compare against, in ONE command that starts no firewall-cmd (a Python
    program talking D-Bus): whether firewalld runs, its default zone, the zones the kernel dispatches incoming
    packets to (read from firewalld's nft chain), the zone, service and policy files in force, and whether
    the configuration and the kernel's ruleset are still what the last reload made (digests kept in
    ``record``): a ``zimbra_firewall.firewalld.State``.
    """

    @staticmethod
    def default() -> State:
        """What a host without firewalld has (during planning; the preflight fails such a host)."""
        return State(False, "public", (), {}, {}, {})

    def requires_command(self, record: str) -> str:
        return "firewall-cmd"

    def command(self, record: str) -> str:
        return state_read(record)

    def process(self, output: list[str]) -> State:
        try:
            return parse_state("\n".join(output) + "\n")
        except ValueError as error:
            raise FactProcessError(str(error)) from None
