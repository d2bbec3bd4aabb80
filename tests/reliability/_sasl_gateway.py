"""A SASL-authenticating gateway for tests, and a development broker that advertises it.

    with SaslBroker({"alice": "secret"}) as cluster:   # Tansu reachable only through the gateway
        bootstrap = cluster.bootstrap                   # SASL_PLAINTEXT: PLAIN, SCRAM-SHA-256/512
        cluster.gateway.logins                          # {"SCRAM-SHA-256": 2, ...}: who got in how
        cluster.gateway.refusals                        # the same for refused logins

Tansu 0.6 cannot authenticate anyone (PLAIN is not compiled in, SCRAM users are never
stored), so this gateway plays the broker's part of Kafka's SASL exchange itself:
ApiVersions is forwarded to Tansu (clients pick protocol versions from its answer),
SaslHandshake v0-1 and SaslAuthenticate v0-2 are answered here with real checks (PLAIN
compares the password, SCRAM verifies the client's proof per RFC 5802), and a refusal is
error 58 SASL_AUTHENTICATION_FAILED followed by a closed connection, as Kafka does. Once
a client is in, bytes are relayed untouched. The broker advertises the gateway, so
clients reconnect through it after bootstrapping and cannot bypass it.

Like the fault proxy, it runs its own event loop in its own thread (see ``_loop_thread``).
Loopback only.
Not supported (no client here needs them): the raw-token exchange after a v0
handshake, channel binding, re-authentication.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import secrets
import struct
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from ._loop_thread import LOOPBACK, FrontedBroker, LoopThreadServer, pump_until_one_ends

MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
REFUSAL_MESSAGE: Final = "Authentication failed: Invalid username or password"

_API_VERSIONS: Final = 18
_SASL_HANDSHAKE: Final = 17
_SASL_AUTHENTICATE: Final = 36
_NO_ERROR: Final = 0
_UNSUPPORTED_SASL_MECHANISM: Final = 33
_SASL_AUTHENTICATION_FAILED: Final = 58
_SCRAM_ITERATIONS: Final = 4096  # Kafka's minimum
_MAX_UNAUTHENTICATED_FRAME: Final = 512 * 1024  # Kafka's sasl max receive size
_CHUNK: Final = 65536


class _Refused(Exception):
    """The client's credentials, or its SASL messages, are not acceptable."""


# -- the Kafka wire format, as much of it as the exchange needs ---------------------------------


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


async def _read_frame(reader: asyncio.StreamReader, limit: int | None = None) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    if size < 0 or (limit is not None and size > limit):
        raise _Refused(f"frame of {size} bytes")
    return await reader.readexactly(size)


def _read_uvarint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, offset


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _skip_tagged_fields(data: bytes, offset: int) -> int:
    count, offset = _read_uvarint(data, offset)
    for _ in range(count):
        _, offset = _read_uvarint(data, offset)  # the tag
        size, offset = _read_uvarint(data, offset)
        offset += size
    return offset


def _request_header(request: bytes) -> tuple[int, int, int, int]:
    """(api_key, api_version, correlation_id, offset of the body) of a v1 request header.

    A flexible request (SaslAuthenticate v2) has tagged fields after the header; the
    caller skips them, since only it knows the version is flexible.
    """
    api_key, version, correlation_id, client_id_size = struct.unpack_from(">hhih", request)
    return api_key, version, correlation_id, 10 + max(client_id_size, 0)


def _handshake_response(correlation_id: int, error: int) -> bytes:
    names = b"".join(struct.pack(">h", len(name)) + name.encode() for name in MECHANISMS)
    return struct.pack(">ihi", correlation_id, error, len(MECHANISMS)) + names


def _authenticate_token(request: bytes, version: int, offset: int) -> bytes:
    if version >= 2:
        offset = _skip_tagged_fields(request, offset)
        size_plus_one, offset = _read_uvarint(request, offset)
        return request[offset : offset + size_plus_one - 1]
    (size,) = struct.unpack_from(">i", request, offset)
    return request[offset + 4 : offset + 4 + size]


def _authenticate_response(
    correlation_id: int, version: int, error: int, message: str | None, token: bytes
) -> bytes:
    if version >= 2:
        text = _uvarint(0) if message is None else _uvarint(len(message) + 1) + message.encode()
        return (
            struct.pack(">ibh", correlation_id, 0, error)  # 0: no tagged fields in the header
            + text
            + _uvarint(len(token) + 1)
            + token
            + struct.pack(">qb", 0, 0)  # session lifetime (none), no tagged fields
        )
    text = struct.pack(">h", -1) if message is None else struct.pack(">h", len(message))
    text += b"" if message is None else message.encode()
    lifetime = struct.pack(">q", 0) if version >= 1 else b""
    return struct.pack(">ih", correlation_id, error) + text + _frame(token) + lifetime


# -- the mechanisms ------------------------------------------------------------------------------


class _Exchange(Protocol):
    def step(self, token: bytes) -> tuple[bytes, bool]:
        """The answer to the client's ``token`` and whether the client is now in."""


class _Plain:
    """RFC 4616: one message, "authzid NUL username NUL password"."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = users

    def step(self, token: bytes) -> tuple[bytes, bool]:
        try:
            authzid, username, password = token.decode().split("\0")
        except ValueError as error:  # UnicodeDecodeError is a ValueError too
            raise _Refused("malformed PLAIN message") from error
        expected = self._users.get(username)
        if authzid not in ("", username) or expected is None:
            raise _Refused("unknown user")
        if not hmac.compare_digest(password.encode(), expected.encode()):
            raise _Refused("wrong password")
        return b"", True


def _attributes(text: str) -> dict[str, str]:
    pairs = (item.partition("=") for item in text.split(","))
    return {name: value for name, separator, value in pairs if separator}


class _Scram:
    """RFC 5802 on the server side: a challenge, then the client's proof is verified."""

    def __init__(self, mechanism: str, users: Mapping[str, str]) -> None:
        self._hash_name = "sha256" if mechanism == "SCRAM-SHA-256" else "sha512"
        self._users = users
        self._first: tuple[str, str, str, bytes, bool] | None = None
        """(gs2 header, client-first-message-bare, server-first-message, salted password,
        whether the user exists), once the client's first message arrived."""

    def step(self, token: bytes) -> tuple[bytes, bool]:
        try:
            if self._first is None:
                return self._challenge(token.decode()), False
            return self._verify(token.decode(), *self._first), True
        except (ValueError, KeyError, binascii.Error) as error:
            raise _Refused("malformed SCRAM message") from error

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self._hash_name).digest()

    def _digest(self, data: bytes) -> bytes:
        return hashlib.new(self._hash_name, data).digest()

    def _challenge(self, client_first: str) -> bytes:
        binding, authzid, bare = client_first.split(",", 2)
        if binding not in ("n", "y"):
            raise _Refused("channel binding is not supported")
        attributes = _attributes(bare)
        username = attributes["n"].replace("=2C", ",").replace("=3D", "=")
        password = self._users.get(username)
        salt = secrets.token_bytes(16)
        # An unknown user gets a challenge like any other and fails at the proof, as on
        # Kafka: the answer does not tell which usernames exist.
        secret = password if password is not None else secrets.token_hex(16)
        salted = hashlib.pbkdf2_hmac(self._hash_name, secret.encode(), salt, _SCRAM_ITERATIONS)
        nonce = attributes["r"] + secrets.token_urlsafe(18)
        server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={_SCRAM_ITERATIONS}"
        self._first = (f"{binding},{authzid},", bare, server_first, salted, password is not None)
        return server_first.encode()

    def _verify(
        self,
        client_final: str,
        gs2_header: str,
        client_first_bare: str,
        server_first: str,
        salted: bytes,
        known: bool,
    ) -> bytes:
        without_proof, separator, proof_text = client_final.rpartition(",p=")
        attributes = _attributes(without_proof)
        if not separator or attributes["r"] != _attributes(server_first)["r"]:
            raise _Refused("nonce mismatch")
        if base64.b64decode(attributes["c"], validate=True) != gs2_header.encode():
            raise _Refused("channel binding mismatch")
        auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
        stored_key = self._digest(self._hmac(salted, b"Client Key"))
        signature = self._hmac(stored_key, auth_message)
        proof = base64.b64decode(proof_text, validate=True)
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not known or not hmac.compare_digest(self._digest(client_key), stored_key):
            raise _Refused("wrong proof")
        server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth_message)
        return b"v=" + base64.b64encode(server_signature)


def _exchange_for(mechanism: str, users: Mapping[str, str]) -> _Exchange:
    return _Plain(users) if mechanism == "PLAIN" else _Scram(mechanism, users)


# -- the gateway ---------------------------------------------------------------------------------


class SaslGateway(LoopThreadServer):
    """A loopback TCP gateway that lets in only clients that log in with SASL."""

    _kind = "SASL gateway"

    def __init__(self, upstream: Callable[[], tuple[str, int]], users: Mapping[str, str]) -> None:
        """Relay authenticated clients to ``upstream()`` (asked per connection); not started."""
        super().__init__()
        self._upstream = upstream
        self._users = dict(users)
        self._connections: set[asyncio.Task[Any]] = set()
        self._logins: Counter[str] = Counter()
        self._refusals: Counter[str] = Counter()

    @property
    def logins(self) -> dict[str, int]:
        """Successful logins so far, by mechanism: proof that clients authenticated here."""
        return self._control(lambda: dict(self._logins))

    @property
    def refusals(self) -> dict[str, int]:
        """Logins refused so far (wrong credentials, unsupported mechanism), by mechanism."""
        return self._control(lambda: dict(self._refusals))

    # -- on the gateway's loop -------------------------------------------------------------------

    def _drop_all(self) -> list[asyncio.Task[Any]]:
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        return tasks

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None:
            writer.transport.abort()
            return
        self._connections.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            upstream_reader, upstream = await asyncio.open_connection(*self._upstream())
            if await self._authenticate(reader, writer, upstream_reader, upstream):
                await pump_until_one_ends(_pump(reader, upstream), _pump(upstream_reader, writer))
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError, _Refused):
            pass  # upstream down, client gone, garbage, or shutdown: the client sees a close
        except (struct.error, IndexError):
            pass  # a truncated request: drop it, as a broker would
        finally:
            self._connections.discard(task)
            for side in (writer, upstream):
                if side is not None:
                    side.transport.abort()

    async def _authenticate(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream_reader: asyncio.StreamReader,
        upstream: asyncio.StreamWriter,
    ) -> bool:
        """Run the SASL exchange with a fresh client; True once it is in, False if refused."""
        mechanism: str | None = None
        exchange: _Exchange | None = None
        while True:
            request = await _read_frame(reader, _MAX_UNAUTHENTICATED_FRAME)
            api_key, version, correlation_id, offset = _request_header(request)
            if api_key == _API_VERSIONS and exchange is None:
                upstream.write(_frame(request))
                await upstream.drain()
                writer.write(_frame(await _read_frame(upstream_reader)))
            elif api_key == _SASL_HANDSHAKE and exchange is None and version >= 1:
                (size,) = struct.unpack_from(">h", request, offset)
                mechanism = request[offset + 2 : offset + 2 + size].decode(errors="replace")
                if mechanism not in MECHANISMS:
                    writer.write(
                        _frame(_handshake_response(correlation_id, _UNSUPPORTED_SASL_MECHANISM))
                    )
                    await writer.drain()
                    self._refusals[mechanism] += 1
                    return False
                writer.write(_frame(_handshake_response(correlation_id, _NO_ERROR)))
                exchange = _exchange_for(mechanism, self._users)
            elif api_key == _SASL_AUTHENTICATE and exchange is not None and mechanism:
                token = _authenticate_token(request, version, offset)
                try:
                    answer, finished = exchange.step(token)
                except _Refused:
                    error, message = _SASL_AUTHENTICATION_FAILED, REFUSAL_MESSAGE
                    response = _authenticate_response(correlation_id, version, error, message, b"")
                    writer.write(_frame(response))
                    await writer.drain()
                    self._refusals[mechanism] += 1
                    return False
                response = _authenticate_response(correlation_id, version, 0, None, answer)
                writer.write(_frame(response))
                if finished:
                    await writer.drain()
                    self._logins[mechanism] += 1
                    return True
            else:
                return False  # anything else before logging in: Kafka drops the connection
            await writer.drain()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()


class SaslBroker(FrontedBroker):
    """A private development broker that clients reach only by logging in at a gateway."""

    def __init__(self, users: Mapping[str, str]) -> None:
        """``users`` maps each username to its password; every mechanism accepts them all."""
        self.gateway: Final = SaslGateway(lambda: (LOOPBACK, self.broker.port), users)
        """The gateway every client connection goes through."""
        super().__init__(self.gateway)
