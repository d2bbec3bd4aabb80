"""Configuration values: frozen dataclasses that never raise when built.

Validation lives in ``_validation`` and runs on first use, so a bad value shows
up as a ``STREAMING_INVALID_CONFIG`` Failure from ``get_producer`` and friends
rather than as an exception from a constructor. Times are seconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from qi.base import QiError
from qi.base.streaming._read_only import ReadOnlyMapping

if TYPE_CHECKING:
    from qi.base.streaming._producer import StreamingProducer
    from qi.base.streaming._types import EachBatchPayload, EachMessagePayload

SaslMechanism = Literal["plain", "scram-sha-256", "scram-sha-512"]
Acks = Literal["all", 1, 0]
Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
IsolationLevel = Literal["read_committed", "read_uncommitted"]

# Shared read-only empty mapping: a safe default that costs no allocation per instance.
EMPTY_MAPPING: Mapping[str, str] = ReadOnlyMapping()


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """How to authenticate to the brokers and whether to use TLS."""

    mechanism: SaslMechanism | None = None
    """SASL mechanism; None means no SASL."""
    username: str | None = None
    """SASL user name."""
    password: str | None = field(default=None, repr=False)
    """SASL password; never shown by repr."""
    ssl: bool = False
    """Connect over TLS."""
    ssl_ca_file: str | None = None
    """PEM file of the certificate authorities to trust; None means the system store."""
    ssl_cert_file: str | None = None
    """PEM client certificate for mutual TLS."""
    ssl_key_file: str | None = field(default=None, repr=False)
    """PEM private key of the client certificate; its path is not shown by repr."""


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """OpenTelemetry spans and metrics of a client's producers and consumers (``qi-base[otel]``)."""

    tracer_provider: object | None = None
    """Where spans go (an ``opentelemetry.trace.TracerProvider``); None means the global one."""
    meter_provider: object | None = None
    """Where metrics go (an ``opentelemetry.metrics.MeterProvider``); None means the global one."""


@dataclass(frozen=True, slots=True)
class StreamingConfig:
    """Where the cluster is and how patient to be with it."""

    client_id: str
    """Name this client reports to the brokers."""
    brokers: tuple[str, ...]
    """Bootstrap brokers as ``host:port`` strings."""
    connection_timeout: float = 10.0
    """Seconds to wait for a broker to answer when connecting."""
    request_timeout: float = 30.0
    """Seconds a single request (a send, a commit, an admin call) may take."""
    retry_attempts: int = 5
    """How many times a retriable request is retried."""
    security: SecurityConfig | None = None
    """Authentication and TLS; None means plaintext without SASL."""
    telemetry: TelemetryConfig | None = None
    """OpenTelemetry spans and metrics; None means none, and OpenTelemetry is never imported."""


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    """How a producer writes: durability, batching and size limits."""

    idempotent: bool = True
    """Let the broker de-duplicate retries (requires ``acks="all"``)."""
    acks: Acks = "all"
    """Acknowledgements to wait for: all in-sync replicas, the leader only, or none."""
    compression: Compression = "none"
    """Compression codec of produced batches."""
    linger: float = 0.005
    """Seconds to wait for more messages before sending a batch."""
    max_in_flight: int = 5
    """Unacknowledged requests allowed per connection."""
    max_message_bytes: int = 1_048_576
    """Largest accepted message (key, value and headers together)."""
    transactional_id: str | None = None
    """Makes the producer transactional (``transaction()``); the broker fences any older
    producer with the same id. Requires ``idempotent=True`` and ``acks="all"``."""
    transaction_timeout: float = 60.0
    """Seconds a transaction may stay open before the broker aborts it and fences the producer."""


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """Which group a consumer joins and how it commits."""

    group_id: str
    """Consumer group name."""
    session_timeout: float = 30.0
    """Seconds without heartbeat after which the group evicts this member."""
    heartbeat_interval: float = 3.0
    """Seconds between heartbeats; must be below ``session_timeout``."""
    auto_commit: bool = True
    """Commit processed offsets every ``auto_commit_interval``; else via ``commit_offsets()``."""
    auto_commit_interval: float = 5.0
    """Seconds between automatic commits."""
    max_batch_size: int = 500
    """Most messages handed to one ``each_batch`` call."""
    isolation_level: IsolationLevel = "read_committed"
    """``read_committed`` hides records of aborted and still open transactions."""


@dataclass(frozen=True, slots=True)
class SubscriptionConfig:
    """Which topics a consumer reads and where a new group starts."""

    topics: tuple[str, ...] = ()
    """Topic names to subscribe to."""
    pattern: str | None = None
    """Python ``re`` pattern, applied with ``re.match`` to topic names (never internal ones)."""
    from_beginning: bool = False
    """Start at the earliest offset where the group has no committed offset (else the latest)."""


@dataclass(frozen=True, slots=True)
class ConsumerRunConfig:
    """The handler a running consumer calls, and what to do when it fails."""

    each_message: Callable[[EachMessagePayload], Awaitable[object]] | None = None
    """Called once per message, in offset order per partition."""
    each_batch: Callable[[EachBatchPayload], Awaitable[object]] | None = None
    """Called with consecutive messages of one partition."""
    on_error: Callable[[QiError], Awaitable[object] | object] | None = None
    """Told of handler failures (``STREAMING_HANDLER_FAILED``) and other run-loop errors."""
    retry_backoff: float = 0.2
    """Seconds to wait before redelivering a message whose handler failed."""
    transactional_producer: StreamingProducer | None = None
    """Exactly-once: handle messages in transactions of this producer (which needs a
    ``transactional_id``; the consumer needs ``auto_commit=False``). The handler sends with
    ``payload.transaction``; the consumed offsets commit with what it sent."""
    transaction_max_messages: int = 500
    """Most messages handled in one transaction of ``transactional_producer``."""
    transaction_max_interval: float = 0.1
    """Most seconds one transaction of ``transactional_producer`` stays open; it also
    commits as soon as no message is waiting."""


@dataclass(frozen=True, slots=True)
class TopicConfig:
    """A topic to create."""

    topic: str
    """Topic name."""
    num_partitions: int = 1
    """Number of partitions."""
    replication_factor: int = 1
    """Copies of each partition."""
    config_entries: Mapping[str, str] = field(default_factory=lambda: EMPTY_MAPPING)
    """Topic-level settings such as ``retention.ms``."""
