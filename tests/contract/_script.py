"""The scripted operations of the differential test, and what each one observably did.

``run_script`` drives one client through admin calls, sends, consumers and seeks,
and returns one observation per step: plain values (codes, delivery verdicts,
partitions, offsets, payloads) with the run's topic names replaced by labels, so
two runs on two backends compare with ``==``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming import (
    ConsumedMessage,
    ConsumerConfig,
    MessageBatch,
    ProducerConfig,
    ProduceResult,
    StreamingClient,
    StreamingMessage,
    TopicConfig,
)
from testkit import ok, unique, wait_until

from ._support import consume, start_collecting

Observation = object
# A time of the sender's choosing, whole milliseconds, distinct from "now", yet recent: a
# broker may apply a topic's retention to old timestamps at once (noida-db deletes records
# stamped beyond retention.ms in its next sweep, Kafka only with closed segments), and
# would take the records before the script read them.
STAMP: Final = datetime.now(UTC).replace(microsecond=123000) - timedelta(hours=1)
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_BROKER_LIMIT: Final = 1_048_588  # Kafka's default message.max.bytes
_LONE_VALUE_FRAMING: Final = 72  # a lone record with a value, no key, no headers
_KEYED_FRAMING: Final = 80  # ... with the key b"abc" and the header h=b"12"


def _outcome(result: Result[Any, QiError]) -> Observation:
    """A Success as "ok" (or its ProduceResult's place), a Failure as its code and verdict."""
    if isinstance(result, Failure):
        error = result.error
        return (error.code, error.context.get("delivery"))
    value = result.value
    if isinstance(value, ProduceResult):
        return ("ok", value.partition, value.offset)
    return "ok"


def _code(result: Result[Any, QiError]) -> str:
    return result.error.code if isinstance(result, Failure) else "ok"


def _codes(result: Result[Any, QiError]) -> Observation:
    """A send_batch outcome: "ok", or each message's outcome."""
    if isinstance(result, Success):
        return "ok"
    results = result.error.context.get("results")
    if results is None:
        return _outcome(result)
    return [_outcome(each) for each in results]


def _seen(messages: Sequence[ConsumedMessage]) -> Observation:
    return sorted(
        (
            message.partition,
            message.offset,
            message.key,
            message.value,
            dict(message.headers),
            "as given" if message.timestamp == STAMP else "stamped",
        )
        for message in messages
    )


class Script:
    """One run of the scripted operations against one client."""

    def __init__(self, client: StreamingClient, consumer: ConsumerConfig) -> None:
        self._client = client
        self._consumer = consumer
        self._labels: dict[str, str] = {}
        self.observed: dict[str, Observation] = {}

    def _topic(self, label: str) -> str:
        name = unique(f"diff-{label}")
        self._labels[name] = label
        return name

    def _label(self, name: object) -> object:
        return self._labels.get(name, name) if isinstance(name, str) else name

    def _group(self) -> ConsumerConfig:
        return dataclasses.replace(self._consumer, group_id=unique("diff-group"))

    def note(self, step: str, observation: Observation) -> None:
        self.observed[step] = observation

    async def run(self) -> Mapping[str, Observation]:
        """Run every step; the observations by step name."""
        topics = [
            self._topic(label) for label in ("plain", "compact", "small", "appended", "spread")
        ]
        plain, compact, small, appended, spread = topics
        try:
            await self._admin(plain, compact, small, appended, spread)
            sent = await self._produce(plain, compact, small, appended, spread)
            await self._consume(plain, appended, sent)
            await self._delete(plain)
        finally:
            admin = await self._client.get_admin()
            if isinstance(admin, Success):
                await admin.value.delete_topics(topics)
        return self.observed

    async def _admin(
        self, plain: str, compact: str, small: str, appended: str, spread: str
    ) -> None:
        admin = ok(await self._client.get_admin())
        created = await admin.create_topics(
            [
                TopicConfig(plain, 3),
                TopicConfig(spread, 3),
                TopicConfig(compact, 2, config_entries={"cleanup.policy": "compact"}),
                TopicConfig(small, 1, config_entries={"max.message.bytes": "1000"}),
                TopicConfig(
                    appended, 1, config_entries={"message.timestamp.type": "LogAppendTime"}
                ),
            ]
        )
        self.note("create_topics: valid", _outcome(created))
        refused = [
            TopicConfig(self._topic("unknown-config"), config_entries={"no.such.config": "1"}),
            TopicConfig(self._topic("bad-policy"), config_entries={"cleanup.policy": "bogus"}),
            TopicConfig(self._topic("bad-retention"), config_entries={"retention.ms": "abc"}),
            TopicConfig(self._topic("bad-index"), config_entries={"segment.index.bytes": "3"}),
            TopicConfig(self._topic("three-replicas"), replication_factor=3),
        ]
        fine = self._topic("fine-config")
        result = await admin.create_topics(
            [
                *refused,
                TopicConfig(fine, config_entries={"retention.ms": "-1", "preallocate": "TRUE"}),
            ]
        )
        topics = result.error.context.get("topics", ()) if isinstance(result, Failure) else ()
        self.note(
            "create_topics: refused per topic",
            (_outcome(result), sorted(str(self._label(name)) for name in topics)),
        )
        self.note(
            "create_topics: existing", _outcome(await admin.create_topics([TopicConfig(plain)]))
        )
        listed = ok(await admin.list_topics())
        self.note("list_topics", sorted(str(self._label(n)) for n in listed if n in self._labels))
        ok(await admin.delete_topics([fine]))
        (metadata,) = ok(await admin.get_topic_metadata([plain]))
        self.note(
            "get_topic_metadata",
            [
                (p.partition_id, p.leader >= 0, len(p.replicas), len(p.isr))
                for p in metadata.partitions
            ],
        )

    async def _produce(
        self, plain: str, compact: str, small: str, appended: str, spread: str
    ) -> int:
        """Every way a send ends; how many messages the plain topic received."""
        producer = ok(await self._client.get_producer())
        roomy = ok(await self._client.get_producer(ProducerConfig(max_message_bytes=2_000_000)))
        send, batch = producer.send, producer.send_batch
        written = 0

        def to_plain(result: Result[Any, QiError]) -> Observation:
            nonlocal written
            written += isinstance(result, Success)
            return _outcome(result)

        self.note(
            "send: explicit partitions",
            [to_plain(await send(plain, StreamingMessage(b"p", partition=p))) for p in (0, 1, 2)],
        )
        full = StreamingMessage(
            b"full",
            key="k-1",
            timestamp=STAMP,
            partition=1,
            headers={"text": "héllo", "raw": b"\x00"},
        )
        sent = await send(plain, full)
        stamp = sent.value.timestamp if isinstance(sent, Success) else None
        self.note("send: key, headers, timestamp", (to_plain(sent), stamp == STAMP))
        ordered = tuple(StreamingMessage(f"o{i}".encode(), partition=1) for i in range(5))
        result = await batch(MessageBatch(plain, ordered))
        if isinstance(result, Success):
            written += len(ordered)
        self.note(
            "send_batch: input order",
            [r.offset for r in result.value.results]
            if isinstance(result, Success)
            else _codes(result),
        )
        self.note(
            "send: a partition the topic lacks",
            to_plain(await send(plain, StreamingMessage(b"x", partition=7))),
        )
        largest = _BROKER_LIMIT - _LONE_VALUE_FRAMING
        self.note(
            "send: the largest lone value, then one byte more",
            [
                to_plain(await roomy.send(plain, StreamingMessage(b"x" * size, partition=2)))
                for size in (largest, largest + 1, 1_100_000)
            ],
        )
        self.note(
            "send: 1 MiB value within max_message_bytes",
            to_plain(await send(plain, StreamingMessage(b"x" * 1_048_576, partition=2))),
        )
        framed = _BROKER_LIMIT - _KEYED_FRAMING
        self.note(
            "send: key and header framing counted",
            [
                to_plain(
                    await roomy.send(
                        plain,
                        StreamingMessage(
                            b"x" * size, key=b"abc", partition=2, headers={"h": b"12"}
                        ),
                    )
                )
                for size in (framed, framed + 1)
            ],
        )

        keyed = [await send(compact, StreamingMessage(b"k", key="same")) for _ in range(3)]
        keyed_batch = await batch(MessageBatch(compact, (StreamingMessage(b"k", key="same"),) * 3))
        places = {r.value.partition for r in keyed if isinstance(r, Success)}
        if isinstance(keyed_batch, Success):
            places |= {r.partition for r in keyed_batch.value.results}
        self.note("send: one key, one partition", len(places))
        self.note(
            "send: tombstone",
            _code(await send(compact, StreamingMessage(None, key="gone", partition=0))),
        )
        self.note(
            "send: keyless on a compacted topic",
            _outcome(await send(compact, StreamingMessage(b"x", partition=1))),
        )
        poisoned = (
            StreamingMessage(b"a", key="k", partition=0),
            StreamingMessage(b"b", partition=1),
            StreamingMessage(b"c", key="k", partition=1),
        )
        codes = _codes(await batch(MessageBatch(compact, poisoned)))
        refused = ("STREAMING_INVALID_MESSAGE", "not_written")
        self.note(
            "send_batch: a keyless record fails its record batch",
            # The keyed record beside it fails with it when they share a record batch, which
            # on confluent depends on what librdkafka holds when it sends.
            (codes[0][0], codes[1], codes[2] == refused or codes[2][0] == "ok")
            if isinstance(codes, list)
            else codes,
        )
        # librdkafka places the messages it holds until it knows the topic's partitions at
        # random: the burst goes to a topic the producer already sent to.
        ok(await send(spread, StreamingMessage(b"first")))
        unkeyed = await batch(MessageBatch(spread, (StreamingMessage(b"u"),) * 12))
        placed = (
            [each.partition for each in unkeyed.value.results]
            if isinstance(unkeyed, Success)
            else []
        )
        # Sticky placement may move on within a burst when its window ends (librdkafka's is
        # 10 ms); round robin never puts most of a burst on one partition.
        self.note(
            "send_batch: most of an unkeyed burst on one partition",
            bool(placed) and max(map(placed.count, placed)) > len(placed) // 2,
        )
        self.note(
            "send: topic max.message.bytes",
            [
                _outcome(await send(small, StreamingMessage(b"x" * size, partition=0)))
                for size in (930, 931, 2000)
            ],
        )
        epoch = await send(small, StreamingMessage(b"epoch", timestamp=EPOCH))
        self.note(
            "send: epoch timestamp",
            (_code(epoch), isinstance(epoch, Success) and epoch.value.timestamp == EPOCH),
        )
        appended_result = await send(appended, StreamingMessage(b"late", timestamp=STAMP))
        self.note(
            "send: LogAppendTime topic",
            (
                _outcome(appended_result),
                isinstance(appended_result, Success) and appended_result.value.timestamp == STAMP,
            ),
        )
        return written

    async def _consume(self, plain: str, appended: str, sent: int) -> None:
        group = self._group()
        received = await consume(self._client, group, [plain], sent)
        small_ones = [m for m in received if m.value is None or len(m.value) < 100]
        self.note("consume: what was sent", _seen(small_ones))
        self.note(
            "consume: large values arrive whole",
            sorted(len(m.value) for m in received if m.value is not None and len(m.value) >= 100),
        )
        (late,) = await consume(self._client, self._group(), [appended], 1)
        self.note("consume: LogAppendTime stamps", late.timestamp == STAMP)

        producer = ok(await self._client.get_producer())
        for partition in (0, 2):
            ok(await producer.send(plain, StreamingMessage(b"after", partition=partition)))
        resumed = await consume(self._client, group, [plain], 2)
        self.note("consume: a group resumes after its commits", _seen(resumed))

        consumer, collector = await start_collecting(
            self._client, self._group(), [plain], from_beginning=False
        )
        try:
            ok(await consumer.seek(plain, 1, 4))
            ok(await consumer.seek(plain, 0, "earliest"))
            await wait_until(
                lambda: (
                    len(collector.offsets(plain, 1)) >= 3 and len(collector.offsets(plain, 0)) >= 2
                ),
                "messages after the seeks",
            )
            self.note(
                "seek: an offset and earliest",
                (collector.offsets(plain, 1), collector.offsets(plain, 0)),
            )
            self.note(
                "seek: a partition not assigned",
                _outcome(await consumer.seek(self._topic("elsewhere"), 0, 0)),
            )
        finally:
            ok(await consumer.disconnect())

    async def _delete(self, plain: str) -> None:
        admin = ok(await self._client.get_admin())
        producer = ok(await self._client.get_producer())
        self.note(
            "delete_topics: then again",
            [_outcome(await admin.delete_topics([plain])) for _ in range(2)],
        )
        # Whether that send may have been written depends on what the client knew: a real
        # client still lists the topic, sends the message and may retry it, so only memory
        # can be sure (the contract test pins its not_written). The code is compared.
        self.note(
            "send: a deleted topic", _code(await producer.send(plain, StreamingMessage(b"x")))
        )
        self.note(
            "get_topic_metadata: a deleted topic", _outcome(await admin.get_topic_metadata([plain]))
        )
        ok(await admin.create_topics([TopicConfig(plain, 1)]))
        self.note(
            "send: the topic created again",
            _outcome(await producer.send(plain, StreamingMessage(b"again"))),
        )
