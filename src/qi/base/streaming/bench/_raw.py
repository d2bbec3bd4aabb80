"""The raw clients, used the way issue 4 describes: the baselines qi-base is measured against.

Settings match qi-base's defaults where the clients allow it: acks=all, linger 5 ms,
confluent idempotent, aiokafka not (Tansu 0.6 rejects aiokafka's InitProducerId).
Consumers join a fresh group with short session timeouts (Tansu makes librdkafka wait
about half of session.timeout.ms to join).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from qi.base.streaming.bench._measure import (
    ConsumeClock,
    Stopwatch,
    latency_measurement,
    payload,
)
from qi.base.streaming.bench._model import BenchError, Job, Measurement

_BATCH_BYTES = 1024 * 1024
_CONSUME_BATCH = 10_000
_POLL_TIMEOUT = 0.5
_WARM_UP = b"warm-up"


def _confluent_producer_config(job: Job) -> dict[str, Any]:
    return {
        "bootstrap.servers": job.bootstrap,
        "client.id": "qi-bench-raw",
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
    }


def _confluent_consumer_config(job: Job) -> dict[str, Any]:
    return {
        "bootstrap.servers": job.bootstrap,
        "client.id": "qi-bench-raw",
        "group.id": f"qi-bench-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        # librdkafka's default (1 s) stalls a fast reader whenever its local queue passed
        # 100k messages; qi's confluent backend sets the same 10 ms, so both read alike.
        "fetch.queue.backoff.ms": 10,
    }


def _aiokafka_producer_kwargs(job: Job, linger_ms: int) -> dict[str, Any]:
    return {
        "bootstrap_servers": job.bootstrap,
        "client_id": "qi-bench-raw",
        "acks": "all",
        "enable_idempotence": False,
        "linger_ms": linger_ms,
    }


# -- confluent-kafka Producer / Consumer -----------------------------------------------------


def confluent_produce(job: Job) -> Measurement:
    """produce() + poll(0) per message, then flush(); no delivery callback (the fastest use)."""
    return _confluent_produce_loop(job, None)


def confluent_produce_reports(job: Job) -> Measurement:
    """The same loop with a delivery callback that reads each message's offset.

    The least any client pays that tells its caller where each message went: librdkafka
    builds a ``Message`` per report and calls back into Python under the GIL. qi-base's
    send_batch ratio to this row is what qi-base itself adds.
    """
    offsets: list[int | None] = []
    failures: list[object] = []
    record = offsets.append

    def delivery_report(error: Any, message: Any) -> None:
        if error is None:
            record(message.offset())
        else:
            failures.append(error)

    measurement = _confluent_produce_loop(job, delivery_report)
    if failures or len(offsets) != job.messages + 1:  # + the warm-up message
        raise BenchError(f"{len(offsets)} reports of {job.messages + 1}, {len(failures)} failed")
    return measurement


def _confluent_produce_loop(
    job: Job, on_delivery: Callable[[Any, Any], None] | None
) -> Measurement:
    from confluent_kafka import Producer

    config = _confluent_producer_config(job)
    if on_delivery is not None:
        config["on_delivery"] = on_delivery
    producer = Producer(config)
    producer.produce(job.topic, _WARM_UP)  # connection and topic metadata, outside the clock
    producer.flush(job.timeout)
    value, topic = payload(job.size), job.topic
    produce, poll = producer.produce, producer.poll
    watch = Stopwatch()
    watch.start()
    for _ in range(job.messages):
        while True:
            try:
                produce(topic, value)
                break
            except BufferError:  # librdkafka's queue is full: serve deliveries, then retry
                poll(0.005)
        poll(0)
    left = producer.flush(job.timeout)
    watch.stop()
    if left:
        raise BenchError(f"{left} messages still undelivered after flush({job.timeout})")
    return watch.measurement(job.messages, job.size)


def confluent_transactions(job: Job) -> Measurement:
    """init_transactions once; per transaction begin, produce() + poll(0) each, commit.

    commit_transaction flushes and fails when any message of the transaction failed, so
    no delivery callback is needed to know that every message arrived.
    """
    from confluent_kafka import Producer

    per_transaction = int(job.options["transaction_size"])
    config = _confluent_producer_config(job)
    config["transactional.id"] = f"qi-bench-raw-{uuid.uuid4().hex}"
    producer = Producer(config)
    # Outside the clock: the producer id, the coordinator, the topic's metadata.
    producer.init_transactions(job.timeout)
    producer.begin_transaction()
    producer.produce(job.topic, _WARM_UP)
    producer.commit_transaction(job.timeout)
    value, topic = payload(job.size), job.topic
    produce, poll = producer.produce, producer.poll
    watch = Stopwatch()
    watch.start()
    for _ in range(job.messages // per_transaction):
        producer.begin_transaction()
        for _ in range(per_transaction):
            while True:
                try:
                    produce(topic, value)
                    break
                except BufferError:  # librdkafka's queue is full: serve deliveries, then retry
                    poll(0.005)
            poll(0)
        producer.commit_transaction(job.timeout)
    watch.stop()
    return watch.measurement(job.messages, job.size)


class _OneAtATime:
    """A warmed-up raw confluent producer that sends one message and flushes, per call."""

    def __init__(self, job: Job) -> None:
        from confluent_kafka import Producer

        self._producer = Producer(_confluent_producer_config(job))
        self._value, self._topic, self._timeout = payload(job.size), job.topic, job.timeout
        self.errors: list[object] = []
        self._producer.produce(job.topic, _WARM_UP)
        self._producer.flush(job.timeout)

    def _report(self, error: object, message: object) -> None:
        if error is not None:
            self.errors.append(error)

    def __call__(self) -> None:
        self._producer.produce(self._topic, self._value, on_delivery=self._report)
        self._producer.flush(self._timeout)

    def check(self) -> None:
        if self.errors:
            raise BenchError(f"{len(self.errors)} sends failed, first: {self.errors[0]}")


def confluent_latency(job: Job) -> Measurement:
    """produce() then flush() per message: one message in flight at a time."""
    send = _OneAtATime(job)
    latencies: list[float] = []
    watch = Stopwatch()
    watch.start()
    for _ in range(job.messages):
        started = time.perf_counter()
        send()
        latencies.append((time.perf_counter() - started) * 1000)
    watch.stop()
    send.check()
    return latency_measurement(watch, latencies, job.size)


async def confluent_latency_in_thread(job: Job) -> Measurement:
    """The same in a worker thread, awaited from asyncio: one message at a time.

    What an asyncio program pays at least for a blocking client's acknowledgement: the
    hand-off to a thread and the wake-up of the event loop when it is done.
    """
    send = _OneAtATime(job)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    watch = Stopwatch()
    watch.start()
    for _ in range(job.messages):
        started = time.perf_counter()
        await loop.run_in_executor(None, send)
        latencies.append((time.perf_counter() - started) * 1000)
    watch.stop()
    send.check()
    return latency_measurement(watch, latencies, job.size)


def confluent_consume(job: Job) -> Measurement:
    """Consumer.consume(10000) until every message arrived; timed from first to last."""

    def read(batch: list[Any]) -> int:
        count = 0
        for message in batch:
            if message.error() is None:
                message.value()
                count += 1
        return count

    return _confluent_consume_loop(job, read)


def confluent_consume_fields(job: Job) -> Measurement:
    """Consumer.consume(10000), reading every field of every message into a tuple.

    The least a client pays that hands each message over as one Python object with its
    topic, partition, offset, key, value, timestamp and headers, as qi-base does.
    """

    def read(batch: list[Any]) -> int:
        kept = [
            (m.topic(), m.partition(), m.offset(), m.key(), m.value(), m.timestamp(), m.headers())
            for m in batch
            if m.error() is None
        ]
        return len(kept)

    return _confluent_consume_loop(job, read)


class _View:
    """The least a lazy consumed message is: one slotted object over the native record."""

    __slots__ = ("native",)
    native: Any


class _Payload:
    """The least an each_message payload is: one slotted object holding the message."""

    __slots__ = ("message",)
    message: _View


def confluent_consume_views(job: Job) -> Measurement:
    """consume(10000) on an event loop, one object per message, one awaited handler per batch.

    The least an asyncio client pays that hands every message over as a Python object of
    its own (a slotted view over librdkafka's Message, nothing converted) through an async
    batch handler, without even a thread hop: each_batch's floor.
    """
    return asyncio.run(_confluent_consume_on_loop(job, per_message=False))


def confluent_consume_awaited(job: Job) -> Measurement:
    """The same, with a payload object and an awaited handler call per message: each_message's
    floor."""
    return asyncio.run(_confluent_consume_on_loop(job, per_message=True))


async def _confluent_consume_on_loop(job: Job, *, per_message: bool) -> Measurement:
    from confluent_kafka import Consumer

    async def handle(payload: object) -> None:
        del payload

    consumer = Consumer(_confluent_consumer_config(job))
    consumer.subscribe([job.topic])
    deadline = time.monotonic() + job.timeout
    clock = ConsumeClock(job.messages)
    new = object.__new__
    try:
        while not clock.done:
            if time.monotonic() > deadline:
                raise BenchError(f"consumed {clock.received} of {job.messages} in {job.timeout}s")
            batch = consumer.consume(_CONSUME_BATCH, 0)  # never blocks the loop
            if not batch:
                await asyncio.sleep(0.001)
                continue
            views = []
            for native in batch:
                if native.error() is None:
                    view = new(_View)
                    view.native = native
                    views.append(view)
            if per_message:
                for view in views:
                    payload = new(_Payload)
                    payload.message = view
                    await handle(payload)
            else:
                await handle(tuple(views))
            if views:
                clock.arrived(len(views))
    finally:
        consumer.close()
    return clock.measurement(job.size)


def confluent_consume_thread_views(job: Job) -> Measurement:
    """consume(10000) in a thread of its own, one object per message bucketed by partition,
    one awaited handler per partition's share of a fetch on the loop.

    What each_batch cannot do without while it stays safe in a rebalance: librdkafka runs
    its rebalance callbacks inside consume(), and a run loop's callback must wait for the
    loop (to finish the handler and commit what it handled), so consume() cannot run on
    the loop; and a run loop that retries, pauses and commits each partition on its own
    keeps each partition's messages apart. each_batch's floor by design.
    """
    return asyncio.run(_confluent_consume_in_thread(job, per_message=False))


def confluent_consume_thread_awaited(job: Job) -> Measurement:
    """The same, with a payload object and an awaited handler call per message:
    each_message's floor by design."""
    return asyncio.run(_confluent_consume_in_thread(job, per_message=True))


async def _confluent_consume_in_thread(job: Job, *, per_message: bool) -> Measurement:
    from confluent_kafka import Consumer

    async def handle(payload: object) -> None:
        del payload

    consumer = Consumer(_confluent_consumer_config(job))
    consumer.subscribe([job.topic])
    new = object.__new__

    def fetch() -> dict[tuple[str | None, int | None], list[_View]]:
        # As a run loop's fetcher: take what is there, else wait for the first message.
        batch = consumer.consume(_CONSUME_BATCH, 0)
        if not batch:
            first = consumer.poll(_POLL_TIMEOUT)
            if first is None:
                return {}
            batch = [first, *consumer.consume(_CONSUME_BATCH - 1, 0)]
        fetched: dict[tuple[str | None, int | None], list[_View]] = {}
        last: tuple[str | None, int | None] | None = None
        bucket: list[_View] = []
        for native in batch:
            if native.error() is None:
                key = (native.topic(), native.partition())
                if key != last:
                    last = key
                    bucket = fetched.setdefault(key, [])
                view = new(_View)
                view.native = native
                bucket.append(view)
        return fetched

    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + job.timeout
    clock = ConsumeClock(job.messages)
    # One thread, one fetch at a time, the next one running while the loop handles this one.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="raw-consume") as thread:
        try:
            fetching = loop.run_in_executor(thread, fetch)
            while not clock.done:
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"consumed {clock.received} of {job.messages} in {job.timeout}s"
                    )
                fetched = await fetching
                fetching = loop.run_in_executor(thread, fetch)
                for views in fetched.values():
                    if per_message:
                        for view in views:
                            payload = new(_Payload)
                            payload.message = view
                            await handle(payload)
                    else:
                        await handle(tuple(views))
                    clock.arrived(len(views))
            await fetching
        finally:
            consumer.close()
    return clock.measurement(job.size)


def _confluent_consume_loop(job: Job, read: Callable[[list[Any]], int]) -> Measurement:
    """consume(10000) until every message arrived; ``read`` says how many of a batch count."""
    from confluent_kafka import Consumer

    consumer = Consumer(_confluent_consumer_config(job))
    consumer.subscribe([job.topic])
    deadline = time.monotonic() + job.timeout
    clock = ConsumeClock(job.messages)
    try:
        while not clock.done:
            if time.monotonic() > deadline:
                raise BenchError(f"consumed {clock.received} of {job.messages} in {job.timeout}s")
            count = read(consumer.consume(_CONSUME_BATCH, _POLL_TIMEOUT))
            if count:
                clock.arrived(count)
    finally:
        consumer.close()
    return clock.measurement(job.size)


def prefill(job: Job) -> Measurement:
    """Fill a topic for the consume scenarios, counting every delivery failure."""
    from confluent_kafka import Producer

    producer = Producer(_confluent_producer_config(job))
    failures: list[object] = []

    def delivery_report(error: object, message: object) -> None:
        if error is not None:
            failures.append(error)

    value, topic = payload(job.size), job.topic
    watch = Stopwatch()
    watch.start()
    for _ in range(job.messages):
        while True:
            try:
                producer.produce(topic, value, on_delivery=delivery_report)
                break
            except BufferError:
                producer.poll(0.005)
        producer.poll(0)
    left = producer.flush(job.timeout)
    watch.stop()
    if left or failures:
        raise BenchError(f"prefill: {left} undelivered, {len(failures)} failed: {failures[:1]}")
    return watch.measurement(job.messages, job.size)


# -- confluent-kafka asyncio wrappers ----------------------------------------------------------


async def aioproducer_concurrent(job: Job) -> Measurement:
    """AIOProducer.produce() for every message at once (gather), flush, await every future."""
    from confluent_kafka.aio import AIOProducer

    producer = AIOProducer(_confluent_producer_config(job))
    try:
        warm_up = await producer.produce(job.topic, _WARM_UP)
        await producer.flush()
        await warm_up
        value, topic = payload(job.size), job.topic
        watch = Stopwatch()
        watch.start()
        futures = await asyncio.gather(
            *(producer.produce(topic, value) for _ in range(job.messages))
        )
        # Delivery reports are served only by poll/flush calls: flush so every future resolves.
        await producer.flush()
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        watch.stop()
    finally:
        await producer.close()
    failed = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    if failed:
        raise BenchError(f"{len(failed)} sends failed, first: {failed[0]!r}")
    return watch.measurement(job.messages, job.size)


async def confluent_futures(job: Job) -> Measurement:
    """gather over one coroutine per message, each producing its message with a delivery
    callback of its own and awaiting a future that callback resolves; reports served by
    poll() on the loop itself, so no thread hop at all.

    The least any asyncio client pays to tell each awaiting sender where its message went:
    the concurrent-send targets' floor.
    """
    from confluent_kafka import Producer

    producer = Producer(_confluent_producer_config(job))
    loop = asyncio.get_running_loop()
    value, topic = payload(job.size), job.topic
    waiting = 0
    failures: list[object] = []

    class Report:
        __slots__ = ("future",)

        def __init__(self, future: asyncio.Future[int]) -> None:
            self.future = future

        def __call__(self, error: object, message: Any) -> None:
            nonlocal waiting
            waiting -= 1
            if error is not None:
                failures.append(error)
                self.future.set_result(-1)
            else:
                self.future.set_result(message.offset())

    async def one() -> int:
        nonlocal waiting
        future: asyncio.Future[int] = loop.create_future()
        producer.produce(topic, value, on_delivery=Report(future))
        waiting += 1
        return await future

    async def serve() -> None:
        # On the loop, between the senders' wake-ups: the loop has nothing else to do.
        while waiting:
            if not producer.poll(0):
                await asyncio.sleep(0.0005)

    producer.produce(topic, _WARM_UP)
    producer.flush(job.timeout)
    watch = Stopwatch()
    watch.start()
    sending = asyncio.gather(*(one() for _ in range(job.messages)))
    await asyncio.sleep(0)  # every sender has produced and waits
    await serve()
    await sending
    watch.stop()
    if failures:
        raise BenchError(f"{len(failures)} sends failed, first: {failures[0]!r}")
    return watch.measurement(job.messages, job.size)


async def confluent_futures_thread(job: Job) -> Measurement:
    """As :func:`confluent_futures`, with what a library's send cannot do without: reports
    served by a thread blocked in poll() (confluent-kafka gives the loop nothing to wait
    on, and polling from the loop on a timer would add its period to every send's
    latency), handed back once per poll() call, and a result object per send.

    The concurrent-send targets' floor by design.
    """
    import threading

    from confluent_kafka import Producer

    producer = Producer(_confluent_producer_config(job))
    loop = asyncio.get_running_loop()
    value, topic = payload(job.size), job.topic
    failures: list[object] = []
    reported: list[tuple[asyncio.Future[Any], Any]] = []
    stop = threading.Event()

    class Acknowledged:  # what a send's result holds: where the message went
        __slots__ = ("offset", "partition")

        def __init__(self, partition: int, offset: int) -> None:
            self.partition = partition
            self.offset = offset

    def settle(outcomes: list[tuple[asyncio.Future[Any], Any]]) -> None:
        for future, outcome in outcomes:
            future.set_result(outcome)

    class Report:
        __slots__ = ("future",)

        def __init__(self, future: asyncio.Future[Any]) -> None:
            self.future = future

        def __call__(self, error: object, message: Any) -> None:
            if error is not None:
                failures.append(error)
                reported.append((self.future, error))
            else:
                reported.append((self.future, Acknowledged(message.partition(), message.offset())))

    def serve() -> None:
        nonlocal reported
        while not stop.is_set():
            producer.poll(0.1)
            if reported:
                outcomes, reported = reported, []
                loop.call_soon_threadsafe(settle, outcomes)

    async def one() -> Any:
        future: asyncio.Future[Any] = loop.create_future()
        producer.produce(topic, value, on_delivery=Report(future))
        return await future

    producer.produce(topic, _WARM_UP)
    producer.flush(job.timeout)
    thread = threading.Thread(target=serve, name="raw-poll", daemon=True)
    thread.start()
    try:
        watch = Stopwatch()
        watch.start()
        await asyncio.gather(*(one() for _ in range(job.messages)))
        watch.stop()
    finally:
        stop.set()
        await asyncio.to_thread(thread.join)
    if failures:
        raise BenchError(f"{len(failures)} sends failed, first: {failures[0]!r}")
    return watch.measurement(job.messages, job.size)


async def aioproducer_latency(job: Job) -> Measurement:
    """AIOProducer produce(), flush(), await the future: one message at a time."""
    from confluent_kafka.aio import AIOProducer

    producer = AIOProducer(_confluent_producer_config(job))
    value, topic = payload(job.size), job.topic
    latencies: list[float] = []
    watch = Stopwatch()
    try:
        warm_up = await producer.produce(topic, _WARM_UP)
        await producer.flush()
        await warm_up
        watch.start()
        for _ in range(job.messages):
            started = time.perf_counter()
            delivered = await producer.produce(topic, value)
            await producer.flush()
            await delivered
            latencies.append((time.perf_counter() - started) * 1000)
        watch.stop()
    finally:
        await producer.close()
    return latency_measurement(watch, latencies, job.size)


async def aioconsumer_consume(job: Job) -> Measurement:
    """AIOConsumer.consume(10000) until every message arrived; timed from first to last."""
    from confluent_kafka.aio import AIOConsumer

    consumer = AIOConsumer(_confluent_consumer_config(job))
    await consumer.subscribe([job.topic])
    deadline = time.monotonic() + job.timeout
    clock = ConsumeClock(job.messages)
    try:
        while not clock.done:
            if time.monotonic() > deadline:
                raise BenchError(f"consumed {clock.received} of {job.messages} in {job.timeout}s")
            batch = await consumer.consume(_CONSUME_BATCH, _POLL_TIMEOUT)
            count = 0
            for message in batch:
                if message.error() is None:
                    message.value()
                    count += 1
            if count:
                clock.arrived(count)
    finally:
        await consumer.close()
    return clock.measurement(job.size)


# -- aiokafka ---------------------------------------------------------------------------------


async def asyncio_gather(job: Job) -> Measurement:
    """No Kafka at all: gather over one coroutine per message, each awaiting a future that a
    single callback resolves in bulk, the way a client completes acknowledged sends.

    The ceiling of any ``asyncio.gather(send(...) ...)`` whose sends wait for something.
    """
    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future[None]] = []

    def resolve() -> None:
        batch = waiting[:]
        waiting.clear()
        for future in batch:
            future.set_result(None)

    async def one() -> None:
        future = loop.create_future()
        if not waiting:
            loop.call_soon(resolve)
        waiting.append(future)
        await future

    watch = Stopwatch()
    watch.start()
    await asyncio.gather(*(one() for _ in range(job.messages)))
    watch.stop()
    return watch.measurement(job.messages, job.size)


async def _with_aiokafka_producer(
    job: Job, linger_ms: int, body: Callable[[Any], Awaitable[Measurement]], **extra: Any
) -> Measurement:
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped, unused-ignore]

    producer = AIOKafkaProducer(**_aiokafka_producer_kwargs(job, linger_ms), **extra)
    await producer.start()
    try:
        await producer.send_and_wait(job.topic, _WARM_UP)
        return await body(producer)
    finally:
        await producer.stop()


async def aiokafka_send_futures(job: Job) -> Measurement:
    """``await producer.send()`` per message (returns a future), then gather the futures."""

    async def body(producer: Any) -> Measurement:
        value, topic = payload(job.size), job.topic
        watch = Stopwatch()
        watch.start()
        futures = [await producer.send(topic, value) for _ in range(job.messages)]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        watch.stop()
        failed = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failed:
            raise BenchError(f"{len(failed)} sends failed, first: {failed[0]!r}")
        return watch.measurement(job.messages, job.size)

    return await _with_aiokafka_producer(job, 5, body)


async def aiokafka_send_batch(job: Job) -> Measurement:
    """create_batch()/append() up to 1 MiB, send_batch() round-robin over partitions.

    Gives one future per batch, not per message: the per-message results qi-base
    returns are something raw aiokafka does not offer at this speed.
    """

    async def body(producer: Any) -> Measurement:
        value, topic = payload(job.size), job.topic
        partitions = sorted(await producer.partitions_for(topic))
        watch = Stopwatch()
        watch.start()
        futures = []
        batch = producer.create_batch()
        sent = 0
        for _ in range(job.messages):
            if batch.append(key=None, value=value, timestamp=None) is None:
                partition = partitions[sent % len(partitions)]
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                sent += 1
                batch = producer.create_batch()
                batch.append(key=None, value=value, timestamp=None)
        if batch.record_count():
            partition = partitions[sent % len(partitions)]
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        watch.stop()
        failed = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failed:
            raise BenchError(f"{len(failed)} batches failed, first: {failed[0]!r}")
        return watch.measurement(job.messages, job.size, extra={"batches": len(futures)})

    return await _with_aiokafka_producer(
        job, 5, body, max_batch_size=_BATCH_BYTES, max_request_size=2 * _BATCH_BYTES
    )


async def aiokafka_latency(job: Job) -> Measurement:
    """send_and_wait() per message (aiokafka's default linger of 0)."""

    async def body(producer: Any) -> Measurement:
        value, topic = payload(job.size), job.topic
        latencies: list[float] = []
        watch = Stopwatch()
        watch.start()
        for _ in range(job.messages):
            started = time.perf_counter()
            await producer.send_and_wait(topic, value)
            latencies.append((time.perf_counter() - started) * 1000)
        watch.stop()
        return latency_measurement(watch, latencies, job.size)

    return await _with_aiokafka_producer(job, 0, body)


async def aiokafka_getmany(job: Job) -> Measurement:
    """getmany(max_records=10000) until every message arrived; timed from first to last."""
    from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped, unused-ignore]

    consumer = AIOKafkaConsumer(
        job.topic,
        bootstrap_servers=job.bootstrap,
        client_id="qi-bench-raw",
        group_id=f"qi-bench-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    deadline = time.monotonic() + job.timeout
    clock = ConsumeClock(job.messages)
    try:
        while not clock.done:
            if time.monotonic() > deadline:
                raise BenchError(f"consumed {clock.received} of {job.messages} in {job.timeout}s")
            batches = await consumer.getmany(
                timeout_ms=int(_POLL_TIMEOUT * 1000), max_records=_CONSUME_BATCH
            )
            count = 0
            for records in batches.values():
                for record in records:
                    _ = record.value
                    count += 1
            if count:
                clock.arrived(count)
    finally:
        await consumer.stop()
    return clock.measurement(job.size)


RawRunner = Callable[[Job], Measurement] | Callable[[Job], Awaitable[Measurement]]

RAW: dict[tuple[str, str], RawRunner] = {
    ("produce", "raw-confluent"): confluent_produce,
    ("produce", "raw-confluent-reports"): confluent_produce_reports,
    ("produce", "raw-aiokafka-batch"): aiokafka_send_batch,
    ("transactions", "raw-confluent"): confluent_transactions,
    ("produce-concurrent", "raw-confluent"): confluent_produce,
    ("produce-concurrent", "raw-aioproducer"): aioproducer_concurrent,
    ("produce-concurrent", "raw-asyncio"): asyncio_gather,
    ("produce-concurrent", "raw-confluent-futures"): confluent_futures,
    ("produce-concurrent", "raw-confluent-futures-thread"): confluent_futures_thread,
    ("produce-concurrent", "raw-aiokafka"): aiokafka_send_futures,
    ("latency", "raw-confluent"): confluent_latency,
    ("latency", "raw-confluent-thread"): confluent_latency_in_thread,
    ("latency", "raw-aioproducer"): aioproducer_latency,
    ("latency", "raw-aiokafka"): aiokafka_latency,
    ("consume", "raw-confluent"): confluent_consume,
    ("consume", "raw-confluent-fields"): confluent_consume_fields,
    ("consume", "raw-confluent-views"): confluent_consume_views,
    ("consume", "raw-confluent-awaited"): confluent_consume_awaited,
    ("consume", "raw-confluent-thread-views"): confluent_consume_thread_views,
    ("consume", "raw-confluent-thread-awaited"): confluent_consume_thread_awaited,
    ("consume", "raw-aioconsumer"): aioconsumer_consume,
    ("consume", "raw-aiokafka"): aiokafka_getmany,
    ("prefill", "raw-confluent"): prefill,
}
"""(operation, subject id) -> the function measuring it."""
