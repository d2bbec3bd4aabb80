"""How the aiokafka backend turns our configuration into aiokafka's settings."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from qi.base.streaming import ConsumerConfig, ProducerConfig, SecurityConfig, StreamingConfig
from qi.base.streaming.backends.aiokafka._consumer import subscription_pattern
from qi.base.streaming.backends.aiokafka._settings import (
    CONSUMER_METADATA_MAX_AGE_MS,
    consumer_settings,
    max_request_bytes,
    producer_settings,
    security_settings,
)

CONFIG = StreamingConfig("app", ("127.0.0.1:9092", "127.0.0.1:9093"), request_timeout=7.5)


def test_producer_settings_follow_the_producer_config() -> None:
    settings = producer_settings(
        CONFIG,
        ProducerConfig(idempotent=False, acks=1, compression="gzip", linger=0.02,
                       max_message_bytes=2_000_000),
    )  # fmt: skip
    assert settings["bootstrap_servers"] == ["127.0.0.1:9092", "127.0.0.1:9093"]
    assert settings["client_id"] == "app"
    assert settings["request_timeout_ms"] == 7500
    assert settings["acks"] == 1
    assert settings["enable_idempotence"] is False
    assert settings["compression_type"] == "gzip"
    assert settings["linger_ms"] == 20
    assert settings["security_protocol"] == "PLAINTEXT"
    # aiokafka's own size check must never refuse a message our limit accepted.
    assert settings["max_request_size"] > 2_000_000
    # A batch of many records stays below Kafka's default message.max.bytes.
    assert 64 * 1024 <= settings["max_batch_size"] <= 1_000_000


def test_default_producer_is_idempotent_with_acks_all_and_no_compression() -> None:
    settings = producer_settings(CONFIG, ProducerConfig())
    assert settings["enable_idempotence"] is True
    assert settings["acks"] == "all"
    assert settings["compression_type"] is None
    assert settings["linger_ms"] == 5


def test_the_size_headroom_covers_record_framing() -> None:
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    limit = 1000
    headers = [(f"h{i}", b"v") for i in range(50)]
    # key + value + header bytes exactly at our limit
    payload = limit - 10 - sum(len(name) + len(value) for name, value in headers)
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(b"k" * 10, b"v" * payload, headers)
    assert size <= max_request_bytes(ProducerConfig(max_message_bytes=limit))


def test_consumer_settings_leave_commits_to_the_engine() -> None:
    consumer = ConsumerConfig("group", session_timeout=6.0, heartbeat_interval=0.5)
    settings = consumer_settings(CONFIG, consumer, from_beginning=True)
    assert settings["group_id"] == "group"
    assert settings["enable_auto_commit"] is False
    assert settings["auto_offset_reset"] == "earliest"
    assert settings["session_timeout_ms"] == 6000
    assert settings["heartbeat_interval_ms"] == 500
    assert settings["metadata_max_age_ms"] == CONSUMER_METADATA_MAX_AGE_MS
    # A JoinGroup may be held for the rebalance timeout: requests must be allowed longer.
    assert settings["request_timeout_ms"] > settings["session_timeout_ms"]
    latest = consumer_settings(CONFIG, consumer, from_beginning=False)
    assert latest["auto_offset_reset"] == "latest"


@pytest.mark.parametrize(
    ("mechanism", "ssl_on", "protocol", "sasl"),
    [
        ("plain", False, "SASL_PLAINTEXT", "PLAIN"),
        ("scram-sha-256", False, "SASL_PLAINTEXT", "SCRAM-SHA-256"),
        ("scram-sha-512", True, "SASL_SSL", "SCRAM-SHA-512"),
    ],
)
def test_sasl_settings(mechanism: str, ssl_on: bool, protocol: str, sasl: str) -> None:
    security = SecurityConfig(mechanism=mechanism, username="user", password="pw", ssl=ssl_on)  # type: ignore[arg-type]
    settings = security_settings(security)
    assert settings["security_protocol"] == protocol
    assert settings["sasl_mechanism"] == sasl
    assert settings["sasl_plain_username"] == "user"
    assert settings["sasl_plain_password"] == "pw"
    assert isinstance(settings.get("ssl_context"), ssl.SSLContext) is ssl_on


def test_tls_without_sasl_uses_the_system_trust_store() -> None:
    settings = security_settings(SecurityConfig(ssl=True))
    assert settings["security_protocol"] == "SSL"
    context = settings["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert "sasl_mechanism" not in settings


def test_no_security_is_plaintext() -> None:
    assert security_settings(None) == {"security_protocol": "PLAINTEXT"}
    assert security_settings(SecurityConfig()) == {"security_protocol": "PLAINTEXT"}


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key, as PEM files."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_mutual_tls_loads_the_ca_and_the_client_certificate(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    security = SecurityConfig(
        ssl=True, ssl_ca_file=str(cert), ssl_cert_file=str(cert), ssl_key_file=str(key)
    )
    context = security_settings(security)["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert any("localhost" in repr(ca["subject"]) for ca in context.get_ca_certs())


# -- subscriptions: topics and a pattern together --------------------------------------------


def _matches(pattern: str, name: str) -> bool:
    return re.compile(pattern).match(name) is not None


def test_pattern_keeps_re_match_semantics() -> None:
    combined = subscription_pattern([], r"orders\.")
    assert _matches(combined, "orders.eu")
    assert not _matches(combined, "old-orders.eu")  # re.match anchors at the start only
    assert _matches(subscription_pattern([], "orders$"), "orders")
    assert not _matches(subscription_pattern([], "orders$"), "orders-x")


def test_pattern_never_matches_internal_topics() -> None:
    combined = subscription_pattern([], ".*")
    assert _matches(combined, "events")
    assert not _matches(combined, "__consumer_offsets")
    assert not _matches(combined, "__transaction_state")


def test_topics_and_pattern_subscribe_to_the_union() -> None:
    combined = subscription_pattern(["exact.one", "two-2"], r"logs-")
    assert _matches(combined, "logs-a")
    assert _matches(combined, "exact.one")
    assert _matches(combined, "two-2")
    assert not _matches(combined, "exactXone")  # names are literal, not patterns
    assert not _matches(combined, "exact.one.more")  # and whole names
    assert not _matches(combined, "other")


def test_global_flags_of_the_pattern_stay_valid_and_do_not_leak_into_names() -> None:
    combined = subscription_pattern(["Exact"], "(?i)logs")
    assert _matches(combined, "LOGS-x")
    assert _matches(combined, "Exact")
    assert not _matches(combined, "EXACT")


def test_verbose_patterns_with_a_trailing_comment() -> None:
    combined = subscription_pattern(["named"], "(?x) logs - \\d+  # numbered logs")
    assert _matches(combined, "logs-12")
    assert _matches(combined, "named")
    assert not _matches(combined, "logs-x")


def test_alternation_in_the_pattern_stays_grouped() -> None:
    combined = subscription_pattern([], "a|__b")
    assert _matches(combined, "a1")
    assert not _matches(combined, "__b")  # the internal-topic guard covers every alternative
