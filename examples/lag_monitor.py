"""A lag monitor: how far behind each consumer group is, and when it falls behind.

``lag_report(admin, group, topics)`` sums the admin's ``get_group_lag`` (per partition:
the group's committed offset, the log's start and end, and the messages left to read);
``watch(admin, groups, topics)`` polls it every ``interval`` seconds and yields a report
per group, or a Failure when the admin could not answer (``STREAMING_ADMIN_FAILED``
for a group the broker does not know: no active member and no committed offset).
The monitor only reads: it joins no group and moves no offset, so it can watch any
group of the cluster. ``qi-stream groups describe GROUP`` shows the same
numbers on the command line.

``python examples/lag_monitor.py`` runs it on the memory backend against a consumer
that stalls for a while, then catches up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from qi.base import QiError, Result, Success, is_failure
from qi.base.streaming import (
    ConsumerConfig,
    ConsumerRunConfig,
    EachMessagePayload,
    PartitionLag,
    StreamingAdmin,
    StreamingConfig,
    StreamingMessage,
    SubscriptionConfig,
    TopicConfig,
    create_streaming_client,
)


@dataclass(frozen=True, slots=True)
class LagReport:
    """One group's lag at one moment."""

    group_id: str
    partitions: tuple[PartitionLag, ...]
    """Per partition: committed offset, log start and end, lag; by topic and partition."""

    @property
    def total(self) -> int:
        """Messages the group has yet to read, over all its partitions."""
        return sum(partition.lag for partition in self.partitions)

    def describe(self) -> str:
        behind = ", ".join(f"{p.topic}[{p.partition}]={p.lag}" for p in self.partitions if p.lag)
        return f"{self.group_id}: lag {self.total}" + (f" ({behind})" if behind else "")


async def lag_report(
    admin: StreamingAdmin, group_id: str, topics: Sequence[str] | None = None
) -> Result[LagReport, QiError]:
    """``group_id``'s lag on ``topics``; None means every topic it has committed offsets
    for, which leaves out the topics it has not committed on yet: name them to see those."""
    partitions = await admin.get_group_lag(group_id, topics)
    if is_failure(partitions):
        return partitions
    return Success(LagReport(group_id, partitions.value))


async def watch(
    admin: StreamingAdmin,
    group_ids: Sequence[str],
    topics: Sequence[str] | None = None,
    interval: float = 5.0,
) -> AsyncGenerator[Result[LagReport, QiError], None]:
    """A report for each group every ``interval`` seconds, for as long as it is iterated."""
    while True:
        for group_id in group_ids:
            yield await lag_report(admin, group_id, topics)
        await asyncio.sleep(interval)


async def main() -> int:
    config = StreamingConfig(client_id="lag-monitor", brokers=("memory-lag:9092",))
    async with create_streaming_client("memory", config) as client:
        admin = (await client.get_admin()).unwrap()
        (await admin.create_topics([TopicConfig("orders", num_partitions=3)])).unwrap()
        producer = (await client.get_producer()).unwrap()
        for number in range(12):
            message = StreamingMessage(b"%d" % number, key=f"customer-{number % 5}")
            (await producer.send("orders", message)).unwrap()

        # A consumer that stalls after four messages until it is told to go on.
        handled = 0
        stalled, go_on = asyncio.Event(), asyncio.Event()

        async def bill(payload: EachMessagePayload) -> None:
            nonlocal handled
            handled += 1
            if handled == 4:
                stalled.set()
                await go_on.wait()

        consumer_config = ConsumerConfig("billing", auto_commit_interval=0.1)
        consumer = (await client.get_consumer(consumer_config)).unwrap()
        await consumer.subscribe(SubscriptionConfig(("orders",), from_beginning=True))
        (await consumer.run(ConsumerRunConfig(each_message=bill))).unwrap()
        await stalled.wait()

        async for report in watch(admin, ["billing"], ["orders"], interval=0.2):
            if is_failure(report):  # the broker could not answer: try again next round
                print(f"billing: {report.error.code}")
                continue
            print(report.value.describe())
            if report.value.total == 0:
                break
            go_on.set()  # behind: let the consumer catch up
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
