"""Contract configuration -> librdkafka settings, and keeping secrets out of sight."""

from __future__ import annotations

import dataclasses
import logging
import socket
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from qi.base import Failure
from qi.base.streaming import (
    ConsumerConfig,
    ProducerConfig,
    SecurityConfig,
    StreamingConfig,
    create_streaming_client,
)
from qi.base.streaming.backends.confluent._settings import (
    admin_settings,
    consumer_settings,
    producer_settings,
    redacted,
    security_settings,
)

PASSWORD = "pa55-w0rd-never-shown"


def _config(**changes: Any) -> StreamingConfig:
    base: dict[str, Any] = {
        "client_id": "settings-test",
        "brokers": ("127.0.0.1:9092", "127.0.0.2:9093"),
        "connection_timeout": 4.0,
        "request_timeout": 12.5,
        "retry_attempts": 3,
    }
    return StreamingConfig(**{**base, **changes})


def test_without_security_the_protocol_is_plaintext() -> None:
    assert security_settings(None) == {"security.protocol": "PLAINTEXT"}
    assert security_settings(SecurityConfig()) == {"security.protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("mechanism", "native"),
    [("plain", "PLAIN"), ("scram-sha-256", "SCRAM-SHA-256"), ("scram-sha-512", "SCRAM-SHA-512")],
)
@pytest.mark.parametrize(("ssl", "protocol"), [(False, "SASL_PLAINTEXT"), (True, "SASL_SSL")])
def test_sasl_mechanisms_and_protocols(
    mechanism: Any, native: str, ssl: bool, protocol: str
) -> None:
    settings = security_settings(
        SecurityConfig(mechanism=mechanism, username="alice", password=PASSWORD, ssl=ssl)
    )
    assert settings["security.protocol"] == protocol
    assert settings["sasl.mechanism"] == native
    assert settings["sasl.username"] == "alice"
    assert settings["sasl.password"] == PASSWORD


def test_tls_files_map_to_their_locations() -> None:
    settings = security_settings(
        SecurityConfig(
            ssl=True, ssl_ca_file="/ca.pem", ssl_cert_file="/cert.pem", ssl_key_file="/key.pem"
        )
    )
    assert settings == {
        "security.protocol": "SSL",
        "ssl.ca.location": "/ca.pem",
        "ssl.certificate.location": "/cert.pem",
        "ssl.key.location": "/key.pem",
    }


def test_common_settings() -> None:
    settings = admin_settings(_config())
    assert settings["bootstrap.servers"] == "127.0.0.1:9092,127.0.0.2:9093"
    assert settings["client.id"] == "settings-test"
    assert settings["socket.connection.setup.timeout.ms"] == 4000
    assert settings["socket.timeout.ms"] == 12500
    assert settings["allow.auto.create.topics"] is False


def test_producer_settings() -> None:
    settings = producer_settings(
        _config(),
        ProducerConfig(
            idempotent=True, acks="all", compression="zstd", linger=0.02, max_in_flight=3
        ),
    )
    assert settings["enable.idempotence"] is True
    assert settings["acks"] == -1
    assert settings["compression.type"] == "zstd"
    assert settings["linger.ms"] == pytest.approx(20.0)
    assert settings["max.in.flight.requests.per.connection"] == 3
    assert settings["message.timeout.ms"] == 12500
    assert settings["request.timeout.ms"] == 12500
    assert settings["allow.auto.create.topics"] is False
    # Room over the contract's limit, which the contract layer enforces itself.
    assert int(settings["message.max.bytes"]) > 1_048_576
    # The idempotent producer keeps retrying until message.timeout.ms.
    assert "message.send.max.retries" not in settings
    propagation = settings["topic.metadata.propagation.max.ms"]
    assert 0 < int(propagation) <= 12500 / 2


@pytest.mark.parametrize(("acks", "native"), [(1, 1), (0, 0)])
def test_plain_producer_settings(acks: Any, native: int) -> None:
    settings = producer_settings(_config(), ProducerConfig(idempotent=False, acks=acks))
    assert settings["enable.idempotence"] is False
    assert settings["acks"] == native
    assert settings["message.send.max.retries"] == 3


def test_a_plain_producer_that_retries_keeps_one_request_in_flight() -> None:
    # Order within a partition: a retried request must not land after later ones.
    plain = ProducerConfig(idempotent=False, acks=1, max_in_flight=5)
    retrying = producer_settings(_config(), plain)
    assert retrying["max.in.flight.requests.per.connection"] == 1
    once = producer_settings(dataclasses.replace(_config(), retry_attempts=0), plain)
    assert once["max.in.flight.requests.per.connection"] == 5
    assert once["message.send.max.retries"] == 0


@pytest.mark.parametrize(("from_beginning", "reset"), [(True, "earliest"), (False, "latest")])
def test_consumer_settings(from_beginning: bool, reset: str) -> None:
    settings = consumer_settings(
        _config(),
        ConsumerConfig(group_id="g1", session_timeout=6.0, heartbeat_interval=0.5),
        from_beginning=from_beginning,
    )
    assert settings["group.id"] == "g1"
    assert settings["enable.auto.commit"] is False
    assert settings["enable.auto.offset.store"] is False
    assert settings["auto.offset.reset"] == reset
    assert settings["session.timeout.ms"] == 6000
    assert settings["heartbeat.interval.ms"] == 500
    assert settings["allow.auto.create.topics"] is False
    # librdkafka's default (1 s) stalls a consumer that drains its queue in bursts.
    assert settings["fetch.queue.backoff.ms"] == 10


def test_librdkafka_accepts_every_mapped_setting() -> None:
    config = _config(
        security=SecurityConfig(mechanism="scram-sha-512", username="u", password=PASSWORD)
    )
    # A transaction_timeout below request_timeout too: librdkafka bounds socket.timeout.ms
    # and message.timeout.ms by it.
    short = ProducerConfig(transactional_id="t", transaction_timeout=config.request_timeout / 4)
    for producer in (ProducerConfig(), ProducerConfig(idempotent=False, acks=0, linger=0), short):
        Producer(producer_settings(config, producer))
    Consumer(consumer_settings(config, ConsumerConfig(group_id="g"), from_beginning=True)).close()
    AdminClient(admin_settings(config))


def test_redacted_hides_secrets() -> None:
    config = _config(
        security=SecurityConfig(
            mechanism="plain",
            username="u",
            password=PASSWORD,
            ssl=True,
            ssl_key_file="/secret/key.pem",
        )
    )
    shown = redacted(producer_settings(config, ProducerConfig()))
    assert shown["sasl.password"] == "***"
    assert shown["ssl.key.location"] == "***"
    assert PASSWORD not in repr(shown)
    assert shown["sasl.username"] == "u"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_a_failed_connect_never_shows_the_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    config = StreamingConfig(
        client_id="secret-test",
        brokers=(f"127.0.0.1:{_closed_port()}",),
        connection_timeout=1.0,
        request_timeout=2.0,
        security=SecurityConfig(mechanism="plain", username="u", password=PASSWORD),
    )
    async with create_streaming_client("confluent", config) as client:
        result = await client.get_producer()
    assert isinstance(result, Failure)
    assert result.error.code == "STREAMING_CONNECTION_FAILED"
    assert PASSWORD not in str(result.error)
    assert PASSWORD not in repr(result.error.context)
    assert caplog.records  # the connection attempt was logged...
    assert PASSWORD not in caplog.text  # ...without the secret
