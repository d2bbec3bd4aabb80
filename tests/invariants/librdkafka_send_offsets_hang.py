"""Proof, with the raw client only, that librdkafka's send_offsets_to_transaction can block
far past its timeout after connections are cut (librdkafka issue 5456).

Three consume-transform-produce members (raw confluent-kafka: a consumer and a
transactional producer each) share a group behind the fault proxy, which cuts or
stalls every connection now and then. Every transactional call has a 5 s timeout;
any that takes longer is printed, and after the faults end and 15 quiet seconds,
the calls still blocked. Seen with librdkafka 2.16.0, on both development brokers:

    $ .venv/bin/python tests/invariants/librdkafka_send_offsets_hang.py 1 noida
    m0 send_offsets_to_transaction took 33.8s (timeout 5s)
    still blocked: {'m2': ('send_offsets_to_transaction', 53.6), 'm1': (...)}
    $ .venv/bin/python tests/invariants/librdkafka_send_offsets_hang.py 1 tansu
    m0 send_offsets_to_transaction took 14.7s (timeout 5s)
    still blocked: {'m1': ('send_offsets_to_transaction', 42.9), ...}

Arguments: a seed for the faults, and the broker (noida or tansu). Not a test: the
hang is librdkafka's, and the confluent backend bounds it (``_transactions``).
"""

from __future__ import annotations

import functools
import random
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from reliability._proxy import ProxiedBroker, ProxiedNoida  # noqa: E402

TIMEOUT = 5.0
SETTINGS = {
    "socket.connection.setup.timeout.ms": 3000,
    "socket.timeout.ms": 5000,
    "reconnect.backoff.max.ms": 2000,
    "log_level": 0,
}
blocked: dict[str, tuple[str, float]] = {}
"""Member: the transactional call it is in, and since when."""
stopping = threading.Event()


def timed(member: str, what: str, call: Callable[[], Any]) -> None:
    blocked[member] = (what, time.monotonic())
    try:
        call()
    finally:
        took = time.monotonic() - blocked.pop(member)[1]
        if took > TIMEOUT + 1:
            print(f"{member} {what} took {took:.1f}s (timeout {TIMEOUT:g}s)", flush=True)


def member(bootstrap: str, name: str) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "g",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 600,
            **SETTINGS,
        }
    )
    consumer.subscribe(["in"])
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": name,
            "message.timeout.ms": 5000,
            "request.timeout.ms": 5000,
            "transaction.timeout.ms": 20000,
            "enable.idempotence": True,
            "linger.ms": 5,
            **SETTINGS,
        }
    )
    producer.init_transactions(10)
    while not stopping.is_set():
        records = [record for record in consumer.consume(50, 0.2) if record.error() is None]
        if not records:
            continue
        producer.begin_transaction()
        offsets: dict[int, int] = {}
        for record in records:
            partition, offset = record.partition() or 0, record.offset() or 0
            producer.produce("out", record.value(), partition=partition)
            offsets[partition] = offset + 1
        positions = [TopicPartition("in", key, value) for key, value in offsets.items()]
        group = consumer.consumer_group_metadata()
        try:
            timed(
                name,
                "send_offsets_to_transaction",
                functools.partial(producer.send_offsets_to_transaction, positions, group, TIMEOUT),
            )
            timed(name, "commit", functools.partial(producer.commit_transaction, TIMEOUT))
        except KafkaException:
            try:
                timed(name, "abort", functools.partial(producer.abort_transaction, TIMEOUT))
            except KafkaException:
                pass
            keys = [TopicPartition("in", key) for key in offsets]
            for committed in consumer.committed(keys, TIMEOUT):
                consumer.seek(TopicPartition("in", committed.partition, max(committed.offset, 0)))


def main(seed: int, broker: str) -> None:
    with ProxiedBroker() if broker == "tansu" else ProxiedNoida() as fronted:
        bootstrap = fronted.bootstrap
        admin = AdminClient({"bootstrap.servers": bootstrap})  # kept until its futures end
        made = admin.create_topics([NewTopic("in", 6), NewTopic("out", 6)])
        for future in made.values():
            future.result()
        time.sleep(1)
        for index in range(3):
            threading.Thread(target=member, args=(bootstrap, f"m{index}"), daemon=True).start()
        source = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
        rng = random.Random(seed)
        end, sent = time.monotonic() + 40, 0
        while time.monotonic() < end:
            for _ in range(100):
                source.produce("in", b"v%d" % sent, partition=sent % 6)
                sent += 1
            source.poll(0)
            time.sleep(0.1)
            if rng.random() < 0.05:
                if rng.random() < 0.5:
                    fronted.proxy.cut()
                else:
                    fronted.proxy.stall()
                    time.sleep(rng.uniform(0.3, 1.0))
                    fronted.proxy.restore()
        fronted.proxy.restore()
        time.sleep(15)
        now = time.monotonic()
        print("still blocked:", {k: (w, round(now - t, 1)) for k, (w, t) in blocked.items()})
        stopping.set()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
