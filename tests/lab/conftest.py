"""The lab suite: one lab per machine, brought up by the tests that need it and torn down at the end."""

import pytest
from support import deploy

from lab import client


@pytest.fixture(scope="session", autouse=True)
def lab_teardown():
    yield
    client.lab("down", check=False)


@pytest.fixture
def fresh_lab():
    """A lab just brought up: Zimbra hosts as fresh installs."""
    client.lab("down")
    client.lab("up")
    return client.status()


@pytest.fixture(scope="module")
def deployed_cluster():
    """The lab's cluster, brought up fresh and deployed once per test module: the first run's result."""
    client.lab("down")
    client.lab("up", "--topology", "cluster")
    first = deploy()
    assert first.returncode == 0, first.stderr[-3000:]
    return first
