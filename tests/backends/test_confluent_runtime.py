"""How the confluent backend lives with asyncio: threads, wake-ups, back-pressure, shutdown.

These are the backend's own promises (the contract suite checks behaviour that
every backend shares): librdkafka waits never block the event loop, delivery
reports come back in batches, a full local queue is back-pressure, and
disconnect leaves no thread behind and no send unanswered.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from qi.base import Failure, Success
from qi.base.streaming import (
    ConsumerConfig,
    ConsumerRunConfig,
    EachMessagePayload,
    ErrorCode,
    MessageBatch,
    ProducerConfig,
    StreamingClient,
    StreamingConfig,
    StreamingMessage,
    SubscriptionConfig,
    TopicConfig,
    create_streaming_client,
)
from qi.base.streaming.backends.confluent import _delivery as delivery_module
from qi.base.streaming.backends.confluent import _producer as producer_module
from qi.base.streaming.backends.confluent._settings import producer_settings
from qi.base.streaming.devbroker import DevBroker
from testkit import unique

pytestmark = pytest.mark.broker


def _config(bootstrap: str, **changes: Any) -> StreamingConfig:
    settings: dict[str, Any] = {
        "client_id": unique("client"),
        "brokers": tuple(bootstrap.split(",")),
        "connection_timeout": 5.0,
        "request_timeout": 10.0,
    }
    return StreamingConfig(**{**settings, **changes})


def _our_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name.startswith("qi-confluent")}


class Heartbeat:
    """Ticks every 10 ms on the loop and remembers the longest gap between ticks that the
    library can cause.

    A gap is counted net of the time the loop's thread waited in the kernel's run queue
    (``/proc/thread-self/schedstat``): on a machine loaded by other processes the
    scheduler alone can hold a runnable thread back for 150 ms and more, which says
    nothing of the library. Waiting for the GIL is sleeping, not queueing, so a thread of
    ours holding the GIL (or blocking the loop) still counts in full.

    The objects alive before it starts are frozen out of the garbage collector
    (``gc.freeze``): a full collection walks the whole process, and after hundreds of
    tests in one pytest worker that walk alone can stop every thread for 200 ms. The
    collections of what the library allocates meanwhile still count.
    """

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        last, queued = time.monotonic(), _run_queue_wait()
        while True:
            await asyncio.sleep(0.01)
            now, now_queued = time.monotonic(), _run_queue_wait()
            self.longest = max(self.longest, (now - last) - (now_queued - queued))
            last, queued = now, now_queued

    def __enter__(self) -> Heartbeat:
        gc.collect()
        gc.freeze()
        self._task = asyncio.get_running_loop().create_task(self._beat())
        return self

    def __exit__(self, *exc: object) -> None:
        gc.unfreeze()
        assert self._task is not None
        self._task.cancel()


def _run_queue_wait() -> float:
    """Seconds this thread has spent runnable but not running (0 where Linux's schedstat
    is missing)."""
    try:
        with open("/proc/thread-self/schedstat") as stats:
            return int(stats.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


@pytest.fixture
async def client(kafka_bootstrap: str) -> AsyncIterator[StreamingClient]:
    streaming_client = create_streaming_client("confluent", _config(kafka_bootstrap))
    yield streaming_client
    await streaming_client.disconnect()


async def _topic(client: StreamingClient, partitions: int = 1) -> str:
    name = unique("topic")
    admin = (await client.get_admin()).unwrap()
    assert isinstance(await admin.create_topics([TopicConfig(name, partitions)]), Success)
    return name


async def test_native_clients_are_librdkafka_objects(client: StreamingClient) -> None:
    producer = (await client.get_producer()).unwrap()
    consumer = (await client.get_consumer(ConsumerConfig(unique("group")))).unwrap()
    admin = (await client.get_admin()).unwrap()
    assert isinstance(producer.get_native_client().unwrap(), Producer)
    assert isinstance(consumer.get_native_client().unwrap(), Consumer)
    assert isinstance(admin.get_native_client().unwrap(), AdminClient)


async def test_disconnect_leaves_no_thread_running(kafka_bootstrap: str) -> None:
    before = _our_threads()
    client = create_streaming_client("confluent", _config(kafka_bootstrap))
    topic = await _topic(client)
    producer = (await client.get_producer()).unwrap()
    assert isinstance(await producer.send(topic, StreamingMessage(b"x")), Success)
    received = asyncio.Event()

    async def handle(payload: EachMessagePayload) -> None:
        received.set()

    consumer = (
        await client.get_consumer(
            ConsumerConfig(unique("group"), session_timeout=6.0, heartbeat_interval=0.5)
        )
    ).unwrap()
    assert isinstance(
        await consumer.subscribe(SubscriptionConfig(topics=(topic,), from_beginning=True)),
        Success,
    )
    assert isinstance(await consumer.run(ConsumerRunConfig(each_message=handle)), Success)
    await asyncio.wait_for(received.wait(), 10)
    assert _our_threads() - before  # the producer, consumer and admin threads exist...
    assert isinstance(await client.disconnect(), Success)
    assert _our_threads() - before == set()  # ...and are gone, joined, when disconnect returns


async def test_waiting_in_librdkafka_never_blocks_the_loop(
    client: StreamingClient, kafka_bootstrap: str
) -> None:
    topic = await _topic(client)
    consumer = (
        await client.get_consumer(
            ConsumerConfig(unique("group"), session_timeout=6.0, heartbeat_interval=0.5)
        )
    ).unwrap()
    await consumer.subscribe(SubscriptionConfig(topics=(topic,)))

    async def handle(payload: EachMessagePayload) -> None:
        del payload

    with Heartbeat() as heartbeat:
        # Joining the group (seconds on Tansu) and idle fetches (each waits in consume()).
        assert isinstance(await consumer.run(ConsumerRunConfig(each_message=handle)), Success)
        await asyncio.sleep(1.0)
        # A connection attempt that waits its whole connection_timeout for no broker.
        unreachable = create_streaming_client(
            "confluent", _config("127.0.0.1:1", connection_timeout=1.5)
        )
        assert isinstance(await unreachable.get_admin(), Failure)
        # A flush of many in-flight messages at disconnect.
        producer = (await client.get_producer(ProducerConfig(linger=0.05))).unwrap()
        sends = [producer.send(topic, StreamingMessage(b"v" * 100)) for _ in range(2_000)]
        pending = asyncio.gather(*sends)
        await asyncio.sleep(0)
        assert isinstance(await producer.disconnect(), Success)
        assert all(isinstance(result, Success) for result in await pending)
    assert heartbeat.longest < 0.25, f"the loop stalled for {heartbeat.longest:.3f}s"


async def test_pausing_and_resuming_a_full_partition_never_blocks_the_loop(
    client: StreamingClient,
) -> None:
    # Far more than a partition's buffer holds, in one fetch: the run loop pauses the
    # partition while its handler catches up and resumes it, again and again, while the
    # consumer's thread waits in librdkafka for more.
    topic = await _topic(client)
    producer = (await client.get_producer()).unwrap()
    values = tuple(StreamingMessage(b"%d" % i) for i in range(6_000))
    assert isinstance(await producer.send_batch(MessageBatch(topic, values)), Success)
    consumer = (
        await client.get_consumer(
            ConsumerConfig(unique("group"), session_timeout=6.0, heartbeat_interval=0.5)
        )
    ).unwrap()
    await consumer.subscribe(SubscriptionConfig(topics=(topic,), from_beginning=True))
    handled = 0
    done = asyncio.Event()

    async def handle(payload: EachMessagePayload) -> None:
        nonlocal handled
        await asyncio.sleep(0)  # a handler that lets the loop breathe
        handled += 1
        if handled == len(values):
            done.set()

    assert isinstance(await consumer.run(ConsumerRunConfig(each_message=handle)), Success)
    with Heartbeat() as heartbeat:
        await asyncio.wait_for(done.wait(), 60)
    assert heartbeat.longest < 0.15, f"the loop stalled for {heartbeat.longest:.3f}s"


async def test_an_awaited_send_does_not_wait_out_the_linger(client: StreamingClient) -> None:
    # Every call waits for its messages, so lingering for more of them only adds latency:
    # the producer flushes while a call waits.
    topic = await _topic(client, partitions=1)
    producer = (await client.get_producer(ProducerConfig(linger=3.0))).unwrap()
    started = time.monotonic()
    single = await producer.send(topic, StreamingMessage(b"one"))
    batch = await producer.send_batch(
        MessageBatch(topic, tuple(StreamingMessage(b"%d" % i) for i in range(100)))
    )
    elapsed = time.monotonic() - started
    assert isinstance(single, Success)
    assert isinstance(batch, Success)
    assert [result.offset for result in batch.value.results] == list(range(1, 101))
    assert elapsed < 1.5, f"two awaited calls took {elapsed:.2f}s with linger=3s"


async def test_a_batch_with_a_refused_message_reports_the_others_where_they_were_written(
    client: StreamingClient,
) -> None:
    # The confluent backend refuses a 0 ms timestamp itself: the batch fails partially, and
    # the acknowledged messages' outcomes (built at once, not on first read) say where.
    topic = await _topic(client, partitions=1)
    producer = (await client.get_producer()).unwrap()
    stamped = datetime(2024, 5, 6, 7, 8, 9, 123_000, tzinfo=UTC)
    messages = (
        StreamingMessage(b"first", timestamp=stamped),
        StreamingMessage(b"epoch", timestamp=datetime(1970, 1, 1, tzinfo=UTC)),
        StreamingMessage(b"second"),
    )
    result = await producer.send_batch(MessageBatch(topic, messages))
    assert isinstance(result, Failure)
    assert result.error.code == ErrorCode.BATCH_PARTIAL_FAILURE
    first, refused, second = result.error.context["results"]
    assert isinstance(refused, Failure)
    assert refused.error.code == ErrorCode.INVALID_MESSAGE
    assert (first.unwrap().partition, first.unwrap().offset) == (0, 0)
    assert first.unwrap().timestamp == stamped
    assert (second.unwrap().partition, second.unwrap().offset) == (0, 1)
    assert second.unwrap().timestamp is not None


async def test_delivery_reports_wake_the_loop_in_batches(client: StreamingClient) -> None:
    topic = await _topic(client, partitions=3)
    producer = (await client.get_producer(ProducerConfig(linger=0.02))).unwrap()
    loop = asyncio.get_running_loop()
    original: Callable[..., Any] = loop.call_soon_threadsafe
    wakeups = 0

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal wakeups
        wakeups += 1
        return original(*args, **kwargs)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign, assignment]
    try:
        batch = MessageBatch(topic, tuple(StreamingMessage(b"%d" % i) for i in range(5_000)))
        result = await producer.send_batch(batch)
        singles = await asyncio.gather(
            *(producer.send(topic, StreamingMessage(b"s")) for _ in range(1_000))
        )
    finally:
        del loop.call_soon_threadsafe
    assert isinstance(result, Success)
    assert len(result.value.results) == 5_000
    assert all(isinstance(single, Success) for single in singles)
    assert wakeups < 600, f"{wakeups} loop wake-ups for 6000 delivery reports"


async def test_single_sends_beside_a_running_send_batch_each_get_their_own_offset(
    client: StreamingClient,
) -> None:
    # Single sends (one slot each) and a batch (one slot for all) share the hub: every
    # message is acknowledged once, at an offset no other message has.
    topic = await _topic(client, partitions=1)
    producer = (await client.get_producer()).unwrap()
    batch = MessageBatch(topic, tuple(StreamingMessage(b"b%d" % i) for i in range(20_000)))
    sending = asyncio.ensure_future(producer.send_batch(batch))
    await asyncio.sleep(0)  # the batch is handed over first
    singles = await asyncio.gather(
        *(producer.send(topic, StreamingMessage(b"s%d" % i)) for i in range(2_000))
    )
    batched = await sending
    assert isinstance(batched, Success)
    assert all(isinstance(single, Success) for single in singles)
    offsets = [result.offset for result in batched.value.results]
    offsets += [single.unwrap().offset for single in singles]
    assert sorted(offsets) == list(range(22_000))


async def test_a_full_local_queue_is_back_pressure(
    client: StreamingClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = await _topic(client)

    def tiny_queue(*args: Any) -> Any:
        return {**producer_settings(*args), "queue.buffering.max.messages": 20}

    monkeypatch.setattr(producer_module, "producer_settings", tiny_queue)
    producer = (await client.get_producer(ProducerConfig(linger=0.01))).unwrap()
    batch = MessageBatch(topic, tuple(StreamingMessage(b"%d" % i) for i in range(500)))
    result = await producer.send_batch(batch)
    assert isinstance(result, Success), result
    offsets = [written.offset for written in result.value.results]
    assert offsets == sorted(offsets) and len(set(offsets)) == 500


async def test_queue_full_is_reported_only_after_the_request_timeout(
    dev_broker: DevBroker, monkeypatch: pytest.MonkeyPatch
) -> None:

    def tiny_queue(*args: Any) -> Any:
        return {**producer_settings(*args), "queue.buffering.max.messages": 5}

    monkeypatch.setattr(producer_module, "producer_settings", tiny_queue)
    config = _config(dev_broker.bootstrap, request_timeout=2.0)
    async with create_streaming_client("confluent", config) as client:
        topic = await _topic(client)
        producer = (await client.get_producer(ProducerConfig(linger=0.5))).unwrap()
        dev_broker.stop()
        started = time.monotonic()
        result = await producer.send_batch(
            MessageBatch(topic, tuple(StreamingMessage(b"x") for _ in range(20)))
        )
        waited = time.monotonic() - started
    assert isinstance(result, Failure)
    outcomes = result.error.context["results"]
    codes = [outcome.error.code for outcome in outcomes if isinstance(outcome, Failure)]
    assert len(codes) == 20  # nothing was silently dropped
    assert "STREAMING_QUEUE_FULL" in codes
    assert all(
        outcome.error.context["delivery"] in ("not_written", "unknown") for outcome in outcomes
    )
    assert 1.5 < waited < 8.0


async def test_calls_return_within_their_bound_when_librdkafka_reports_nothing(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # librdkafka promises a report per message within message.timeout.ms; a poll thread that
    # never comes back from librdkafka (or reports that never come) must not hold a call,
    # or disconnect, for ever. The hub's thread is held here as if stuck inside flush().
    held = threading.Event()

    def stuck(hub: Any, producer: Any, waiting: Any) -> None:
        held.wait(30)

    monkeypatch.setattr(delivery_module.DeliveryHub, "_serve", stuck)
    monkeypatch.setattr(delivery_module, "_REPORT_GRACE", 0.5)
    client = create_streaming_client("confluent", _config(kafka_bootstrap, request_timeout=1.0))
    try:
        topic = await _topic(client)
        producer = (await client.get_producer()).unwrap()
        started = time.monotonic()
        batch, single = await asyncio.wait_for(
            asyncio.gather(
                producer.send_batch(MessageBatch(topic, (StreamingMessage(b"a"),) * 3)),
                producer.send(topic, StreamingMessage(b"b")),
            ),
            10,
        )
        waited = time.monotonic() - started
        assert isinstance(batch, Failure) and isinstance(single, Failure)
        outcomes = [*batch.error.context["results"], single]
        assert len(outcomes) == 4
        for outcome in outcomes:
            assert isinstance(outcome, Failure)
            assert outcome.error.code == "STREAMING_TIMEOUT"
            assert outcome.error.context["delivery"] == "unknown"
        # message.timeout.ms (1 s), the grace, and up to two sweeps of a second.
        assert 1.5 <= waited < 4.5
        assert "gave no delivery report for 4 message(s) of 2 call(s)" in caplog.text
        started = time.monotonic()
        disconnected = await asyncio.wait_for(client.disconnect(), 10)
        # The flush (request_timeout), the hub's grace for a stuck thread, and some slack:
        # within disconnect's own bound, which would otherwise cut the close short.
        assert time.monotonic() - started < 1.0 + delivery_module.STOP_GRACE + 1.0
        assert isinstance(disconnected, Failure)
        assert disconnected.error.code == "STREAMING_TIMEOUT"
        assert "poll thread did not come back from librdkafka" in disconnected.error.message
        assert "the poll thread did not come back from librdkafka" in caplog.text
    finally:
        held.set()
        await client.disconnect()


async def test_a_stuck_poll_thread_still_answers_a_send_waiting_at_disconnect(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the poll thread stuck in librdkafka, the hub's stop() gives up after the flush and
    # its grace, within disconnect's own bound (which cancelled it before, leaving the send
    # waiting for ever); a send still waiting is answered then.
    held = threading.Event()
    serve = delivery_module.DeliveryHub._serve

    def stuck_once_a_call_waits(hub: Any, producer: Any, waiting: Any) -> None:
        if hub.pending:
            held.wait(30)
        else:
            serve(hub, producer, waiting)

    monkeypatch.setattr(delivery_module.DeliveryHub, "_serve", stuck_once_a_call_waits)
    client = create_streaming_client("confluent", _config(kafka_bootstrap, request_timeout=1.0))
    try:
        topic = await _topic(client)
        producer = (await client.get_producer()).unwrap()
        send = asyncio.ensure_future(producer.send(topic, StreamingMessage(b"v")))
        await asyncio.sleep(0.2)  # the send waits on the held thread
        assert not send.done()
        disconnected = await asyncio.wait_for(client.disconnect(), 10)
        assert isinstance(disconnected, Failure)
        assert "poll thread did not come back" in disconnected.error.message
        result = await asyncio.wait_for(send, 1.0)  # answered with the disconnect
        assert isinstance(result, Failure)
        assert result.error.context["delivery"] == "unknown"
    finally:
        held.set()
        await client.disconnect()


async def test_disconnect_answers_every_send_still_in_flight(dev_broker: DevBroker) -> None:
    before = _our_threads()  # another test's client may still be winding down
    config = _config(dev_broker.bootstrap, request_timeout=2.0)
    client = create_streaming_client("confluent", config)
    topic = await _topic(client)
    producer = (await client.get_producer()).unwrap()
    dev_broker.stop()
    sends = asyncio.gather(*(producer.send(topic, StreamingMessage(b"late")) for _ in range(50)))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await client.disconnect()
    results = await asyncio.wait_for(sends, 5)
    assert time.monotonic() - started < 5
    assert all(isinstance(result, Failure) for result in results)
    for result in results:
        assert isinstance(result, Failure)
        assert result.error.context["delivery"] in ("not_written", "unknown")
    assert not _our_threads() - before


async def test_a_fenced_transactional_producer_keeps_its_delivery_reports(
    noida_bootstrap: str,
) -> None:
    # confluent-kafka raises the fatal error from poll() once: the poll thread died of it,
    # and the send then read "the producer was disconnected" instead of the broker's answer.
    config = _config(noida_bootstrap)
    topic = unique("fenced")
    first = create_streaming_client("confluent", config)
    second = create_streaming_client("confluent", config)
    try:
        admin = (await first.get_admin()).unwrap()
        assert isinstance(await admin.create_topics([TopicConfig(topic)]), Success)
        producer_config = ProducerConfig(transactional_id=unique("txn"))
        zombie = (await first.get_producer(producer_config)).unwrap()
        transaction = (await zombie.transaction()).unwrap()
        assert isinstance(await transaction.send(topic, StreamingMessage(b"a")), Success)
        (await second.get_producer(producer_config)).unwrap()
        late = await transaction.send(topic, StreamingMessage(b"late"))
        assert isinstance(late, Failure)
        assert late.error.context["kafka_error"] == "INVALID_PRODUCER_EPOCH"
        assert late.error.code == "STREAMING_PRODUCER_FENCED"
        assert "qi-confluent-producer-poll" in {thread.name for thread in _our_threads()}
    finally:
        await first.disconnect()
        await second.disconnect()


async def test_a_transaction_after_an_abort_that_timed_out_begins() -> None:
    # librdkafka resumes a timed-out abort only when asked again, and refused every later
    # begin ("Conflicting abort_transaction API call is already in progress") for good.
    with DevBroker(kind="noida") as broker:
        client = create_streaming_client(
            "confluent", _config(broker.bootstrap, request_timeout=1.0, connection_timeout=3.0)
        )
        try:
            admin = (await client.get_admin()).unwrap()
            topic = unique("cut")
            assert isinstance(await admin.create_topics([TopicConfig(topic)]), Success)
            config = ProducerConfig(transactional_id=unique("txn"))
            producer = (await client.get_producer(config)).unwrap()
            transaction = (await producer.transaction()).unwrap()
            assert isinstance(await transaction.send(topic, StreamingMessage(b"x")), Success)
            broker.stop()
            aborted = await transaction.abort()
            assert isinstance(aborted, Failure)
            assert aborted.error.code == "STREAMING_TIMEOUT"
            broker.start()
            deadline = time.monotonic() + 20
            again = await producer.transaction()
            while isinstance(again, Failure) and time.monotonic() < deadline:
                assert again.error.code == "STREAMING_TIMEOUT", again  # reconnecting
                again = await producer.transaction()
            assert isinstance(again, Success), again
            assert isinstance(await again.value.abort(), Success)
        finally:
            await client.disconnect()
