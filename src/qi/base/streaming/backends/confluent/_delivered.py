"""What a send_batch keeps of its delivery reports, and the ProduceResults built from it.

librdkafka reports each message on its own, with its partition, offset and timestamp.
A batch's report callback stores just those three values, by input position, in
:class:`Acks`' plain lists (ints are no objects the collector walks); a ProduceResult
(and its datetime) is built only when a caller reads it: for a fully acknowledged
batch on first read of ``results`` (:class:`Delivered`), for a batch with a failure
at once, since its per-message outcomes are all reported eagerly.
"""

from __future__ import annotations

from collections import Counter
from typing import Final, cast

from qi.base.streaming import ProduceResult
from qi.base.streaming._fast_values import (
    PRODUCE_RESULT_SETTERS,
    DeferredResults,
    datetime_from_millis,
    produce_result,
)

NOT_STAMPED: Final = None
"""In ``Acks.stamps``: librdkafka's report carried no timestamp (TIMESTAMP_NOT_AVAILABLE)."""


class Acks:
    """One batch's acknowledgements by input position: partition (None: not acknowledged),
    offset as reported (-1: not said), timestamp millis (None: not available)."""

    __slots__ = ("offsets", "partitions", "stamps", "topic")

    def __init__(self, topic: str, size: int) -> None:
        self.topic = topic
        self.partitions: list[int | None] = [None] * size
        self.offsets: list[int] = [-1] * size
        self.stamps: list[int | None] = [None] * size

    def result(self, index: int) -> ProduceResult | None:
        """Message ``index``'s ProduceResult, None unless it was acknowledged."""
        partition = self.partitions[index]
        if partition is None:
            return None
        millis = self.stamps[index]
        stamp = None if millis is NOT_STAMPED else datetime_from_millis(millis)
        return produce_result(self.topic, partition, self.offsets[index], stamp)


class Delivered(DeferredResults):
    """The results of a batch whose every message was acknowledged, built on first read."""

    __slots__ = ("_acks",)

    def __init__(self, acks: Acks) -> None:
        super().__init__()
        self._acks = acks

    def __len__(self) -> int:
        return len(self._acks.partitions)

    def partition_counts(self) -> dict[int, int]:
        # Every message was acknowledged: each has its partition.
        return Counter(cast(list[int], self._acks.partitions))

    def _build(self) -> tuple[ProduceResult, ...]:
        acks = self._acks
        topic = acks.topic
        set_topic, set_partition, set_offset, set_stamp = PRODUCE_RESULT_SETTERS
        new = object.__new__
        to_datetime = datetime_from_millis
        # A batch is mostly stamped within a few milliseconds: convert each one once.
        last_millis: int | None = None
        last = None
        results: list[ProduceResult] = []
        append = results.append
        for partition, offset, millis in zip(
            acks.partitions, acks.offsets, acks.stamps, strict=True
        ):
            if millis != last_millis:
                last_millis = millis
                last = None if millis is NOT_STAMPED else to_datetime(millis)
            result = new(ProduceResult)
            set_topic(result, topic)
            set_partition(result, partition)
            set_offset(result, offset)
            set_stamp(result, last)
            append(result)
        return tuple(results)
