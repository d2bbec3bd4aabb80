"""Our configuration as aiokafka keyword arguments: the one place that knows aiokafka's names.

aiokafka takes milliseconds where we take seconds, spells SASL mechanisms in
upper case and wants a ready ``ssl.SSLContext`` instead of file names. Secrets
pass straight through to aiokafka and are never logged or put in an error.
"""

from __future__ import annotations

import ssl
from typing import Any, Final

from qi.base.streaming import ConsumerConfig, ProducerConfig, SecurityConfig, StreamingConfig

# Room for the record batch header and each record's varint framing on top of the
# key, value and header bytes that max_message_bytes limits (our check runs first,
# so aiokafka's own size check must never reject a message we accepted).
_RECORD_OVERHEAD: Final = 16 * 1024
# Records per batch, in bytes: large batches carry the throughput, since aiokafka keeps only
# one request in flight per broker (linger_ms decides latency, not this size). Below Kafka's
# default message.max.bytes (1 MiB + 12), which limits a whole record batch; a single larger
# message still goes alone, as the first record of a batch always fits.
_BATCH_BYTES: Final = 512 * 1024
# How often a consumer refreshes metadata, so that topics created later that match
# its pattern (or that it named before they existed) are picked up within seconds.
CONSUMER_METADATA_MAX_AGE_MS: Final = 2_000
_RETRY_BACKOFF_MS: Final = 100
_JOIN_MARGIN_MS: Final = 5_000

_SASL_MECHANISMS: Final = {
    "plain": "PLAIN",
    "scram-sha-256": "SCRAM-SHA-256",
    "scram-sha-512": "SCRAM-SHA-512",
}


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def ssl_context(security: SecurityConfig) -> ssl.SSLContext:
    """A client TLS context: the given (or system) CAs, and a client certificate if any."""
    context = ssl.create_default_context(cafile=security.ssl_ca_file)
    if security.ssl_cert_file is not None:
        context.load_cert_chain(security.ssl_cert_file, security.ssl_key_file)
    return context


def security_settings(security: SecurityConfig | None) -> dict[str, Any]:
    """security_protocol, SASL credentials and the TLS context for aiokafka."""
    if security is None:
        return {"security_protocol": "PLAINTEXT"}
    settings: dict[str, Any] = {}
    if security.mechanism is not None:
        settings["security_protocol"] = "SASL_SSL" if security.ssl else "SASL_PLAINTEXT"
        settings["sasl_mechanism"] = _SASL_MECHANISMS[security.mechanism]
        settings["sasl_plain_username"] = security.username
        settings["sasl_plain_password"] = security.password
    else:
        settings["security_protocol"] = "SSL" if security.ssl else "PLAINTEXT"
    if security.ssl:
        settings["ssl_context"] = ssl_context(security)
    return settings


def client_settings(config: StreamingConfig) -> dict[str, Any]:
    """What every aiokafka client takes: brokers, identity, timeouts, security."""
    return {
        "bootstrap_servers": list(config.brokers),
        "client_id": config.client_id,
        "request_timeout_ms": _ms(config.request_timeout),
        "retry_backoff_ms": _RETRY_BACKOFF_MS,
        **security_settings(config.security),
    }


def max_request_bytes(producer: ProducerConfig) -> int:
    """aiokafka's per-message ceiling: our limit plus the framing around it."""
    return producer.max_message_bytes + _RECORD_OVERHEAD


def producer_settings(config: StreamingConfig, producer: ProducerConfig) -> dict[str, Any]:
    """AIOKafkaProducer keyword arguments.

    ``max_in_flight`` and ``retry_attempts`` have no aiokafka equivalent: it keeps
    one request in flight per broker and retries a batch until ``request_timeout``.
    """
    request_bytes = max_request_bytes(producer)
    return {
        **client_settings(config),
        "acks": producer.acks,
        "enable_idempotence": producer.idempotent,
        "compression_type": None if producer.compression == "none" else producer.compression,
        "linger_ms": round(producer.linger * 1000),
        "max_request_size": request_bytes,
        "max_batch_size": _BATCH_BYTES,
        **(
            {}
            if producer.transactional_id is None
            else {
                "transactional_id": producer.transactional_id,
                "transaction_timeout_ms": _ms(producer.transaction_timeout),
            }
        ),
    }


def consumer_settings(
    config: StreamingConfig, consumer: ConsumerConfig, *, from_beginning: bool
) -> dict[str, Any]:
    """AIOKafkaConsumer keyword arguments; the engine commits, so aiokafka never does."""
    session_ms = _ms(consumer.session_timeout)
    return {
        **client_settings(config),
        # aiokafka times every request out after request_timeout_ms, JoinGroup included, and a
        # broker may hold a JoinGroup for up to the rebalance timeout: the Java client's rule
        # (rebalance timeout plus 5 s) keeps a short request_timeout from making joins impossible.
        # Our own calls stay bounded by request_timeout (the engine bounds commits itself).
        "request_timeout_ms": max(_ms(config.request_timeout), session_ms + _JOIN_MARGIN_MS),
        "group_id": consumer.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest" if from_beginning else "latest",
        "session_timeout_ms": session_ms,
        "heartbeat_interval_ms": _ms(consumer.heartbeat_interval),
        "rebalance_timeout_ms": session_ms,
        "metadata_max_age_ms": CONSUMER_METADATA_MAX_AGE_MS,
        "exclude_internal_topics": True,
        "isolation_level": consumer.isolation_level,
    }


def admin_settings(config: StreamingConfig) -> dict[str, Any]:
    """AIOKafkaAdminClient keyword arguments."""
    return client_settings(config)
