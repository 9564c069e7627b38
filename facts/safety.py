"""Facts for the safety steps: the controller's SSH connection as the host sees it."""

from pyinfra.api import FactBase


class SshConnection(FactBase):
    """``$SSH_CONNECTION`` on the host ("client-ip client-port server-ip server-port"), or None.
    Read it with ``_sudo=False``: sudo drops the variable."""

    def command(self):
        return 'echo "$SSH_CONNECTION"'

    def process(self, output):
        return " ".join(output).strip() or None
