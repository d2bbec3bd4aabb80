"""Secrets never leak: not in repr, str, logs at any level, error messages or error context.

Each test makes connections fail on purpose with a known, unique secret (a SASL
password, a private key's path and its contents) and searches everything a user
could see for it: reprs, every Result and QiError (context included), every log
record of every logger at DEBUG (the library's, the native clients', the root), and
whatever the native library writes straight to the process's stdout and stderr.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from qi.base import Failure, Success
from qi.base.streaming import (
    ConsumerConfig,
    SecurityConfig,
    StreamingConfig,
    StreamingMessage,
    SubscriptionConfig,
    TopicConfig,
    create_streaming_client,
)
from qi.base.streaming.backends.memory import discard_broker
from qi.base.streaming.testing._cluster import private_memory_brokers
from testkit import unique

from ._support import (
    REAL_BACKENDS,
    backend_params,
    bounded,
    check_result,
    producer_config_for,
)

# Every mechanism once, and TLS once: the matrix stays small, each path is still taken.
_HANDSHAKES: Final = (("plain", False), ("scram-sha-256", True), ("scram-sha-512", False))
_HANDSHAKE_IDS: Final = ("plain", "scram-sha-256+tls", "scram-sha-512")


@dataclass(frozen=True)
class Secrets:
    """The values that must never be seen, and the files that hold some of them."""

    password: str
    key_path: str
    key_contents: str
    cert_path: str
    """Not a secret (repr shows it): the certificate paired with the key."""

    def all(self) -> tuple[str, ...]:
        return (self.password, self.key_path, self.key_contents)


@pytest.fixture
def secrets(tmp_path: Path) -> Secrets:
    marker = uuid.uuid4().hex
    key_contents = f"qi-key-contents-{marker}"
    key_file = tmp_path / f"qi-key-path-{marker}.pem"
    key_file.write_text(f"-----BEGIN PRIVATE KEY-----\n{key_contents}\n-----END PRIVATE KEY-----\n")
    cert_file = tmp_path / "client-cert.pem"
    cert_file.write_text(
        "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n"
    )
    return Secrets(f"qi-password-{marker}", str(key_file), key_contents, str(cert_file))


@pytest.fixture
def closed_port() -> Iterator[str]:
    """A loopback address nobody listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield f"127.0.0.1:{port}"


def _security(secrets: Secrets, mechanism: Any, ssl: bool) -> SecurityConfig:
    return SecurityConfig(
        mechanism=mechanism,
        username="qi-user",
        password=secrets.password,
        ssl=ssl,
        ssl_key_file=secrets.key_path if ssl else None,
        ssl_cert_file=secrets.cert_path if ssl else None,
    )


async def _exercise(backend: str, config: StreamingConfig) -> list[object]:
    """Every call a user would make with this config; returns everything it handed back.

    One client per call, run concurrently: each failing connect takes connection_timeout.
    """
    seen: list[object] = [config, config.security]
    clients = [create_streaming_client(backend, config) for _ in range(4)]
    seen.extend(clients)
    bound = config.connection_timeout + config.request_timeout + 5.0
    group = ConsumerConfig(group_id=unique("group"), session_timeout=6.0, heartbeat_interval=0.5)
    health, admin, producer, consumer = await asyncio.gather(
        bounded(clients[0].is_healthy(), bound, "is_healthy"),
        bounded(clients[1].get_admin(), bound, "get_admin"),
        bounded(clients[2].get_producer(producer_config_for(backend)), bound, "get_producer"),
        bounded(clients[3].get_consumer(group), bound, "get_consumer"),
    )
    for result in (health, admin, producer, consumer):
        seen.append(check_result(result, "a call"))
    for endpoint in (admin, producer, consumer):
        if isinstance(endpoint, Success):
            seen.extend((endpoint.value, endpoint.value.get_native_client()))
    if isinstance(producer, Success):
        sent = await bounded(
            producer.value.send(unique("t"), StreamingMessage(b"v")), bound, "send"
        )
        seen.append(sent)
    if isinstance(admin, Success):
        seen.append(await bounded(admin.value.create_topics([TopicConfig("x")]), bound, "create"))
    if isinstance(consumer, Success):
        seen.append(await consumer.value.subscribe(SubscriptionConfig(topics=("x",))))
    for client in clients:
        seen.append(await bounded(client.disconnect(), bound, "disconnect"))
    return seen


def _assert_nothing_leaked(
    secrets: Secrets, seen: list[object], caplog: pytest.LogCaptureFixture, output: str
) -> None:
    records = caplog.records
    assert records or output or seen  # something was observed at all
    texts = {
        "repr": "\n".join(repr(value) for value in seen),
        "str": "\n".join(str(value) for value in seen),
        "errors": "\n".join(
            f"{value.error.message}\n{value.error.context!r}"
            for value in seen
            if isinstance(value, Failure)
        ),
        "logs": caplog.text,
        "log arguments": "\n".join(repr(record.args) for record in records),
        "log messages": "\n".join(record.getMessage() for record in records),
        "native output": output,
    }
    for secret in secrets.all():
        for where, text in texts.items():
            assert secret not in text, f"a secret leaked into {where}"


def _capture_everything(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: aiokafka's, kafka's, asyncio's ...
    for name in ("qi.base.streaming", "aiokafka", "kafka", "confluent_kafka"):
        caplog.set_level(logging.DEBUG, logger=name)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize(("mechanism", "ssl"), _HANDSHAKES, ids=_HANDSHAKE_IDS)
async def test_no_secret_leaks_when_nobody_listens(
    backend: str,
    mechanism: str,
    ssl: bool,
    secrets: Secrets,
    closed_port: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    _capture_everything(caplog)
    brokers = (closed_port,) if backend in REAL_BACKENDS else private_memory_brokers()
    config = StreamingConfig(
        client_id="qi-secrets",
        brokers=brokers,
        connection_timeout=1.0,
        request_timeout=1.5,
        security=_security(secrets, mechanism, ssl),
    )
    try:
        seen = await _exercise(backend, config)
    finally:
        if backend not in REAL_BACKENDS:
            discard_broker(brokers)
    if backend in REAL_BACKENDS:
        failures = [value for value in seen if isinstance(value, Failure)]
        assert failures, "connections to a closed port should have failed"
    captured = capfd.readouterr()
    _assert_nothing_leaked(secrets, seen, caplog, captured.out + captured.err)


@pytest.mark.parametrize("backend", backend_params(tuple(sorted(REAL_BACKENDS))))
@pytest.mark.parametrize(("mechanism", "ssl"), _HANDSHAKES, ids=_HANDSHAKE_IDS)
async def test_no_secret_leaks_when_the_broker_refuses_the_handshake(
    backend: str,
    mechanism: str,
    ssl: bool,
    secrets: Secrets,
    kafka_bootstrap: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The development broker speaks neither SASL nor TLS: the handshake itself fails."""
    _capture_everything(caplog)
    config = StreamingConfig(
        client_id="qi-secrets",
        brokers=tuple(kafka_bootstrap.split(",")),
        connection_timeout=1.0,
        request_timeout=1.5,
        security=_security(secrets, mechanism, ssl),
    )
    seen = await _exercise(backend, config)
    failures = [value for value in seen if isinstance(value, Failure)]
    assert failures, "a broker without SASL should have refused these connections"
    captured = capfd.readouterr()
    _assert_nothing_leaked(secrets, seen, caplog, captured.out + captured.err)


def test_config_reprs_hide_the_password_and_key_path(secrets: Secrets) -> None:
    security = _security(secrets, "plain", ssl=True)
    config = StreamingConfig(client_id="c", brokers=("127.0.0.1:1",), security=security)
    for text in (repr(security), str(security), repr(config), str(config)):
        assert secrets.password not in text
        assert secrets.key_path not in text
