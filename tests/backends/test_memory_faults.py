"""The memory broker's fault-injection hooks, as the contract and reliability tests use them."""

from __future__ import annotations

import asyncio
import functools
import gc
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming import (
    ConsumedMessage,
    ConsumerConfig,
    ConsumerRunConfig,
    EachMessagePayload,
    ErrorCode,
    MessageBatch,
    ProducerConfig,
    ProduceResult,
    StreamingClient,
    StreamingMessage,
    SubscriptionConfig,
    TopicConfig,
    create_streaming_client,
)
from qi.base.streaming.backends.memory import MemoryBroker, broker_for, discard_broker
from qi.base.streaming.backends.memory._records import StickyPartitions
from qi.base.streaming.testing._cluster import private_memory_brokers
from testkit import Collector, ok, run_stopping_itself, wait_until

from ._memory import config_for, failed


@dataclass
class Setup:
    broker: MemoryBroker
    client: StreamingClient
    brokers: tuple[str, ...]


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    """A private broker with topics ``a`` (1 partition) and ``b`` (2), and a client of it."""
    brokers = private_memory_brokers()
    broker = broker_for(brokers)
    broker.create_topic(TopicConfig("a"))
    broker.create_topic(TopicConfig("b", num_partitions=2))
    client = create_streaming_client("memory", config_for(brokers, request_timeout=0.5))
    yield Setup(broker, client, brokers)
    broker.reset()
    await client.disconnect()
    discard_broker(brokers)


async def test_fail_next_produces_fails_that_many_messages_of_that_topic(setup: Setup) -> None:
    producer = ok(await setup.client.get_producer())
    setup.broker.fail_next_produces("a", 2)
    error = failed(await producer.send("a", StreamingMessage(b"1")), "STREAMING_PRODUCE_FAILED")
    assert error.context["delivery"] == "not_written"
    assert error.context["kafka_error"] == "INJECTED_FAULT"
    assert error.context["retriable"] is True
    ok(await producer.send("b", StreamingMessage(b"other topic")))

    batch = MessageBatch("a", (StreamingMessage(b"2"), StreamingMessage(b"3")))
    partial = failed(await producer.send_batch(batch), "STREAMING_BATCH_PARTIAL_FAILURE")
    first, second = partial.context["results"]
    assert isinstance(first, Failure) and first.error.code == "STREAMING_PRODUCE_FAILED"
    assert isinstance(second, Success) and second.value.offset == 0
    ok(await producer.send("a", StreamingMessage(b"4")))
    assert [m.value for m in setup.broker.messages("a", 0)] == [b"3", b"4"]


async def test_an_unknown_delivery_fault_writes_the_message(setup: Setup) -> None:
    producer = ok(await setup.client.get_producer())
    setup.broker.fail_next_produces(
        "a", 1, error_code=ErrorCode.TIMEOUT, delivery="unknown", retriable=False
    )
    error = failed(await producer.send("a", StreamingMessage(b"x")), "STREAMING_TIMEOUT")
    assert error.context["delivery"] == "unknown"
    assert error.context["retriable"] is False
    # The acknowledgement was lost, not the message: a resend duplicates it.
    ok(await producer.send("a", StreamingMessage(b"x")))
    assert [m.value for m in setup.broker.messages("a", 0)] == [b"x", b"x"]


async def test_a_batch_message_written_without_acknowledgement_keeps_its_offset(
    setup: Setup,
) -> None:
    producer = ok(await setup.client.get_producer())
    ok(await producer.send("b", StreamingMessage(b"before", partition=1)))
    setup.broker.fail_next_produces(
        "b", 2, error_code=ErrorCode.TIMEOUT, delivery="unknown", retriable=False
    )
    values = [b"lost-0", b"lost-1", b"next-1", b"next-0", b"last-1"]
    partitions = [0, 1, 1, 0, 1]
    batch = MessageBatch(
        "b",
        tuple(StreamingMessage(v, partition=p) for v, p in zip(values, partitions, strict=True)),
    )
    partial = failed(await producer.send_batch(batch), "STREAMING_BATCH_PARTIAL_FAILURE")
    outcomes = partial.context["results"]
    assert [type(outcome) for outcome in outcomes] == [Failure, Failure, Success, Success, Success]
    # The two unacknowledged messages were written: the others sit after them.
    written = [(o.value.partition, o.value.offset) for o in outcomes[2:]]
    assert written == [(1, 2), (0, 1), (1, 3)]
    for (partition, offset), value in zip(written, values[2:], strict=True):
        assert setup.broker.messages("b", partition)[offset].value == value


async def test_a_produce_fault_is_replaced_or_cleared(setup: Setup) -> None:
    producer = ok(await setup.client.get_producer())
    setup.broker.fail_next_produces("a", 5)
    setup.broker.fail_next_produces("a", 0)
    ok(await producer.send("a", StreamingMessage(b"x")))
    setup.broker.fail_next_produces("a", 5)
    setup.broker.reset()
    ok(await producer.send("a", StreamingMessage(b"y")))


async def test_delayed_deliveries_are_acknowledged_late(setup: Setup) -> None:
    producer = ok(await setup.client.get_producer())
    setup.broker.delay_deliveries(0.2)
    started = time.monotonic()
    ok(await producer.send("a", StreamingMessage(b"x")))
    assert time.monotonic() - started >= 0.2
    setup.broker.delay_deliveries(0)
    started = time.monotonic()
    ok(await producer.send("a", StreamingMessage(b"y")))
    assert time.monotonic() - started < 0.1


async def test_a_delay_beyond_request_timeout_is_a_timeout_of_written_messages(
    setup: Setup,
) -> None:
    producer = ok(await setup.client.get_producer())
    setup.broker.delay_deliveries(30)
    started = time.monotonic()
    batch = MessageBatch("b", (StreamingMessage(b"1", partition=0), StreamingMessage(b"2")))
    partial = failed(await producer.send_batch(batch), "STREAMING_BATCH_PARTIAL_FAILURE")
    assert 0.4 < time.monotonic() - started < 2.0  # request_timeout is 0.5 s
    for result in partial.context["results"]:
        assert isinstance(result, Failure)
        assert result.error.code == "STREAMING_TIMEOUT"
        assert result.error.context["delivery"] == "unknown"
    assert sum(len(setup.broker.messages("b", p)) for p in (0, 1)) == 2


async def test_an_unreachable_broker_fails_connects_and_health_checks() -> None:
    brokers = private_memory_brokers()
    broker = broker_for(brokers)
    broker.set_unreachable()
    assert not broker.reachable
    async with create_streaming_client(
        "memory", config_for(brokers, connection_timeout=0.3)
    ) as client:
        started = time.monotonic()
        error = failed(await client.get_producer(), "STREAMING_CONNECTION_FAILED")
        assert time.monotonic() - started < 2.0
        assert error.context["kafka_error"] == "_TRANSPORT"
        failed(await client.get_admin(), "STREAMING_CONNECTION_FAILED")
        failed(await client.get_consumer(ConsumerConfig("g")), "STREAMING_CONNECTION_FAILED")
        assert ok(await client.is_healthy()) is False
        broker.set_unreachable(False)
        assert ok(await client.is_healthy()) is True
        ok(await client.get_producer())
    discard_broker(brokers)


async def test_requests_wait_for_an_unreachable_broker_then_fail(setup: Setup) -> None:
    producer = ok(await setup.client.get_producer())
    admin = ok(await setup.client.get_admin())
    setup.broker.set_unreachable()
    error = failed(await producer.send("a", StreamingMessage(b"x")), "STREAMING_CONNECTION_FAILED")
    assert error.context["delivery"] == "not_written"
    failed(await admin.list_topics(), "STREAMING_CONNECTION_FAILED")
    assert setup.broker.messages("a", 0) == ()

    # A broker that comes back within request_timeout serves the waiting request.
    async def send_late() -> Result[ProduceResult, QiError]:
        return await producer.send("a", StreamingMessage(b"y"))

    pending = asyncio.create_task(send_late())
    await asyncio.sleep(0.1)
    assert not pending.done()
    setup.broker.set_unreachable(False)
    assert ok(await pending).offset == 0


async def test_consumers_read_nothing_while_unreachable_and_catch_up_after(setup: Setup) -> None:
    producer = ok(await setup.client.get_producer())
    seen: list[ConsumedMessage] = []

    async def handle(payload: EachMessagePayload) -> None:
        seen.append(payload.message)

    consumer = ok(await setup.client.get_consumer(ConsumerConfig("g", 6.0, 0.5)))
    ok(await consumer.subscribe(SubscriptionConfig(("a",))))
    ok(await consumer.run(ConsumerRunConfig(each_message=handle)))
    setup.broker.set_unreachable()
    setup.broker.set_unreachable(False)  # wakes the consumer's pending fetch
    ok(await producer.send("a", StreamingMessage(b"1")))
    await wait_until(lambda: len(seen) == 1, "the first message")
    setup.broker.set_unreachable()
    # Written behind the broker's back (the producer would wait): the consumer must not see it.
    setup.broker.produce("a", [StreamingMessage(b"2")], StickyPartitions(0.0), False)
    await asyncio.sleep(0.3)
    assert len(seen) == 1
    setup.broker.set_unreachable(False)
    await wait_until(lambda: len(seen) == 2, "the message written while unreachable")


async def test_fail_next_commits_fails_that_many_commits(setup: Setup) -> None:
    producer = ok(await setup.client.get_producer())
    seen: list[ConsumedMessage] = []

    async def handle(payload: EachMessagePayload) -> None:
        seen.append(payload.message)

    config = ConsumerConfig("committer", 6.0, 0.5, auto_commit=False)
    consumer = ok(await setup.client.get_consumer(config))
    ok(await consumer.subscribe(SubscriptionConfig(("a",), from_beginning=True)))
    ok(await consumer.run(ConsumerRunConfig(each_message=handle)))
    ok(await producer.send("a", StreamingMessage(b"1")))
    await wait_until(lambda: len(seen) == 1, "the message")
    setup.broker.fail_next_commits("committer", 1)
    error = failed(await consumer.commit_offsets(), "STREAMING_COMMIT_FAILED")
    assert error.context["kafka_error"] == "INJECTED_FAULT"
    assert setup.broker.committed("committer") == {}
    ok(await consumer.commit_offsets())
    assert setup.broker.committed("committer") == {("a", 0): 1}


async def test_a_fetch_that_fails_after_moving_on_loses_nothing(setup: Setup) -> None:
    producer = ok(await setup.client.get_producer())
    for index in range(60):
        ok(await producer.send("b", StreamingMessage(b"%d" % index, partition=index % 2)))
    collector = Collector()
    config = ConsumerConfig("rewound", 6.0, 0.5, max_batch_size=5)
    consumer = ok(await setup.client.get_consumer(config))
    ok(await consumer.subscribe(SubscriptionConfig(("b",), from_beginning=True)))
    setup.broker.fail_next_fetches("rewound", 3)
    ok(await consumer.run(collector.run_config()))
    await wait_until(
        lambda: len(collector.errors) == 3 and len(collector.seen) >= 60, "every message"
    )
    for partition in (0, 1):
        offsets = [m.offset for m in collector.messages if m.partition == partition]
        assert offsets == list(range(30)), f"partition {partition}: {offsets}"
    assert all(error.context["kafka_error"] == "INJECTED_FAULT" for error in collector.errors), (
        collector.errors
    )


async def test_failed_rebalance_commits_leave_no_task_behind(setup: Setup) -> None:
    producer = ok(await setup.client.get_producer())
    collector = Collector()
    config = ConsumerConfig("revoker", 6.0, 0.5, auto_commit=False)
    subscription = SubscriptionConfig(("b",), from_beginning=True)
    consumer = ok(await setup.client.get_consumer(config))
    ok(await consumer.subscribe(subscription))
    ok(await consumer.run(collector.run_config()))

    def done_tasks() -> int:
        gc.collect()
        return sum(1 for task in gc.get_objects() if isinstance(task, asyncio.Task) and task.done())

    async def ignore(payload: EachMessagePayload) -> None:
        pass

    def handled_twice(value: bytes) -> bool:
        return sum(message.value == value for message in collector.messages) >= 2

    def reported(count: int) -> bool:
        return sum(error.code == ErrorCode.COMMIT_FAILED for error in collector.errors) == count

    before = done_tasks()
    failures = 20
    for round_ in range(failures):
        # Something handled on both partitions, so the revocation has an offset to commit.
        value = b"%d" % round_
        for partition in (0, 1):
            ok(await producer.send("b", StreamingMessage(value, partition=partition)))
        await wait_until(functools.partial(handled_twice, value), "the round's messages")
        setup.broker.fail_next_commits("revoker", 1)
        async with create_streaming_client("memory", config_for(setup.brokers)) as other:
            joiner = ok(await other.get_consumer(config))
            ok(await joiner.subscribe(subscription))
            ok(await joiner.run(ConsumerRunConfig(each_message=ignore)))
        await wait_until(functools.partial(reported, round_ + 1), "the failed commit's report")
    assert done_tasks() - before < failures // 2, "a task is kept per failed rebalance commit"


@pytest.mark.parametrize("fault", ["fetch", "auto_commit"])
async def test_on_error_may_disconnect_from_the_fetcher_and_the_auto_commit_loop(
    setup: Setup, fault: str
) -> None:
    # on_error is called by the run loop's fetcher (a failed fetch) and auto-commit loop (a
    # failed commit) too; a disconnect() it awaits must neither wait for nor cancel them.
    producer = ok(await setup.client.get_producer())
    for index in range(10):
        ok(await producer.send("a", StreamingMessage(b"%d" % index)))
    group = f"stops-on-{fault}"
    config = ConsumerConfig(group, 6.0, 0.5, auto_commit=fault == "auto_commit")
    consumer = ok(await setup.client.get_consumer(config))
    ok(await consumer.subscribe(SubscriptionConfig(("a",), from_beginning=True)))
    outcome: list[object] = []

    async def ignore(payload: EachMessagePayload) -> None:
        del payload

    async def on_error(error: QiError) -> None:
        if outcome:
            return
        began = time.monotonic()
        try:
            outcome.append(await consumer.disconnect())
        except BaseException as exc:  # what the loop calling on_error would get
            outcome.append(exc)
            raise
        finally:
            outcome.append(time.monotonic() - began)

    if fault == "fetch":
        setup.broker.fail_next_fetches(group, 1)
    else:
        setup.broker.fail_next_commits(group, 1)
    await run_stopping_itself(consumer, ConsumerRunConfig(each_message=ignore, on_error=on_error))
    await wait_until(lambda: len(outcome) == 2, f"on_error's disconnect() after a {fault} fault")
    assert outcome[0] == Success(None), outcome
    assert isinstance(outcome[1], float) and outcome[1] < 0.5, outcome
    assert not consumer.is_connected()
    # At once: not after the fetcher's backoff, as if it were to fetch again.
    await wait_until(
        lambda: not [t for t in asyncio.all_tasks() if t.get_name().startswith("qi-consumer")],
        "the run loop's tasks ended",
        within=0.25,
    )


async def test_an_on_error_that_disconnects_on_every_error_hears_of_a_failed_final_commit(
    setup: Setup,
) -> None:
    # on_error disconnects on any error. Its disconnect() after a failed handler commits what
    # was handled, which fails too: that failure reaches on_error while the first disconnect()
    # waits for on_error to hear it, so the second disconnect() must not wait for the first.
    producer = ok(await setup.client.get_producer())
    group = "disconnects-on-every-error"
    consumer = ok(await setup.client.get_consumer(ConsumerConfig(group, 6.0, 0.5)))
    ok(await consumer.subscribe(SubscriptionConfig(("a",), from_beginning=True)))
    outcomes: dict[str, object] = {}

    async def fail_on_the_third(payload: EachMessagePayload) -> None:
        if payload.message.offset == 2:
            raise RuntimeError("fails")

    async def on_error(error: QiError) -> None:
        if error.code == ErrorCode.HANDLER_FAILED:
            setup.broker.fail_next_commits(group, 1)  # the commit of disconnect() fails
        began = time.monotonic()
        try:
            outcomes[error.code] = (await consumer.disconnect(), time.monotonic() - began)
        except BaseException as exc:  # what the task calling on_error would get
            outcomes[error.code] = exc
            raise

    ok(await consumer.run(ConsumerRunConfig(each_message=fail_on_the_third, on_error=on_error)))
    for index in range(5):
        ok(await producer.send("a", StreamingMessage(b"%d" % index)))
    await wait_until(lambda: len(outcomes) == 2, "both of on_error's disconnect() calls")
    for code in (ErrorCode.HANDLER_FAILED, ErrorCode.COMMIT_FAILED):
        answer = outcomes[code]
        assert isinstance(answer, tuple), outcomes
        assert answer[0] == Success(None) and answer[1] < 0.25, outcomes


async def test_exactly_once_on_error_that_shuts_down_hears_nothing_after_it(setup: Setup) -> None:
    setup.broker.create_topic(TopicConfig("out"))
    producer = ok(await setup.client.get_producer())
    outputs = ok(await setup.client.get_producer(ProducerConfig(transactional_id="shuts-down")))
    group = "shuts-down-on-error"
    consumer = ok(
        await setup.client.get_consumer(ConsumerConfig(group, 6.0, 0.5, auto_commit=False))
    )
    ok(await consumer.subscribe(SubscriptionConfig(("a",), from_beginning=True)))
    heard: list[str] = []
    shut_down: list[Result[None, QiError]] = []

    async def handle(payload: EachMessagePayload) -> None:
        assert payload.transaction is not None
        ok(await payload.transaction.send("out", StreamingMessage(payload.message.value)))
        if payload.message.offset == 1:  # the transaction's offsets cannot be sent
            setup.broker.set_unreachable(True)

    async def on_error(error: QiError) -> None:
        heard.append(f"{error.code} after shutting down" if shut_down else error.code)
        if not shut_down:
            setup.broker.set_unreachable(False)
            shut_down.append(await consumer.disconnect())
            shut_down.append(await outputs.disconnect())

    run_config = ConsumerRunConfig(
        each_message=handle,
        on_error=on_error,
        transactional_producer=outputs,
        transaction_max_messages=2,
    )
    ok(await consumer.run(run_config))
    for index in range(3):
        ok(await producer.send("a", StreamingMessage(b"%d" % index)))
    await wait_until(lambda: len(shut_down) == 2, "on_error shut the consumer down")
    assert shut_down == [Success(None), Success(None)]
    await wait_until(
        lambda: not [t for t in asyncio.all_tasks() if t.get_name().startswith("qi-consumer")],
        "the run loop's tasks ended",
    )
    assert heard == [ErrorCode.CONNECTION_FAILED], heard
    assert setup.broker.committed(group) == {}


async def test_a_task_a_handler_call_started_keeps_nothing_of_that_call_alive(
    setup: Setup,
) -> None:
    # A service-wide task the first handler call happens to start carries a copy of that
    # call's context for as long as it runs: nothing the run loop puts there may keep the
    # call's payload (its message, its transaction and so the producer) alive after
    # everything is disconnected.
    setup.broker.create_topic(TopicConfig("out"))
    producer = ok(await setup.client.get_producer())
    for index in range(3):
        ok(await producer.send("a", StreamingMessage(b"%d" % index)))
    outputs = ok(await setup.client.get_producer(ProducerConfig(transactional_id="keeps")))
    group = "keeps-nothing"
    consumer = ok(
        await setup.client.get_consumer(ConsumerConfig(group, 6.0, 0.5, auto_commit=False))
    )
    ok(await consumer.subscribe(SubscriptionConfig(("a",), from_beginning=True)))
    service_ends = asyncio.Event()
    service: list[asyncio.Task[bool]] = []
    handled: list[int] = []

    async def handle(payload: EachMessagePayload) -> None:
        if not service:  # started lazily, by whichever call comes first
            service.append(asyncio.create_task(service_ends.wait()))
        handled.append(payload.message.offset)

    ok(await consumer.run(ConsumerRunConfig(each_message=handle, transactional_producer=outputs)))
    await wait_until(lambda: len(handled) == 3, "three messages handled")
    ok(await consumer.disconnect())
    ok(await outputs.disconnect())
    del consumer, outputs, handle
    gc.collect()
    kept = [obj for obj in gc.get_objects() if isinstance(obj, EachMessagePayload)]
    service_ends.set()
    await asyncio.gather(*service)
    assert not kept, [payload.message.offset for payload in kept]


async def test_a_handler_that_goes_on_after_its_own_disconnect_is_cancelled_in_time(
    setup: Setup,
) -> None:
    # "Stop after this one": the handler awaits disconnect(), which returns at once without
    # waiting for it. A handler that then hangs is cancelled once the consumer is closed
    # and request_timeout more has passed, as any late handler is: the run loop must not go
    # on forever after disconnect().
    producer = ok(await setup.client.get_producer())
    for index in range(3):
        ok(await producer.send("a", StreamingMessage(b"%d" % index)))
    group = "hangs-after-disconnect"
    consumer = ok(await setup.client.get_consumer(ConsumerConfig(group, 6.0, 0.5)))
    ok(await consumer.subscribe(SubscriptionConfig(("a",), from_beginning=True)))
    disconnected: list[Result[None, QiError]] = []
    cancelled: list[int] = []

    async def handle(payload: EachMessagePayload) -> None:
        if payload.message.offset != 1:
            return
        disconnected.append(await consumer.disconnect())
        try:
            await asyncio.Event().wait()  # never set
        except asyncio.CancelledError:
            cancelled.append(payload.message.offset)
            raise

    await run_stopping_itself(consumer, ConsumerRunConfig(each_message=handle))
    await wait_until(lambda: bool(disconnected), "the handler's disconnect()")
    assert disconnected == [Success(None)]
    await wait_until(
        lambda: not [t for t in asyncio.all_tasks() if t.get_name().startswith("qi-consumer")],
        "the run loop's tasks ended",
        within=4 * 0.5,  # cancelled 3 x request_timeout after disconnect() began, at most
    )
    assert cancelled == [1]
    assert setup.broker.committed(group) == {("a", 0): 1}


@pytest.mark.parametrize("fault", ["handler", "fetch", "auto_commit"])
async def test_an_on_error_that_goes_on_after_its_disconnect_is_cancelled_in_time(
    setup: Setup, fault: str
) -> None:
    # As a handler that goes on after its own disconnect(): the run loop's task that called
    # on_error (the dispatcher's, the fetcher's, the auto-commit loop's) is neither waited
    # for nor cancelled by it, but must not run on forever once the consumer is closed.
    producer = ok(await setup.client.get_producer())
    for index in range(3):
        ok(await producer.send("a", StreamingMessage(b"%d" % index)))
    group = f"hangs-in-on-error-after-{fault}"
    config = ConsumerConfig(
        group, 6.0, 0.5, auto_commit=fault == "auto_commit", auto_commit_interval=0.1
    )
    consumer = ok(await setup.client.get_consumer(config))
    ok(await consumer.subscribe(SubscriptionConfig(("a",), from_beginning=True)))
    disconnected: list[Result[None, QiError]] = []

    async def handle(payload: EachMessagePayload) -> None:
        if fault == "handler" and payload.message.offset == 1:
            raise RuntimeError("fails")

    async def on_error(error: QiError) -> None:
        if not disconnected:
            disconnected.append(await consumer.disconnect())
            await asyncio.Event().wait()  # never set

    if fault == "fetch":
        setup.broker.fail_next_fetches(group, 1)
    elif fault == "auto_commit":
        setup.broker.fail_next_commits(group, 1)
    await run_stopping_itself(consumer, ConsumerRunConfig(each_message=handle, on_error=on_error))
    await wait_until(lambda: bool(disconnected), f"on_error's disconnect() after a {fault} fault")
    assert disconnected == [Success(None)]
    await wait_until(
        lambda: not [t for t in asyncio.all_tasks() if t.get_name().startswith("qi-consumer")],
        "the run loop's tasks ended",
        within=4 * 0.5,  # cancelled 3 x request_timeout after disconnect() began, at most
    )


async def test_an_on_error_that_disconnects_another_consumer_keeps_its_own_running(
    setup: Setup,
) -> None:
    # One consumer's on_error may stop another one of the service: that disconnect() is not
    # the other consumer's own loop calling it, which must go on undisturbed.
    producer = ok(await setup.client.get_producer())
    for index in range(2):
        ok(await producer.send("a", StreamingMessage(b"%d" % index)))
    watcher = ok(await setup.client.get_consumer(ConsumerConfig("watches", 6.0, 0.5)))
    ok(await watcher.subscribe(SubscriptionConfig(("a",), from_beginning=True)))
    other = ok(await setup.client.get_consumer(ConsumerConfig("is-stopped", 6.0, 0.5)))
    ok(await other.subscribe(SubscriptionConfig(("b",), from_beginning=True)))
    ok(await other.run(ConsumerRunConfig(each_message=Collector().each_message)))
    handled: list[int] = []
    stopped: list[Result[None, QiError]] = []

    async def handle(payload: EachMessagePayload) -> None:
        if payload.message.offset == 1 and not stopped:
            raise RuntimeError("fails once")
        handled.append(payload.message.offset)

    async def on_error(error: QiError) -> None:
        stopped.append(await other.disconnect())

    ok(await watcher.run(ConsumerRunConfig(each_message=handle, on_error=on_error)))
    await wait_until(lambda: handled == [0, 1], "the watcher handled both messages")
    assert stopped == [Success(None)]
    # Past the time a late call of the stopped consumer's own loop would be cancelled.
    await asyncio.sleep(4 * 0.5)
    ok(await producer.send("a", StreamingMessage(b"2")))
    await wait_until(lambda: handled == [0, 1, 2], "the watcher went on handling")
    ok(await watcher.disconnect())


async def test_a_handler_that_starts_its_disconnect_and_goes_on_has_its_message_to_itself(
    setup: Setup,
) -> None:
    # "Stop after this one", started in a task: the handler goes on with its message's work.
    # The group's other member must not handle that message while this handler still does
    # (contract section 5: two members never handle a partition at once; only a handler
    # that ignores its cancellation goes on beside the next owner). So a disconnect() in a
    # task the handler started waits for the handler, as one from anywhere else does.
    producer = ok(await setup.client.get_producer())
    group = "starts-its-disconnect"
    spans: dict[str, tuple[float, float]] = {}
    first = ok(await setup.client.get_consumer(ConsumerConfig(group, 6.0, 0.5)))
    ok(await first.subscribe(SubscriptionConfig(("a",), from_beginning=True)))
    stopping: list[asyncio.Task[Result[None, QiError]]] = []

    async def stop_after_this_one(payload: EachMessagePayload) -> None:
        began = time.monotonic()
        stopping.append(asyncio.create_task(first.disconnect()))
        await asyncio.sleep(0.3)  # the message's work, well within request_timeout
        spans["first"] = (began, time.monotonic())

    async def record(payload: EachMessagePayload) -> None:
        spans["second"] = (time.monotonic(), time.monotonic())

    ok(await first.run(ConsumerRunConfig(each_message=stop_after_this_one)))
    other = create_streaming_client("memory", config_for(setup.brokers, request_timeout=0.5))
    second = ok(await other.get_consumer(ConsumerConfig(group, 6.0, 0.5)))
    ok(await second.subscribe(SubscriptionConfig(("a",), from_beginning=True)))
    # It owns no partition (topic a has one) until the first member leaves: run() may
    # wait for one meanwhile.
    joining = asyncio.create_task(second.run(ConsumerRunConfig(each_message=record)))
    try:
        await wait_until(lambda: len(setup.broker.group(group).members) == 2, "the second member")
        ok(await producer.send("a", StreamingMessage(b"0")))
        await wait_until(lambda: "first" in spans and bool(stopping), "the first member's handler")
        ok(await stopping[0])
    finally:
        await other.disconnect()
        await joining
    if "second" in spans:
        assert spans["second"][0] >= spans["first"][1], f"handled at once: {spans}"


@pytest.mark.parametrize("how", ["task", "gather", "task_group"])
async def test_a_handler_awaiting_its_disconnect_in_a_task_it_started_is_cancelled_in_time(
    setup: Setup, how: str
) -> None:
    # A disconnect() in a task the handler started waits for the handler, which here awaits
    # that very task: the handler is cancelled after request_timeout, and the stop must not
    # then wait for it to end (it ends only once the stop did): what was handled before is
    # committed, the handler's own message is not, and disconnect() stays bounded.
    producer = ok(await setup.client.get_producer())
    for index in range(3):
        ok(await producer.send("a", StreamingMessage(b"%d" % index)))
    group = f"awaits-its-disconnect-in-a-{how}"
    consumer = ok(await setup.client.get_consumer(ConsumerConfig(group, 6.0, 0.5)))
    ok(await consumer.subscribe(SubscriptionConfig(("a",), from_beginning=True)))
    began: list[float] = []
    cancelled: list[float] = []

    async def handle(payload: EachMessagePayload) -> None:
        if payload.message.offset != 1:
            return
        began.append(time.monotonic())
        try:
            if how == "task":
                await asyncio.create_task(consumer.disconnect())
            elif how == "gather":
                await asyncio.gather(consumer.disconnect())
            else:
                async with asyncio.TaskGroup() as group:
                    group.create_task(consumer.disconnect())
        except asyncio.CancelledError:
            cancelled.append(time.monotonic() - began[0])
            raise

    await run_stopping_itself(consumer, ConsumerRunConfig(each_message=handle))
    await wait_until(lambda: bool(cancelled), "the handler's cancellation", within=6 * 0.5)
    assert cancelled[0] < 2 * 0.5 + 0.1, cancelled
    await wait_until(
        lambda: not [t for t in asyncio.all_tasks() if t.get_name().startswith("qi-consumer")],
        "the run loop's tasks ended",
    )
    assert setup.broker.committed(group) == {("a", 0): 1}


async def test_a_handler_awaiting_its_clients_disconnect_is_not_waited_for(setup: Setup) -> None:
    # StreamingClient.disconnect() closes its endpoints in tasks of their own: awaited by
    # the handler, its consumer's close is that handler's own, which cannot wait for it.
    producer = ok(await setup.client.get_producer())
    for index in range(3):
        ok(await producer.send("a", StreamingMessage(b"%d" % index)))
    group = "awaits-its-clients-disconnect"
    consumer = ok(await setup.client.get_consumer(ConsumerConfig(group, 6.0, 0.5)))
    ok(await consumer.subscribe(SubscriptionConfig(("a",), from_beginning=True)))
    disconnected: list[tuple[Result[None, QiError], float]] = []

    async def handle(payload: EachMessagePayload) -> None:
        if payload.message.offset == 1:
            began = time.monotonic()
            disconnected.append((await setup.client.disconnect(), time.monotonic() - began))

    await run_stopping_itself(consumer, ConsumerRunConfig(each_message=handle))
    await wait_until(lambda: bool(disconnected), "the handler's disconnect()")
    outcome, took = disconnected[0]
    assert outcome == Success(None)
    assert took < 0.5, took  # not request_timeout waiting for itself
    assert setup.broker.committed(group) == {("a", 0): 1}
