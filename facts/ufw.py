"""Facts about ufw: its rules, status and defaults, and the Zimbra profile file. Each is one command."""

from pyinfra.api import FactBase, QuoteString, StringCommand

from zimbra_firewall.ufw import parse_defaults, parse_show_added, parse_status, wait_for_xtables_lock

SECTION = "@@zimbra-firewall@@"


class UfwRules(FactBase):
    """
    The user rules ufw holds, as `ufw show added` prints them (readable while ufw is inactive):
    a list of argument tuples such as ``("allow", "from", "10.0.0.0/24", "to", "any", "app", "Zimbra Local")``.
    """

    default = list

    def requires_command(self):
        return "ufw"

    def command(self):
        return "LC_ALL=C ufw show added"

    def process(self, output):
        return parse_show_added("\n".join(output))


class UfwStatus(FactBase):
    """
    Whether ufw is active, its default policies and IPv6 setting:
    ``{"active": True, "incoming": "deny", "outgoing": "allow", "ipv6": True}``. Policies come from
    /etc/default/ufw, which holds them while ufw is inactive too. ``ufw status`` reads the kernel's
    rules, so it first waits at most ``lock_wait`` seconds for the xtables lock.
    """

    def requires_command(self, lock_wait=60):
        return "ufw"

    def command(self, lock_wait=60):
        return (f"{wait_for_xtables_lock(lock_wait)}; LC_ALL=C ufw status && echo {SECTION} && "
                "cat /etc/default/ufw")

    def process(self, output):
        status_text, _, defaults_text = "\n".join(output).partition(SECTION)
        return {**parse_defaults(defaults_text), "active": parse_status(status_text)["active"]}


class FileText(FactBase):
    """The text of a file (without its final newline), or None when it does not exist."""

    def command(self, path):
        return StringCommand("cat", QuoteString(path), "2>/dev/null", "||", "true")

    def process(self, output):
        return "\n".join(output)
