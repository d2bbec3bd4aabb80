"""Building blocks of the fault scenarios: fault switches, numbered messages, collectors.

:class:`Faults` is what a scenario pulls on. For the real backends it is the fault
proxy and the broker process behind it; for ``memory`` it is the in-process broker's
own fault hooks (franz-go kfake style), which play the same roles.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from qi.base import QiError, Result, Success
from qi.base.streaming import (
    ConsumerConfig,
    ErrorCode,
    MessageBatch,
    ProduceResult,
    StreamingClient,
    StreamingConsumer,
    StreamingMessage,
    StreamingProducer,
    SubscriptionConfig,
    TopicConfig,
)
from testkit import Collector, ok, unique, wait_until

from ._proxy import ProxiedBroker
from ._support import short_session_timeout

# A call may outlive its configured timeout by this much (scheduling, the boundary's grace).
MARGIN: Final = 2.0


class Faults(Protocol):
    """The switches a scenario pulls."""

    def cut(self) -> None:
        """Drop the connections in use now (in-flight requests lose their answers)."""

    def stall(self) -> None:
        """Accept and never answer."""

    def restore(self) -> None:
        """Back to normal."""

    def stop_broker(self) -> None:
        """Stop the broker (real: the process; its memory-only data is lost)."""

    def start_broker(self, *topics: TopicConfig) -> None:
        """Start it again on the same address, ``topics`` in place before clients get back.

        A real cluster keeps its topics through a restart; the development broker
        forgets them, so they are made again first.
        """


class ProxyFaults:
    """Faults of a real broker: the proxy in front of it, and its process."""

    def __init__(self, cluster: ProxiedBroker) -> None:
        self.cluster = cluster
        self.cuts = 0
        """Connections dropped by :meth:`cut` so far."""

    def cut(self) -> None:
        self.cuts += self.cluster.proxy.cut()

    def stall(self) -> None:
        self.cluster.proxy.stall()

    def restore(self) -> None:
        self.cluster.proxy.restore()

    def stop_broker(self) -> None:
        self.cluster.broker.stop()

    def start_broker(self, *topics: TopicConfig) -> None:
        self.cluster.start_broker({topic.topic: topic.num_partitions for topic in topics})


class MemoryFaults:
    """Faults of the in-process broker, through its hooks."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self.topic: str | None = None
        """Topic whose next produces :meth:`cut` fails."""
        self._cuts = 0

    def cut(self) -> None:
        # A cut loses some acknowledgements (written, "unknown") and refuses some
        # messages outright ("not_written"), like a dropped connection mid-request.
        assert self.topic is not None, "set the topic whose sends a cut affects"
        self._cuts += 1
        delivery = "unknown" if self._cuts % 2 else "not_written"
        self.broker.fail_next_produces(
            self.topic, 7, error_code=ErrorCode.CONNECTION_FAILED, delivery=delivery
        )

    def stall(self) -> None:
        self.broker.set_unreachable(True)

    def restore(self) -> None:
        self.broker.reset()

    def stop_broker(self) -> None:
        self.broker.set_unreachable(True)

    def start_broker(self, *topics: TopicConfig) -> None:
        self.broker.set_unreachable(False)  # the in-process broker kept its topics


def numbered(run: str, index: int) -> StreamingMessage:
    """Message ``index`` of a run: its value names it, key and headers make it checkable."""
    return StreamingMessage(
        value=f"{run}:{index}".encode(),
        key=f"key-{index % 23}",
        headers={"index": str(index), "run": run},
    )


@dataclass
class Outcome:
    """What became of one sent message, and how long its call took."""

    result: Result[ProduceResult, QiError]
    seconds: float


async def send_one(producer: StreamingProducer, topic: str, message: StreamingMessage) -> Outcome:
    started = time.monotonic()
    result = await producer.send(topic, message)
    return Outcome(result, time.monotonic() - started)


async def send_many(
    producer: StreamingProducer, topic: str, messages: list[StreamingMessage]
) -> list[Outcome]:
    """Send as one batch; one outcome per message, in input order."""
    started = time.monotonic()
    result = await producer.send_batch(MessageBatch(topic, tuple(messages)))
    seconds = time.monotonic() - started
    if isinstance(result, Success):
        return [Outcome(Success(produced), seconds) for produced in result.value.results]
    if result.error.code == ErrorCode.BATCH_PARTIAL_FAILURE:
        each: tuple[Result[ProduceResult, QiError], ...] = result.error.context["results"]
        assert len(each) == len(messages), result
        return [Outcome(outcome, seconds) for outcome in each]
    return [Outcome(result, seconds) for _ in messages]


def consumer_config(group_id: str | None = None, **changes: Any) -> ConsumerConfig:
    """Short session (joins on Tansu take about half of it) and frequent commits."""
    settings: dict[str, Any] = {
        "session_timeout": short_session_timeout(),
        "heartbeat_interval": 0.3,
        "auto_commit_interval": 0.3,
    }
    settings.update(changes)
    return ConsumerConfig(group_id=group_id or unique("group"), **settings)


async def start_consumer(
    client: StreamingClient,
    topic: str,
    collector: Collector,
    config: ConsumerConfig | None = None,
) -> StreamingConsumer:
    """A running consumer of ``topic`` from the beginning, feeding ``collector``."""
    consumer: StreamingConsumer = ok(await client.get_consumer(config or consumer_config()))
    ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,), from_beginning=True)))
    ok(await consumer.run(collector.run_config(retry_backoff=0.05)))
    return consumer


async def until_seen(
    collectors: list[Collector], values: set[bytes], within: float, what: str
) -> None:
    def covered() -> bool:
        seen: set[bytes | None] = set()
        for collector in collectors:
            seen.update(collector.values())
        return values <= seen

    await wait_until(covered, what, within=within)


async def timed(call: Awaitable[Result[Any, QiError]]) -> tuple[Result[Any, QiError], float]:
    started = time.monotonic()
    result = await call
    return result, time.monotonic() - started
