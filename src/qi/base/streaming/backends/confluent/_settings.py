"""Contract configuration -> librdkafka settings (see librdkafka's CONFIGURATION.md).

Times in the contract are seconds; librdkafka wants integer milliseconds within
per-property ranges, so every conversion clamps. ``redacted`` is the only form
of a settings dict that may be logged: it hides the SASL password and key paths.
"""

from __future__ import annotations

from typing import Final

from qi.base.streaming import ConsumerConfig, ProducerConfig, SecurityConfig, StreamingConfig

Settings = dict[str, str | int | float | bool]

_SASL_MECHANISMS: Final = {
    "plain": "PLAIN",
    "scram-sha-256": "SCRAM-SHA-256",
    "scram-sha-512": "SCRAM-SHA-512",
}
_ACKS: Final = {"all": -1, 1: 1, 0: 0}
_SECRET_KEYS: Final = frozenset({"sasl.password", "ssl.key.location", "ssl.key.password"})

# Extra room over max_message_bytes for librdkafka's own size check, which counts the
# record framing too; the contract layer enforces max_message_bytes itself, exactly.
MESSAGE_OVERHEAD_BYTES: Final = 16_384

# How long librdkafka keeps believing a topic may still appear before failing messages
# with UNKNOWN_TOPIC_OR_PART. Its default (30 s) would turn a send to a missing topic
# into a timeout; a second is ample for a new topic's metadata to reach every broker.
TOPIC_PROPAGATION_MS: Final = 1_000

# How long a consumer postpones its next fetch after its local queue passed
# queued.min.messages. librdkafka's default (1 s) stalls a consumer that keeps up but
# drains its queue in bursts (10,000 messages at a time): it found the queue full once
# and then waited a whole second with an empty queue.
FETCH_QUEUE_BACKOFF_MS: Final = 10

# Cap on librdkafka's reconnect back-off (default 10 s), so a restarted broker is
# found again quickly.
RECONNECT_BACKOFF_MAX_MS: Final = 2_000


def _ms(seconds: float, low: int = 1, high: int = 2_147_483_647) -> int:
    return min(high, max(low, round(seconds * 1000)))


def security_settings(security: SecurityConfig | None) -> Settings:
    """``security.protocol``, SASL credentials and TLS files."""
    if security is None:
        return {"security.protocol": "PLAINTEXT"}
    sasl = security.mechanism is not None
    if sasl:
        protocol = "SASL_SSL" if security.ssl else "SASL_PLAINTEXT"
    else:
        protocol = "SSL" if security.ssl else "PLAINTEXT"
    settings: Settings = {"security.protocol": protocol}
    if security.mechanism is not None:
        settings["sasl.mechanism"] = _SASL_MECHANISMS[security.mechanism]
        settings["sasl.username"] = security.username or ""
        settings["sasl.password"] = security.password or ""
    if security.ssl:
        if security.ssl_ca_file is not None:
            settings["ssl.ca.location"] = security.ssl_ca_file
        if security.ssl_cert_file is not None:
            settings["ssl.certificate.location"] = security.ssl_cert_file
        if security.ssl_key_file is not None:
            settings["ssl.key.location"] = security.ssl_key_file
    return settings


def common_settings(config: StreamingConfig) -> Settings:
    """Settings every client shares: brokers, identity, timeouts, security."""
    return {
        "bootstrap.servers": ",".join(config.brokers),
        "client.id": config.client_id,
        "socket.connection.setup.timeout.ms": _ms(config.connection_timeout, 1_000),
        "socket.timeout.ms": _ms(config.request_timeout, 10, 300_000),
        "reconnect.backoff.max.ms": RECONNECT_BACKOFF_MAX_MS,
        "allow.auto.create.topics": False,
        **security_settings(config.security),
    }


def producer_settings(config: StreamingConfig, producer: ProducerConfig) -> Settings:
    """Durability, batching and delivery bounds of a producer."""
    settings = common_settings(config)
    settings.update(
        {
            "enable.idempotence": producer.idempotent,
            "acks": _ACKS[producer.acks],
            "compression.type": producer.compression,
            "linger.ms": min(900_000.0, producer.linger * 1000),
            "max.in.flight.requests.per.connection": producer.max_in_flight,
            # Kafka's Java client's key hash (librdkafka's default is CRC-32): a key lands on
            # the same partition whichever backend, or Java service, wrote it.
            "partitioner": "murmur2_random",
            "message.max.bytes": min(
                1_000_000_000, max(1_000, producer.max_message_bytes + MESSAGE_OVERHEAD_BYTES)
            ),
            # A message not acknowledged within request_timeout fails with _MSG_TIMED_OUT.
            "message.timeout.ms": _ms(config.request_timeout),
            "request.timeout.ms": _ms(config.request_timeout, 1, 900_000),
            "topic.metadata.propagation.max.ms": min(
                TOPIC_PROPAGATION_MS, _ms(config.request_timeout / 2)
            ),
        }
    )
    if producer.transactional_id is not None:
        transaction_ms = _ms(producer.transaction_timeout)
        settings["transactional.id"] = producer.transactional_id
        settings["transaction.timeout.ms"] = transaction_ms
        # librdkafka refuses a message.timeout.ms above transaction.timeout.ms, and a
        # socket.timeout.ms above transaction.timeout.ms + 100.
        settings["message.timeout.ms"] = min(settings["message.timeout.ms"], transaction_ms)
        settings["socket.timeout.ms"] = min(settings["socket.timeout.ms"], transaction_ms + 100)
    if not producer.idempotent:
        # The idempotent producer retries until message.timeout.ms (that is what keeps
        # it exactly-once and in order); a plain one retries retry_attempts times.
        settings["message.send.max.retries"] = config.retry_attempts
        if config.retry_attempts > 0:
            # A plain producer retries a failed request after the requests sent behind it
            # were written, reordering the partition (CONFIGURATION.md: "retrying may cause
            # reordering unless enable.idempotence is set"): one request in flight per
            # connection keeps input order. The idempotent producer keeps it by sequence
            # numbers with up to max_in_flight.
            settings["max.in.flight.requests.per.connection"] = 1
    return settings


def consumer_settings(
    config: StreamingConfig, consumer: ConsumerConfig, *, from_beginning: bool
) -> Settings:
    """Group membership; offsets are stored and committed only by the run loop."""
    settings = common_settings(config)
    settings.update(
        {
            "group.id": consumer.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "session.timeout.ms": _ms(consumer.session_timeout, 1, 3_600_000),
            "heartbeat.interval.ms": _ms(consumer.heartbeat_interval, 1, 3_600_000),
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
            "isolation.level": consumer.isolation_level,
        }
    )
    return settings


def admin_settings(config: StreamingConfig) -> Settings:
    """An admin client needs only the common settings.

    ``allow.auto.create.topics`` matters here too: describing a missing topic is a
    metadata request, which a broker with automatic creation would answer by creating it.
    """
    return common_settings(config)


def redacted(settings: Settings) -> Settings:
    """A copy safe to log: secrets replaced by ``***``."""
    return {key: "***" if key in _SECRET_KEYS else value for key, value in settings.items()}
