"""The aiokafka internals the backend relies on still have the shape it expects.

aiokafka offers no setting for several things the contract needs, so the backend
replaces or calls private methods per instance, all through ``_private`` (whose
names test_aiokafka_private.py guards one by one). These checks go further: the
behaviour the replacements rely on, failing loudly when an aiokafka upgrade changes it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from aiokafka import AIOKafkaClient, AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.producer.message_accumulator import MessageAccumulator, MessageBatch
from aiokafka.protocol.metadata import MetadataRequest

from ._source_text import class_source


def _parameters(function: Callable[..., object]) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_metadata_refresh_is_still_one_replaceable_method() -> None:
    # forbid_topic_auto_creation replaces it; the rest of the client must call it by name.
    assert _parameters(AIOKafkaClient._metadata_update) == ["self", "cluster_metadata", "topics"]
    source = class_source(AIOKafkaClient)
    assert "self._metadata_update(" in source
    assert "allow_auto_topic_creation" in _parameters(MetadataRequest.__init__)


def test_leave_group_is_still_one_replaceable_method() -> None:
    assert _parameters(GroupCoordinator._maybe_leave_group) == ["self"]
    assert "await self._maybe_leave_group()" in inspect.getsource(GroupCoordinator.close)
    source = inspect.getsource(GroupCoordinator._maybe_leave_group)
    assert "self.generation > 0" in source, "aiokafka changed its rule: revisit _leave_group"


def test_undelivered_batches_can_still_be_failed() -> None:
    assert _parameters(MessageAccumulator.fail_all) == ["self", "exception"]


def test_clients_still_keep_their_client_where_the_backend_looks() -> None:
    assert "self._client = AIOKafkaClient(" in inspect.getsource(AIOKafkaConsumer.__init__)
    assert "self._client = AIOKafkaClient(" in inspect.getsource(AIOKafkaAdminClient.__init__)


def test_a_join_in_progress_is_still_one_replaceable_method() -> None:
    # adapt_group_coordinator replaces it and races it against _closing, which close() sets first.
    assert _parameters(GroupCoordinator._do_rejoin_group) == ["self", "subscription"]
    assert "await self._do_rejoin_group(subscription)" in class_source(GroupCoordinator)
    close = inspect.getsource(GroupCoordinator.close)
    assert close.index("self._closing.set_result(None)") < close.index("self._coordination_task")


def test_the_coordinator_still_commits_offsets_without_looking_at_the_assignment() -> None:
    # _AiokafkaSource.commit passes no assignment: the generation and member id decide.
    assert _parameters(GroupCoordinator.commit_offsets) == ["self", "assignment", "offsets"]
    for method in (GroupCoordinator.commit_offsets, GroupCoordinator._do_commit_offsets):
        body = inspect.getsource(method).split(":", 1)[1]
        assert "assignment." not in body and "assignment[" not in body, method
    assert "self.generation" in inspect.getsource(GroupCoordinator._do_commit_offsets)
    assert "_coordinator = GroupCoordinator(" in class_source(AIOKafkaConsumer)


def test_batch_builders_still_count_what_they_forward() -> None:
    # _private.record_appender appends to BatchBuilder._builder directly and sets
    # _relative_offset itself: the wrapper must still do no more than that.
    from aiokafka.producer.message_accumulator import BatchBuilder

    append = inspect.getsource(BatchBuilder.append)
    assert "self._builder.append(" in append and "self._relative_offset += 1" in append
    assert "return self._relative_offset" in inspect.getsource(BatchBuilder.record_count)


def test_a_queued_batch_is_the_last_of_its_partition_and_counts_its_sends() -> None:
    # _send reads a batch's retry_count to tell a first attempt from a retry: it takes the
    # batch send()/send_batch() just queued as the last of its partition (appended with no
    # wait after it), and aiokafka counts every time the batch is taken for sending.
    add_batch = inspect.getsource(MessageAccumulator.add_batch)
    appended = add_batch.index("batch = self._append_batch(builder, tp)")
    assert "await" not in add_batch[appended:]
    add_message = inspect.getsource(MessageAccumulator.add_message)
    appended = add_message.index("future = batch.append(")
    assert "await" not in add_message[appended : add_message.index("return future")]
    assert "self._batches[tp].append(batch)" in inspect.getsource(MessageAccumulator._append_batch)
    assert "batch.drain_ready()" in inspect.getsource(MessageAccumulator._pop_batch)
    assert "self._retry_count += 1" in inspect.getsource(MessageBatch.drain_ready)
    assert "self._batches[tp].appendleft(batch)" in inspect.getsource(MessageAccumulator.reenqueue)


def test_queued_batches_can_still_be_taken_out_and_failed() -> None:
    # _vanished.DeletedTopicWatch fails a deleted topic's batches as aiokafka fails expired
    # ones: _pop_batch (pending bookkeeping kept) then failure(); it finds them in _batches
    # and hears of metadata refreshes through the cluster's listeners.
    from aiokafka.cluster import ClusterMetadata

    assert _parameters(MessageAccumulator._pop_batch) == ["self", "tp"]
    assert "self._batches = collections.defaultdict(" in inspect.getsource(
        MessageAccumulator.__init__
    )
    drain = inspect.getsource(MessageAccumulator.drain_by_nodes)
    assert "batch = self._pop_batch(tp)" in drain and "batch.failure(exception=err)" in drain
    assert _parameters(MessageBatch.failure) == ["self", "exception"]
    assert _parameters(ClusterMetadata.add_listener) == ["self", "listener"]
    from aiokafka.producer.transaction_manager import TransactionManager

    assert "self._sequence_numbers[tp]" in inspect.getsource(TransactionManager.sequence_number)
    # _sequences.give_back_refused_sequences: numbers are given out as a batch is popped.
    assert "increment_sequence_number(" in inspect.getsource(MessageAccumulator._pop_batch)
    assert "listener(self)" in inspect.getsource(ClusterMetadata.update_metadata)


def test_a_refused_join_is_still_told_through_check_errors() -> None:
    # The source calls the coordinator's check_errors() while it owns no partitions: a join
    # the broker refused must still be pushed there (and raised by it).
    assert _parameters(GroupCoordinator.check_errors) == ["self"]
    assert "raise exc" in inspect.getsource(GroupCoordinator.check_errors)
    assert "await self._push_error_to_user(exc)" in class_source(GroupCoordinator)
    assert "self._coordinator = GroupCoordinator(" in class_source(AIOKafkaConsumer)


def test_the_group_admin_requests_still_take_what_the_backend_sends() -> None:
    # _group_admin builds these protocol requests itself: aiokafka's admin has no call for them.
    from aiokafka.protocol.admin import DeleteGroupsRequest
    from aiokafka.protocol.commit import OffsetCommitRequest
    from aiokafka.protocol.offset import OffsetRequest

    assert _parameters(OffsetCommitRequest.__init__) == [
        "self",
        "consumer_group",
        "consumer_group_generation_id",
        "consumer_id",
        "retention_time",
        "topics",
    ]
    assert OffsetCommitRequest.DEFAULT_GENERATION_ID == -1
    assert _parameters(OffsetRequest.__init__) == [
        "self",
        "replica_id",
        "isolation_level",
        "topics",
    ]
    assert _parameters(DeleteGroupsRequest.__init__) == ["self", "group_names"]


def test_fetching_still_marks_the_consumer_active_through_its_fetch_context() -> None:
    # _AiokafkaSource.fetch waits in the same context when the engine owns no partition.
    assert _parameters(SubscriptionState.fetch_context) == ["self"]
    assert "with self._subscription.fetch_context():" in inspect.getsource(AIOKafkaConsumer.getmany)
    assert "fetcher_idle_time" in inspect.getsource(GroupCoordinator._heartbeat_routine)
