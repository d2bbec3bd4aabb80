"""examples/lag_monitor.py: a group's lag, summed and by partition, as the admin sees it."""

from __future__ import annotations

import lag_monitor
from qi.base import is_failure
from qi.base.streaming import (
    ConsumerRunConfig,
    EachMessagePayload,
    StreamingMessage,
    SubscriptionConfig,
    TopicConfig,
)
from qi.base.streaming.testing import wait_for_group
from testkit import unique

from ._support import ExampleRun, quick_group


async def send(run: ExampleRun, topic: str, count: int) -> None:
    producer = (await run.client.get_producer()).unwrap()
    for number in range(count):
        message = StreamingMessage(b"%d" % number, key=f"customer-{number}")
        (await producer.send(topic, message)).unwrap()


async def read_to_the_end(run: ExampleRun, topic: str) -> str:
    """A group that has read all of ``topic``, then stopped; its id."""
    group = unique("billing")

    async def bill(payload: EachMessagePayload) -> None:
        pass

    consumer = (await run.client.get_consumer(quick_group(group))).unwrap()
    (await consumer.subscribe(SubscriptionConfig((topic,), from_beginning=True))).unwrap()
    (await consumer.run(ConsumerRunConfig(each_message=bill))).unwrap()
    await wait_for_group(run.client, group, [topic], within=30)
    (await consumer.disconnect()).unwrap()
    return group


async def test_lag_is_what_the_group_has_left_to_read(example_run: ExampleRun) -> None:
    topic = unique("orders")
    admin = (await example_run.client.get_admin()).unwrap()
    (await admin.create_topics([TopicConfig(topic, num_partitions=3)])).unwrap()
    await send(example_run, topic, 5)
    group = await read_to_the_end(example_run, topic)
    caught_up = (await lag_monitor.lag_report(admin, group)).unwrap()
    await send(example_run, topic, 3)

    behind = (await lag_monitor.lag_report(admin, group, [topic])).unwrap()

    assert (caught_up.total, behind.total) == (0, 3)
    assert sorted(p.partition for p in behind.partitions) == [0, 1, 2]
    assert behind.describe().startswith(f"{group}: lag 3 (")


async def test_watch_reports_each_group_and_a_failure_for_an_unknown_one(
    memory_run: ExampleRun,
) -> None:
    topic = unique("orders")
    admin = (await memory_run.client.get_admin()).unwrap()
    (await admin.create_topics([TopicConfig(topic)])).unwrap()
    await send(memory_run, topic, 1)
    known = await read_to_the_end(memory_run, topic)
    await send(memory_run, topic, 2)

    reports = lag_monitor.watch(admin, [known, unique("nobody")], [topic], interval=0.01)
    first, second = await anext(reports), await anext(reports)
    await reports.aclose()

    assert not is_failure(first) and first.value.total == 2
    assert is_failure(second) and second.error.code == "STREAMING_ADMIN_FAILED"
