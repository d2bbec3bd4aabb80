"""Starting an aiokafka client within connection_timeout, and saying why it failed.

aiokafka's bootstrap reports every failure, a refused TLS certificate or SASL
login included, as "Unable to bootstrap". When TLS or SASL is configured we
repeat one handshake ourselves to find the real cause, so a wrong password
reads STREAMING_AUTHENTICATION_FAILED instead of a network failure.

aiokafka's bootstrap, cancelled while it waits for the broker's metadata, drops
its connection without closing it (only the garbage collector would, with a
ResourceWarning). A start cut short by ``connection_timeout`` cancels it, so
every client's bootstrap runs to its own end (aiokafka's request timeout, which
closes the connection) and then closes its client again: see
:func:`bootstrap_to_its_end`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Final

from aiokafka.client import AIOKafkaClient
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError

from qi.base.streaming import ErrorCode, StreamingConfig
from qi.base.streaming.backend import OperationFailed, broker_address_problem
from qi.base.streaming.backends.aiokafka._errors import contract_error
from qi.base.streaming.backends.aiokafka._settings import client_settings

# Settings of AIOKafkaClient that a single connection takes too.
_CONNECTION_SETTINGS: Final = (
    "client_id",
    "ssl_context",
    "security_protocol",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
)


_LATE_CLOSES: Final[set[asyncio.Task[None]]] = set()
"""Closes of clients whose bootstrap ended after its caller stopped waiting (held, so
they are not collected half-way)."""


def bootstrap_to_its_end(client: AIOKafkaClient) -> None:
    """Make ``client.bootstrap()`` run on when its caller is cancelled, then close
    ``client``.

    Its caller is a start that timed out or was cancelled, after which the client is
    abandoned and stopped; a bootstrap that ended later may have left its metadata task
    (or, on a cluster of no brokers, its connection) behind, so the client is closed
    once more when it ends. Per instance: clients the application builds are untouched.
    """
    bootstrap = client.bootstrap

    async def to_its_end() -> None:
        running = asyncio.ensure_future(bootstrap())
        try:
            await asyncio.shield(running)
        except asyncio.CancelledError:
            running.add_done_callback(lambda ended: _close_late(client, ended))
            raise

    client.bootstrap = to_its_end


def _close_late(client: AIOKafkaClient, bootstrap: asyncio.Future[None]) -> None:
    _read_outcome(bootstrap)
    closing = asyncio.ensure_future(client.close())
    _LATE_CLOSES.add(closing)
    closing.add_done_callback(_LATE_CLOSES.discard)
    closing.add_done_callback(_read_outcome)


def _read_outcome(ended: asyncio.Future[None]) -> None:
    """Read what ``ended`` raised: its caller is gone, and asyncio would log an error
    nobody read ("Task exception was never retrieved") for every failed connect."""
    if not ended.cancelled():
        ended.exception()


async def start_within(config: StreamingConfig, start: Callable[[], Awaitable[None]]) -> None:
    """Run ``start`` within ``connection_timeout``; raise what explains a failure best."""
    try:
        async with asyncio.timeout(config.connection_timeout):
            try:
                await start()
            except KafkaConnectionError as exc:
                cause = await handshake_failure(config)
                if cause is not None:
                    raise cause from exc
                raise
    except TimeoutError as exc:
        raise OperationFailed(
            contract_error(
                ErrorCode.CONNECTION_FAILED,
                f"no broker of {', '.join(config.brokers)} answered within "
                f"{config.connection_timeout:.1f}s",
                "connect",
            )
        ) from exc


async def handshake_failure(config: StreamingConfig) -> Exception | None:
    """The TLS or SASL error a broker answers a fresh connection with, if any."""
    if config.security is None or not (config.security.ssl or config.security.mechanism):
        return None  # plaintext: "could not connect" is already the whole story
    settings = client_settings(config)
    options = {name: settings[name] for name in _CONNECTION_SETTINGS if name in settings}
    for broker in config.brokers:
        if broker_address_problem(broker) is not None:
            continue
        host, _, port = broker.rpartition(":")
        try:
            connection = await create_conn(
                host.strip("[]"),
                int(port),
                request_timeout_ms=max(1, round(config.connection_timeout * 1000)),
                **options,
            )
        except ssl.SSLError as exc:  # an OSError, but the certificate's fault, not the network's
            return exc
        except (OSError, KafkaConnectionError):
            continue  # this broker is merely unreachable: ask the next one
        except Exception as exc:
            return exc
        connection.close()
    return None
