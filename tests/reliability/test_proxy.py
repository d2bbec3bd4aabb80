"""The fault proxy itself, checked with a raw confluent-kafka producer (no qi-base code).

If these fail, every fault scenario built on the proxy is meaningless, so they come first.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ._proxy import ProxiedBroker

confluent_kafka = pytest.importorskip("confluent_kafka")

pytestmark = pytest.mark.broker


@pytest.fixture
def raw_producer(proxied_broker: ProxiedBroker) -> Iterator[Any]:
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": proxied_broker.bootstrap,
            "message.timeout.ms": 1500,
            "socket.connection.setup.timeout.ms": 1000,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 200,
            "log_level": 0,  # librdkafka would print every refused reconnect to stderr
        }
    )
    yield producer
    producer.purge()
    producer.close()


def _produce(producer: Any, topic: str, timeout: float = 10.0) -> tuple[Any, float]:
    """Produce one message and wait for its delivery report: (error or None, seconds)."""
    reports: list[Any] = []
    started = time.monotonic()
    producer.produce(topic, b"payload", on_delivery=lambda error, _msg: reports.append(error))
    producer.flush(timeout)
    assert reports, f"no delivery report within {timeout}s"
    return reports[0], time.monotonic() - started


def _topic() -> str:
    return f"qi-proxy-{uuid.uuid4().hex[:12]}"


def test_the_broker_advertises_the_proxy(proxied_broker: ProxiedBroker, raw_producer: Any) -> None:
    metadata = raw_producer.list_topics(timeout=5)
    advertised = {f"{broker.host}:{broker.port}" for broker in metadata.brokers.values()}
    assert advertised == {proxied_broker.bootstrap}
    error, _ = _produce(raw_producer, _topic())
    assert error is None
    assert proxied_broker.proxy.accepted >= 1
    assert proxied_broker.proxy.active >= 1


def test_cut_drops_every_connection_and_clients_reconnect(
    proxied_broker: ProxiedBroker, raw_producer: Any
) -> None:
    topic = _topic()
    assert _produce(raw_producer, topic)[0] is None
    accepted = proxied_broker.proxy.accepted
    assert proxied_broker.proxy.cut() >= 1
    error, _ = _produce(raw_producer, topic)
    assert error is None
    assert proxied_broker.proxy.accepted > accepted


def test_stall_leaves_requests_unanswered_until_restore(
    proxied_broker: ProxiedBroker, raw_producer: Any
) -> None:
    topic = _topic()
    assert _produce(raw_producer, topic)[0] is None
    proxied_broker.proxy.stall()
    error, elapsed = _produce(raw_producer, topic)
    assert error is not None and error.code() == confluent_kafka.KafkaError._MSG_TIMED_OUT
    assert 1.0 <= elapsed < 5.0
    proxied_broker.proxy.restore()
    error, _ = _produce(raw_producer, topic)
    assert error is None


def test_a_stalled_proxy_accepts_but_never_answers_a_new_client(
    proxied_broker: ProxiedBroker,
) -> None:
    proxied_broker.proxy.stall()
    admin = confluent_kafka.admin.AdminClient(
        {"bootstrap.servers": proxied_broker.bootstrap, "log_level": 0}
    )
    started = time.monotonic()
    with pytest.raises(confluent_kafka.KafkaException):
        admin.list_topics(timeout=1.0)
    assert time.monotonic() - started < 3.0
    assert proxied_broker.proxy.accepted >= 1


def test_latency_delays_every_round_trip(proxied_broker: ProxiedBroker, raw_producer: Any) -> None:
    topic = _topic()
    assert _produce(raw_producer, topic)[0] is None
    proxied_broker.proxy.add_latency(0.3)
    error, elapsed = _produce(raw_producer, topic)
    assert error is None
    assert elapsed >= 0.55  # the request and its answer are each held 0.3 s
    proxied_broker.proxy.restore()
    error, elapsed = _produce(raw_producer, topic)
    assert error is None
    assert elapsed < 0.5


def test_a_restarted_broker_is_reached_through_the_same_proxy(
    proxied_broker: ProxiedBroker, raw_producer: Any
) -> None:
    topic = _topic()
    assert _produce(raw_producer, topic)[0] is None
    pid = proxied_broker.broker.pid
    proxied_broker.broker.restart()
    assert proxied_broker.broker.pid not in (None, pid)
    error, _ = _produce(raw_producer, topic)
    assert error is None
