"""Markers by folder: tests/lab/ needs the rehearsal lab (root, namespaces), tests/vm/ a Vagrant VM (run
by `make vm-test` inside the VM lab's namespace, with ZFW_VM_TESTS=1). The rest are unit tests:
`pytest -m "not lab and not vm"` (make unit) runs them without root and never touches a lab."""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

collect_ignore = [] if os.environ.get("ZFW_VM_TESTS") == "1" else ["vm"]


def pytest_collection_modifyitems(items):
    for item in items:
        folder = os.path.basename(os.path.dirname(str(item.path)))
        if folder in ("lab", "vm"):
            item.add_marker(getattr(pytest.mark, folder))
