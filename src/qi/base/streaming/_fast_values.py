"""The contract's values built fast, for the paths that run once per message.

Two costs dominate those paths once the I/O is batched, and both tricks that avoid
them live here, once:

- A frozen dataclass's ``__init__`` assigns each field through
  ``object.__setattr__``, about twice the cost of calling the slot descriptors
  directly. The hot loops build ``object.__new__(cls)`` and call the setters this
  module hands out (written out in the loop: a call of our own per message would
  cost what the trick saves). :func:`slot_setters` checks once, at import, that
  this is exactly what ``__init__`` would do (slotted fields, in this order, no
  ``__post_init__``) and refuses otherwise: a change to ``_types`` that breaks the
  shortcut fails every import, with the reason, instead of leaving a silent
  fallback in each loop that no test reaches.
- ``datetime.fromtimestamp`` per message. Consecutive records mostly carry the
  same millisecond (a batch is stamped within a few), so :class:`LastTimestamp`
  remembers the last conversion; a loop copies its two fields into locals,
  converts with :func:`datetime_from_millis` when the millisecond changes, and
  stores them back.

And one trick that avoids the per-message objects altogether: a batch whose every
message was acknowledged returns a :class:`BatchProduceResult` whose ``results``
are built when first read, from what the backend kept of the acknowledgement
(:class:`DeferredResults`, see :func:`deferred_batch_result`).
"""

from __future__ import annotations

import dataclasses
import threading
import types
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Final

from qi.base.streaming._types import (
    BatchProduceResult,
    ConsumedMessage,
    EachMessagePayload,
    ProduceResult,
    _DeferredResults,
)

Setter = Callable[[object, object], None]
"""Sets one slot of an instance: ``setter(instance, value)``."""


def slot_setters(cls: type, names: tuple[str, ...]) -> tuple[Setter, ...]:
    """The slot setters of ``cls``'s fields ``names``; raises TypeError unless setting
    them, in this order, is all that ``cls(*values)`` does."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(
            f"{cls.__name__}.__init__ runs __post_init__: build it with {cls.__name__}(...)"
        )
    fields = tuple(field.name for field in dataclasses.fields(cls))
    if fields != names:
        raise TypeError(f"{cls.__name__} has the fields {fields}, the fast path sets {names}")
    descriptors = [cls.__dict__.get(name) for name in names]
    if not all(isinstance(d, types.MemberDescriptorType) for d in descriptors):
        raise TypeError(f"{cls.__name__} keeps its fields outside slots")
    return tuple(d.__set__ for d in descriptors)  # type: ignore[union-attr]


CONSUMED_MESSAGE_SETTERS: Final = slot_setters(
    ConsumedMessage, ("topic", "partition", "offset", "key", "value", "timestamp", "headers")
)
"""For the fetch paths, which build one ConsumedMessage per message inline."""

PRODUCE_RESULT_SETTERS: Final = slot_setters(
    ProduceResult, ("topic", "partition", "offset", "timestamp")
)
"""For the acknowledgement paths, which build one ProduceResult per message inline."""

BATCH_PRODUCE_RESULT_SETTERS: Final = slot_setters(BatchProduceResult, ("topic", "results"))
"""For :func:`deferred_batch_result`, which sets ``topic`` and leaves ``results`` unset."""
_DEFERRED_SLOT: Final = _DeferredResults.__dict__["_deferred"]
_SET_DEFERRED: Final = _DEFERRED_SLOT.__set__
"""Sets the slot that holds a BatchProduceResult's unbuilt results."""

EACH_MESSAGE_SETTERS: Final = slot_setters(
    EachMessagePayload, ("topic", "partition", "message", "transaction")
)
"""For the run loop, which builds one EachMessagePayload per message inline. The
at-least-once loop sets the first three only: an unset ``transaction`` reads as None."""


def produce_result(
    topic: str, partition: int, offset: int, timestamp: datetime | None
) -> ProduceResult:
    """A ProduceResult built through its slots, for paths that build one at a time."""
    set_topic, set_partition, set_offset, set_timestamp = PRODUCE_RESULT_SETTERS
    result = object.__new__(ProduceResult)
    set_topic(result, topic)
    set_partition(result, partition)
    set_offset(result, offset)
    set_timestamp(result, timestamp)
    return result


_FIRST_BUILD: Final = threading.Lock()
"""Held while a DeferredResults builds: one lock for all, taken once per result at most."""


class DeferredResults(Sequence[ProduceResult]):
    """A fully acknowledged batch's results, one per message in input order, built on first
    read from what the backend kept (base offsets per append, partitions, timestamps).

    A backend's ``send_batch`` may return one instead of a list of outcomes; the producer
    then hands it to :func:`deferred_batch_result` untouched. Indexing it builds them all.
    """

    __slots__ = ("_built",)

    def __init__(self) -> None:
        self._built: tuple[ProduceResult, ...] | None = None

    @abstractmethod
    def __len__(self) -> int:
        """How many messages the batch had."""

    @abstractmethod
    def _build(self) -> tuple[ProduceResult, ...]:
        """Every result, in input order; called once."""

    def results(self) -> tuple[ProduceResult, ...]:
        """Every result, in input order: built on the first call, then the same tuple."""
        built = self._built
        if built is None:
            # Threads reading a result at once would each build a tuple of their own (the
            # build lets the GIL go): the first read builds, the others wait for its tuple.
            with _FIRST_BUILD:
                built = self._built
                if built is None:
                    built = self._built = self._build()
        return built

    def partition_counts(self) -> dict[int, int]:
        """How many messages each partition got (telemetry's per-partition count): from the
        results here; a backend that kept the partitions counts them without a result each."""
        counts: dict[int, int] = {}
        for result in self.results():
            counts[result.partition] = counts.get(result.partition, 0) + 1
        return counts

    def __getitem__(self, index: int) -> ProduceResult:  # type: ignore[override]
        return self.results()[index]

    def __iter__(self) -> Iterator[ProduceResult]:
        return iter(self.results())


def deferred_batch_result(topic: str, deferred: DeferredResults) -> BatchProduceResult:
    """A BatchProduceResult whose ``results`` are ``deferred.results()``, built when first read
    (see ``BatchProduceResult.__getattr__``): equal, hashed and shown as the eager one."""
    set_topic, _ = BATCH_PRODUCE_RESULT_SETTERS
    result = object.__new__(BatchProduceResult)
    set_topic(result, topic)
    _SET_DEFERRED(result, deferred)
    return result


def unbuilt_results(batch: BatchProduceResult) -> DeferredResults | None:
    """What builds ``batch.results`` while nobody read them yet; None once they were built,
    or for a BatchProduceResult constructed with its results."""
    try:
        deferred: DeferredResults | None = _DEFERRED_SLOT.__get__(batch)
    except AttributeError:  # constructed with its results: the slot was never set
        return None
    return deferred


def datetime_from_millis(millis: int) -> datetime | None:
    """Kafka's milliseconds since the epoch as an aware UTC datetime, None if unrepresentable.

    A record's timestamp is whatever its producer wrote: microseconds by mistake, or
    any int64 beyond the year 9999. One such record must not make a whole fetch fail.
    """
    try:
        return datetime.fromtimestamp(millis / 1000, tz=UTC)
    except (OverflowError, ValueError, OSError):
        return None


def millis_from_datetime(moment: datetime) -> int:
    """A message timestamp as Kafka's milliseconds since the epoch."""
    return int(moment.timestamp() * 1000)


class LastTimestamp:
    """The last millisecond converted to a datetime, and that datetime.

    Hot loops read both fields into locals, convert with :func:`datetime_from_millis`
    only when the millisecond changes, and write them back; others call the instance.
    Not thread-safe by design: each thread that converts owns its own instance.
    """

    __slots__ = ("millis", "stamp")

    def __init__(self) -> None:
        self.millis: int | None = None
        """The last millisecond converted; None before the first."""
        self.stamp: datetime | None = None
        """``datetime_from_millis(millis)``."""

    def __call__(self, millis: int) -> datetime | None:
        """``datetime_from_millis(millis)``, converted again only for a new millisecond."""
        if millis != self.millis:
            self.millis, self.stamp = millis, datetime_from_millis(millis)
        return self.stamp


def consumed_headers(headers: Iterable[tuple[str, str | bytes | None]]) -> dict[str, bytes]:
    """Native (name, value) headers as the contract wants them: bytes values (a null value
    becomes b""), the last of repeated names wins."""
    return {
        name: value if isinstance(value, bytes) else b"" if value is None else value.encode()
        for name, value in headers
    }
