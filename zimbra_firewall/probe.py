"""Connect to TCP ports of one address at once and say what answered: `open` (a connection), `refused` (a
reset: the firewall let the SYN through, nothing listens at that address), `filtered` (no answer in time).
A script of its own (no import of this package) so the audit can run it through a prefix such as
`ip netns exec NETNS`:

    python3 zimbra_firewall/probe.py ADDRESS PORT… [--timeout SECONDS]   → JSON on stdout
"""

import argparse
import errno
import json
import selectors
import socket
import time


def probe(address: str, ports: list[int], timeout: float) -> dict:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    selector, results, local = selectors.DefaultSelector(), {}, ""
    opened: dict[int, socket.socket] = {}  # file descriptor → its socket, while its connect is under way
    for port in ports:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex((address, port))
        if code not in (0, errno.EINPROGRESS):
            results[port] = "refused" if code == errno.ECONNREFUSED else "filtered"
            sock.close()
            continue
        selector.register(sock, selectors.EVENT_WRITE, port)
        opened[sock.fileno()] = sock
    deadline = time.monotonic() + timeout
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(max(0.0, deadline - time.monotonic())):
            port, sock = key.data, opened.pop(key.fd)
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code == 0:
                local = local or sock.getsockname()[0]
            results[port] = "open" if code == 0 else "refused" if code == errno.ECONNREFUSED else "filtered"
            selector.unregister(sock)
            sock.close()
    for key in list(selector.get_map().values()):
        results[key.data] = "filtered"
        opened[key.fd].close()
    return {"address": address, "local": local, "results": {str(p): results[p] for p in ports}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("address")
    parser.add_argument("ports", nargs="+", type=int)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    print(json.dumps(probe(args.address, args.ports, args.timeout)))


if __name__ == "__main__":
    main()
