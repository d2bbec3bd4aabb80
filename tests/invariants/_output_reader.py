"""Reads an exactly-once pipeline's output topic with read_committed, as its consumers would.

A raw librdkafka consumer (no group) reads every partition from the start until its
position reaches the partition's end: records of aborted transactions are skipped, and
the position moves past the commit and abort markers, so reaching the end means
nothing is held back by a transaction still open.
"""

from __future__ import annotations

import time
from typing import Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from ._events import Output
from ._recorder import output_of

_POLL: Final = 0.5


def read_committed_outputs(
    bootstrap: str, topic: str, partitions: int, within: float
) -> tuple[list[Output], bool]:
    """Every record of ``topic`` a read_committed reader sees, and whether it got to the end."""
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-reader",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    outputs: list[Output] = []
    try:
        keys = [
            TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in range(partitions)
        ]
        reader.assign(keys)
        ends = {key.partition: reader.get_watermark_offsets(key, timeout=5.0)[1] for key in keys}
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for record in reader.consume(1000, _POLL):
                partition, offset = record.partition(), record.offset()
                if record.error() is None and partition is not None and offset is not None:
                    outputs.append(output_of(partition, offset, record.key(), record.value()))
            positions = reader.position([TopicPartition(topic, p) for p in ends])
            # An empty partition has no position to reach.
            if all(
                key.offset >= ends[key.partition] or not ends[key.partition] for key in positions
            ):
                return outputs, True
        return outputs, False
    finally:
        reader.close()
