"""Connect again and again, from inside a lab host, until told to stop: the witness that a port closed to
this host never opened during a change, even for a moment.

    python3 /opt/lab/prober.py --stop FILE [--interval SECONDS] [--most SECONDS] ADDRESS:PORT… → JSON

A new TCP connect to every target each interval (10 ms), without waiting for the last ones: each either
connects (the port let this host in), is refused, gets no answer within TIMEOUT (filtered) or fails on
this side (no route, no source address: never counted as a connection). It stops
when FILE exists, or after --most seconds (300), and prints, per target, how many connects it tried and
how each ended, with the times (seconds from the start) of the first and last that connected. IPv6
targets are written [address]:port.
"""

import argparse
import json
import os
import selectors
import socket
import time

from tcpconnect import begin, result

TIMEOUT = 0.5
MOST_OPEN = 900  # sockets in flight at once, under the usual limit of 1024 descriptors


def parse_target(text):
    address, _, port = text.rpartition(":")
    return address.strip("[]"), int(port)


def main(stop_file, targets, interval=0.01, most=300.0):
    selector = selectors.DefaultSelector()
    counts = {
        t: {"tried": 0, "connected": 0, "refused": 0, "filtered": 0, "failed": 0, "first": None, "last": None}
        for t in targets
    }
    started = time.monotonic()
    next_round = started
    in_flight = {}  # socket → (target, deadline)
    stopping = False
    while not stopping or in_flight:
        now = time.monotonic()
        stopping = stopping or os.path.exists(stop_file) or now - started > most
        if not stopping and now >= next_round and len(in_flight) + len(targets) <= MOST_OPEN:
            for target in targets:
                address, port = parse_target(target)
                sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                counts[target]["tried"] += 1
                if begin(sock, (address, port)):
                    record(counts[target], "failed", now - started)
                    sock.close()
                    continue
                selector.register(sock, selectors.EVENT_WRITE)
                in_flight[sock] = (target, now + TIMEOUT)
            next_round = now + interval
        wait = max(0.0, min([next_round - now] + [deadline - now for _, deadline in in_flight.values()] or [interval]))
        for key, _ in selector.select(wait):
            sock = key.fileobj
            target, _ = in_flight.pop(sock)
            outcome = "refused" if result(sock) else "connected"  # refused, or an ICMP answer (REJECT)
            record(counts[target], outcome, time.monotonic() - started)
            selector.unregister(sock)
            sock.close()
        now = time.monotonic()
        for sock, (target, deadline) in list(in_flight.items()):
            if now >= deadline:
                del in_flight[sock]
                record(counts[target], "filtered", now - started)
                selector.unregister(sock)
                sock.close()
    print(json.dumps({"seconds": round(time.monotonic() - started, 2), "targets": counts}, sort_keys=True))


def record(count, outcome, at):
    count[outcome] += 1
    if outcome == "connected":
        count["first"] = round(at, 3) if count["first"] is None else count["first"]
        count["last"] = round(at, 3)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="connect to each TARGET in turn until the STOP file exists")
    parser.add_argument("targets", nargs="+", metavar="TARGET", help="address:port, [v6]:port")
    parser.add_argument("--stop", required=True, help="a file whose creation ends the probing")
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--most", type=float, default=300, help="seconds at most")
    options = parser.parse_args()
    main(options.stop, options.targets, options.interval, options.most)
