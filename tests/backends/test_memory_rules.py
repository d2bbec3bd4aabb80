"""The memory broker's copies of Kafka's rules: topic configs and record batch sizes.

The expected texts and sizes are what a Kafka-protocol broker (noida-db) answered;
the differential contract test compares whole behaviours, these pin the details.
"""

from __future__ import annotations

import pytest

from qi.base.streaming.backends.memory._records import record_batch_bytes
from qi.base.streaming.backends.memory._topic_configs import (
    BROKER_MESSAGE_MAX_BYTES,
    TOPIC_CONFIGS,
    TopicSettings,
    config_problem,
    topic_settings,
)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("no.such.config", "1", "Unknown topic config name: no.such.config"),
        ("cleanup.policy", "compact, delete", None),
        ("cleanup.policy", "", None),
        ("cleanup.policy", "Compact", "String must be one of: compact, delete"),
        ("retention.ms", " 100 ", None),
        ("retention.ms", "-2", "Value must be at least -1"),
        ("retention.ms", "1e3", "Not a number of type LONG"),
        ("retention.ms", "1_000", "Not a number of type LONG"),
        ("retention.ms", "9223372036854775808", "Not a number of type LONG"),
        ("max.message.bytes", "0", None),
        ("max.message.bytes", "2147483648", "Not a number of type INT"),
        ("min.cleanable.dirty.ratio", "1.5", "Value must be no more than 1"),
        ("min.cleanable.dirty.ratio", "abc", "Not a number of type DOUBLE"),
        ("preallocate", "TRUE", None),
        ("preallocate", "yes", "Expected value to be either true or false"),
        ("message.timestamp.type", "logappendtime", "String must be one of: CreateTime,"),
        ("compression.type", "none", "String must be one of: uncompressed,"),
        ("compression.gzip.level", "10", "Value must be no more than 9"),
        ("compression.gzip.level", "0", "Value must be between 1 and 9 or equal to -1"),
        ("flush.messages", "0", "Value must be at least 1"),
        ("segment.index.bytes", "3", "Value must be at least 4"),
        ("leader.replication.throttled.replicas", "0:0,1:0", None),
        ("leader.replication.throttled.replicas", "*", None),
        ("leader.replication.throttled.replicas", "x", "Must be the wildcard (*)"),
        ("message.format.version", "3.0-IV1", None),
        ("message.format.version", "three", "is not a valid version"),
    ],
)
def test_topic_configs_are_checked_as_kafka_checks_them(
    name: str, value: str, problem: str | None
) -> None:
    found = config_problem(name, value)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found, found


def test_every_config_of_the_table_has_a_check_that_accepts_something() -> None:
    samples = ("1", "-1", "1048576", "true", "compact", "CreateTime", "producer", "*", "3.0")
    for name, check in TOPIC_CONFIGS.items():
        assert any(check(sample) is None for sample in samples), name


def test_the_settings_the_broker_acts_on() -> None:
    assert topic_settings({}) == TopicSettings(False, BROKER_MESSAGE_MAX_BYTES, False)
    assert topic_settings(
        {
            "cleanup.policy": "delete,compact",
            "max.message.bytes": " 1000",
            "message.timestamp.type": "LogAppendTime",
        }
    ) == TopicSettings(compact=True, max_batch_bytes=1000, log_append_time=True)
    assert topic_settings({"retention.ms": "abc"}) == (
        "Invalid value abc for configuration retention.ms: Not a number of type LONG"
    )


@pytest.mark.parametrize(
    ("key", "value", "headers", "size"),
    [
        # The largest lone values a broker took: a batch of exactly its limit.
        (None, 930, None, 1000),
        (None, 1_048_516, None, BROKER_MESSAGE_MAX_BYTES),
        (b"abc", 1_048_508, {"h": b"12"}, BROKER_MESSAGE_MAX_BYTES),
        # A tombstone: a null value is one byte of length.
        (b"k", None, None, 61 + 1 + 3 + 2 + 1 + 1),
    ],
)
def test_a_record_is_sized_as_its_one_record_batch(
    key: bytes | None, value: int | None, headers: dict[str, bytes] | None, size: int
) -> None:
    payload = None if value is None else b"x" * value
    assert record_batch_bytes(key, payload, headers) == size
