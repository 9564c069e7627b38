"""Vagrant failing the ways a user meets: a box that cannot be found, a VM that does not boot in time.
Each must say so, and leave no VM and no disk behind (the VM lab's `down` then removes the daemons)."""

import os
import subprocess

from support import REPO


def vagrant(*args, **settings):
    return subprocess.run(
        ["vagrant", *args], cwd=REPO, capture_output=True, text=True, timeout=900, env=dict(os.environ, **settings)
    )


def libvirt_leftovers():
    virsh = ["virsh", "-c", "qemu:///system"]
    domains = subprocess.run(virsh + ["list", "--all", "--name"], capture_output=True, text=True).stdout.split()
    volumes = subprocess.run(virsh + ["vol-list", "default"], capture_output=True, text=True).stdout
    # the box's image stays in the pool, as Vagrant keeps it for the next VM; a VM's own disk must not
    return domains, [line.split()[0] for line in volumes.splitlines()[2:] if line.strip() and "vagrant_box" not in line]


def test_a_box_that_cannot_be_found_says_so_and_creates_nothing():
    result = vagrant("up", "zimbra", ZFW_BOX="no-such/box")
    assert result.returncode != 0
    assert "no-such/box" in result.stdout + result.stderr
    assert libvirt_leftovers() == ([], [])


def test_a_vm_that_does_not_boot_in_time_says_so_and_destroy_leaves_nothing():
    result = vagrant("up", "zimbra", ZFW_BOOT_TIMEOUT="5")
    assert result.returncode != 0
    assert "time" in (result.stdout + result.stderr).lower()
    assert vagrant("destroy", "-f").returncode == 0
    assert libvirt_leftovers() == ([], [])


def test_a_bad_setting_is_refused_before_vagrant_does_anything():
    result = vagrant("status", ZFW_VMS="zimbra,nosuchvm")
    assert result.returncode != 0 and "ZFW_VMS: unknown VM nosuchvm" in result.stdout + result.stderr
