"""The Zimbra operations, state in → commands out: memcached's binding runs Zimbra's tools as the zimbra user
and, in the same remote command once they succeeded, the caller's `then` as root."""

import shlex
from types import SimpleNamespace

import pytest
from pyinfra.api import OperationValueError, StringCommand
from pyinfra.context import ctx_host

from tasks import zimbra


class FakeHost:
    def __init__(self):
        self.name = "mail"
        self.state = SimpleNamespace(is_executing=True)
        self.noops = []

    def noop(self, message):
        self.noops.append(message)


def produced(**arguments):
    fake = FakeHost()
    with ctx_host.use(fake):
        return [c.get_raw_value() for c in zimbra.memcached_binding._inner(**arguments)], fake.noops


def test_the_binding_runs_as_zimbra_then_the_undo_is_kept_as_root():
    (command,), _ = produced(
        server="mail.zfw.test",
        current={"zimbraMemcachedBindAddress": ["0.0.0.0"]},
        attributes={"zimbraMemcachedBindAddress": ["127.0.0.1", "10.0.0.5"]},
        then=StringCommand("sh", "-c", "'keep the undo'"),
    )
    words = shlex.split(command)
    assert words[:6] == ["runuser", "-u", "zimbra", "--", "sh", "-c"]
    assert words[7:] == ["&&", "sh", "-c", "keep the undo"]
    steps = words[6].split(" && ")
    assert steps[0] == (
        "/opt/zimbra/bin/zmprov -l ms mail.zfw.test zimbraMemcachedBindAddress 127.0.0.1 "
        "zimbraMemcachedBindAddress 10.0.0.5"
    )
    assert steps[1].startswith("{ /opt/zimbra/bin/zmmemcachedctl restart || { /opt/zimbra/bin/zmprov -l ms")


def test_nothing_to_change_sends_nothing_and_a_hostile_value_stays_one_word():
    assert produced(
        server="mail.zfw.test",
        current={"zimbraMemcachedBindAddress": ["127.0.0.1"]},
        attributes={"zimbraMemcachedBindAddress": ["127.0.0.1"]},
    ) == ([], ["memcached attributes already set"])
    (command,), _ = produced(server="-x;id", current={}, attributes={"zimbraMemcachedClientServerList": ["a;b"]})
    inner = shlex.split(shlex.split(command)[6])
    assert inner[:5] == ["/opt/zimbra/bin/zmprov", "-l", "ms", "-x;id", "zimbraMemcachedClientServerList"]
    assert inner[5] == "a;b"


@pytest.mark.parametrize("user", ["zimbra;id", "-u root", "", "Zimbra"])
def test_a_user_that_is_no_plain_name_is_refused(user):
    with pytest.raises(OperationValueError):
        produced(server="mail.zfw.test", current={}, attributes={"zimbraMemcachedBindPort": ["11211"]}, user=user)
