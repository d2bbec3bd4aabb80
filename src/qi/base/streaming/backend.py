"""The backend interface: everything a backend provides, and everything it may use.

The public :class:`~qi.base.streaming.StreamingProducer`,
:class:`~qi.base.streaming.StreamingConsumer` and
:class:`~qi.base.streaming.StreamingAdmin` are final classes that each hold one
backend object, as httpx's ``Client`` holds a transport. They own the contract:
argument and message validation, the lifecycle, the never-raise boundary, the
run loop's at-least-once and exactly-once rules. A backend only moves plain
values to and from its broker::

    StreamingConnector ── holds ──> ConnectorBackend   (one per backend: names it,
        │                               │                builds the three below,
        │ builds                        │ builds         maps its native errors)
        v                               v
    StreamingProducer  ── holds ──> ProducerBackend    validated messages in,
    StreamingConsumer  ── holds ──> ConsumerBackend    one outcome per message out
    StreamingAdmin     ── holds ──> AdminBackend        └─> PartitionSource: the group
                                                            member the run loop drives

What goes in is already valid (topic names, message sizes, configs). What comes
out is plain: a :class:`ProduceResult` or a :class:`QiError` per message, the
:class:`ConsumedMessage` objects of a fetch, per-topic error maps. Anything a
backend method raises is a *native error*: the boundary turns it into a QiError
through the one :meth:`ConnectorBackend.translate_error` of the backend (its
error table), except :class:`OperationFailed`, which carries a QiError the
backend already built. Cancellation is never caught.

A backend imports only this module (which also re-exports the few shared helpers
backends use: the delivery verdicts, Kafka's key partitioner, topic-name checks,
shared empty mappings), the public types of ``qi.base`` and ``qi.base.streaming``,
and the hot-path helpers (``_fast_values``); tests/test_layers.py checks it. The
factory finds a backend by name (``qi.base.streaming.backends.<name>``, whose
``backend(config, logger)`` returns its :class:`ConnectorBackend`). See ``docs/architecture.md``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from qi.base import QiError, Result
from qi.base.streaming._codes import DELIVERY_UNKNOWN, NOT_WRITTEN, ErrorCode, streaming_error
from qi.base.streaming._config import (
    EMPTY_MAPPING,
    ConsumerConfig,
    ProducerConfig,
    SubscriptionConfig,
    TopicConfig,
)
from qi.base.streaming._murmur2 import partition_for_key
from qi.base.streaming._read_only import ReadOnlyMapping
from qi.base.streaming._types import (
    NO_CONSUMED_HEADERS,
    NO_HEADERS,
    ConsumedMessage,
    GroupDescription,
    PartitionOffsets,
    ProduceResult,
    StreamingMessage,
    TopicMetadata,
)
from qi.base.streaming._validation import broker_address_problem, is_internal_topic

if TYPE_CHECKING:
    from qi.base.streaming._consumer import StreamingConsumer

__all__ = [
    "DELIVERY_UNKNOWN",
    "EMPTY_MAPPING",
    "NOT_WRITTEN",
    "NO_CONSUMED_HEADERS",
    "NO_HEADERS",
    "AdminBackend",
    "ConnectorBackend",
    "ConsumerBackend",
    "EndpointBackend",
    "ErrorTranslation",
    "NativeConsumerLease",
    "NativeTransactions",
    "OperationFailed",
    "PartitionSource",
    "ProducerBackend",
    "ReadOnlyMapping",
    "RebalanceListener",
    "SeekTarget",
    "TopicPartition",
    "abandon",
    "broker_address_problem",
    "is_internal_topic",
    "not_connected",
    "partition_for_key",
    "streaming_error",
    "unexpected_error",
]

TopicPartition = tuple[str, int]
"""A (topic, partition) pair."""

SeekTarget = int | Literal["earliest", "latest"]
"""An absolute offset, or the start or end of the partition."""

NativeT_co = TypeVar("NativeT_co", covariant=True)
"""A backend's native consumer type (see :class:`NativeConsumerLease`)."""

ErrorTranslation = Callable[[BaseException, str, ErrorCode], QiError]
"""``translate(native_error, operation, fallback)``: a backend's error table, applied.

``fallback`` is the code for an error the table does not know (the operation's
usual failure, such as STREAMING_PRODUCE_FAILED for a send)."""


class OperationFailed(Exception):
    """Raised inside a backend to end an operation with a QiError it has already built.

    The boundary returns ``error`` as the Failure unchanged; backends use it where
    a return value cannot carry the error (inside ``open``, deep in a helper).
    """

    def __init__(self, error: QiError) -> None:
        super().__init__(str(error))
        self.error = error


# -- the connector: one per backend ------------------------------------------------------------


class ConnectorBackend(ABC):
    """A backend as the public :class:`~qi.base.streaming.StreamingConnector` holds it.

    Built by the backend package's ``backend(config, logger)`` with a valid
    :class:`StreamingConfig`; it builds endpoint backends for valid configs only.
    """

    implementation: str = ""
    """The backend's name, as given to ``create_connector``; every error it builds says it."""

    @abstractmethod
    def producer(self, config: ProducerConfig) -> ProducerBackend:
        """An unopened producer backend for a valid ``config``."""

    @abstractmethod
    def consumer(self, config: ConsumerConfig) -> ConsumerBackend:
        """An unopened consumer backend for a valid ``config``."""

    @abstractmethod
    def admin(self) -> AdminBackend:
        """An unopened admin backend."""

    @abstractmethod
    async def probe(self) -> bool:
        """Whether a broker answers within ``connection_timeout``; may raise."""

    @abstractmethod
    def translate_error(self, exc: BaseException, operation: str, fallback: ErrorCode) -> QiError:
        """A native error as a QiError, through the backend's one error table.

        The boundary calls it for whatever any of the backend's methods raised.
        A native error the table does not know must still become a QiError
        (``fallback``), and a test of the backend should fail on it.
        """


class EndpointBackend(ABC):
    """What every endpoint backend provides: opening, closing and its native client."""

    close_grace: float = 0.0
    """Seconds ``close`` may take beyond the endpoint's own bound (``request_timeout``, twice
    that for a consumer): for a native client that must stop tasks after flushing."""

    @abstractmethod
    async def open(self) -> None:
        """Create the native client and prove a broker answers; raise on failure.

        Bounded by the boundary (``connection_timeout`` and a grace); a half-finished
        open is followed by ``close``."""

    @abstractmethod
    def native_client(self) -> object:
        """The backend's own client object (``get_native_client()``), once open."""


class ProducerBackend(EndpointBackend):
    """Delivers validated messages; every message ends acknowledged or failed."""

    @abstractmethod
    async def close(self) -> None:
        """Flush what is under way and release the native client; tolerates a half-finished
        open. Bounded by ``request_timeout``."""

    @abstractmethod
    def send(
        self, topic: str, message: StreamingMessage
    ) -> Awaitable[Result[ProduceResult, QiError]]:
        """Deliver one valid message; a Failure says in ``context["delivery"]`` whether it
        was written (the boundary adds "unknown" when it does not say).

        Any awaitable: a backend that can hand the message over at once may return a
        future of the Result and spare send() a coroutine per call."""

    @abstractmethod
    async def send_batch(
        self, topic: str, messages: Sequence[StreamingMessage]
    ) -> Sequence[ProduceResult | QiError]:
        """Deliver valid messages; one outcome per message, in input order, and within a
        partition written in input order. When every message was acknowledged it may
        return a ``DeferredResults`` (``_fast_values``): results built when first read."""

    @abstractmethod
    def transactions(self) -> NativeTransactions:
        """The transactional side of the open native producer (its config has a
        ``transactional_id``)."""


class ConsumerBackend(EndpointBackend):
    """A native consumer client; the run loop drives the group member it creates."""

    @abstractmethod
    def partition_source(self, subscription: SubscriptionConfig) -> PartitionSource:
        """A group member for ``subscription`` on the open native client (one per run)."""

    @abstractmethod
    async def close(self, deadline: float) -> None:
        """Release the native client by ``deadline`` (``time.monotonic()``), or let it
        finish in the background then. The run loop has already left the group."""


class AdminBackend(EndpointBackend):
    """Topics and consumer groups; the public admin checks every name and argument first."""

    @abstractmethod
    async def close(self) -> None:
        """Release the native client; tolerates a half-finished open."""

    @abstractmethod
    async def create_topics(self, topics: Sequence[TopicConfig]) -> Mapping[str, QiError]:
        """Create topics with distinct valid names; return the errors of those that failed,
        by name. A created topic is visible to ``list_topics`` and ``describe_topics`` when
        this returns."""

    @abstractmethod
    async def delete_topics(self, names: Sequence[str]) -> Mapping[str, QiError]:
        """Delete topics; return the errors of those that failed, by name."""

    @abstractmethod
    async def list_topics(self) -> Sequence[str]:
        """All topic names, internal ones included (the public admin filters them)."""

    @abstractmethod
    async def describe_topics(self, names: Sequence[str]) -> Mapping[str, TopicMetadata]:
        """Metadata of the named topics that exist; missing ones are simply absent."""

    @abstractmethod
    async def topic_offsets(self, topic: str) -> tuple[PartitionOffsets, ...] | None:
        """Start and end offsets of every partition, by partition; None if the topic is
        absent."""

    @abstractmethod
    async def list_groups(self) -> Sequence[str]:
        """Ids of every consumer group the cluster knows."""

    @abstractmethod
    async def describe_group(self, group_id: str) -> GroupDescription:
        """The group's state in snake case (``"dead"`` when unknown) and its members."""

    @abstractmethod
    async def committed_offsets(self, group_id: str) -> Mapping[TopicPartition, int]:
        """Every committed offset of the group (the next offset to read)."""

    @abstractmethod
    async def offsets_at(self, topic: str, timestamp_ms: int) -> Mapping[int, int | None]:
        """Per partition, the first offset stamped at or after ``timestamp_ms`` (>= 0); None
        (or absent) where no message is."""

    @abstractmethod
    async def alter_offsets(self, group_id: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit ``offsets`` for a group without active members."""

    @abstractmethod
    async def delete_group(self, group_id: str) -> None:
        """Delete a group without active members."""


# -- transactions ------------------------------------------------------------------------------


class NativeTransactions(Protocol):
    """A backend's transactional producer, as a transaction sees it. Methods may raise;
    the boundary translates through the backend's error table."""

    async def begin(self) -> None:
        """Begin a transaction: the producer's sends from now on belong to it."""

    async def send_offsets(self, offsets: Mapping[TopicPartition, int], group: object) -> None:
        """Add a group's next offsets to read; ``group`` is the consumer's group metadata
        (what its :meth:`PartitionSource.group_metadata` returned)."""

    async def commit(self) -> None:
        """Commit the open transaction: its records and offsets become visible."""

    async def abort(self) -> None:
        """Abort the open transaction: its records are never shown to read_committed readers."""


# -- the group member the run loop drives --------------------------------------------------------
#
# The at-least-once rules (per-partition order, redelivery after a handler failure,
# commit only what was processed, finish before letting a partition go) live once, in
# the core's run loop. A backend only has to be a group member that can fetch, commit,
# seek and pause: a PartitionSource. It reports assignment changes to the
# RebalanceListener the run loop gives it.
#
# How a ConsumerBackend wires a source, the same in every backend: partition_source()
# builds it from explicit constructor arguments only (the subscription, plain settings
# such as timeouts and the group id, and the native objects it shares: a broker handle, a
# worker thread). A backend that rebuilds its native consumer per run (the reset policy is
# fixed when it is built) also passes a NativeConsumerLease. A source never holds its
# ConsumerBackend and never calls a private member of it.


class RebalanceListener(Protocol):
    """The engine's side of a rebalance; backends call it from their group callbacks."""

    async def partitions_assigned(self, partitions: Collection[TopicPartition]) -> None:
        """Partitions now owned by this member; called for the first assignment even if empty."""

    async def partitions_revoked(
        self, partitions: Collection[TopicPartition]
    ) -> Mapping[TopicPartition, int]:
        """Partitions about to be taken away.

        Waits for a handler still running on them, forgets their buffered
        messages, and returns the offsets the backend must commit for them
        (next offset to read) before the partitions go.
        """

    def report_commit_failure(self, exc: BaseException) -> None:
        """Committing the offsets of revoked partitions failed; the run loop reports it."""


class NativeConsumerLease(Protocol[NativeT_co]):
    """How a source gets the backend's native consumer for one run and gives it back."""

    async def acquire(self, from_beginning: bool) -> NativeT_co:
        """The native consumer for a new run, ready to subscribe, whose reset policy for a
        group without committed offsets is the earliest offset if ``from_beginning``, else
        the latest; built anew when the one at hand does not fit or is spent."""
        ...

    async def release(self, patience: float) -> None:
        """The run is over: leave the group and stop the native consumer the last
        :meth:`acquire` handed out (or was building) within about ``patience`` seconds;
        the rest goes on in the background. It is not used again."""
        ...


class PartitionSource(ABC):
    """A group member as the run loop sees it. Methods may raise; the engine translates."""

    @abstractmethod
    async def start(self, listener: RebalanceListener) -> None:
        """Subscribe and start joining the group; return without waiting for an assignment."""

    @abstractmethod
    async def fetch(
        self, max_messages: int, max_wait: float
    ) -> Mapping[TopicPartition, Sequence[ConsumedMessage]]:
        """Up to ``max_messages`` messages by partition, in offset order; {} after ``max_wait`` s.

        A fetch that was under way when a ``seek`` of a partition completed must
        return nothing for that partition: the engine drops what such a fetch
        returns for it, so messages from the new position would be lost.
        Should not return messages of a paused partition. A fetch that raises
        may have moved past messages: the engine then calls :meth:`rewind`.
        """

    @abstractmethod
    def fetch_positions(self) -> Mapping[TopicPartition, int]:
        """Where the last :meth:`fetch` left the partitions it moved over, read right after it.

        For each partition the fetch read: one past the last record it moved over,
        visible or not (transaction markers, and aborted records under read_committed,
        take offsets no message shows), even when it returned no message of it. Never
        beyond a record it did not hand over or skip as invisible. The engine commits
        it once everything handed over of the partition was handled, as Kafka's own
        clients commit their position, so a group can reach the end of a transactional
        topic.
        """

    @abstractmethod
    def end_offsets(self) -> Mapping[TopicPartition, int]:
        """The high watermark of each assigned partition as the fetches last saw it.

        Answered from what the client already knows, never by asking the broker; a
        partition whose end no fetch reported yet is left out.
        """

    @abstractmethod
    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit the next offsets to read for the given partitions, synchronously."""

    @abstractmethod
    async def seek(self, partition: TopicPartition, target: SeekTarget) -> None:
        """Make the next fetch of ``partition`` start at ``target``."""

    @abstractmethod
    async def rewind(self, positions: Mapping[TopicPartition, int | None]) -> None:
        """Make the next fetch of each partition start at its given offset, after a failed fetch.

        None means: where the partition started, as of its assignment (the committed
        offset, else the reset policy, as resolved then) or its last seek. Partitions no
        longer assigned are ignored.
        """

    @abstractmethod
    def pause(self, partitions: Collection[TopicPartition]) -> None:
        """Stop fetching these partitions (their buffer is full) without leaving the group."""

    @abstractmethod
    def resume(self, partitions: Collection[TopicPartition]) -> None:
        """Fetch these partitions again."""

    @abstractmethod
    async def group_metadata(self) -> object:
        """This member's group metadata, in the form the same backend's transactional
        producer takes it (group id, generation and member id: KIP-447)."""

    @abstractmethod
    async def stop(self, patience: float) -> None:
        """Leave the group within about ``patience`` seconds; what is left of leaving then
        goes on in the background. The engine has already committed what was processed."""


def unexpected_error(
    exc: BaseException, operation: str, fallback: ErrorCode, implementation: str
) -> QiError:
    """``fallback`` for an exception a backend's error table does not know, naming its class."""
    return streaming_error(
        fallback,
        f"{operation} failed: {type(exc).__name__}: {exc}",
        operation=operation,
        implementation=implementation,
        exception_type=type(exc).__name__,
    )


def not_connected(implementation: str, kind: str, operation: str) -> QiError:
    """STREAMING_NOT_CONNECTED as the public endpoints say it, for a backend whose native
    client went away under an operation (a disconnect() racing it)."""
    return streaming_error(
        ErrorCode.NOT_CONNECTED,
        f"the {kind} is not connected: call connect() or get it from a StreamingClient",
        operation=operation,
        implementation=implementation,
    )


def abandon(consumer: StreamingConsumer) -> ConsumerBackend:
    """End ``consumer`` as a killed process would end, and return the backend it holds.

    Its run loop stops at once (a running handler is cancelled) without committing or
    leaving the group, and the consumer counts as disconnected. For backends that
    simulate crashes (the memory backend's ``crash``).
    """
    return consumer._abandon()
