"""The Zimbra stand-in's listeners: a socket on every Zimbra port no real service of the host serves,
so reachability through the firewall can be probed. Used by the lab's init and by the VMs' service."""

import selectors
import socket
import sys


def open_listeners(ports, skip_busy=False):
    """One dual-stack socket per port, bound to every address like a fresh Zimbra install. With
    skip_busy, a port some real service of the host holds already (a VM's resolver on 53) is left to it."""
    sockets = []
    for entry in ports:
        kind = socket.SOCK_STREAM if entry["proto"] == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_INET6, kind)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("::", entry["port"]))
        except OSError:
            if not skip_busy:
                raise
            print(f"port {entry['port']}/{entry['proto']} is in use: left to the service that holds it",
                  file=sys.stderr)
            sock.close()
            continue
        if kind == socket.SOCK_STREAM:
            sock.listen(16)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def serve(sockets):
    """Accept and close TCP connections; echo UDP datagrams so a probe can tell "answered" from "dropped"."""
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
                    sock.sendto(data, peer)
            except OSError:
                pass
