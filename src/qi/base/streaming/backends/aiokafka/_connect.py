"""Starting an aiokafka client within connection_timeout, and saying why it failed.

aiokafka's bootstrap reports every failure, a refused TLS certificate or SASL
login included, as "Unable to bootstrap". When TLS or SASL is configured we
repeat one handshake ourselves to find the real cause, so a wrong password
reads STREAMING_AUTHENTICATION_FAILED instead of a network failure.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Final

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
