"""A BatchProduceResult whose results are built on first read behaves as a constructed one.

The send paths return such results (``deferred_batch_result``): the contract pins
``results`` as a tuple, and everything a caller can do with the value (compare, hash,
print, replace, pickle, pattern-match) must not tell the two apart.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import pickle
import threading
from datetime import UTC, datetime

import pytest

from qi.base.streaming import BatchProduceResult, ProduceResult
from qi.base.streaming._fast_values import (
    DeferredResults,
    deferred_batch_result,
    unbuilt_results,
)

STAMP = datetime(2024, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
RESULTS = tuple(ProduceResult("orders", index % 2, 10 + index, STAMP) for index in range(4))


class _Counted(DeferredResults):
    """Builds ``RESULTS`` and counts how often it was asked to."""

    __slots__ = ("builds",)

    def __init__(self) -> None:
        super().__init__()
        self.builds = 0

    def __len__(self) -> int:
        return len(RESULTS)

    def _build(self) -> tuple[ProduceResult, ...]:
        self.builds += 1
        return tuple(ProduceResult(r.topic, r.partition, r.offset, r.timestamp) for r in RESULTS)


def _deferred() -> BatchProduceResult:
    return deferred_batch_result("orders", _Counted())


def _eager() -> BatchProduceResult:
    return BatchProduceResult("orders", RESULTS)


def test_results_are_built_on_first_read_only_then_held() -> None:
    deferred = _Counted()
    batch = deferred_batch_result("orders", deferred)
    assert batch.topic == "orders"
    assert deferred.builds == 0
    first = batch.results
    assert type(first) is tuple and first == RESULTS
    assert batch.results is first
    assert deferred.builds == 1


def test_a_deferred_result_equals_and_hashes_as_the_constructed_one() -> None:
    assert _deferred() == _eager()
    assert _eager() == _deferred()
    assert _deferred() == _deferred()
    assert hash(_deferred()) == hash(_eager())
    assert _deferred() != BatchProduceResult("orders", RESULTS[:3])
    assert _deferred() != BatchProduceResult("other", RESULTS)
    assert len({_deferred(), _eager()}) == 1


def test_a_deferred_result_shows_as_the_constructed_one() -> None:
    assert repr(_deferred()) == repr(_eager())
    assert str(_deferred()) == str(_eager())


def test_a_deferred_result_is_frozen() -> None:
    batch = _deferred()
    with pytest.raises(dataclasses.FrozenInstanceError):
        batch.results = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        batch.topic = "other"  # type: ignore[misc]
    assert batch.results == RESULTS  # nothing was set by the refused assignments


def test_dataclass_functions_see_the_contract_fields_only() -> None:
    assert dataclasses.fields(_deferred()) == dataclasses.fields(_eager())
    assert [field.name for field in dataclasses.fields(_deferred())] == ["topic", "results"]
    assert dataclasses.asdict(_deferred()) == dataclasses.asdict(_eager())
    assert dataclasses.astuple(_deferred()) == dataclasses.astuple(_eager())
    assert dataclasses.replace(_deferred()) == _eager()
    renamed = dataclasses.replace(_deferred(), topic="renamed")
    assert renamed == BatchProduceResult("renamed", RESULTS)


def test_a_deferred_result_pickles_and_copies_as_the_constructed_one() -> None:
    assert pickle.loads(pickle.dumps(_deferred())) == _eager()
    assert copy.copy(_deferred()) == _eager()
    assert copy.deepcopy(_deferred()) == _eager()


def test_a_deferred_result_matches_the_constructed_pattern() -> None:
    match _deferred():
        case BatchProduceResult(topic, results):
            assert (topic, results) == ("orders", RESULTS)
        case _:  # pragma: no cover - the assertion below says what went wrong
            pytest.fail("a deferred BatchProduceResult did not match its class pattern")


def test_an_unknown_attribute_is_still_an_attribute_error() -> None:
    for batch in (_deferred(), _eager()):
        with pytest.raises(AttributeError, match="no attribute 'missing'"):
            batch.missing  # type: ignore[attr-defined]  # noqa: B018


def test_deferred_results_are_a_sequence_built_once() -> None:
    deferred = _Counted()
    assert len(deferred) == 4 and deferred.builds == 0
    assert deferred[1] == RESULTS[1] and deferred[-1] == RESULTS[-1]
    assert list(deferred) == list(RESULTS)
    assert deferred.results() is deferred.results()
    assert deferred.builds == 1


class _Rendezvous(DeferredResults):
    """Builds ``RESULTS``, waiting inside the build until a second build starts (or a short
    while passes): two threads reading the same result at once both get there, unless the
    first read keeps the second out until it is done."""

    __slots__ = ("builds", "_inside")

    def __init__(self) -> None:
        super().__init__()
        self.builds = 0
        self._inside = threading.Barrier(2)

    def __len__(self) -> int:
        return len(RESULTS)

    def _build(self) -> tuple[ProduceResult, ...]:
        self.builds += 1
        with contextlib.suppress(threading.BrokenBarrierError):
            self._inside.wait(timeout=0.2)
        return tuple(ProduceResult(r.topic, r.partition, r.offset, r.timestamp) for r in RESULTS)


def test_threads_reading_a_result_at_once_build_it_once_and_share_the_tuple() -> None:
    # An eager result's results is one tuple whoever reads it; a deferred one must not
    # hand each of two concurrent first readers a tuple of its own.
    deferred = _Rendezvous()
    batch = deferred_batch_result("orders", deferred)
    read: list[tuple[ProduceResult, ...]] = []
    readers = [threading.Thread(target=lambda: read.append(batch.results)) for _ in range(2)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert deferred.builds == 1
    assert [results is batch.results for results in read] == [True, True]


def test_unbuilt_results_are_there_until_first_read_only() -> None:
    deferred = _Counted()
    batch = deferred_batch_result("orders", deferred)
    assert unbuilt_results(batch) is deferred
    assert deferred.partition_counts() == {0: 2, 1: 2}
    assert batch.results == RESULTS
    assert unbuilt_results(batch) is None
    assert unbuilt_results(_eager()) is None
