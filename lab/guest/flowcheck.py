"""Run flow checks from this host, all at once (used by `python -m lab flows`):
    python3 /opt/lab/flowcheck.py < {"timeout": S, "checks": [...]}  → JSON list of outcomes

Each check names its destination by host name, resolved here as the host's own processes resolve it
(/etc/hosts), in one address family. Kinds:
- connect: a TCP connection (connected = ok; refused, unreachable or no answer = blocked);
- memcache: a TCP connection and memcached's `version` exchange (ok only with a VERSION reply);
- datagram: one UDP datagram carrying the check's token; the caller asks the destination's listener
  whether it recorded the token (the reply we wait for here only says the datagram was handled);
- nginx-memcache: the memcache exchange with every `servers` line of nginx.conf.memcache, as nginx
  would (one outcome per line).
"""

import errno
import json
import os
import re
import selectors
import socket
import sys
import time

from tcpconnect import begin, result

NGINX_MEMCACHE = "/opt/zimbra/conf/nginx/includes/nginx.conf.memcache"
SERVERS_LINE = re.compile(r"^\s*servers\s+(\S+):(\d+);\s*$")


def resolve(name, family):
    try:
        info = socket.getaddrinfo(name, None, socket.AF_INET if family == 4 else socket.AF_INET6, socket.SOCK_STREAM)
    except socket.gaierror:
        return None
    return info[0][4][0] if info else None


def nginx_memcache_targets():
    try:
        with open(NGINX_MEMCACHE) as f:
            text = f.read()
    except OSError:
        return None
    targets = []
    for line in text.splitlines():
        match = SERVERS_LINE.match(line)
        if match:
            targets.append((match.group(1).strip("[]"), int(match.group(2))))
    return targets


def expand(checks):
    """nginx-memcache checks become one memcache check per address in nginx's configuration."""
    ready, outcomes = [], []
    for check in checks:
        if check["kind"] != "nginx-memcache":
            ready.append(check)
            continue
        targets = nginx_memcache_targets()
        if not targets:
            outcomes.append(
                {
                    "flow": check["flow"],
                    "address": None,
                    "ok": False,
                    "detail": f"no servers in {NGINX_MEMCACHE}" if targets == [] else f"no {NGINX_MEMCACHE}",
                }
            )
        for address, port in targets or []:
            ready.append(dict(check, kind="memcache", address=address, port=port, family=6 if ":" in address else 4))
    return ready, outcomes


class Probe:
    def __init__(self, check, address):
        self.check, self.address, self.done, self.ok, self.detail = check, address, False, False, ""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        udp = check["kind"] == "datagram"
        self.sock = socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        self.sock.setblocking(False)
        if udp:
            self.sock.connect((address, check["port"]))
            try:
                self.sock.send(f"<14>zimbra-firewall-lab: {check['token']}".encode())
            except OSError as error:
                self.finish(False, error.strerror)
                return
            self.events = selectors.EVENT_READ
        else:
            self.events = selectors.EVENT_WRITE
            failed = begin(self.sock, (address, check["port"]))
            if failed:
                self.finish(False, f"connect failed at once: {os.strerror(failed)}")
        self.asked = False

    def finish(self, ok, detail):
        self.done, self.ok, self.detail = True, ok, detail
        self.sock.close()

    def step(self):
        """Advance on readiness; returns the events still wanted, or None when done."""
        kind = self.check["kind"]
        try:
            if kind == "datagram":
                self.sock.recv(2048)
                self.finish(True, "sent")
                return None
            if not self.asked:
                error = result(self.sock)
                if error:
                    self.finish(False, "refused" if error == errno.ECONNREFUSED else os.strerror(error))
                    return None
                if kind == "connect":
                    # from which address: an exposure's report says who got in
                    self.finish(True, f"connected from {self.sock.getsockname()[0]}")
                    return None
                self.sock.send(b"version\r\n")
                self.asked = True
                return selectors.EVENT_READ
            reply = self.sock.recv(256).decode(errors="replace").strip()
            self.finish(reply.startswith("VERSION"), reply or "closed without a reply")
        except ConnectionRefusedError:
            self.finish(False, "refused")
        except OSError as error:
            self.finish(False, error.strerror or str(error))
        return None


def main():
    request = json.load(sys.stdin)
    checks, outcomes = expand(request["checks"])
    selector = selectors.DefaultSelector()
    probes = []
    for check in checks:
        address = check.get("address") or resolve(check["name"], check["family"])
        if address is None:
            outcomes.append(
                {
                    "flow": check["flow"],
                    "family": check["family"],
                    "address": None,
                    "ok": False,
                    "detail": f"{check['name']} does not resolve (IPv{check['family']})",
                }
            )
            continue
        probe = Probe(check, address)
        probes.append(probe)
        if not probe.done:
            selector.register(probe.sock, probe.events, probe)
    deadline = time.monotonic() + request["timeout"]
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(max(0.0, deadline - time.monotonic())):
            probe = key.data
            selector.unregister(probe.sock)
            wanted = probe.step()
            if wanted:
                selector.register(probe.sock, wanted, probe)
    for probe in probes:
        if not probe.done:
            probe.finish(False, "no answer (filtered)")
        check = probe.check
        outcome = {
            "flow": check["flow"],
            "family": check["family"],
            "address": probe.address,
            "port": check["port"],
            "ok": probe.ok,
            "detail": probe.detail,
        }
        if "token" in check:
            outcome["token"] = check["token"]
        outcomes.append(outcome)
    print(json.dumps(outcomes))


if __name__ == "__main__":
    main()
