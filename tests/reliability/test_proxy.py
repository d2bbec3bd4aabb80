"""The fault proxy itself, checked with a raw confluent-kafka producer (no qi-base code).

If these fail, every fault scenario built on the proxy is meaningless, so they come first.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from testkit import unique

from ._proxy import ProxiedBroker, ProxiedNoida

confluent_kafka = pytest.importorskip("confluent_kafka")

pytestmark = pytest.mark.broker


@pytest.fixture
def raw_producer(proxied_broker: ProxiedBroker) -> Iterator[Any]:
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": proxied_broker.bootstrap,
            # After a cut, librdkafka re-bootstraps and asks for metadata on its next
            # one-second tick: a reconnect takes up to about a second.
            "message.timeout.ms": 3000,
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


def test_the_broker_advertises_the_proxy(proxied_broker: ProxiedBroker, raw_producer: Any) -> None:
    metadata = raw_producer.list_topics(timeout=5)
    advertised = {f"{broker.host}:{broker.port}" for broker in metadata.brokers.values()}
    assert advertised == {proxied_broker.bootstrap}
    error, _ = _produce(raw_producer, unique("proxy"))
    assert error is None
    assert proxied_broker.proxy.accepted >= 1
    assert proxied_broker.proxy.active >= 1


def test_cut_drops_every_connection_and_clients_reconnect(
    proxied_broker: ProxiedBroker, raw_producer: Any
) -> None:
    topic = unique("proxy")
    assert _produce(raw_producer, topic)[0] is None
    accepted = proxied_broker.proxy.accepted
    assert proxied_broker.proxy.cut() >= 1
    error, _ = _produce(raw_producer, topic)
    assert error is None
    assert proxied_broker.proxy.accepted > accepted


def test_stall_leaves_requests_unanswered_until_restore(
    proxied_broker: ProxiedBroker, raw_producer: Any
) -> None:
    topic = unique("proxy")
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
    topic = unique("proxy")
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
    topic = unique("proxy")
    assert _produce(raw_producer, topic)[0] is None
    pid = proxied_broker.broker.pid
    proxied_broker.broker.restart()
    assert proxied_broker.broker.pid not in (None, pid)
    error, _ = _produce(raw_producer, topic)
    assert error is None


def test_a_lost_produce_answer_makes_the_idempotent_retry_a_duplicate(
    proxied_broker: ProxiedBroker,
) -> None:
    # What the confluent backend's offsets rest on: the development broker answers the
    # retry of a batch it has written DUPLICATE_SEQUENCE_NUMBER with base offset -1, and
    # librdkafka reports that batch delivered, numbering it from the -1 (None, 0, 1, ...).
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": proxied_broker.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 50,  # the three messages below go in one batch
            "reconnect.backoff.ms": 20,
            "log_level": 0,
        }
    )
    topic = unique("proxy")
    reports: list[tuple[Any, bytes, int | None]] = []

    def report(error: Any, message: Any) -> None:
        reports.append((error, message.value(), message.offset()))

    producer.produce(topic, b"first", partition=0, on_delivery=report)
    producer.flush(10)
    proxied_broker.proxy.lose_next_produce_answer()
    for value in (b"m0", b"m1", b"m2"):
        producer.produce(topic, value, partition=0, on_delivery=report)
    producer.flush(10)
    producer.close()
    assert proxied_broker.proxy.answers_lost == 1
    assert reports == [(None, b"first", 0), (None, b"m0", None), (None, b"m1", 0), (None, b"m2", 1)]

    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": proxied_broker.bootstrap, "group.id": unique("proxy"), "log_level": 0}
    )
    consumer.assign([confluent_kafka.TopicPartition(topic, 0, 0)])
    written: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 10
    while len(written) < 4 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            written.append((message.offset(), message.value()))
    consumer.close()
    assert written == [(0, b"first"), (1, b"m0"), (2, b"m1"), (3, b"m2")]  # each once


def test_noida_behind_the_proxy_names_the_proxy_and_a_cut_reaches_its_clients() -> None:
    """noida-db advertises its own listener; the proxy rewrites it, coordinator included."""
    with ProxiedNoida() as fronted:
        producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": fronted.bootstrap,
                "transactional.id": unique("proxy"),
                "log_level": 0,
            }
        )
        try:
            metadata = producer.list_topics(timeout=5)
            advertised = {f"{broker.host}:{broker.port}" for broker in metadata.brokers.values()}
            assert advertised == {fronted.bootstrap}
            producer.init_transactions(10)  # found through FindCoordinator: the proxy again
            assert fronted.proxy.cut() >= 1
            producer.begin_transaction()
            producer.produce(unique("proxy"), b"payload")
            producer.commit_transaction(10)
            assert fronted.broker.bootstrap != fronted.bootstrap
        finally:
            producer.close()
