"""The new SSH connection that disarms the rollback: a connection dropped once (sshd's MaxStartups under a scan)
is tried again; one that never gets through fails the host, naming why, so the rollback restores it."""

from tasks import safety


class Connector:
    """A connector whose connect() follows a script: True connects, an exception is raised."""

    script: list = []

    def __init__(self, state, host):
        self.client = None

    def connect(self):
        outcome = Connector.script.pop(0)
        if outcome is not True:
            raise outcome

    def run_shell_command(self, command):
        return True, []


class Host:
    def __init__(self):
        self.connector = Connector(None, self)
        self.logged = []

    def log_styled(self, message, **_style):
        self.logged.append(message)


def test_a_connection_dropped_before_the_banner_is_tried_again_and_then_confirms():
    host = Host()
    Connector.script = [OSError("Error reading SSH protocol banner"), True]
    assert safety.confirm_new_connection(None, host, pause=0) is True
    assert Connector.script == []
    assert host.logged == ["a new SSH connection did not get through (Error reading SSH protocol banner): trying again"]


def test_a_firewall_that_blocks_ssh_fails_every_attempt_and_the_host_with_the_reason():
    host = Host()
    Connector.script = [TimeoutError("timed out")] * 3 + [True]
    assert safety.confirm_new_connection(None, host, attempts=3, pause=0) is False
    assert Connector.script == [True]  # no fourth attempt
    assert (
        host.logged[-1] == "a new SSH connection did not get through (timed out): the rollback puts the firewall back"
    )
    assert len(host.logged) == 3
