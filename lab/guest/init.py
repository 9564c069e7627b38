"""PID 1 of a lab host: configure the host from /etc/lab-host.json, start its services, then stay up
as the host's init (reaping orphans) and, on a Zimbra host, as the stand-in listener for every Zimbra
port that no real service of the lab serves.

Runs inside the host's own namespaces and root, with the host's python3.
"""

import json
import os
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
