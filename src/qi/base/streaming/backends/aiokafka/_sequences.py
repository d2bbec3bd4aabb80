"""An idempotent producer's sequence numbers, given back when the broker refuses a batch.

aiokafka numbers a partition's records when it takes a batch out to send it, and
never takes the numbers back: when the broker refuses the batch outright (too
large, a keyless record on a compacted topic, a deleted topic), it wrote nothing
and its next sequence for the partition is still the refused batch's first, while
aiokafka's next batch starts after the refused one. The broker answers that batch,
and every later one to the partition, with OUT_OF_ORDER_SEQUENCE_NUMBER: one
refused message would poison the partition for the producer. Kafka's Java client
adjusts its sequences in this case; here, each batch taken out remembers the
numbers it got, and a batch refused before any later batch of its partition was
numbered gives them back.

The hook wraps how the producer's own accumulator takes a batch out and reads the
transaction manager's sequence numbers, both through ``_private``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from aiokafka.structs import TopicPartition

from qi.base.streaming.backends.aiokafka import _private
from qi.base.streaming.backends.aiokafka._errors import rejects


def give_back_refused_sequences(producer: Any) -> None:
    """Make ``producer``'s refused batches give back their sequence numbers (if idempotent)."""
    sequences = _private.sequence_numbers(producer)
    if sequences is None:
        return

    def watching(pop_batch: Callable[[TopicPartition], Any]) -> Callable[[TopicPartition], Any]:
        def pop_and_watch(tp: TopicPartition) -> Any:
            before = sequences.get(tp, 0)
            batch = pop_batch(tp)
            after = sequences.get(tp, 0)
            if after != before:  # numbered now, on its first way out
                batch.future.add_done_callback(
                    functools.partial(_refused, sequences, tp, before, after)
                )
            return batch

        return pop_and_watch

    _private.wrap_pop_batch(producer, watching)


def _refused(
    sequences: dict[TopicPartition, int], tp: TopicPartition, first: int, next_: int, done: Any
) -> None:
    if done.cancelled() or done.exception() is None or not rejects(done.exception()):
        return
    if sequences.get(tp) == next_:  # no later batch of the partition was numbered since
        sequences[tp] = first
