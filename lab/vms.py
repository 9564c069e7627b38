"""Vagrant VMs on this machine: libvirt's daemons, bridge, dnsmasq and VMs in a network and mount
namespace made for them, never in the machine's own.

`python -m lab vms up` builds (or reuses) the box, starts the namespace with virtlogd and libvirtd in it,
and adds the box to Vagrant; `python -m lab vms run -- CMD` runs CMD inside that namespace (vagrant,
pyinfra, pytest: the VMs' addresses exist only there) with Vagrant's settings for this machine;
`python -m lab vms down` destroys the VMs and stops every process of the namespace, by PID.
Which VMs exist is the Vagrantfile's business, not this module's.
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from . import box, rootfs
from .errors import LabError

LIBVIRT_DIRS = {
    "etc": "/etc/libvirt",
    "lib": "/var/lib/libvirt",
    "run": "/run/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIRED = {
    "virtlogd": "libvirt-daemon-system",
    "libvirtd": "libvirt-daemon-system",
    "virsh": "libvirt-clients",
    "qemu-system-x86_64": "qemu-system-x86",
    "dnsmasq": "dnsmasq-base",
    "nsenter": "util-linux",
    "vagrant": "vagrant vagrant-libvirt",
}

# PID 1 of nothing: the holder of the namespaces. It mounts libvirt's folders from the state folder, its
# own /sys (the namespace's network devices; no cgroups: qemu.conf says not to use them), starts the
# daemons and then only reaps children.
HOLDER_SCRIPT = r"""
set -e
state="$1"
mount --make-rprivate /
for pair in etc:/etc/libvirt lib:/var/lib/libvirt run:/run/libvirt log:/var/log/libvirt cache:/var/cache/libvirt; do
  mkdir -p "${pair#*:}"
  mount --bind "$state/libvirt/${pair%%:*}" "${pair#*:}"
done
mount -t sysfs sysfs /sys
ip link set lo up
virtlogd -d
libvirtd -d
echo ready > "$state/holder-ready"
trap '' TERM
while true; do sleep 3600 & wait $! || true; done
"""

QEMU_CONF = """# zimbra-firewall VM lab: qemu runs as root, without cgroups or a security driver (no systemd here)
user = "root"
group = "root"
security_driver = "none"
cgroup_controllers = [ ]
"""


def state_dir():
    return os.environ.get("LAB_VMS_STATE", "/run/zimbra-firewall-vms")


def vagrant_home():
    return os.path.join(rootfs.cache_dir(), "vagrant.d")


def _state_file():
    return os.path.join(state_dir(), "state.json")


def _load():
    try:
        with open(_state_file()) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def require_root_and_tools():
    if os.geteuid() != 0:
        raise LabError("the VM lab needs root (namespaces, libvirt's daemons): run it with sudo")
    missing = sorted({pkg for tool, pkg in REQUIRED.items() if not shutil.which(tool)} | set(box.missing_tools()))
    if missing:
        raise LabError(f"missing tools: apt-get install {' '.join(missing)}")
    plugins = subprocess.run(["vagrant", "plugin", "list"], capture_output=True, text=True, env=vagrant_env()).stdout
    if "vagrant-libvirt" not in plugins:
        raise LabError("Vagrant has no libvirt provider: apt-get install vagrant-libvirt")


def vagrant_env():
    """What Vagrant needs on this machine: its home (the cached box), the libvirt provider, and software
    emulation (KVM opens here but cannot run guests)."""
    return dict(
        os.environ,
        VAGRANT_HOME=vagrant_home(),
        VAGRANT_DEFAULT_PROVIDER="libvirt",
        VAGRANT_DOTFILE_PATH=os.path.join(state_dir(), "vagrant"),
        ZFW_BOX=box.BOX_NAME,
        ZFW_LIBVIRT_DRIVER=os.environ.get("ZFW_LIBVIRT_DRIVER", "qemu"),
        VAGRANT_CHECKPOINT_DISABLE="1",
        VAGRANT_NO_PLUGINS_UPDATE="1",
    )


def _net_inode(pid):
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    # a process that is gone, or one even root may not inspect (the machine's own init): not ours
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def _pids_in_netns(inode):
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and _net_inode(entry) == inode:
            pids.append(int(entry))
    return pids


def _prepare_libvirt_config(folder):
    for name in LIBVIRT_DIRS:
        os.makedirs(os.path.join(folder, name), exist_ok=True)
    shutil.copytree("/etc/libvirt", os.path.join(folder, "etc"), dirs_exist_ok=True)
    with open(os.path.join(folder, "etc/qemu.conf"), "w") as f:
        f.write(QEMU_CONF)
    # libvirt's own "default" network is not wanted: vagrant-libvirt makes the one it uses
    for link in glob.glob(os.path.join(folder, "etc/qemu/networks/autostart/*")):
        os.unlink(link)
    os.makedirs(os.path.join(folder, "lib/images"), exist_ok=True)


def up(timeout=60, log=sys.stderr):
    require_root_and_tools()
    if _load():
        raise LabError("the VM lab is up already (python -m lab vms down first)")
    box_file = box.build(log=log)
    folder = state_dir()
    shutil.rmtree(folder, ignore_errors=True)
    _prepare_libvirt_config(os.path.join(folder, "libvirt"))
    holder = subprocess.Popen(
        ["unshare", "--net", "--mount", "sh", "-c", HOLDER_SCRIPT, "sh", folder],
        stdout=open(os.path.join(folder, "holder.log"), "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    # right after the start, the holder may not have entered its own namespace yet
    while _net_inode(holder.pid) in (None, _net_inode(os.getpid())) and holder.poll() is None:
        time.sleep(0.01)
    with open(_state_file(), "w") as f:
        json.dump({"holder": holder.pid, "netns_inode": _net_inode(holder.pid)}, f)
    while not os.path.exists(os.path.join(folder, "holder-ready")):
        if holder.poll() is not None or time.monotonic() > deadline:
            detail = open(os.path.join(folder, "holder.log")).read().strip().splitlines()
            down(log=log)
            raise LabError(f"libvirt did not start in its namespace: {detail[-1] if detail else 'no output'}")
        time.sleep(0.1)
    _wait_for_libvirt(deadline, log)
    _ensure_box(box_file, log)
    print("lab: VM namespace up (libvirt in it); run commands there with: python -m lab vms run -- CMD", file=log)


def _wait_for_libvirt(deadline, log):
    while run_argv(["virsh", "-c", "qemu:///system", "version"], capture=True).returncode:
        if time.monotonic() > deadline:
            down(log=log)
            raise LabError(
                f"libvirtd did not answer in its namespace (see its log in {os.path.join(state_dir(), 'libvirt/log')})"
            )
        time.sleep(0.2)
    pool = ["virsh", "-c", "qemu:///system"]
    run_argv(pool + ["pool-define-as", "default", "dir", "--target", "/var/lib/libvirt/images"], capture=True)
    run_argv(pool + ["pool-start", "default"], capture=True)


def _ensure_box(box_file, log):
    """Add the cached box to Vagrant unless this very build is there already."""
    marker = os.path.join(vagrant_home(), "zimbra-firewall-box")
    if os.path.exists(marker) and open(marker).read() == os.path.basename(box_file):
        return
    os.makedirs(vagrant_home(), exist_ok=True)
    result = subprocess.run(
        ["vagrant", "box", "add", "--force", "--name", box.BOX_NAME, box_file],
        env=vagrant_env(),
        stdout=log,
        stderr=log,
    )
    if result.returncode:
        down(log=log)
        raise LabError(f"vagrant box add {box_file} failed")
    with open(marker, "w") as f:
        f.write(os.path.basename(box_file))


def _holder_pid():
    state = _load()
    if not state or not state.get("netns_inode") or _net_inode(state["holder"]) != state["netns_inode"]:
        raise LabError("the VM lab is not up: run `python -m lab vms up` (as root) first")
    return state["holder"]


def run_argv(argv, capture=False):
    """Run argv inside the VM namespace (network and mount) with Vagrant's settings for this machine, in
    the repository's folder (where the Vagrantfile is)."""
    # entering a mount namespace moves to its root: --wd comes back to the repository
    command = ["nsenter", f"--target={_holder_pid()}", "--net", "--mount", f"--wd={REPO}", "--", *argv]
    return subprocess.run(command, env=vagrant_env(), capture_output=capture, text=True)


def down(log=sys.stderr):
    """Destroy the VMs, stop every process in the namespace (by PID), remove the state folder."""
    require_root_and_tools()
    state = _load()
    if state and state.get("netns_inode") and _net_inode(state["holder"]) == state["netns_inode"]:
        if os.path.isdir(os.path.join(state_dir(), "vagrant", "machines")):
            run_argv(["vagrant", "destroy", "-f"], capture=True)
        inode = state["netns_inode"]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in _pids_in_netns(inode):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while _pids_in_netns(inode) and time.monotonic() < deadline:
                time.sleep(0.1)
        left = _pids_in_netns(inode)
        if left:
            raise LabError(f"processes of the VM lab did not stop: {left}")
    elif state:
        try:
            os.kill(state["holder"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(state_dir(), ignore_errors=True)
    print("lab: VM namespace down", file=log)


def status():
    state = _load()
    if not state:
        return {"status": "down"}
    alive = bool(state.get("netns_inode")) and _net_inode(state["holder"]) == state["netns_inode"]
    info = {
        "status": "up" if alive else "broken",
        "holder": state["holder"],
        "state_dir": state_dir(),
        "vagrant_home": vagrant_home(),
        "box": box.BOX_NAME,
    }
    if alive:
        machines = run_argv(["vagrant", "status", "--machine-readable"], capture=True).stdout
        info["machines"] = {
            line.split(",")[1]: line.split(",", 3)[3]
            for line in machines.splitlines()
            if line.count(",") >= 3 and line.split(",")[2] == "state"
        }
    return info
