"""What a backend gives the shared consumer run loop.

The at-least-once rules (per-partition order, redelivery after a handler
failure, commit only what was processed, finish before letting a partition go)
live once, in ``_engine``. A backend only has to be a group member that can
fetch, commit, seek and pause: a :class:`PartitionSource`. It reports
assignment changes to the :class:`RebalanceListener` the engine gives it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from typing import Literal, Protocol

from qi.base.streaming._types import ConsumedMessage

TopicPartition = tuple[str, int]
"""A (topic, partition) pair."""

SeekTarget = int | Literal["earliest", "latest"]
"""An absolute offset, or the start or end of the partition."""


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
