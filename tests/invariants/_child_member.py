"""One group member in a process of its own, recording its history to a file.

    python -m invariants._child_member '<json settings>'      (with tests/ on sys.path)

Settings: backend, brokers, topic, group, member (the history's name for it), outfile,
each_batch, auto_commit, and the timeouts; with ``output_topic`` the member is an
exactly-once pipeline stage: the run loop handles messages in transactions of a
producer with ``transactional_id``, the handler writes each input's transformation
to ``output_topic`` in them, every ``on_error`` is recorded, and a fenced producer
makes the member disconnect and exit, as a service would. Every event is one line appended to
``outfile`` with a single ``os.write``, so a SIGKILL never leaves half a line. The
member runs until SIGTERM, then disconnects and records what of the library is still
alive; with ``auto_commit`` off it commits every ``commit_interval`` itself. Every
``commit_interval`` it also records what its native client says it holds (for the
explanations). ``QI_CHILD_DEBUG=1`` logs the library and the native client to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming import (
    ConsumerConfig,
    ErrorCode,
    ProducerConfig,
    StreamingClient,
    StreamingConfig,
    StreamingConsumer,
    StreamingProducer,
    SubscriptionConfig,
    create_streaming_client,
)

from ._events import Event, Holding, Reported, to_line
from ._recorder import PlannedHandler, library_leftovers, now, timed

JOIN_ATTEMPTS = 3
JOIN_BOUND_RULE = "2 * session_timeout + connection_timeout"


async def main(settings: dict[str, Any]) -> int:
    if os.environ.get("QI_CHILD_DEBUG"):  # the library and its native client, to stderr
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s")
    # SIGTERM is the parent asking for a clean leave, even while connecting or joining:
    # a service told to stop during its start-up disconnects at once. Installed before
    # the history file exists, which is how the parent knows it may ask.
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    descriptor = os.open(settings["outfile"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def record(event: Event) -> None:
        os.write(descriptor, to_line(event))

    member = settings["member"]
    request_timeout, session_timeout = settings["request_timeout"], settings["session_timeout"]
    connection_timeout = settings["connection_timeout"]
    config = StreamingConfig(
        client_id=member.replace("#", "-"),
        brokers=tuple(settings["brokers"]),
        connection_timeout=connection_timeout,
        request_timeout=request_timeout,
    )
    client = create_streaming_client(settings["backend"], config)
    consumer_config = ConsumerConfig(
        group_id=settings["group"],
        session_timeout=session_timeout,
        heartbeat_interval=session_timeout / 10,
        auto_commit=settings["auto_commit"],
        auto_commit_interval=settings["commit_interval"],
        max_batch_size=settings["max_batch_size"],
    )
    got = await timed(
        record,
        member,
        "connect",
        connection_timeout,
        "connection_timeout",
        client.get_consumer(consumer_config),
    )
    if isinstance(got, Failure):
        print(f"{member}: get_consumer failed: {got.error}", file=sys.stderr)
        return 1
    consumer = got.value
    subscription = SubscriptionConfig(topics=(settings["topic"],), from_beginning=True)
    (await consumer.subscribe(subscription)).unwrap()
    producer = await _transactional_producer(settings, client, record)

    def report(error: QiError) -> None:
        if producer is not None:
            record(Reported(now(), member, error.code))
        if error.code == ErrorCode.PRODUCER_FENCED:
            stop.set()  # another process owns the transactional id now: leave the group
        if error.code != ErrorCode.HANDLER_FAILED:
            print(f"{member}: {error}", file=sys.stderr)

    handler = PlannedHandler(record, member, {}, settings.get("output_topic"))
    run_config = handler.run_config(
        settings["each_batch"], settings["retry_backoff"], report, producer
    )
    join_bound = 2 * session_timeout + connection_timeout

    async def join() -> Result[None, QiError]:
        # As a service would: a join that timed out is tried again. The bound holds for a
        # join after one crash; the parent excuses a timeout only if another fault hit the
        # group while this member joined (each may cost a rebalance of its own).
        for _ in range(JOIN_ATTEMPTS - 1):
            started = await timed(
                record, member, "run", join_bound, JOIN_BOUND_RULE, consumer.run(run_config)
            )
            if not (isinstance(started, Failure) and started.error.code == ErrorCode.TIMEOUT):
                return started
            print(f"{member}: {started.error}; joining again", file=sys.stderr, flush=True)
        return await timed(
            record, member, "run", join_bound, JOIN_BOUND_RULE, consumer.run(run_config)
        )

    running = asyncio.ensure_future(join())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if running.done():
        started = running.result()
        if not isinstance(started, Success):
            print(f"{member}: run failed: {started.error}", file=sys.stderr)
            return 1
        print(f"{member}: running", file=sys.stderr, flush=True)
        await _serve(consumer, settings, record, stop)
    stopping.cancel()
    await timed(
        record,
        member,
        "disconnect",
        2 * request_timeout,
        "2 * request_timeout",
        consumer.disconnect(),
    )
    if not running.done():
        print(f"{member}: stopped while joining: {await running}", file=sys.stderr)
    if producer is not None:  # after the consumer: its disconnect commits the last transaction
        await producer.disconnect()
    record(library_leftovers(member))
    await client.disconnect()
    os.close(descriptor)
    return 0


async def _transactional_producer(
    settings: dict[str, Any], client: StreamingClient, record: Callable[[Event], None]
) -> StreamingProducer | None:
    """The exactly-once member's producer (None for an at-least-once member); once it is
    recorded, every older producer of its transactional id is fenced."""
    if settings.get("output_topic") is None:
        return None
    config = ProducerConfig(
        transactional_id=settings["transactional_id"],
        transaction_timeout=settings["transaction_timeout"],
    )
    # Connecting, then registering the transactional id: each within connection_timeout.
    bound = 2 * settings["connection_timeout"]
    got = await timed(
        record,
        settings["member"],
        "get_producer",
        bound,
        "2 * connection_timeout",
        client.get_producer(config),
    )
    return got.unwrap()


async def _serve(
    consumer: StreamingConsumer,
    settings: dict[str, Any],
    record: Callable[[Event], None],
    stop: asyncio.Event,
) -> None:
    """Until SIGTERM: commit (without auto_commit) and note what the native client holds."""
    member = settings["member"]
    native: Any = consumer.get_native_client().unwrap()  # polled for explanations only
    holding: tuple[tuple[str, int], ...] = ()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), settings["commit_interval"])
        except TimeoutError:
            # Off the loop: confluent-kafka lets one thread at a time into a Consumer, and
            # its worker thread may sit in a rebalance callback that waits for this loop.
            try:
                assigned = await asyncio.to_thread(native.assignment)
            except RuntimeError:  # closed meanwhile: the member is going
                break
            now_holding = tuple(sorted((tp.topic, tp.partition) for tp in assigned))
            if now_holding != holding:
                holding = now_holding
                record(Holding(now(), member, holding))
            if not settings["auto_commit"] and settings.get("output_topic") is None:
                await timed(
                    record,
                    member,
                    "commit_offsets",
                    settings["request_timeout"],
                    "request_timeout",
                    consumer.commit_offsets(),
                )


if __name__ == "__main__":
    sys.exit(asyncio.run(main(json.loads(sys.argv[1]))))
