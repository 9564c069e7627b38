"""The Vagrant box the VM tests boot on this machine: Debian bookworm for vagrant-libvirt, made from the
lab's rootfs with a kernel, systemd and a boot loader added. Vagrant Cloud is not reachable from here, so
the box is built locally and cached under the lab's cache folder, named by a hash of its recipe (the
rootfs recipe plus this file's), so only a change of recipe builds a new one.

The disk is partitioned and its ext4 file system filled from a folder (mke2fs -d) without mounting;
only extlinux needs the file system mounted, for a moment, inside a private mount namespace.
"""

import glob
import hashlib
import json
import os
import shutil
import sys

from . import rootfs
from .errors import LabError

BOX_NAME = "zimbra-firewall/bookworm-lab"
PACKAGES = ["linux-image-amd64", "systemd-sysv", "udev", "dbus", "initramfs-tools"]
DISK_GIB = 8
PARTITION_OFFSET = 1024 * 1024
LABEL = "zfw-root"
# Debian's vagrant package ships the well-known insecure key: Vagrant swaps it for a new one at first boot
INSECURE_KEY_GLOB = "/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub"
HOST_TOOLS = {
    "extlinux": "extlinux",
    "qemu-img": "qemu-utils",
    "sfdisk": "fdisk",
    "mke2fs": "e2fsprogs",
    "vagrant": "vagrant",
}

# Runs inside the VM's root (chroot) once the packages are in.
SETUP_SCRIPT = r"""
set -e
: > /etc/resolv.conf
echo zfw-box > /etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 zfw-box\n::1 localhost ip6-localhost ip6-loopback\n' > /etc/hosts
printf 'LABEL=%(label)s / ext4 errors=remount-ro 0 1\n' > /etc/fstab
printf '[Match]\nName=e*\n\n[Network]\nDHCP=yes\n' > /etc/systemd/network/80-dhcp.network
systemctl enable systemd-networkd ssh
# the Zimbra stand-in runs its own slapd and memcached; the box is a Debian server with ufw, whose firewalld
# (the lab's rootfs has it for the RHEL-like hosts) stays off
systemctl disable slapd memcached firewalld 2>/dev/null || true
# host keys are made at first boot, never shared through the box
mkdir -p /etc/systemd/system/ssh.service.d
printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
  > /etc/systemd/system/ssh.service.d/host-keys.conf
id vagrant >/dev/null 2>&1 || useradd -m -s /bin/bash vagrant
echo 'vagrant:vagrant' | chpasswd
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/vagrant
chmod 440 /etc/sudoers.d/vagrant
install -d -m 700 -o vagrant -g vagrant /home/vagrant/.ssh
install -m 600 -o vagrant -g vagrant /tmp/vagrant.pub /home/vagrant/.ssh/authorized_keys
rm /tmp/vagrant.pub
# services start normally in the VM (the build's policy-rc.d stopped them in the chroot)
rm -f /usr/sbin/policy-rc.d
apt-get clean
rm -rf /var/lib/apt/lists/*
""" % {"label": LABEL}  # noqa: UP031 (a shell script: %-format keeps its braces literal)

EXTLINUX_CONF = """DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  LINUX /boot/{kernel}
  INITRD /boot/{initrd}
  APPEND root=LABEL={label} ro net.ifnames=0 console=ttyS0,115200 console=tty0
"""


def recipe_hash():
    recipe = "\n".join([rootfs.recipe_hash(), " ".join(PACKAGES), SETUP_SCRIPT, EXTLINUX_CONF, str(DISK_GIB)])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def box_path():
    return os.path.join(rootfs.cache_dir(), f"box-{rootfs.SUITE}-{recipe_hash()}.box")


def missing_tools():
    return sorted({package for tool, package in HOST_TOOLS.items() if not shutil.which(tool)})


def _run(cmd, log, **kwargs):
    rootfs.run_step(cmd, "box", stdout=log, stderr=log, **kwargs)


def build(force=False, log=sys.stderr):
    """Build the box unless a cached one matches the recipe; return its path."""
    target = box_path()
    if os.path.exists(target) and not force:
        return target
    if missing_tools():
        raise LabError(f"the box build needs: apt-get install {' '.join(missing_tools())}")
    keys = glob.glob(INSECURE_KEY_GLOB)
    if not keys:
        raise LabError("Vagrant's insecure public key was not found (apt-get install vagrant)")
    base = rootfs.build(log=log)
    work = target + ".partial"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    try:
        print(f"lab: building the Vagrant box {target} (a few minutes, once)", file=log, flush=True)
        root = os.path.join(work, "root")
        _run(["cp", "-a", base, root], log)
        _install_packages(root, keys[0], log)
        _write_extlinux_conf(root)
        raw = os.path.join(work, "disk.raw")
        _make_disk(raw, root, log)
        _pack(work, raw, target, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for old in glob.glob(os.path.join(rootfs.cache_dir(), f"box-{rootfs.SUITE}-*.box")):
        if old != target:
            os.unlink(old)
    print(f"lab: box ready: {target}", file=log, flush=True)
    return target


def _install_packages(root, insecure_key, log):
    shutil.copy(insecure_key, os.path.join(root, "tmp/vagrant.pub"))
    # apt needs a resolver for the mirror while building; the box gets an empty one again
    shutil.copy("/etc/resolv.conf", os.path.join(root, "etc/resolv.conf"))
    with open(os.path.join(root, "usr/sbin/policy-rc.d"), "w") as f:
        f.write("#!/bin/sh\nexit 101\n")
    os.chmod(os.path.join(root, "usr/sbin/policy-rc.d"), 0o755)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    # its own mount and pid namespaces: /proc for the kernel's scripts, nothing outlives the build
    chroot = ["unshare", "--mount", "--pid", "--fork", "--kill-child", f"--mount-proc={root}/proc", "chroot", root]
    _run(chroot + ["apt-get", "update", "-q"], log, env=env)
    _run(chroot + ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES], log, env=env)
    _run(chroot + ["sh", "-c", SETUP_SCRIPT], log, env=env)


def _write_extlinux_conf(root):
    boot = os.path.join(root, "boot")
    kernel = max(n for n in os.listdir(boot) if n.startswith("vmlinuz-"))
    initrd = "initrd.img-" + kernel[len("vmlinuz-") :]
    if not os.path.exists(os.path.join(boot, initrd)):
        raise LabError(f"box build failed: no {initrd} was made for {kernel}")
    os.makedirs(os.path.join(boot, "extlinux"), exist_ok=True)
    with open(os.path.join(boot, "extlinux/extlinux.conf"), "w") as f:
        f.write(EXTLINUX_CONF.format(kernel=kernel, initrd=initrd, label=LABEL))


def _make_disk(raw, root, log):
    with open(raw, "wb") as f:
        f.truncate(DISK_GIB * 1024**3)
    _run(["sfdisk", "-q", raw], log, input=f"label: dos\nstart={PARTITION_OFFSET // 512}, type=83, bootable\n".encode())
    size_kib = (DISK_GIB * 1024**3 - PARTITION_OFFSET) // 1024
    # syslinux 6.04 cannot boot from 64-bit ext4
    _run(
        [
            "mke2fs",
            "-q",
            "-F",
            "-t",
            "ext4",
            "-O",
            "^64bit",
            "-L",
            LABEL,
            "-d",
            root,
            "-E",
            f"offset={PARTITION_OFFSET}",
            raw,
            f"{size_kib}k",
        ],
        log,
    )
    mountpoint = raw + ".mnt"
    os.makedirs(mountpoint)
    _run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            'mount -o loop,offset="$1" "$2" "$3" && extlinux --install "$3/boot/extlinux"; s=$?; umount "$3"; exit $s',
            "sh",
            str(PARTITION_OFFSET),
            raw,
            mountpoint,
        ],
        log,
    )
    os.rmdir(mountpoint)
    with open("/usr/lib/EXTLINUX/mbr.bin", "rb") as f:
        mbr = f.read(440)
    with open(raw, "r+b") as f:
        f.write(mbr)


def _pack(work, raw, target, log):
    _run(["qemu-img", "convert", "-O", "qcow2", raw, os.path.join(work, "box.img")], log)
    os.unlink(raw)
    with open(os.path.join(work, "metadata.json"), "w") as f:
        json.dump({"provider": "libvirt", "format": "qcow2", "virtual_size": DISK_GIB}, f)
    with open(os.path.join(work, "Vagrantfile"), "w") as f:
        f.write("# zimbra-firewall's locally built Debian bookworm box (see lab/box.py)\n")
    _run(["tar", "-cf", target + ".tmp", "-C", work, "metadata.json", "Vagrantfile", "box.img"], log)
    os.rename(target + ".tmp", target)
