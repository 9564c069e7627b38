"""PID 1 of a lab host: configure the host from /etc/lab-host.json, start its services, then stay up
as the host's init (reaping orphans) and, on a Zimbra host, as the stand-in listener for every Zimbra
port that no real service of the lab serves.

Runs inside the host's own namespaces and root, with the host's python3.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from listeners import open_listeners, serve

CONFIG = "/etc/lab-host.json"
READY = "/var/lib/lab/ready"


def run(*cmd, **kwargs):
    subprocess.run(cmd, check=True, **kwargs)


def wait_for_interface(name, timeout=30):
    deadline = time.monotonic() + timeout
    while not os.path.exists(f"/sys/class/net/{name}"):
        if time.monotonic() > deadline:
            sys.exit(f"lab init: interface {name} never appeared")
        time.sleep(0.02)


def configure_network(host):
    run("ip", "link", "set", "lo", "up")
    wait_for_interface("eth0")
    # no duplicate address detection: addresses are unique by construction and must work at once
    with open("/proc/sys/net/ipv6/conf/eth0/accept_dad", "w") as f:
        f.write("0")
    run("ip", "addr", "add", f"{host['ipv4']}/{host['ipv4_prefixlen']}", "dev", "eth0")
    run("ip", "addr", "add", f"{host['ipv6']}/{host['ipv6_prefixlen']}", "dev", "eth0", "nodad")
    run("ip", "link", "set", "eth0", "up")


def write_hosts_file(host):
    with open("/etc/hosts", "w") as f:
        f.write(host["hosts_file"])
    with open("/etc/hostname", "w") as f:
        f.write(host["name"] + "\n")
    socket.sethostname(host["name"])


# RHEL 8/9's firewalld package adds cockpit to the zones it ships ("RHEL only: Add cockpit by default to some
# zones", the RHEL patch of firewalld's config/zones/public.xml); Debian's does not: the lab's firewalld hosts
# start as a RHEL server does
RHEL_PUBLIC_ZONE = """<?xml version="1.0" encoding="utf-8"?>
<zone>
  <short>Public</short>
  <description>For use in public areas. You do not trust the other computers on networks to not harm your \
computer. Only selected incoming connections are accepted.</description>
  <service name="ssh"/>
  <service name="dhcpv6-client"/>
  <service name="cockpit"/>
  <forward/>
</zone>
"""


def start_firewalld(timeout=60):
    """A RHEL-family host's firewall: firewalld (nftables backend, in this host's network namespace only) on
    its own system D-Bus, with RHEL's default zone; ufw is not installed on such a host."""
    os.unlink("/usr/sbin/ufw")
    shutil.rmtree("/etc/ufw")
    os.unlink("/etc/default/ufw")
    with open("/usr/lib/firewalld/zones/public.xml", "w") as f:
        f.write(RHEL_PUBLIC_ZONE)
    os.makedirs("/run/dbus", exist_ok=True)
    run("dbus-daemon", "--system", "--fork")
    log = open("/var/log/firewalld.console", "w")
    subprocess.Popen(["firewalld", "--nofork", "--nopid"], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.monotonic() + timeout
    while subprocess.run(["firewall-cmd", "--state"], capture_output=True).returncode:
        if time.monotonic() > deadline:
            sys.exit(f"lab init: firewalld not running after {timeout} s")
        time.sleep(0.2)


def reap_children(*_):
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main():
    with open(CONFIG) as f:
        host = json.load(f)
    write_hosts_file(host)
    run("usermod", "--shell", "/opt/lab/login-shell", "root")
    configure_network(host)
    sockets = []
    if "zimbra" in host:
        sys.path.insert(0, "/opt/zimbra/common/lib/lab")
        import standin

        standin.provision(host)
        sockets = open_listeners(host["listen"])
        if host.get("firewall") == "firewalld":
            start_firewalld()
    run("/usr/sbin/sshd")
    # installed only now: subprocess.run must reap its own children while the host is set up
    signal.signal(signal.SIGCHLD, reap_children)
    reap_children()
    os.makedirs(os.path.dirname(READY), exist_ok=True)
    with open(READY, "w") as f:
        f.write(str(os.getpid()))
    if sockets:
        serve(sockets)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
