"""The aiokafka consumer: a group member the shared run loop drives as a PartitionSource.

aiokafka never commits on its own here (``enable_auto_commit=False``): the
engine commits what its handler processed, including in the rebalance
listener, before aiokafka gives partitions up, through the group coordinator
with the member's current generation (see ``_AiokafkaSource.commit``). A commit that loses the race
with a rebalance (aiokafka's "commit cannot be completed since the group has
already rebalanced") is reported to ``on_error``, never raised into aiokafka.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.util import commit_structure_validate

from qi.base.streaming import ConsumedMessage, ConsumerConfig, StreamingConfig, SubscriptionConfig
from qi.base.streaming._consumed_view import (
    NATIVE_SETTER,
    ConsumedView,
    cached_headers,
    stamp_from_millis,
)
from qi.base.streaming._fast_values import consumed_headers
from qi.base.streaming.backend import (
    NO_CONSUMED_HEADERS,
    ConsumerBackend,
    NativeConsumerLease,
    PartitionSource,
    RebalanceListener,
    SeekTarget,
)
from qi.base.streaming.backend import (
    TopicPartition as PartitionKey,
)
from qi.base.streaming.backends.aiokafka import _errors, _private
from qi.base.streaming.backends.aiokafka._connect import bootstrap_to_its_end, start_within
from qi.base.streaming.backends.aiokafka._group import adapt_group_coordinator
from qi.base.streaming.backends.aiokafka._metadata import forbid_topic_auto_creation
from qi.base.streaming.backends.aiokafka._settings import consumer_settings
from qi.base.streaming.backends.aiokafka._transactions import AiokafkaGroupMetadata

_LOGGER: Final = logging.getLogger(__name__)
# Seconds aiokafka's stop() may take beyond request_timeout (leave group, close sockets).
_STOP_GRACE: Final = 2.0
# The least time disconnect() gives the native stop, even when the run loop used it all.
_MIN_PATIENCE: Final = 0.5
# Global inline flags such as "(?i)" must stay at the very start of a combined pattern.
_LEADING_FLAGS: Final = re.compile(r"(?:\(\?[aiLmsux]+\))*")


def subscription_pattern(topics: Sequence[str], pattern: str) -> str:
    """One ``re.match`` pattern for "matches ``pattern`` (never an internal topic) or is one of
    ``topics``", since aiokafka subscribes to names or to a pattern but not to both."""
    flags = re.compile(pattern).flags
    lead = _LEADING_FLAGS.match(pattern)
    prefix = lead.group(0) if lead is not None else ""
    body = pattern[len(prefix) :]
    # In verbose mode a trailing "# comment" would swallow what follows: end it with a newline.
    end = "\n" if flags & re.VERBOSE else ""
    combined = f"{prefix}(?!__)(?:{body}{end})"
    if topics:
        names = "|".join(re.escape(topic) for topic in topics)
        combined += f"|(?-imsx:(?:{names})\\Z)"
    return combined


def _record_timestamp(view: Any) -> datetime | None:
    # aiokafka says None or -1 when a record has no timestamp.
    milliseconds = view._native.timestamp
    if milliseconds is None or milliseconds < 0:
        return None
    return stamp_from_millis(milliseconds)


def _record_headers(view: Any) -> Mapping[str, bytes]:
    headers = view._native.headers
    if not headers:
        return NO_CONSUMED_HEADERS
    return cached_headers(view, lambda: consumed_headers(headers))  # type: ignore[no-any-return]


class _RecordView(ConsumedView):
    """A ConsumedMessage over aiokafka's ConsumerRecord: a plain Python object aiokafka
    builds for each record it returns and never touches again."""

    __slots__ = ()

    if not TYPE_CHECKING:  # properties in place of the fields' slots
        topic = property(attrgetter("_native.topic"))
        partition = property(attrgetter("_native.partition"))
        offset = property(attrgetter("_native.offset"))
        key = property(attrgetter("_native.key"))
        value = property(attrgetter("_native.value"))
        timestamp = property(_record_timestamp)
        headers = property(_record_headers)


def consumed_messages(records: Sequence[Any]) -> list[ConsumedMessage]:
    """ConsumedMessages of one partition's ConsumerRecords, in order: views that read each
    field from its record when asked (see ``_consumed_view``), so this loop, which runs
    once per record fetched, only wraps them. A view never raises for a record's contents
    (a timestamp ``datetime`` cannot hold is None)."""
    new = object.__new__
    set_record = NATIVE_SETTER
    built: list[ConsumedMessage] = []
    append = built.append
    for record in records:
        message = new(_RecordView)
        set_record(message, record)
        append(message)
    return built


class AiokafkaConsumer(ConsumerBackend):
    """The consumer backend over ``aiokafka.AIOKafkaConsumer``."""

    def __init__(
        self, config: StreamingConfig, consumer_config: ConsumerConfig, logger: logging.Logger
    ) -> None:
        self._config = config
        self._consumer_config = consumer_config
        self._logger = logger
        self._consumer: Any = None
        self._from_beginning = False
        self._started = False
        self._stops: dict[Any, asyncio.Future[None]] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        self._consumer = self._build(from_beginning=False)
        await self._start_native()

    async def close(self, deadline: float) -> None:
        consumer, self._consumer = self._consumer, None
        self._started = False
        if consumer is not None:
            await self._stop_native(consumer, max(deadline - time.monotonic(), _MIN_PATIENCE))

    def native_client(self) -> object:
        return self._consumer

    def partition_source(self, subscription: SubscriptionConfig) -> PartitionSource:
        return _AiokafkaSource(self, subscription, request_timeout=self._config.request_timeout)

    # -- the native consumer, lent to one run at a time (NativeConsumerLease) ------------------

    def _build(self, *, from_beginning: bool) -> Any:
        settings = consumer_settings(
            self._config, self._consumer_config, from_beginning=from_beginning
        )
        consumer = AIOKafkaConsumer(**settings)
        client = _private.consumer_client(consumer)
        forbid_topic_auto_creation(client)
        bootstrap_to_its_end(client)
        self._from_beginning = from_beginning
        return consumer

    async def _start_native(self) -> None:
        await start_within(self._config, self._consumer.start)
        self._started = True
        adapt_group_coordinator(self._consumer)

    async def _stop_native(self, consumer: Any, bound: float) -> None:
        """Stop ``consumer``, waiting at most ``bound`` seconds; the stop goes on after that.

        Never cancelled: a stop cut short leaves aiokafka's fetcher and connections open
        for good (and calling stop() again returns at once), while one that runs on ends
        within aiokafka's own request timeout. A later call waits for the same stop.
        """
        stopping = self._stops.get(consumer)
        if stopping is None:
            stopping = self._stops[consumer] = asyncio.ensure_future(consumer.stop())
            stopping.add_done_callback(functools.partial(self._stopped, consumer))
        await asyncio.wait({stopping}, timeout=bound)
        if not stopping.done():
            self._logger.debug("the aiokafka consumer goes on stopping after %.1fs", bound)

    def _stopped(self, consumer: Any, stopping: asyncio.Future[None]) -> None:
        self._stops.pop(consumer, None)
        if not stopping.cancelled() and stopping.exception() is not None:
            self._logger.debug("aiokafka consumer stop failed", exc_info=stopping.exception())

    async def acquire(self, from_beginning: bool) -> Any:
        """The started native consumer, rebuilt if it was stopped or starts elsewhere.

        aiokafka fixes the reset policy when a consumer is built, and connect() had to
        build one before the subscription said where a new group starts.
        """
        if self._consumer is not None and self._started and from_beginning == self._from_beginning:
            return self._consumer
        if self._consumer is not None:
            await self._stop_native(self._consumer, self._config.request_timeout + _STOP_GRACE)
        self._started = False
        self._consumer = self._build(from_beginning=from_beginning)
        await self._start_native()
        return self._consumer

    async def release(self, patience: float) -> None:
        """The run left the group: the native consumer is spent, a new run builds another."""
        consumer = self._consumer
        self._started = False
        if consumer is not None:
            await self._stop_native(consumer, patience)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka's rebalance callbacks, forwarded to the engine; never raises into aiokafka."""

    def __init__(self, source: _AiokafkaSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        await self._source.revoked({(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        await self._source.assigned({(tp.topic, tp.partition) for tp in assigned})


class _AiokafkaSource(PartitionSource):
    """One run of an AiokafkaConsumer: a subscription on its native consumer."""

    def __init__(
        self,
        lease: NativeConsumerLease[Any],
        subscription: SubscriptionConfig,
        *,
        request_timeout: float,
    ) -> None:
        self._lease = lease
        self._subscription = subscription
        self._request_timeout = request_timeout
        self._consumer: Any = None
        self._listener: RebalanceListener | None = None
        # Partitions the engine has been told it owns. A fetch asks only for these: records of a
        # partition assigned while the fetch ran would be dropped by the engine as stale, yet
        # aiokafka would count them as consumed.
        self._owned_by_engine: set[PartitionKey] = set()
        # Where each owned partition started (assignment or last seek), for rewinds.
        self._starts: dict[PartitionKey, int] = {}
        # Partitions sought since the running fetch began (the engine runs one fetch at a time).
        self._sought_during_fetch: set[PartitionKey] = set()
        # Where the last fetch moved the partitions it read, markers included.
        self._fetched_to: dict[PartitionKey, int] = {}

    async def start(self, listener: RebalanceListener) -> None:
        self._listener = listener
        consumer = await self._lease.acquire(self._subscription.from_beginning)
        self._consumer = consumer
        topics = list(self._subscription.topics)
        pattern = self._subscription.pattern
        if pattern is None:
            consumer.subscribe(topics=topics, listener=_Listener(self))
        else:
            consumer.subscribe(
                pattern=subscription_pattern(topics, pattern), listener=_Listener(self)
            )

    async def fetch(
        self, max_messages: int, max_wait: float
    ) -> Mapping[PartitionKey, Sequence[ConsumedMessage]]:
        partitions = [TopicPartition(*key) for key in self._owned_by_engine]
        self._fetched_to = {}
        if not partitions:  # getmany() without partitions would mean "all of them"
            # aiokafka tells a join the broker refused (a session timeout outside its
            # bounds, say) only to getmany() and friends: raise it from here too.
            _private.group_coordinator(self._consumer).check_errors()
            # Waiting here rather than in getmany() must still count as polling: aiokafka
            # leaves the group, and will not rejoin, once no fetch ran for max_poll_interval_ms,
            # and a member with nothing assigned must stay until a rebalance gives it some.
            with _private.idle_fetch(self._consumer):
                await asyncio.sleep(max_wait)
            return {}
        self._sought_during_fetch.clear()
        before = _private.positions(self._consumer, partitions)
        batches = await self._consumer.getmany(
            *partitions, timeout_ms=max(1, round(max_wait * 1000)), max_records=max_messages
        )
        # getmany() moves a partition's position past the last record it returns, and past
        # the control batches and aborted batches behind it once it drained what was fetched
        # (returning nothing when that was all): the position Kafka's own clients commit.
        self._fetched_to = {
            key: position
            for key, position in _private.positions(self._consumer, partitions).items()
            if position != before.get(key) and key not in self._sought_during_fetch
        }
        fetched: dict[PartitionKey, Sequence[ConsumedMessage]] = {}
        for tp, records in batches.items():
            if not records:
                continue
            key = (tp.topic, tp.partition)
            if key in self._sought_during_fetch:
                # aiokafka's seek drops what it had buffered for the partition and wakes its
                # fetcher, and getmany() drains its buffer only when it returns: records of a
                # partition sought while getmany() waited are already from the new position
                # (a broker that answers fetches at once gets them back within the wait). The
                # engine drops whatever a fetch under way during a seek returns, so give them
                # back to aiokafka instead: rewind to the first one and return nothing.
                self._consumer.seek(tp, records[0].offset)
                continue
            fetched[key] = consumed_messages(records)
        return fetched

    def fetch_positions(self) -> Mapping[PartitionKey, int]:
        return self._fetched_to

    def end_offsets(self) -> Mapping[PartitionKey, int]:
        assigned = self._consumer.assignment()  # highwater() asserts the partition is in it
        ends: dict[PartitionKey, int] = {}
        for key in self._owned_by_engine:
            partition = TopicPartition(*key)
            if partition in assigned:
                high = self._consumer.highwater(partition)  # the last fetch response's, or None
                if high is not None:
                    ends[key] = high
        return ends

    async def commit(self, offsets: Mapping[PartitionKey, int]) -> None:
        # aiokafka retries UNKNOWN_TOPIC_OR_PARTITION until the caller's bound runs out, and a
        # topic deleted under the consumer answers nothing else: fail those at once instead.
        gone = {topic for topic, _ in offsets if not self._topic_known(topic)}
        live = {
            TopicPartition(topic, partition): offset
            for (topic, partition), offset in offsets.items()
            if topic not in gone
        }
        if live:
            # Not AIOKafkaConsumer.commit(): when a new topic matches the pattern, aiokafka
            # swaps in the new subscription (with no assignment yet) before it revokes, so
            # commit() refuses the partitions the current generation still owns. The
            # coordinator commits them with that generation, which the broker checks.
            offsets = commit_structure_validate(live)
            await _private.group_coordinator(self._consumer).commit_offsets(None, offsets)
        if gone:
            raise _errors.TopicsGone(tuple(sorted(gone)))

    async def seek(self, partition: PartitionKey, target: SeekTarget) -> None:
        self._sought_during_fetch.add(partition)
        tp = TopicPartition(*partition)
        self._starts.pop(partition, None)
        if target == "earliest" or target == "latest":
            # aiokafka waits for the new position up to its (join-sized) request timeout.
            async with asyncio.timeout(self._request_timeout):
                if target == "earliest":
                    await self._consumer.seek_to_beginning(tp)
                else:
                    await self._consumer.seek_to_end(tp)
                self._starts[partition] = await self._consumer.position(tp)
        else:
            self._consumer.seek(tp, target)
            self._starts[partition] = target

    async def rewind(self, positions: Mapping[PartitionKey, int | None]) -> None:
        assigned = self._consumer.assignment()
        for key, offset in positions.items():
            tp = TopicPartition(*key)
            target = self._starts.get(key) if offset is None else offset
            if target is not None and tp in assigned:
                self._consumer.seek(tp, target)

    def pause(self, partitions: Collection[PartitionKey]) -> None:
        # A partition revoked since the engine decided is no longer aiokafka's to pause.
        owned = self._owned(partitions)
        if owned:
            self._consumer.pause(*owned)

    def resume(self, partitions: Collection[PartitionKey]) -> None:
        owned = self._owned(partitions)
        if owned:
            self._consumer.resume(*owned)

    async def group_metadata(self) -> object:
        coordinator = _private.group_coordinator(self._consumer)
        return AiokafkaGroupMetadata(
            coordinator.group_id, coordinator.generation, coordinator.member_id
        )

    async def stop(self, patience: float) -> None:
        await self._lease.release(patience)

    # -- rebalance -----------------------------------------------------------------------------

    async def assigned(self, partitions: Collection[PartitionKey]) -> None:
        # aiokafka looks the starting positions up (committed offset, else the reset policy) in
        # the background. Wait for them, so that run() returns only when "from now on" is fixed:
        # a message produced after run() returned is then read even without from_beginning.
        try:
            async with asyncio.timeout(self._request_timeout):
                for key in partitions:
                    # The broker may still hand out partitions of a deleted topic: no position
                    # will ever come for them.
                    if self._topic_known(key[0]):
                        self._starts[key] = await self._consumer.position(TopicPartition(*key))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the fetcher finds the positions anyway; only the timing suffers
            _LOGGER.debug("starting positions not known yet: %s", exc)
        if self._listener is not None:
            await self._listener.partitions_assigned(partitions)
        self._owned_by_engine = set(partitions)

    async def revoked(self, partitions: Collection[PartitionKey]) -> None:
        listener = self._listener
        self._owned_by_engine -= set(partitions)
        for key in partitions:
            self._starts.pop(key, None)
        if listener is None or not partitions:
            return
        try:
            offsets = await listener.partitions_revoked(partitions)
            if offsets:
                async with asyncio.timeout(self._request_timeout):
                    await self.commit(offsets)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # aiokafka would only log it: the engine reports it instead
            listener.report_commit_failure(exc)

    def _topic_known(self, topic: str) -> bool:
        return self._consumer.partitions_for_topic(topic) is not None

    def _owned(self, partitions: Collection[PartitionKey]) -> list[Any]:
        assigned = self._consumer.assignment()
        return [tp for tp in (TopicPartition(*key) for key in partitions) if tp in assigned]
