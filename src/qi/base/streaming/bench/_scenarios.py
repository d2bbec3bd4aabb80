"""The scenarios of issue 4 and the subjects measured in each.

Subjects are listed in the order they run within a round: each qi subject sits
next to the raw client it is compared with, so drift on a busy machine hits both
alike (the runner also reverses the order every other round).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from qi.base.streaming.devbroker import BrokerKind

Kind = Literal["throughput", "latency", "bounded"]

LARGE_SIZE = 10 * 1024
"""Value size of the (e) scenarios."""


@dataclass(frozen=True, slots=True)
class Subject:
    """One thing measured: a raw client usage or a qi backend."""

    id: str
    """``raw-<client>`` (``raw-asyncio``: no client at all) or ``qi-<backend>[/<handler>]``;
    unique within a scenario."""
    label: str
    """What the table shows."""
    requires: tuple[str, ...] = ()
    """Modules that must be importable (raw subjects)."""
    backend: str | None = None
    """The qi backend, for qi subjects."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """One row group of the table."""

    name: str
    title: str
    operation: str
    """What the worker does (see ``_worker``)."""
    kind: Kind
    subjects: tuple[Subject, ...]
    baseline: str | None
    """Subject id every ratio of the table is taken against."""
    messages: int
    size: int
    prefill: bool = False
    """Fill one topic before the scenario (consumers then read it with fresh groups)."""
    own_broker: bool = False
    """Needs the harness's own broker (it stops it)."""
    single_round: bool = False
    """Run once, not ``--rounds`` times (bounded-memory checks)."""
    broker_kind: BrokerKind | None = None
    """The kind of development broker the scenario needs when the harness starts its own
    (noida-db for transactions: Tansu does not implement them correctly); None: the run's."""
    options: dict[str, Any] = field(default_factory=dict)


_CONFLUENT = ("confluent_kafka",)
_CONFLUENT_AIO = ("confluent_kafka.aio",)
_AIOKAFKA = ("aiokafka",)


def _qi(backend: str, what: str, variant: str = "") -> Subject:
    subject_id = f"qi-{backend}/{variant}" if variant else f"qi-{backend}"
    return Subject(subject_id, f"qi {backend} {what}", backend=backend)


TRACED = "traced"
"""The variant part of a subject measured with OpenTelemetry on (the SDK, every span kept)."""


def _traced(backend: str, what: str, variant: str = "") -> Subject:
    """The subject ``_qi(backend, what, variant)`` with telemetry on, for the overhead."""
    return _qi(backend, f"{what}, traced", f"{variant}/{TRACED}" if variant else TRACED)


def _produce_batch(name: str, title: str, messages: int, size: int) -> Scenario:
    return Scenario(
        name=name,
        title=title,
        operation="produce",
        kind="throughput",
        baseline="raw-confluent",
        messages=messages,
        size=size,
        subjects=(
            Subject("raw-confluent", "raw confluent produce loop", _CONFLUENT),
            Subject("raw-confluent-reports", "raw confluent loop + delivery callback", _CONFLUENT),
            _qi("confluent", "send_batch"),
            _traced("confluent", "send_batch"),
            Subject("raw-aiokafka-batch", "raw aiokafka send_batch", _AIOKAFKA),
            _qi("aiokafka", "send_batch"),
            _traced("aiokafka", "send_batch"),
            _qi("memory", "send_batch"),
            _traced("memory", "send_batch"),
        ),
    )


def _consume(name: str, title: str, messages: int, size: int) -> Scenario:
    return Scenario(
        name=name,
        title=title,
        operation="consume",
        kind="throughput",
        baseline="raw-confluent",
        messages=messages,
        size=size,
        prefill=True,
        subjects=(
            Subject("raw-confluent", "raw confluent consume(10000)", _CONFLUENT),
            Subject("raw-confluent-fields", "raw confluent consume, every field read", _CONFLUENT),
            Subject(
                "raw-confluent-views",
                "raw confluent consume on a loop, an object a message, a handler a batch",
                _CONFLUENT,
            ),
            Subject(
                "raw-confluent-awaited",
                "raw confluent consume on a loop, an object and a handler a message",
                _CONFLUENT,
            ),
            Subject(
                "raw-confluent-thread-views",
                "raw confluent consume in a thread, by partition, an object a message, "
                "a handler a batch",
                _CONFLUENT,
            ),
            Subject(
                "raw-confluent-thread-awaited",
                "raw confluent consume in a thread, by partition, an object and a handler "
                "a message",
                _CONFLUENT,
            ),
            _qi("confluent", "each_batch", "each_batch"),
            _traced("confluent", "each_batch", "each_batch"),
            _qi("confluent", "each_message", "each_message"),
            _traced("confluent", "each_message", "each_message"),
            Subject("raw-aioconsumer", "raw AIOConsumer consume(10000)", _CONFLUENT_AIO),
            Subject("raw-aiokafka", "raw aiokafka getmany(10000)", _AIOKAFKA),
            _qi("aiokafka", "each_batch", "each_batch"),
            _traced("aiokafka", "each_batch", "each_batch"),
            _qi("aiokafka", "each_message", "each_message"),
            _traced("aiokafka", "each_message", "each_message"),
            _qi("memory", "each_batch", "each_batch"),
            _traced("memory", "each_batch", "each_batch"),
            _qi("memory", "each_message", "each_message"),
            _traced("memory", "each_message", "each_message"),
        ),
    )


TRANSACTION_SIZES = (100, 1_000, 10_000)
"""Messages per transaction of the transactions-* scenarios."""


def _transactions(size: int, messages: int, value_size: int) -> Scenario:
    """Transactions of ``size`` messages, repeated: ``messages`` rounded down to whole
    transactions, at least one."""
    total = max(messages // size, 1) * size
    short = f"{size // 1000}k" if size >= 1000 else str(size)
    return Scenario(
        name=f"transactions-{short}",
        title=f"(f) transactions of {size:,}: send_batch then commit, {total:,} x {value_size} B",
        operation="transactions",
        kind="throughput",
        baseline="raw-confluent",
        messages=total,
        size=value_size,
        broker_kind="noida",
        options={"transaction_size": size},
        subjects=(
            Subject("raw-confluent", "raw confluent begin, produce loop, commit", _CONFLUENT),
            _qi("confluent", "transaction send_batch + commit"),
            _qi("aiokafka", "transaction send_batch + commit"),
            _qi("memory", "transaction send_batch + commit"),
            _traced("memory", "transaction send_batch + commit"),
        ),
    )


MAIN_SCENARIOS = ("produce-batch", "produce-concurrent", "send-latency", "consume")
"""Scenarios (a) to (d), the ones ``qi-stream bench`` runs unless told otherwise."""


def build_scenarios(messages: int, size: int) -> list[Scenario]:
    """Every scenario, scaled from ``--messages`` (200k by default) and ``--size``."""
    concurrent = max(messages // 10, 100)
    latency = max(min(2_000, messages // 10), 100)
    large = max(messages // 10, 100)
    return [
        _produce_batch(
            "produce-batch",
            f"(a) send_batch, {messages:,} x {size} B in chunks of 10k",
            messages,
            size,
        ),
        Scenario(
            name="produce-concurrent",
            title=f"(b) {concurrent:,} concurrent sends (asyncio.gather), {size} B",
            operation="produce-concurrent",
            kind="throughput",
            baseline="raw-confluent",
            messages=concurrent,
            size=size,
            subjects=(
                Subject("raw-confluent", "raw confluent produce loop", _CONFLUENT),
                Subject("raw-aioproducer", "raw AIOProducer gather", _CONFLUENT_AIO),
                Subject("raw-asyncio", "asyncio alone: gather awaiting futures"),
                Subject(
                    "raw-confluent-futures",
                    "raw confluent: a coroutine, a callback and a future per send",
                    _CONFLUENT,
                ),
                Subject(
                    "raw-confluent-futures-thread",
                    "raw confluent: the same, reports by a poll thread, a result per send",
                    _CONFLUENT,
                ),
                _qi("confluent", "gather(send)"),
                _traced("confluent", "gather(send)"),
                Subject("raw-aiokafka", "raw aiokafka send() futures", _AIOKAFKA),
                _qi("aiokafka", "gather(send)"),
                _traced("aiokafka", "gather(send)"),
                _qi("memory", "gather(send)"),
                _traced("memory", "gather(send)"),
            ),
        ),
        Scenario(
            name="send-latency",
            title=f"(c) one awaited send at a time, {latency:,} times, {size} B",
            operation="latency",
            kind="latency",
            baseline="raw-confluent",
            messages=latency,
            size=size,
            subjects=(
                Subject("raw-confluent", "raw confluent produce+flush", _CONFLUENT),
                Subject("raw-confluent-thread", "raw confluent produce+flush, awaited", _CONFLUENT),
                _qi("confluent", "send"),
                _traced("confluent", "send"),
                _qi("confluent", "send, linger=0", "linger0"),
                Subject("raw-aioproducer", "raw AIOProducer produce+flush", _CONFLUENT_AIO),
                Subject("raw-aiokafka", "raw aiokafka send_and_wait", _AIOKAFKA),
                _qi("aiokafka", "send"),
                _traced("aiokafka", "send"),
                _qi("aiokafka", "send, linger=0", "linger0"),
                _qi("memory", "send"),
                _traced("memory", "send"),
            ),
        ),
        _consume("consume", f"(d) consume {messages:,} x {size} B", messages, size),
        _produce_batch(
            "produce-batch-10k",
            f"(e) send_batch, {large:,} x 10 KiB in chunks of 10k",
            large,
            LARGE_SIZE,
        ),
        _consume("consume-10k", f"(e) consume {large:,} x 10 KiB", large, LARGE_SIZE),
        Scenario(
            name="outage",
            title=f"bounded: {messages * 5:,} sends while the broker is stopped",
            operation="outage",
            kind="bounded",
            baseline=None,
            messages=messages * 5,
            size=size,
            own_broker=True,
            single_round=True,
            options={"request_timeout": 5.0, "rss_limit_mb": 300.0},
            subjects=(
                _qi("confluent", "send_batch, all at once"),
                _qi("aiokafka", "send_batch, all at once"),
            ),
        ),
        Scenario(
            name="slow-consumer",
            title=f"bounded: slow each_message handler over {messages:,} x 1 KiB",
            operation="slow-consumer",
            kind="bounded",
            baseline=None,
            messages=messages,
            size=1024,
            prefill=True,
            single_round=True,
            options={"handler_delay": 0.005, "window": 10.0, "growth_limit_mb": 64.0},
            subjects=(
                _qi("confluent", "each_message, 5 ms each"),
                _qi("aiokafka", "each_message, 5 ms each"),
                _qi("memory", "each_message, 5 ms each"),
            ),
        ),
        *(_transactions(count, messages, size) for count in TRANSACTION_SIZES),
    ]
