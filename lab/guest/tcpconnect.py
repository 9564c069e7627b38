"""A non-blocking TCP connect judged right, shared by the lab's probes (flowcheck, probe, prober, scan).

A connect that fails at once (no source address, no route: connect() returns the error instead of
EINPROGRESS) leaves an unconnected socket that a selector still reports writable with SO_ERROR 0: read
that way it passes for a connection, so a blocked flow looked open. Hence: the immediate error is kept, and
a writable socket counts as connected only if it has a peer.
"""

import errno
import socket


def begin(sock, address):
    """Start connecting `sock` (non-blocking) to `address`: None while it is under way (wait until the socket
    is writable, then ask `result`), else the errno it failed with at once."""
    code = sock.connect_ex(address)
    return None if code in (0, errno.EINPROGRESS) else code


def result(sock):
    """Once the socket is writable: 0 when connected, else the errno (ECONNREFUSED: a reset)."""
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        return code
    try:
        sock.getpeername()
    except OSError as error:
        return error.errno or errno.ENOTCONN
    return 0
