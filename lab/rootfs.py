"""The lab's shared, read-only Debian bookworm root filesystem.

Built once with debootstrap and cached under the cache directory, named by a hash of its recipe
(this file's package list and setup script), so a change of recipe builds a new one and nothing
else does.
"""

import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys

from .errors import LabError

SUITE = "bookworm"
PACKAGES = [
    "at",
    "ca-certificates",
    "curl",
    "dbus",
    "firewalld",
    "iproute2",
    "iptables",
    "iputils-ping",
    "ldap-utils",
    "memcached",
    "netcat-openbsd",
    "nftables",
    "openssh-server",
    "openssl",
    "procps",
    "python3",
    "python3-yaml",
    "slapd",
    "sudo",
    "ufw",
]

# Runs inside the new root (chroot) once the packages are in.
SETUP_SCRIPT = r"""
set -e
# no daemon may start while packages configure: they would run in the machine's own namespaces
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
# no route out: a resolver would make every sudo wait on DNS
: > /etc/resolv.conf
# host keys are made per host at start, never shared through the image
rm -f /etc/ssh/ssh_host_*
# Debian's own slapd database is not used: the Zimbra stand-in runs its own
rm -rf /etc/ldap/slapd.d /var/lib/ldap/*
mkdir -p /run/sshd
sed -i 's/^#\?PermitRootLogin.*/PermitRootLogin prohibit-password/' /etc/ssh/sshd_config
sed -i 's/^#\?UseDNS.*/UseDNS no/' /etc/ssh/sshd_config
# container hosts have no kernel modules of their own to load
sed -i 's/^IPT_MODULES=.*/IPT_MODULES=""/' /etc/default/ufw
echo 'root:*' | chpasswd -e
apt-get clean
rm -rf /var/lib/apt/lists/*
"""

DEBCONF_SELECTIONS = "slapd slapd/no_configuration boolean true\n"


def recipe_hash():
    recipe = "\n".join([SUITE, " ".join(PACKAGES), SETUP_SCRIPT, DEBCONF_SELECTIONS])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def cache_dir():
    return os.environ.get("LAB_CACHE", "/var/cache/zimbra-firewall-lab")


def rootfs_path():
    return os.path.join(cache_dir(), f"rootfs-{SUITE}-{recipe_hash()}")


def debian_mirror(apt_dir="/etc/apt"):
    """The Debian mirror this machine's apt uses (LAB_MIRROR overrides it)."""
    if os.environ.get("LAB_MIRROR"):
        return os.environ["LAB_MIRROR"]
    for path in sorted(glob.glob(os.path.join(apt_dir, "sources.list.d", "*.sources"))):
        with open(path) as f:
            for stanza in f.read().split("\n\n"):
                fields = dict(line.split(":", 1) for line in stanza.splitlines() if re.match(r"^[A-Za-z-]+:", line))
                suites = fields.get("Suites", "").split()
                if SUITE in suites and "URIs" in fields:
                    return fields["URIs"].split()[0]
    sources_list = os.path.join(apt_dir, "sources.list")
    if os.path.exists(sources_list):
        with open(sources_list) as f:
            for line in f:
                words = line.split()
                if len(words) >= 3 and words[0] == "deb" and SUITE in words[2:] and "security" not in words[1]:
                    return next(w for w in words[1:] if "://" in w)
    raise LabError("no Debian mirror found in apt's configuration; set LAB_MIRROR")


def run_step(cmd, what="rootfs", **kwargs):
    """One step of building an image (`what`): a failure stops the build naming the command."""
    result = subprocess.run(cmd, **kwargs)
    if result.returncode:
        raise LabError(f"{what} build failed: {' '.join(cmd)} exited {result.returncode}")


def build(force=False, log=sys.stderr):
    """Build the rootfs unless a cached one matches the recipe; return its path."""
    target = rootfs_path()
    if os.path.isdir(target) and not force:
        return target
    if not shutil.which("debootstrap"):
        raise LabError("debootstrap is missing: apt-get install debootstrap")
    mirror = debian_mirror()
    os.makedirs(cache_dir(), exist_ok=True)
    work = target + ".partial"
    shutil.rmtree(work, ignore_errors=True)
    print(f"lab: building the {SUITE} rootfs in {target} (a few minutes, once)", file=log, flush=True)
    run_step(["debootstrap", "--variant=minbase", SUITE, work, mirror], stdout=log, stderr=log)
    os.makedirs(os.path.join(work, "usr/sbin"), exist_ok=True)
    with open(os.path.join(work, "usr/sbin/policy-rc.d"), "w") as f:
        f.write("#!/bin/sh\nexit 101\n")
    os.chmod(os.path.join(work, "usr/sbin/policy-rc.d"), 0o755)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    # the chroot gets its own mount and pid namespaces, so nothing it starts outlives the build
    chroot = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "chroot", work]
    run_step(chroot + ["debconf-set-selections"], input=DEBCONF_SELECTIONS.encode(), stdout=log, stderr=log, env=env)
    run_step(
        chroot + ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
        stdout=log,
        stderr=log,
        env=env,
    )
    run_step(chroot + ["sh", "-c", SETUP_SCRIPT], stdout=log, stderr=log, env=env)
    os.rename(work, target)
    for old in glob.glob(os.path.join(cache_dir(), f"rootfs-{SUITE}-*")):
        if old != target and not old.endswith(".partial"):
            shutil.rmtree(old, ignore_errors=True)
    print(f"lab: rootfs ready: {target}", file=log, flush=True)
    return target
