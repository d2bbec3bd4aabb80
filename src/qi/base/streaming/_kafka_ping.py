"""A Kafka liveness ping for the development brokers, with nothing but the standard library.

A bare TCP accept says little (a proxy or a half-started broker accepts too):
the probe sends a real ApiVersions request and checks that the answer carries
its correlation id.
"""

from __future__ import annotations

import random
import socket
import struct
import time

# Kafka ApiVersions is the one request every broker must answer before any other.
_API_VERSIONS_KEY = 18
_UNSUPPORTED_VERSION = 35  # still a valid answer: the broker lists the versions it speaks
_PROBE_CLIENT_ID = b"qi-devbroker-probe"
_MAX_PROBE_RESPONSE = 1 << 20


def probe(bootstrap: str, timeout: float) -> bool:
    """Return True when a broker in ``bootstrap`` ("host:port[,host:port]") answers a Kafka request.

    A bare TCP accept is not enough: the broker must answer an ApiVersions request with
    the matching correlation id. Never raises; malformed addresses count as unreachable.
    """
    deadline = time.monotonic() + max(timeout, 0.0)
    for entry in bootstrap.split(","):
        address = _parse_address(entry)
        if address is not None and _probe_one(address, deadline):
            return True
    return False


def _parse_address(entry: str) -> tuple[str, int] | None:
    host, sep, port_text = entry.strip().rpartition(":")
    host = host.strip("[]")  # "[::1]:9092"
    if not sep or not host or not port_text.isdigit():
        return None
    port = int(port_text)
    return (host, port) if 0 < port < 65536 else None


def _probe_one(address: tuple[str, int], deadline: float) -> bool:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    correlation_id = random.randrange(1, 2**31)
    header = (
        struct.pack(">hhih", _API_VERSIONS_KEY, 0, correlation_id, len(_PROBE_CLIENT_ID))
        + _PROBE_CLIENT_ID
    )  # ApiVersions v0 has an empty body
    try:
        with socket.create_connection(address, timeout=remaining) as sock:
            _set_deadline(sock, deadline)
            sock.sendall(struct.pack(">i", len(header)) + header)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4, deadline))
            if not 6 <= size <= _MAX_PROBE_RESPONSE:
                return False
            answered_id, error_code = struct.unpack_from(">ih", _recv_exact(sock, size, deadline))
    except (OSError, struct.error):
        return False
    return answered_id == correlation_id and error_code in (0, _UNSUPPORTED_VERSION)


def _set_deadline(sock: socket.socket, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("probe deadline passed")
    sock.settimeout(remaining)


def _recv_exact(sock: socket.socket, size: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    missing = size
    while missing:
        # A socket timeout bounds one recv only; re-arming it keeps the whole probe in budget.
        _set_deadline(sock, deadline)
        chunk = sock.recv(missing)
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)
