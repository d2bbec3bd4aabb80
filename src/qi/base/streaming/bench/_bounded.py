"""Bounded-memory checks: what a producer and a consumer hold when the other side stalls."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from collections.abc import Awaitable, Callable

from qi.base import Failure, QiError, Result
from qi.base.streaming import (
    ConsumerRunConfig,
    EachMessagePayload,
    ErrorCode,
    MessageBatch,
    StreamingMessage,
    SubscriptionConfig,
)
from qi.base.streaming.bench._measure import RssSampler, Stopwatch, current_rss_mb, payload
from qi.base.streaming.bench._model import BenchError, Job, Measurement, Unavailable
from qi.base.streaming.bench._qi import (
    consumer_config,
    ok,
    prefill_memory,
    producer_config,
    qi_client,
)

_MIB = 1024 * 1024

Ready = Callable[[], Awaitable[None]]
"""Tells the runner the worker is connected, and returns once the runner says go."""


class _Tally:
    """Per-message outcomes of an outage: how many failed, with which code and delivery."""

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self.codes: Counter[str] = Counter()
        self.deliveries: Counter[str] = Counter()
        self.whole_batch_failures = 0

    def add_error(self, error: QiError, count: int = 1) -> None:
        self.failed += count
        self.codes[str(error.code)] += count
        self.deliveries[str(error.context.get("delivery", "missing"))] += count

    def add(self, result: Result[object, QiError], size: int) -> None:
        if not isinstance(result, Failure):
            self.delivered += size
            return
        error = result.error
        per_message = error.context.get("results")
        if error.code != ErrorCode.BATCH_PARTIAL_FAILURE or not isinstance(per_message, tuple):
            self.whole_batch_failures += 1
            self.add_error(error, size)
            return
        for outcome in per_message:
            if isinstance(outcome, Failure):
                self.add_error(outcome.error)
            else:
                self.delivered += 1


async def outage(job: Job, backend: str, ready: Ready) -> Measurement:
    """Send every message (all chunks at once) while the broker is stopped; count outcomes."""
    if backend == "memory":
        raise Unavailable("the memory backend has no broker to stop")
    request_timeout = float(job.options.get("request_timeout", 5.0))
    async with qi_client(
        job, backend, request_timeout=request_timeout, connection_timeout=3.0
    ) as client:
        producer = ok(await client.get_producer(producer_config(backend)), "get_producer")
        ok(await producer.send(job.topic, StreamingMessage(b"warm-up")), "warm-up send")
        await ready()  # the runner has stopped the broker when this returns
        value = payload(job.size)
        sizes = [
            min(job.chunk, job.messages - start) for start in range(0, job.messages, job.chunk)
        ]
        tally = _Tally()

        async def send_chunk(batch: MessageBatch) -> None:
            tally.add(await producer.send_batch(batch), len(batch.messages))

        gc.collect()
        rss_before = current_rss_mb()
        # Built up front so the caller's own data (every message at once, as the gather
        # below holds them anyway) shows apart from what the library adds.
        batches = [
            MessageBatch(job.topic, tuple(StreamingMessage(value) for _ in range(size)))
            for size in sizes
        ]
        rss_built = current_rss_mb()
        watch = Stopwatch()
        with RssSampler() as sampler:
            watch.start()
            await asyncio.gather(*(send_chunk(batch) for batch in batches))
            watch.stop()
            disconnected = await producer.disconnect()
    accounted = tally.delivered + tally.failed
    return watch.measurement(
        job.messages,
        job.size,
        failed=tally.failed,
        extra={
            "delivered": tally.delivered,
            "accounted": accounted,
            "codes": dict(tally.codes),
            "deliveries": dict(tally.deliveries),
            "whole_batch_failures": tally.whole_batch_failures,
            "rss_before_mb": round(rss_before, 1),
            "rss_messages_built_mb": round(rss_built, 1),
            "rss_peak_mb": round(sampler.peak_mb, 1),
            "library_growth_mb": round(sampler.peak_mb - rss_built, 1),
            "rss_timeline": sampler.timeline(),
            "disconnect": "ok" if not isinstance(disconnected, Failure) else str(disconnected),
            "request_timeout": request_timeout,
        },
    )


async def slow_consumer(job: Job, backend: str) -> Measurement:
    """A handler far slower than the broker: how much does the consumer hold meanwhile?"""
    delay = float(job.options.get("handler_delay", 0.005))
    window = float(job.options.get("window", 10.0))
    async with qi_client(job, backend) as client:
        if backend == "memory":
            await prefill_memory(client, job)
        # Default max_batch_size (500): the documented bound is per partition, from it.
        consumer = ok(await client.get_consumer(consumer_config(500)), "get_consumer")
        subscription = SubscriptionConfig(topics=(job.topic,), from_beginning=True)
        ok(await consumer.subscribe(subscription), "subscribe")
        handled = 0
        errors: list[QiError] = []

        async def each_message(message: EachMessagePayload) -> None:
            nonlocal handled
            handled += 1
            await asyncio.sleep(delay)

        run = ConsumerRunConfig(each_message=each_message, on_error=errors.append)
        gc.collect()
        rss_before = current_rss_mb()
        watch = Stopwatch()
        with RssSampler() as sampler:
            watch.start()
            ok(await consumer.run(run), "run")
            await asyncio.sleep(window)
            watch.stop()
        if handled == 0:
            raise BenchError(f"the slow handler saw no message in {window}s; errors: {errors[:2]}")
    growth = sampler.peak_mb - rss_before
    return watch.measurement(
        handled,
        job.size,
        extra={
            "topic_mb": round(job.messages * job.size / _MIB, 1),
            "rss_before_mb": round(rss_before, 1),
            "rss_peak_mb": round(sampler.peak_mb, 1),
            "growth_mb": round(growth, 1),
            "held_estimate": int(max(growth, 0.0) * _MIB / job.size),
            "handled": handled,
            "handler_delay": delay,
            "window": window,
            "errors": len(errors),
            "rss_timeline": sampler.timeline(),
        },
    )
