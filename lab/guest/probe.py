"""Probe ports of one address from inside a lab host, all at once:
    python3 /opt/lab/probe.py [--source ADDRESS] ADDRESS PORT/PROTO… → JSON {"25/tcp": "open" | …}
--source sends from one of several local addresses (the VM tests stand for two networks at once).
TCP: connected = open, refused or rejected (ICMP) = closed, no answer = filtered, an error on this side
(no route) = failed.
UDP: the lab's listeners echo, so a reply = open, an ICMP refusal = closed, silence = filtered.
"""

import json
import selectors
import socket
import sys
import time

from tcpconnect import begin, result

TIMEOUT = 1.5


def main(address, specs, source=None):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    selector = selectors.DefaultSelector()
    results = {}
    for spec in specs:
        port, proto = spec.split("/")
        sock = socket.socket(family, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        sock.setblocking(False)
        if source:
            sock.bind((source, 0))
        if proto == "tcp":
            if begin(sock, (address, int(port))):
                results[spec] = "failed"
                sock.close()
                continue
            selector.register(sock, selectors.EVENT_WRITE, spec)
        else:
            sock.connect((address, int(port)))
            sock.send(b"probe")
            selector.register(sock, selectors.EVENT_READ, spec)
    deadline = time.monotonic() + TIMEOUT
    while len(results) < len(specs) and time.monotonic() < deadline:
        for key, _ in selector.select(max(0.0, deadline - time.monotonic())):
            sock, spec = key.fileobj, key.data
            if sock.type == socket.SOCK_STREAM:
                error = result(sock)
                results[spec] = "closed" if error else "open"  # refused, or an ICMP answer (REJECT)
            else:
                try:
                    sock.recv(64)
                    results[spec] = "open"
                except ConnectionRefusedError:
                    results[spec] = "closed"
            selector.unregister(sock)
            sock.close()
    for spec in specs:
        results.setdefault(spec, "filtered")
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    if sys.argv[1] == "--source":
        main(sys.argv[3], sys.argv[4:], source=sys.argv[2])
    else:
        main(sys.argv[1], sys.argv[2:])
