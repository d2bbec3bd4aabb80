"""A consumer-group member over ``confluent_kafka.Consumer``, as the shared run loop needs it.

Every call that touches the consumer and may block (consume, commit, seek,
subscribe, close) runs on the consumer's one worker thread, so they never race
each other and librdkafka's rebalance callbacks, which it runs inside
``consume``/``poll``/``close``, always run there too. A callback hands the
change to the engine on the event loop and waits for its answer: on revocation
the engine finishes the running handler and says which offsets to commit, and
the commit happens before librdkafka lets the partitions go. While a callback
waits, commits run inside it: the handler the revocation waits for may be
committing. So do seeks: the engine passes on no seek of a partition being revoked,
but one it passed on just before may still be queued when the revocation begins, and
the handler that called it is what the revocation waits for.

Subscriptions are resolved here, in Python: librdkafka's regex dialect is not
Python's, so the source lists the cluster's topics, keeps those named or
matching the pattern (``re.match``; never internal ``__*`` topics) and
subscribes to exactly those names, refreshing the list every
``_REFRESH_INTERVAL`` seconds to pick up topics created later.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import re
import time
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from typing import Any, Final, TypeVar

from confluent_kafka import (
    OFFSET_STORED,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
)
from confluent_kafka import (
    TopicPartition as NativePartition,
)

from qi.base.streaming import ConsumedMessage, ErrorCode, SubscriptionConfig
from qi.base.streaming.backend import (
    NativeConsumerLease,
    PartitionSource,
    RebalanceListener,
    SeekTarget,
    TopicPartition,
    is_internal_topic,
)
from qi.base.streaming.backends.confluent._consumed import consumed
from qi.base.streaming.backends.confluent._errors import (
    ERROR_CODES,
    error_name,
)
from qi.base.streaming.backends.confluent._worker import BlockingWorker

T = TypeVar("T")


_REFRESH_INTERVAL: Final = 1.5
"""Seconds between checks for new topics matching the subscription."""
_LISTENER_GRACE: Final = 5.0
"""Slack over request_timeout for the engine to answer a rebalance callback."""

# Consumer errors worth stopping a fetch for: the broker will not let this member in
# (credentials, rights, a group setting it refuses, such as a session timeout outside
# its bounds). The others (a broker went away, a subscribed topic is missing) librdkafka
# recovers from by itself.
_SURFACED: Final = frozenset(
    name
    for name, code in ERROR_CODES.items()
    if code
    in (ErrorCode.AUTHENTICATION_FAILED, ErrorCode.AUTHORIZATION_FAILED, ErrorCode.INVALID_CONFIG)
)


class ConfluentSource(PartitionSource):
    """One run of a consumer: subscribe, fetch, commit, seek, leave."""

    def __init__(
        self,
        lease: NativeConsumerLease[Consumer],
        worker: BlockingWorker,
        subscription: SubscriptionConfig,
        *,
        request_timeout: float,
        logger: logging.Logger,
    ) -> None:
        self._lease = lease
        self._worker = worker
        self._topics = frozenset(subscription.topics)
        self._pattern = None if subscription.pattern is None else re.compile(subscription.pattern)
        self._from_beginning = subscription.from_beginning
        self._request_timeout = request_timeout
        self._logger = logger
        self._consumer: Consumer | None = None
        self._listener: RebalanceListener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Pauses and resumes queued on the worker, kept until they ran.
        self._toggles: set[asyncio.Task[None]] = set()
        # Rebalance callbacks so far; written on the worker thread, read on the loop.
        self._rebalances = 0
        # Worker-thread state: what is subscribed, assigned, and when to look for topics.
        self._subscribed: tuple[str, ...] | None = None
        self._assigned: set[TopicPartition] = set()
        self._next_refresh = 0.0
        self._deferred: BaseException | None = None
        # Where each assigned partition started (assignment or last seek), for rewinds.
        self._starts: dict[TopicPartition, int] = {}
        # Where the last fetch moved the partitions it read, markers included; written on
        # the worker thread by the fetch, read on the loop once the fetch returned.
        self._fetched_to: dict[TopicPartition, int] = {}
        # The high watermarks librdkafka last got from fetch responses, read on the worker
        # thread after each fetch: end_offsets() runs on the loop (or a metric reader's
        # thread), and confluent-kafka 2.16 lets one thread at a time into a Consumer, so
        # asking it there would block until the worker's poll() returns.
        self._ends: dict[TopicPartition, int] = {}

    # -- PartitionSource -----------------------------------------------------------------------

    async def start(self, listener: RebalanceListener) -> None:
        self._listener = listener
        self._loop = asyncio.get_running_loop()
        self._consumer = await self._lease.acquire(self._from_beginning)
        await self._worker.run(functools.partial(self._refresh, force=True))

    async def fetch(
        self, max_messages: int, max_wait: float
    ) -> Mapping[TopicPartition, Sequence[ConsumedMessage]]:
        return await self._worker.run(functools.partial(self._fetch, max_messages, max_wait))

    def fetch_positions(self) -> Mapping[TopicPartition, int]:
        return self._fetched_to

    def end_offsets(self) -> Mapping[TopicPartition, int]:
        return self._ends

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        await self._worker.run(functools.partial(self._commit, dict(offsets)), nestable=True)

    async def seek(self, partition: TopicPartition, target: SeekTarget) -> None:
        await self._worker.run(functools.partial(self._seek, partition, target), nestable=True)

    async def rewind(self, positions: Mapping[TopicPartition, int | None]) -> None:
        await self._worker.run(functools.partial(self._rewind, dict(positions)))

    def pause(self, partitions: Collection[TopicPartition]) -> None:
        # A rebalance before it runs makes it stale: the engine starts every partition it
        # is given afresh, unpaused.
        self._on_worker(self._native().pause, partitions, self._rebalances)

    def resume(self, partitions: Collection[TopicPartition]) -> None:
        self._on_worker(self._native().resume, partitions, None)

    def _on_worker(
        self,
        action: Callable[[list[NativePartition]], None],
        keys: Collection[TopicPartition],
        unless_rebalanced_since: int | None,
    ) -> None:
        # confluent-kafka 2.16 lets one thread at a time into a Consumer: called here,
        # pause() or resume() would block the loop until the worker's poll() returns (up
        # to the engine's fetch wait). Queued on the worker, they run between two fetches,
        # in order with seek and commit.
        call = functools.partial(
            self._pause_or_resume, action, tuple(keys), unless_rebalanced_since
        )
        task = asyncio.get_running_loop().create_task(self._worker.run(call))
        self._toggles.add(task)
        task.add_done_callback(self._toggled)

    def _toggled(self, task: asyncio.Task[None]) -> None:
        self._toggles.discard(task)
        if not task.cancelled() and task.exception() is not None:  # the worker was closed
            self._logger.debug("pause/resume not applied: %s", task.exception())

    async def group_metadata(self) -> object:
        consumer = self._consumer
        assert consumer is not None
        # librdkafka's ConsumerGroupMetadata: group id, generation, member id (KIP-447).
        # Nestable: the exactly-once run loop commits its transaction, offsets and all,
        # while a revocation callback waits for it on the worker thread.
        return await self._worker.run(consumer.consumer_group_metadata, nestable=True)

    async def stop(self, patience: float) -> None:
        if self._consumer is not None:
            await self._lease.release(patience)

    # -- worker thread -------------------------------------------------------------------------

    def _fetch(
        self, max_messages: int, max_wait: float
    ) -> dict[TopicPartition, list[ConsumedMessage]]:
        self._fetched_to = {}
        if self._deferred is not None:
            deferred, self._deferred = self._deferred, None
            raise deferred
        self._refresh(force=False)
        consumer = self._native()
        before = self._positions(consumer)
        # consume() waits for a full batch or its timeout, so wait with poll(), which returns
        # on the first message, then take whatever else is already there.
        messages: list[Message] = consumer.consume(max_messages, 0)
        if not messages:
            first = consumer.poll(max_wait)
            if first is not None:
                messages = [first]
                if max_messages > 1:
                    messages.extend(consumer.consume(max_messages - 1, 0))
        # librdkafka's position moves past a message as it hands it over, and past the
        # control messages (and aborted ones) it skips on the way: what Kafka's clients
        # commit. A fetch that skipped only those returns no message, yet moved.
        self._fetched_to = {
            key: position
            for key, position in self._positions(consumer).items()
            if position != before.get(key)
        }
        self._ends = self._high_watermarks(consumer)
        return self._group(messages) if messages else {}

    def _high_watermarks(self, consumer: Consumer) -> dict[TopicPartition, int]:
        ends: dict[TopicPartition, int] = {}
        for key in self._assigned:
            try:
                # cached=True: librdkafka's copy, updated by every fetch response; no request.
                _, high = consumer.get_watermark_offsets(NativePartition(*key), cached=True)
            except KafkaException:
                continue
            if high >= 0:
                ends[key] = high
        return ends

    def _positions(self, consumer: Consumer) -> dict[TopicPartition, int]:
        """The known positions of the assigned partitions (none before the first fetch)."""
        if not self._assigned:
            return {}
        try:
            positions = consumer.position([NativePartition(*key) for key in self._assigned])
        except KafkaException as exc:
            self._logger.debug("positions unknown: %s", exc)
            return {}
        return {
            (partition.topic, partition.partition): partition.offset
            for partition in positions
            if partition.offset >= 0 and partition.error is None
        }

    def _seek(self, key: TopicPartition, target: SeekTarget) -> None:
        if key not in self._assigned:
            # Revoked while the seek was queued: its next owner starts from the committed
            # offset, as after a seek the engine passes on during a revocation.
            return
        consumer = self._native()
        if isinstance(target, int):
            offset = target
        else:
            # librdkafka's symbolic OFFSET_END is looked up by the fetcher later on, so a
            # message produced right after seek() returned could fall before it, and a
            # rewind to it would skip what came since. A real offset pins "latest" to
            # where the partition ended when seek returns, as the other backends do.
            low, high = consumer.get_watermark_offsets(
                NativePartition(key[0], key[1]), timeout=self._request_timeout
            )
            offset = low if target == "earliest" else high
        consumer.seek(NativePartition(key[0], key[1], offset))
        self._starts[key] = offset

    def _rewind(self, positions: dict[TopicPartition, int | None]) -> None:
        consumer = self._native()
        for key, offset in positions.items():
            if key not in self._assigned:
                continue
            target = self._starts.get(key, OFFSET_STORED) if offset is None else offset
            try:
                consumer.seek(NativePartition(key[0], key[1], target))
            except KafkaException as exc:  # gone meanwhile: its next owner reads it
                self._logger.debug("could not rewind %s to %d: %s", key, target, exc)

    def _group(self, messages: list[Message]) -> dict[TopicPartition, list[ConsumedMessage]]:
        return consumed(messages, self._consumer_error)

    def _consumer_error(self, error: KafkaError) -> None:
        name = error_name(error)
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal() or name in _SURFACED:
            # Raised by the next fetch, so the messages of this one are not lost.
            if self._deferred is None:
                self._deferred = KafkaException(error)
            return
        self._logger.debug("consumer: %s", error.str())

    def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        # Partitions revoked meanwhile were committed by the revocation itself.
        partitions = [
            NativePartition(topic, partition, offset)
            for (topic, partition), offset in offsets.items()
            if (topic, partition) in self._assigned
        ]
        if not partitions:
            return
        committed = self._native().commit(offsets=partitions, asynchronous=False)
        for partition in committed or ():
            if partition.error is not None:
                raise KafkaException(partition.error)

    def _refresh(self, *, force: bool) -> None:
        """Subscribe to the existing topics the subscription names or matches, if that changed."""
        needs_metadata = self._pattern is not None or self._subscribed != tuple(
            sorted(self._topics)
        )
        if not force and (not needs_metadata or time.monotonic() < self._next_refresh):
            return
        self._next_refresh = time.monotonic() + _REFRESH_INTERVAL
        consumer = self._native()
        try:
            existing = consumer.list_topics(timeout=min(self._request_timeout, 2.0)).topics
        except KafkaException as exc:
            self._logger.debug("topic refresh failed: %s", exc)
            if self._subscribed is not None:
                return
            existing = {}
        pattern = self._pattern
        wanted = tuple(
            sorted(
                name
                for name in existing
                if name in self._topics
                or (pattern is not None and not is_internal_topic(name) and pattern.match(name))
            )
        )
        if wanted == self._subscribed:
            return
        first = self._subscribed is None
        self._subscribed = wanted
        if wanted:
            self._logger.debug("subscribing to %s", wanted)
            consumer.subscribe(
                list(wanted),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        elif first:
            # Nothing to join yet: still tell the engine it owns nothing, so run() returns.
            self._call_listener(self._listener_or_fail().partitions_assigned(()))
        else:
            consumer.unsubscribe()

    # -- rebalance callbacks (worker thread, inside consume/poll/close) -----------------------

    def _on_assign(self, consumer: Consumer, partitions: list[NativePartition]) -> None:
        self._rebalances += 1
        keys = [(partition.topic, partition.partition) for partition in partitions]
        try:
            positioned = self._start_positions(consumer, partitions)
        except KafkaException as exc:
            # librdkafka resolves the start positions itself then, a little later.
            self._logger.debug("could not resolve start offsets: %s", exc)
            positioned = partitions
        # The default assignors (range, roundrobin) are eager: assign() takes the whole set.
        consumer.assign(positioned)
        # librdkafka keeps a partition's pause across unassign and assign, but the engine
        # starts every assigned partition afresh, unpaused: so must librdkafka.
        consumer.resume(positioned)
        self._assigned.update(keys)
        for partition in positioned:
            key = (partition.topic, partition.partition)
            # Not yet resolved (OFFSET_INVALID): the committed offset, else the reset policy.
            self._starts[key] = partition.offset if partition.offset >= 0 else OFFSET_STORED
        self._logger.debug("assigned %s", keys)
        self._call_listener(self._listener_or_fail().partitions_assigned(keys))

    def _start_positions(
        self, consumer: Consumer, partitions: list[NativePartition]
    ) -> list[NativePartition]:
        """The partitions with the offsets to start from: committed, else earliest/latest.

        librdkafka would resolve ``auto.offset.reset`` only after the assignment, so a
        message produced right after ``run()`` returned could fall before "latest".
        Resolving it here, before the engine hears of the assignment, pins the start.
        """
        if not partitions:
            return partitions
        timeout = self._request_timeout
        committed = consumer.committed(partitions, timeout=timeout)
        positioned: list[NativePartition] = []
        for partition in committed:
            offset = partition.offset
            if offset < 0:
                low, high = consumer.get_watermark_offsets(partition, timeout=timeout)
                offset = low if self._from_beginning else high
            positioned.append(NativePartition(partition.topic, partition.partition, offset))
        return positioned

    def _on_revoke(self, consumer: Consumer, partitions: list[NativePartition]) -> None:
        self._rebalances += 1
        keys = [(partition.topic, partition.partition) for partition in partitions]
        self._logger.debug("revoking %s", keys)
        listener = self._listener_or_fail()
        offsets = self._call_listener(listener.partitions_revoked(keys))
        if offsets:
            try:
                self._commit(dict(offsets))
            except Exception as exc:
                if self._loop is not None:
                    self._loop.call_soon_threadsafe(listener.report_commit_failure, exc)
                else:
                    self._logger.warning("committing revoked partitions failed: %s", exc)
        self._forget(keys)

    def _on_lost(self, consumer: Consumer, partitions: list[NativePartition]) -> None:
        # Lost, not revoked: another member may own them already, so nothing is committed.
        self._rebalances += 1
        keys = [(partition.topic, partition.partition) for partition in partitions]
        self._logger.debug("lost %s", keys)
        self._forget(keys)
        self._call_listener(self._listener_or_fail().partitions_revoked(keys))

    def _forget(self, keys: list[TopicPartition]) -> None:
        self._assigned.difference_update(keys)
        for key in keys:
            self._starts.pop(key, None)

    def _call_listener(self, call: Coroutine[Any, Any, T]) -> T | None:
        """Run an engine coroutine on the loop and wait for it; never raise into librdkafka.

        Commits it waits for (a handler's) run meanwhile, on this thread.
        """
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(call, self._loop)
        try:
            return self._worker.wait_serving(future, self._request_timeout + _LISTENER_GRACE)
        except concurrent.futures.TimeoutError:
            future.cancel()
            self._logger.warning("the consumer run loop did not answer a rebalance in time")
        except Exception:
            self._logger.exception("the consumer run loop failed to handle a rebalance")
        return None

    # -- helpers -------------------------------------------------------------------------------

    def _native(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError("the consumer has not started")
        return self._consumer

    def _listener_or_fail(self) -> RebalanceListener:
        if self._listener is None:
            raise RuntimeError("the consumer has not started")
        return self._listener

    def _pause_or_resume(
        self,
        action: Callable[[list[NativePartition]], None],
        keys: Collection[TopicPartition],
        unless_rebalanced_since: int | None,
    ) -> None:
        if unless_rebalanced_since not in (None, self._rebalances):
            self._logger.debug("pause/resume of %s dropped: a rebalance came first", list(keys))
            return
        try:
            action([NativePartition(topic, partition) for topic, partition in keys])
        except (KafkaException, RuntimeError) as exc:  # revoked meanwhile, or closed
            self._logger.debug("pause/resume of %s failed: %s", list(keys), exc)
