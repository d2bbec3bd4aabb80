"""Checks of user-supplied values, run once at the API boundary.

Each check returns ``None`` when the value is fine, or a short problem
description. The callers turn problems into QiErrors with the contract's code,
so backends only ever see values that passed here.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Final

from qi.base.streaming._config import (
    ConsumerConfig,
    ConsumerRunConfig,
    ProducerConfig,
    SecurityConfig,
    StreamingConfig,
    SubscriptionConfig,
    TelemetryConfig,
    TopicConfig,
)
from qi.base.streaming._types import NO_HEADERS, StreamingMessage

if TYPE_CHECKING:
    from qi.base.streaming.backend import SeekTarget

_TOPIC_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,249}")
# Kafka's wire types: partition counts are int32, replication factors int16.
_MAX_PARTITIONS: Final = 2**31 - 1
_MAX_REPLICATION_FACTOR: Final = 2**15 - 1
# librdkafka's upper bound for linger.ms; longer is a mistake, not a batching strategy.
_MAX_LINGER: Final = 900.0
_SASL_MECHANISMS: Final = frozenset({"plain", "scram-sha-256", "scram-sha-512"})
_ACKS: Final = ("all", 1, 0)
_COMPRESSIONS: Final = frozenset({"none", "gzip", "snappy", "lz4", "zstd"})
_ISOLATION_LEVELS: Final = ("read_committed", "read_uncommitted")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """A real, finite number of seconds; bools and NaN are not."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_positive_number(value: object) -> bool:
    return isinstance(value, int | float) and _is_number(value) and value > 0


def topic_problem(name: object) -> str | None:
    """Kafka's rule: 1-249 characters of ``[A-Za-z0-9._-]``, and neither ``.`` nor ``..``."""
    if not isinstance(name, str):
        return f"topic name must be a str, got {type(name).__name__}"
    if name in (".", "..") or _TOPIC_NAME.fullmatch(name) is None:
        shown = name if len(name) <= 80 else name[:77] + "..."
        return (
            f"invalid topic name {shown!r}: use 1-249 characters of [A-Za-z0-9._-], not '.' or '..'"
        )
    return None


def is_internal_topic(name: str) -> bool:
    """Kafka's internal topics (``__consumer_offsets`` and the like) start with two underscores."""
    return name.startswith("__")


def broker_address_problem(address: object) -> str | None:
    """A broker is ``host:port`` with a port from 1 to 65535."""
    if not isinstance(address, str):
        return f"broker address must be a str, got {type(address).__name__}"
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"broker address {address!r} is not host:port with a port from 1 to 65535"
    return None


def security_problem(security: object) -> str | None:
    """SASL needs a known mechanism with a user name and a password; TLS files must be str."""
    if not isinstance(security, SecurityConfig):
        return f"security must be a SecurityConfig, got {type(security).__name__}"
    if security.mechanism is not None:
        if not isinstance(security.mechanism, str) or security.mechanism not in _SASL_MECHANISMS:
            return f"unknown SASL mechanism {security.mechanism!r}"
        if not isinstance(security.username, str) or not security.username:
            return "a SASL mechanism needs a username"
        if not isinstance(security.password, str) or not security.password:
            return "a SASL mechanism needs a password"
    elif security.username is not None or security.password is not None:
        return "a username or password needs a SASL mechanism"
    if not isinstance(security.ssl, bool):
        return "ssl must be a bool"
    for name in ("ssl_ca_file", "ssl_cert_file", "ssl_key_file"):
        value = getattr(security, name)
        if value is not None and (not isinstance(value, str) or not value):
            return f"{name} must be a non-empty str or None"
    return None


def streaming_config_problem(config: object) -> str | None:
    """The client-wide settings: identity, brokers, timeouts, retries, security."""
    if not isinstance(config, StreamingConfig):
        return f"config must be a StreamingConfig, got {type(config).__name__}"
    if not isinstance(config.client_id, str) or not config.client_id:
        return "client_id must be a non-empty str"
    if not isinstance(config.brokers, tuple | list) or not config.brokers:
        return "brokers must be a non-empty tuple of host:port strings"
    for broker in config.brokers:
        if (problem := broker_address_problem(broker)) is not None:
            return problem
    for name in ("connection_timeout", "request_timeout"):
        if not _is_positive_number(getattr(config, name)):
            return f"{name} must be a number of seconds > 0"
    if not _is_int(config.retry_attempts) or config.retry_attempts < 0:
        return "retry_attempts must be an int >= 0"
    if config.security is not None and (problem := security_problem(config.security)):
        return problem
    if config.telemetry is not None:
        return telemetry_problem(config.telemetry)
    return None


def telemetry_problem(telemetry: object) -> str | None:
    """Tracing needs its optional dependency and providers that can make tracers and meters."""
    if not isinstance(telemetry, TelemetryConfig):
        return f"telemetry must be a TelemetryConfig, got {type(telemetry).__name__}"
    if importlib.util.find_spec("opentelemetry") is None:
        return "telemetry needs OpenTelemetry: pip install 'qi-base[otel]'"
    for name, method in (("tracer_provider", "get_tracer"), ("meter_provider", "get_meter")):
        provider = getattr(telemetry, name)
        if provider is not None and not callable(getattr(provider, method, None)):
            return f"{name} must be an OpenTelemetry provider with {method}(), got {provider!r}"
    return None


def producer_config_problem(config: object) -> str | None:
    """Durability, batching and size settings, with Kafka's idempotence rule."""
    if not isinstance(config, ProducerConfig):
        return f"producer config must be a ProducerConfig, got {type(config).__name__}"
    if not isinstance(config.idempotent, bool):
        return "idempotent must be a bool"
    if not any(config.acks == acks and type(config.acks) is type(acks) for acks in _ACKS):
        return f"acks must be 'all', 1 or 0, got {config.acks!r}"
    if config.idempotent and config.acks != "all":
        return "idempotent=True requires acks='all' (Kafka's rule)"
    if not isinstance(config.compression, str) or config.compression not in _COMPRESSIONS:
        return f"unknown compression {config.compression!r}"
    if not _is_number(config.linger) or not 0 <= config.linger <= _MAX_LINGER:
        return f"linger must be a number of seconds from 0 to {_MAX_LINGER:g}"
    if not _is_int(config.max_in_flight) or config.max_in_flight < 1:
        return "max_in_flight must be an int >= 1"
    if config.idempotent and config.max_in_flight > 5:
        return "idempotent=True allows at most 5 requests in flight (Kafka's rule)"
    if not _is_int(config.max_message_bytes) or config.max_message_bytes < 1:
        return "max_message_bytes must be an int >= 1"
    return _transaction_problem(config)


def _transaction_problem(config: ProducerConfig) -> str | None:
    """A transactional id must be a non-empty str, on an idempotent producer (Kafka's rule)."""
    transactional_id = config.transactional_id
    if transactional_id is not None:
        if not isinstance(transactional_id, str) or not transactional_id:
            return "transactional_id must be a non-empty str or None"
        if not config.idempotent or config.acks != "all":
            return "transactional_id requires idempotent=True and acks='all' (Kafka's rule)"
    if not _is_positive_number(config.transaction_timeout):
        return "transaction_timeout must be a number of seconds > 0"
    return None


def consumer_config_problem(config: object) -> str | None:
    """Group identity, liveness timing, commit mode and batch size."""
    if not isinstance(config, ConsumerConfig):
        return f"consumer config must be a ConsumerConfig, got {type(config).__name__}"
    if not isinstance(config.group_id, str) or not config.group_id:
        return "group_id must be a non-empty str"
    for name in ("session_timeout", "heartbeat_interval", "auto_commit_interval"):
        if not _is_positive_number(getattr(config, name)):
            return f"{name} must be a number of seconds > 0"
    if not config.heartbeat_interval < config.session_timeout:
        return "heartbeat_interval must be below session_timeout"
    if not isinstance(config.auto_commit, bool):
        return "auto_commit must be a bool"
    if not _is_int(config.max_batch_size) or config.max_batch_size < 1:
        return "max_batch_size must be an int >= 1"
    if config.isolation_level not in _ISOLATION_LEVELS:
        return (
            "isolation_level must be 'read_committed' or 'read_uncommitted', "
            f"got {config.isolation_level!r}"
        )
    return None


def subscription_problem(config: object) -> str | None:
    """Topic names must be valid and the pattern must compile; something must be named."""
    if not isinstance(config, SubscriptionConfig):
        return f"subscription must be a SubscriptionConfig, got {type(config).__name__}"
    if not isinstance(config.topics, tuple | list):
        return "topics must be a tuple of topic names"
    if not config.topics and config.pattern is None:
        return "subscribe to at least one topic or a pattern"
    if config.pattern is not None:
        if not isinstance(config.pattern, str):
            return "pattern must be a str"
        try:
            re.compile(config.pattern)
        except re.error as exc:
            return f"pattern {config.pattern!r} does not compile: {exc}"
    if not isinstance(config.from_beginning, bool):
        return "from_beginning must be a bool"
    return None


def subscription_topic_problem(config: SubscriptionConfig) -> str | None:
    """The first invalid topic name of a subscription, if any."""
    for topic in config.topics:
        if (problem := topic_problem(topic)) is not None:
            return problem
    return None


def run_config_problem(config: object) -> str | None:
    """Exactly one handler, callables where callables belong, a sane backoff."""
    if not isinstance(config, ConsumerRunConfig):
        return f"run config must be a ConsumerRunConfig, got {type(config).__name__}"
    if (config.each_message is None) == (config.each_batch is None):
        return "set exactly one of each_message and each_batch"
    handler = config.each_message if config.each_message is not None else config.each_batch
    if not callable(handler):
        return "the handler must be an async callable"
    if config.on_error is not None and not callable(config.on_error):
        return "on_error must be callable"
    backoff = config.retry_backoff
    if not _is_number(backoff) or backoff < 0:
        return "retry_backoff must be a number of seconds >= 0"
    if not _is_int(config.transaction_max_messages) or config.transaction_max_messages < 1:
        return "transaction_max_messages must be an int >= 1"
    if not _is_positive_number(config.transaction_max_interval):
        return "transaction_max_interval must be a number of seconds > 0"
    return None


def topic_config_problem(config: object) -> str | None:
    """Partition and replica counts of a topic to create, and its settings."""
    if not isinstance(config, TopicConfig):
        return f"topic config must be a TopicConfig, got {type(config).__name__}"
    if not _is_int(config.num_partitions) or not 1 <= config.num_partitions <= _MAX_PARTITIONS:
        return f"num_partitions must be an int from 1 to {_MAX_PARTITIONS}"
    replication = config.replication_factor
    if not _is_int(replication) or not 1 <= replication <= _MAX_REPLICATION_FACTOR:
        return f"replication_factor must be an int from 1 to {_MAX_REPLICATION_FACTOR}"
    entries = config.config_entries
    if not isinstance(entries, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in entries.items()
    ):
        return "config_entries must map str to str"
    return None


def _is_encodable(text: str) -> bool:
    """Whether a str can be sent as UTF-8 (lone surrogates cannot)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _encoded_size(value: str | bytes) -> int:
    return len(value) if isinstance(value, bytes) else len(value.encode())


def message_problem(message: object) -> str | None:
    """The shape of a message to produce: bytes (or None) value, str/bytes key and headers."""
    if not isinstance(message, StreamingMessage):
        return f"message must be a StreamingMessage, got {type(message).__name__}"
    value = message.value
    if value is not None and not isinstance(value, bytes | bytearray):
        return f"message value must be bytes or None, got {type(value).__name__}"
    key = message.key
    if key is not None and not isinstance(key, str | bytes):
        return f"message key must be str, bytes or None, got {type(key).__name__}"
    if isinstance(key, str) and not _is_encodable(key):
        return "message key is a str that cannot be encoded as UTF-8"
    partition = message.partition
    if partition is not None and (not _is_int(partition) or not 0 <= partition <= _MAX_PARTITIONS):
        return (
            f"message partition must be an int from 0 to {_MAX_PARTITIONS} (Kafka's int32) "
            f"or None, got {partition!r}"
        )
    timestamp = message.timestamp
    if timestamp is not None:
        if not isinstance(timestamp, datetime):
            return f"message timestamp must be a datetime or None, got {type(timestamp).__name__}"
        try:
            if timestamp.timestamp() < 0:
                return "message timestamp must not be before 1970"
        except (OverflowError, OSError, ValueError):
            return "message timestamp is out of range"
    headers = message.headers
    if not isinstance(headers, Mapping):
        return f"message headers must be a mapping, got {type(headers).__name__}"
    for name, header in headers.items():
        if not isinstance(name, str) or not isinstance(header, str | bytes):
            return "message headers must map str names to str or bytes values"
        if not _is_encodable(name) or (isinstance(header, str) and not _is_encodable(header)):
            return "message headers hold a str that cannot be encoded as UTF-8"
    return None


def checked_message_size(message: object) -> int | str:
    """The size ``max_message_bytes`` limits, or the problem that makes ``message`` invalid.

    This runs once per produced message, so the common shape (bytes value, str
    or bytes key, no headers, no timestamp) is checked with exact type tests
    and no encoding of ASCII text; anything else takes the thorough path.
    """
    if type(message) is not StreamingMessage:
        return _thorough_size(message)
    value = message.value
    key = message.key
    partition = message.partition
    if (
        type(value) is not bytes
        or message.timestamp is not None
        or message.headers is not NO_HEADERS
        or (
            partition is not None
            and (type(partition) is not int or not 0 <= partition <= _MAX_PARTITIONS)
        )
    ):
        return _thorough_size(message)
    if key is None:
        return len(value)
    if type(key) is bytes:
        return len(value) + len(key)
    if type(key) is str and key.isascii():  # O(1) in CPython: ASCII length is the UTF-8 length
        return len(value) + len(key)
    return _thorough_size(message)


def _thorough_size(message: object) -> int | str:
    problem = message_problem(message)
    if problem is not None:
        return problem
    assert isinstance(message, StreamingMessage)
    return message_size(message)


def message_size(message: StreamingMessage) -> int:
    """Bytes of key, value and headers together: what ``max_message_bytes`` limits."""
    size = 0 if message.value is None else len(message.value)
    if message.key is not None:
        size += _encoded_size(message.key)
    for name, value in message.headers.items():
        size += _encoded_size(name) + _encoded_size(value)
    return size


def parse_offset(offset: object) -> SeekTarget | None:
    """A seek target from an int >= 0, a decimal string, "earliest" or "latest"; None if invalid."""
    if _is_int(offset):
        assert isinstance(offset, int)
        return offset if offset >= 0 else None
    if isinstance(offset, str):
        if offset == "earliest":
            return "earliest"
        if offset == "latest":
            return "latest"
        if offset.isdecimal() and offset.isascii():
            return int(offset)
    return None


def partition_problem(partition: object) -> str | None:
    """A partition number argument: an int from 0 to Kafka's int32 maximum."""
    if not _is_int(partition):
        return f"partition must be an int, got {type(partition).__name__}"
    assert isinstance(partition, int)
    if not 0 <= partition <= _MAX_PARTITIONS:
        return f"partition must be from 0 to {_MAX_PARTITIONS}, got {partition}"
    return None


# Offsets are int64 on the wire: a larger one cannot be sent (confluent raised
# OverflowError; aiokafka's sender broke and fenced the producer).
_MAX_OFFSET: Final = 2**63 - 1


def transaction_offsets(offsets: object) -> dict[tuple[str, int], int] | str:
    """Offsets for a transaction: {(topic, partition): next offset to read}, else the problem."""
    if not isinstance(offsets, Mapping):
        kind = type(offsets).__name__
        return f"offsets must be a mapping of (topic, partition) to offset, got {kind}"
    checked: dict[tuple[str, int], int] = {}
    for key, offset in offsets.items():
        if not isinstance(key, tuple) or len(key) != 2:
            return f"offsets keys must be (topic, partition) pairs, got {key!r}"
        topic, partition = key
        problem = topic_problem(topic) or partition_problem(partition)
        if problem is None and partition > _MAX_PARTITIONS:
            problem = f"partition must be <= {_MAX_PARTITIONS} (Kafka's int32), got {partition}"
        if problem is None and (not _is_int(offset) or not 0 <= offset <= _MAX_OFFSET):
            problem = (
                f"offset must be an int from 0 to {_MAX_OFFSET} (Kafka's int64), got {offset!r}"
            )
        if problem is not None:
            return problem
        checked[(topic, partition)] = offset
    return checked
