"""A full-range TCP connect scan from inside a lab host, as nmap -sT would make it:

    python3 /opt/lab/scan.py [--ports FIRST-LAST] [--parallel N] [--timeout SECONDS] ADDRESS → JSON

Every port of the range (1-65535) gets one connect, N (4000) in flight at once: connected = open, refused =
closed, no answer within the timeout (1 s) = filtered, an error on this side = failed. Prints the open
ports and how many were closed, filtered or failed.
"""

import argparse
import json
import resource
import selectors
import socket
import time

from tcpconnect import begin, result


def scan(address, first=1, last=65535, parallel=4000, timeout=1.0):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < parallel + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, parallel + 64), hard))
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    selector = selectors.DefaultSelector()
    results = {"open": [], "closed": 0, "filtered": 0, "failed": 0}
    ports = iter(range(first, last + 1))
    in_flight = {}
    started = time.monotonic()
    exhausted = False
    while in_flight or not exhausted:
        while not exhausted and len(in_flight) < parallel:
            port = next(ports, None)
            if port is None:
                exhausted = True
                break
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            if begin(sock, (address, port)):
                results["failed"] += 1
                sock.close()
                continue
            selector.register(sock, selectors.EVENT_WRITE, port)
            in_flight[sock] = time.monotonic() + timeout
        for key, _ in selector.select(0.05):
            sock = key.fileobj
            error = result(sock)
            if error == 0:
                results["open"].append(key.data)
            else:  # refused, or an ICMP answer (REJECT)
                results["closed"] += 1
            close(selector, sock, in_flight)
        now = time.monotonic()
        for sock, deadline in list(in_flight.items()):
            if now >= deadline:
                results["filtered"] += 1
                close(selector, sock, in_flight)
    results["open"].sort()
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


def close(selector, sock, in_flight):
    selector.unregister(sock)
    del in_flight[sock]
    sock.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="which TCP ports of ADDRESS accept a connection (JSON list)")
    parser.add_argument("address")
    parser.add_argument("--ports", default="1-65535", help="FIRST-LAST")
    parser.add_argument("--parallel", type=int, default=4000)
    parser.add_argument("--timeout", type=float, default=1.0)
    options = parser.parse_args()
    first, _, last = options.ports.partition("-")
    found = scan(options.address, int(first), int(last or first), options.parallel, options.timeout)
    print(json.dumps(found, sort_keys=True))
