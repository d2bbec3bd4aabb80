"""Every private aiokafka name the backend uses, and the only module that spells them.

aiokafka 0.14 offers no public way to do what these serve (each entry of
:data:`PRIVATE_NAMES` says what for); where a public call does the same, the
backend uses that instead (``AIOKafkaConsumer.partitions_for_topic``,
``GroupCoordinator.group_id``). The rest of the backend reaches them through the
functions below. ``tests/backends/test_aiokafka_private.py`` fails when an aiokafka
version no longer has one of them in the expected shape, or when another module of
the backend spells one; ``test_aiokafka_hooks.py`` checks the behaviour the
replacements rely on. They are why pyproject pins ``aiokafka>=0.14,<0.15``.

Nothing here runs per message: the send path takes ``record_appender`` once per
record batch and the queued-batch lookups once per call or per queued batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import MethodType
from typing import Any, Final

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.producer.message_accumulator import BatchBuilder, MessageAccumulator, MessageBatch
from aiokafka.producer.sender import Sender, TxnOffsetCommitHandler
from aiokafka.producer.transaction_manager import TransactionManager, TransactionState
from aiokafka.structs import TopicPartition


@dataclass(frozen=True, slots=True)
class PrivateName:
    """One private aiokafka name the backend uses."""

    owner: type
    """The aiokafka class that has it."""
    name: str
    """The attribute's name."""
    parameters: tuple[str, ...] | None
    """A method's parameters; None for an attribute the class sets (``self.name = ...``)."""
    used_for: str
    """What the backend needs it for."""


PRIVATE_NAMES: Final = (
    PrivateName(
        AIOKafkaClient,
        "_metadata_update",
        ("self", "cluster_metadata", "topics"),
        "replaced per client: metadata refreshes never create topics (_metadata)",
    ),
    PrivateName(AIOKafkaClient, "_conns", None, "that replacement closes the bootstrap link"),
    PrivateName(
        AIOKafkaClient,
        "_get_conn",
        ("self", "node_id", "group", "no_hint"),
        "that replacement's connections",
    ),
    PrivateName(AIOKafkaConsumer, "_client", None, "its client, for the replacement above"),
    PrivateName(
        AIOKafkaAdminClient,
        "_client",
        None,
        "its client: metadata without auto-creation, group admin requests (_group_admin)",
    ),
    PrivateName(
        AIOKafkaConsumer,
        "_coordinator",
        None,
        "commits with the generation, check_errors() while idle, group metadata (_consumer)",
    ),
    PrivateName(
        AIOKafkaConsumer,
        "_subscription",
        None,
        "fetch_context() while idle, and positions a fetch moved (_consumer)",
    ),
    PrivateName(
        GroupCoordinator,
        "_maybe_leave_group",
        ("self",),
        "replaced: leave the group whatever the generation number (_group)",
    ),
    PrivateName(GroupCoordinator, "_send_req", ("self", "request"), "that replacement's request"),
    PrivateName(
        GroupCoordinator,
        "_do_rejoin_group",
        ("self", "subscription"),
        "wrapped: a join in progress gives up when the consumer stops (_group)",
    ),
    PrivateName(GroupCoordinator, "_closing", None, "that wrapper's stop signal"),
    PrivateName(
        AIOKafkaProducer,
        "_message_accumulator",
        None,
        "the queued batches: which one a send joined, failing them on disconnect",
    ),
    PrivateName(
        MessageAccumulator,
        "_batches",
        None,
        "the batch a send joined and its retry_count (delivery verdict), a deleted "
        "topic's batches (_vanished)",
    ),
    PrivateName(MessageAccumulator, "_pending_batches", None, "their drain waiters"),
    PrivateName(MessageBatch, "_drain_waiter", None, "retrieved so asyncio logs nothing"),
    PrivateName(
        MessageAccumulator,
        "fail_all",
        ("self", "exception"),
        "a disconnect fails what is still queued, so stop() cannot hang",
    ),
    PrivateName(
        MessageAccumulator,
        "_pop_batch",
        ("self", "tp"),
        "wrapped: a refused batch gives its sequence numbers back (_sequences); "
        "a deleted topic's batches are taken out and failed (_vanished)",
    ),
    PrivateName(
        BatchBuilder,
        "_builder",
        None,
        "send_batch appends to the compiled record builder directly, twice as fast",
    ),
    PrivateName(BatchBuilder, "_relative_offset", None, "then set once: the batch's count"),
    PrivateName(AIOKafkaProducer, "_txn_manager", None, "the transaction manager, below"),
    PrivateName(
        TransactionManager,
        "_sequence_numbers",
        None,
        "an idempotent producer's next sequences (_sequences, _vanished)",
    ),
    PrivateName(
        TransactionManager,
        "_transition_to",
        ("self", "target"),
        "a failed send makes the open transaction abortable",
    ),
    PrivateName(
        TransactionManager,
        "_transaction_waiter",
        None,
        "why the transaction failed; told a failed send",
    ),
    PrivateName(AIOKafkaProducer, "_sender", None, "its Sender, below"),
    PrivateName(
        Sender,
        "_do_txn_offset_commit",
        ("self", "offsets", "group_id"),
        "replaced: transactional offset commits carry the generation, KIP-447 (_transactions)",
    ),
    PrivateName(
        Sender,
        "_find_coordinator",
        ("self", "coordinator_type", "coordinator_key"),
        "that replacement's coordinator",
    ),
    PrivateName(
        TxnOffsetCommitHandler,
        "_sender",
        None,
        "that replacement's handler (a subclass, reading what it inherits) fails the transaction",
    ),
    PrivateName(TxnOffsetCommitHandler, "_group_id", None, "the handler's group"),
    PrivateName(TxnOffsetCommitHandler, "_offsets", None, "the handler's offsets"),
)
"""Each private name, on the class that has it (a guard test checks each one)."""


# -- clients ----------------------------------------------------------------------------------


def consumer_client(consumer: AIOKafkaConsumer) -> AIOKafkaClient:
    """A consumer's client (a producer's is public: ``producer.client``)."""
    client: AIOKafkaClient = consumer._client
    return client


def admin_client(admin: AIOKafkaAdminClient) -> AIOKafkaClient:
    """An admin's client."""
    client: AIOKafkaClient = admin._client
    return client


def replace_metadata_update(client: AIOKafkaClient, update: Callable[..., Any]) -> None:
    """Make ``update(client, cluster_metadata, topics)`` ``client``'s metadata refresh."""
    client._metadata_update = MethodType(update, client)


def bootstrap_connections(client: AIOKafkaClient) -> dict[Any, Any]:
    """The client's open connections by (node id, group), the bootstrap one included."""
    connections: dict[Any, Any] = client._conns
    return connections


async def connection(client: AIOKafkaClient, node_id: Any) -> Any:
    """A connection to ``node_id`` (None when it cannot be reached)."""
    return await client._get_conn(node_id)


# -- consumers --------------------------------------------------------------------------------


def group_coordinator(consumer: AIOKafkaConsumer) -> Any:
    """A started consumer's group coordinator (None before start)."""
    return getattr(consumer, "_coordinator", None)


def idle_fetch(consumer: AIOKafkaConsumer) -> AbstractContextManager[Any]:
    """The context getmany() runs in: time spent in it counts as polling."""
    context: AbstractContextManager[Any] = consumer._subscription.fetch_context()
    return context


def positions(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
) -> dict[tuple[str, int], int]:
    """The known positions of ``partitions`` in the consumer's current assignment (a
    public ``position()`` waits for one, and would not say how far a fetch moved)."""
    subscription = consumer._subscription.subscription
    assignment = None if subscription is None else subscription.assignment
    if assignment is None:
        return {}
    known: dict[tuple[str, int], int] = {}
    for tp in partitions:
        state = assignment.state_value(tp)
        if state is not None and state.has_valid_position:
            known[(tp.topic, tp.partition)] = state.position
    return known


def replace_leave_group(coordinator: Any, leave: Callable[[Any], Any]) -> None:
    """Make ``leave(coordinator)`` what the coordinator runs to leave its group."""
    if hasattr(coordinator, "_maybe_leave_group"):
        coordinator._maybe_leave_group = MethodType(leave, coordinator)


async def send_to_coordinator(coordinator: Any, request: Any) -> Any:
    """Send ``request`` to the group's coordinator (found first if need be)."""
    return await coordinator._send_req(request)


def wrap_rejoin(coordinator: Any, wrap: Callable[[Any, Any], Any]) -> None:
    """Replace the coordinator's join with ``wrap(join, closing)``, ``closing`` being the
    future its close() resolves first."""
    if hasattr(coordinator, "_do_rejoin_group") and hasattr(coordinator, "_closing"):
        coordinator._do_rejoin_group = wrap(coordinator._do_rejoin_group, coordinator._closing)


# -- producers: queued batches ----------------------------------------------------------------


def record_appender(builder: Any) -> tuple[Callable[..., Any], bool]:
    """How to add records to a ``create_batch()`` builder, and whether that is direct.

    ``BatchBuilder.append`` is a Python wrapper that only counts records and forwards them
    to its compiled record builder, at about half the cost of a whole send: the direct
    ``append(offset, timestamp, key, value, headers)`` skips it, and
    :func:`set_record_count` sets the count once. The public method stays the fallback
    (the guard tests say first when aiokafka moves these).
    """
    native = getattr(builder, "_builder", None)
    if native is not None and hasattr(builder, "_relative_offset"):
        return native.append, True

    def append(
        position: int, stamp: int, key: bytes | None, value: bytes | None, headers: Any
    ) -> object:
        return builder.append(timestamp=stamp, key=key, value=value, headers=headers)

    return append, False


def set_record_count(builder: Any, count: int) -> None:
    """What the builder's own append() would have counted, after direct appends."""
    builder._relative_offset = count


def queued_batches(producer: AIOKafkaProducer) -> dict[TopicPartition, Any]:
    """The batches the producer has not sent yet, per partition (a deque each)."""
    accumulator = getattr(producer, "_message_accumulator", None)
    batches: dict[TopicPartition, Any] = getattr(accumulator, "_batches", None) or {}
    return batches


def last_queued(producer: AIOKafkaProducer, topic: str, partition: int) -> Any:
    """The batch into which ``send()``/``send_batch()`` has just queued records for
    ``partition``: the last of the partition, as long as the loop has not run since."""
    return producer._message_accumulator._batches[TopicPartition(topic, partition)][-1]


def holds_unsent(producer: AIOKafkaProducer, topic: str, partitions: Iterable[int]) -> bool:
    """Whether the producer still holds an unsent batch for one of ``partitions``."""
    # queued_batches() written out: this runs once per send() call.
    accumulator = getattr(producer, "_message_accumulator", None)
    batches = getattr(accumulator, "_batches", None)
    if not batches:
        return False
    return any(batches.get(TopicPartition(topic, partition)) for partition in partitions)


def fail_queued(producer: AIOKafkaProducer, exception: Exception) -> None:
    """Fail every batch still queued (aiokafka offers no public way to abandon them), and
    retrieve every drain failure, which only a flush awaits.

    After a fenced send, aiokafka's sender fails every batch, and nothing awaits their
    drain waiters any more: asyncio would log them as never retrieved when collected,
    and Python 3.11 formats that log with the ast module, which breaks when it happens
    inside another parse.
    """
    accumulator = getattr(producer, "_message_accumulator", None)
    if accumulator is None:
        return
    accumulator.fail_all(exception)
    queued = getattr(accumulator, "_batches", {}).values()
    pending = getattr(accumulator, "_pending_batches", ())
    for batch in (*itertools.chain.from_iterable(queued), *pending):
        waiter = getattr(batch, "_drain_waiter", None)
        if waiter is not None and waiter.done() and not waiter.cancelled():
            waiter.exception()


def take_out_batch(producer: AIOKafkaProducer, tp: TopicPartition) -> Any:
    """Take the partition's first batch out as if to send it (its bookkeeping kept)."""
    return producer._message_accumulator._pop_batch(tp)


def wrap_pop_batch(
    producer: AIOKafkaProducer, wrap: Callable[[Callable[[TopicPartition], Any]], Any]
) -> None:
    """Replace how the producer's accumulator takes a batch out with ``wrap(original)``
    (aiokafka's expiry and drain call it through ``self``)."""
    accumulator = producer._message_accumulator
    accumulator._pop_batch = wrap(accumulator._pop_batch)


# -- producers: sequences and transactions ----------------------------------------------------


def sequence_numbers(producer: AIOKafkaProducer) -> dict[TopicPartition, int] | None:
    """An idempotent producer's next sequence number per partition (None otherwise)."""
    manager = getattr(producer, "_txn_manager", None)
    sequences: dict[TopicPartition, int] | None = getattr(manager, "_sequence_numbers", None)
    return sequences


def transaction_manager(producer: AIOKafkaProducer) -> Any:
    """The producer's transaction manager (None unless idempotent or transactional)."""
    return getattr(producer, "_txn_manager", None)


def make_abortable(manager: Any, cause: Exception) -> None:
    """Put an open transaction in aiokafka's abortable state: commit then fails with
    ``cause``. Not error_transaction(): it forgets the partitions written, so the abort
    would end the transaction locally and leave it open on the broker."""
    manager._transition_to(TransactionState.ABORTABLE_ERROR)
    manager._transaction_waiter.set_exception(cause)


def transaction_failure(manager: Any) -> BaseException | None:
    """The error that left the transaction manager failed, if it holds one. Taking it
    also keeps asyncio from logging it as never retrieved when nothing else awaits it."""
    waiter = getattr(manager, "_transaction_waiter", None)
    if waiter is None or not waiter.done() or waiter.cancelled():
        return None
    cause: BaseException | None = waiter.exception()
    return cause


def replace_txn_offset_commit(
    producer: AIOKafkaProducer, commit: Callable[[Any, Any, Any], Any]
) -> None:
    """Make ``commit(sender, offsets, group_id)`` how the producer's sender commits a
    transaction's offsets."""
    sender = producer._sender
    sender._do_txn_offset_commit = MethodType(commit, sender)


async def find_coordinator(sender: Any, coordinator_type: Any, key: Any) -> Any:
    """The node id of the coordinator of ``key`` (a group or a transactional id)."""
    return await sender._find_coordinator(coordinator_type, key)


def sender_transaction_manager(sender: Any) -> Any:
    """The transaction manager of a producer's Sender."""
    return sender._txn_manager
