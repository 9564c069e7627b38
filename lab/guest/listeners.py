"""The Zimbra stand-in's listeners: a socket on every Zimbra port of the host's roles that no real service
of the host serves, bound where the real service binds, so reachability through the firewall can be
probed. Used by the lab's init and by the VMs' service; `python3 /opt/lab/listeners.py PORT/PROTO...`
serves more ports (a service moved or enabled after the host started) until it is killed."""

import datetime
import selectors
import socket
import sys

UDP_RECORD = "/var/log/lab-udp.log"


def open_listeners(ports, skip_busy=False):
    """One socket per port: dual-stack on every address ("bind": "::", the default, as most Zimbra
    services bind), or on one IPv4 address ("127.0.0.1" for loopback-only services). With skip_busy, a
    port some real service of the host holds already (a VM's resolver on 53) is left to it."""
    sockets = []
    for entry in ports:
        kind = socket.SOCK_STREAM if entry["proto"] == "tcp" else socket.SOCK_DGRAM
        bind = entry.get("bind", "::")
        sock = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, kind)
        if ":" in bind:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind, entry["port"]))
        except OSError:
            if not skip_busy:
                raise
            print(
                f"port {entry['port']}/{entry['proto']} is in use: left to the service that holds it", file=sys.stderr
            )
            sock.close()
            continue
        if kind == socket.SOCK_STREAM:
            sock.listen(socket.SOMAXCONN)  # flows from 30 nodes arrive at once
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def serve(sockets):
    """Accept and close TCP connections. UDP datagrams are recorded (one line each in UDP_RECORD, as the
    logger's syslog records what it receives) and then echoed, so a probe can tell "answered" from
    "dropped"."""
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            try:
                if sock.type == socket.SOCK_STREAM:
                    conn, _ = sock.accept()
                    conn.close()
                else:
                    data, peer = sock.recvfrom(2048)
                    record_datagram(sock.getsockname()[1], peer[0], data)
                    sock.sendto(data, peer)
            except OSError:
                pass


def record_datagram(port, peer, data):
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    text = data.decode(errors="replace").replace("\n", " ")
    with open(UDP_RECORD, "a") as f:
        f.write(f"{stamp} {port}/udp from {peer}: {text}\n")


if __name__ == "__main__":
    specs = [spec.partition("/") for spec in sys.argv[1:]]
    serve(open_listeners([{"port": int(port), "proto": proto} for port, _, proto in specs]))
