"""Contract section 3: configs never raise when built, and invalid ones fail on first use."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import pytest

from qi.base import Failure
from qi.base.streaming import (
    ConsumerConfig,
    ConsumerRunConfig,
    MessageBatch,
    ProducerConfig,
    SecurityConfig,
    StreamingClient,
    StreamingConfig,
    StreamingMessage,
    SubscriptionConfig,
    TopicConfig,
    create_streaming_client,
)

from ._support import ConsumerConfigFactory, expect_failure

GARBAGE: Any = object()
SECRET = "s3cr3t-Pa55w0rd-never-shown"


def _invalid_streaming_configs(valid: StreamingConfig) -> list[StreamingConfig]:
    replace = dataclasses.replace
    plain: Any = "plain"
    scram: Any = "scram-sha-256"
    return [
        replace(valid, client_id=""),
        replace(valid, client_id=cast(Any, None)),
        replace(valid, brokers=()),
        replace(valid, brokers=cast(Any, "localhost:9092")),
        replace(valid, brokers=cast(Any, None)),
        replace(valid, brokers=("localhost",)),
        replace(valid, brokers=("localhost:",)),
        replace(valid, brokers=(":9092",)),
        replace(valid, brokers=("localhost:port",)),
        replace(valid, brokers=("localhost:0",)),
        replace(valid, brokers=("localhost:65536",)),
        replace(valid, brokers=(*valid.brokers, "no-port")),
        replace(valid, connection_timeout=0),
        replace(valid, connection_timeout=-1.0),
        replace(valid, connection_timeout=cast(Any, "5")),
        replace(valid, request_timeout=0.0),
        replace(valid, request_timeout=-0.5),
        replace(valid, retry_attempts=-1),
        replace(valid, security=SecurityConfig(mechanism=plain)),
        replace(valid, security=SecurityConfig(mechanism=plain, username="user")),
        replace(valid, security=SecurityConfig(mechanism=plain, password=SECRET)),
        replace(valid, security=SecurityConfig(mechanism=scram, password=SECRET)),
        replace(valid, security=SecurityConfig(mechanism=cast(Any, "kerberos"), username="u")),
        replace(valid, security=SecurityConfig(mechanism=cast(Any, ["plain"]), username="u")),
        replace(valid, security=cast(Any, "sasl")),
    ]


async def test_invalid_streaming_config_is_reported_by_get_producer(
    backend: str, streaming_config: StreamingConfig
) -> None:
    for config in _invalid_streaming_configs(streaming_config):
        async with create_streaming_client(backend, config) as client:
            error = expect_failure(await client.get_producer(), "STREAMING_INVALID_CONFIG")
            assert SECRET not in repr(error), error


async def test_invalid_streaming_config_is_reported_by_every_first_call(
    backend: str, streaming_config: StreamingConfig, consumer_config: ConsumerConfigFactory
) -> None:
    broken = dataclasses.replace(streaming_config, brokers=("localhost:65536",))
    async with create_streaming_client(backend, broken) as client:
        for result in (
            await client.get_producer(),
            await client.get_consumer(consumer_config()),
            await client.get_admin(),
            await client.is_healthy(),
        ):
            expect_failure(result, "STREAMING_INVALID_CONFIG", implementation=backend)


@pytest.mark.parametrize(
    "config",
    [
        ProducerConfig(idempotent=True, acks=1),
        ProducerConfig(idempotent=True, acks=0),
        ProducerConfig(idempotent=False, acks=cast(Any, 2)),
        ProducerConfig(idempotent=False, acks=cast(Any, "1")),
        ProducerConfig(compression=cast(Any, "brotli")),
        ProducerConfig(compression=cast(Any, ["gzip"])),  # unhashable: still a config error
        ProducerConfig(linger=-1.0),
        ProducerConfig(max_in_flight=0),
        ProducerConfig(max_message_bytes=0),
        ProducerConfig(idempotent=cast(Any, "yes")),
        cast(Any, "acks=all"),
        cast(Any, 42),
    ],
    ids=[
        "idempotent-acks-1",
        "idempotent-acks-0",
        "acks-2",
        "acks-str-1",
        "compression-brotli",
        "compression-list",
        "negative-linger",
        "max-in-flight-0",
        "max-message-bytes-0",
        "idempotent-str",
        "a-str",
        "an-int",
    ],
)
async def test_invalid_producer_config_is_reported(
    client: StreamingClient, backend: str, config: ProducerConfig
) -> None:
    expect_failure(
        await client.get_producer(config), "STREAMING_INVALID_CONFIG", implementation=backend
    )


async def test_invalid_consumer_config_is_reported(
    client: StreamingClient, backend: str, consumer_config: ConsumerConfigFactory
) -> None:
    for config in (
        consumer_config(group_id=""),
        dataclasses.replace(consumer_config(), group_id=cast(Any, None)),
        consumer_config(session_timeout=6.0, heartbeat_interval=6.0),
        consumer_config(session_timeout=6.0, heartbeat_interval=7.0),
        consumer_config(heartbeat_interval=0),
        consumer_config(session_timeout=0),
        consumer_config(session_timeout=-6.0),
        consumer_config(max_batch_size=0),
        consumer_config(max_batch_size=-1),
        consumer_config(auto_commit_interval=0),
        cast(Any, None),
        cast(Any, "group"),
        cast(Any, ["unhashable"]),
    ):
        expect_failure(
            await client.get_consumer(config), "STREAMING_INVALID_CONFIG", implementation=backend
        )


# -- configs as values ---------------------------------------------------------------------


def test_constructing_configs_never_raises_even_with_garbage() -> None:
    g = GARBAGE
    values: list[object] = [
        StreamingConfig(g, g, g, g, g, g),
        StreamingConfig(client_id="", brokers=()),
        SecurityConfig(g, g, g, g, g, g, g),
        ProducerConfig(g, g, g, g, g, g),
        ConsumerConfig(g, g, g, g, g, g),
        SubscriptionConfig(g, g, g),
        ConsumerRunConfig(g, g, g, g),
        TopicConfig(g, g, g, g),
        StreamingMessage(g, g, g, g, g),
        MessageBatch(g, g),
    ]
    for value in values:
        assert repr(value)


def test_repr_never_shows_a_password() -> None:
    security = SecurityConfig(mechanism="scram-sha-512", username="alice", password=SECRET)
    config = StreamingConfig("app", ("localhost:9092",), security=security)
    for shown in (repr(security), str(security), repr(config), str(config)):
        assert SECRET not in shown


async def test_a_password_never_appears_in_errors(backend: str) -> None:
    security = SecurityConfig(mechanism="plain", username="alice", password=SECRET)
    # Invalid (empty client_id) so the error is about the config that holds the secret.
    config = StreamingConfig("", ("localhost:9092",), security=security)
    async with create_streaming_client(backend, config) as client:
        for result in (await client.get_producer(), await client.is_healthy()):
            assert isinstance(result, Failure)
            assert SECRET not in repr(result.error)
            assert SECRET not in str(result.error)
