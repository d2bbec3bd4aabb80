"""Metadata requests that never ask the broker to create a topic.

aiokafka builds every MetadataRequest with ``allow_auto_topic_creation=True``
and has no setting to change that, so on a broker with automatic topic creation
(Kafka's default, and Tansu) merely sending to, subscribing to or describing a
missing topic would create it. The library never asks for that: the clients we
build get a metadata refresh that says False, and our own lookups say False too.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaClient
from aiokafka.client import ConnectionGroup
from aiokafka.cluster import ClusterMetadata
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.protocol.metadata import MetadataRequest

from qi.base.streaming.backends.aiokafka import _private


async def _metadata_update_without_auto_creation(
    client: AIOKafkaClient, cluster_metadata: ClusterMetadata, topics: Any
) -> bool:
    # aiokafka 0.14's AIOKafkaClient._metadata_update, with the one change that matters:
    # the request says allow_auto_topic_creation=False.
    request = MetadataRequest(list(topics) if topics else None, allow_auto_topic_creation=False)
    node_ids: list[Any] = [broker.nodeId for broker in client.cluster.brokers()]
    connections = _private.bootstrap_connections(client)
    bootstrap_id = ("bootstrap", ConnectionGroup.DEFAULT)
    if bootstrap_id in connections:
        node_ids.append("bootstrap")
    random.shuffle(node_ids)
    for node_id in node_ids:
        conn = await _private.connection(client, node_id)
        if conn is None:
            continue
        try:
            metadata = await conn.send(request)
        except (KafkaError, TimeoutError):
            continue
        if not metadata.brokers:
            return False
        cluster_metadata.update_metadata(metadata)
        if bootstrap_id in connections and len(client.cluster.brokers()):
            connections.pop(bootstrap_id).close()
        return True
    cluster_metadata.failed_update(None)
    return False


def forbid_topic_auto_creation(client: AIOKafkaClient) -> None:
    """Make ``client``'s metadata refreshes (background and forced) never create topics."""
    # Per instance, so aiokafka clients the application builds itself are untouched.
    _private.replace_metadata_update(client, _metadata_update_without_auto_creation)


async def topic_metadata(client: AIOKafkaClient, topics: Sequence[str] | None) -> dict[str, Any]:
    """A metadata response as a dict (``to_object()``); ``topics=None`` asks for all topics.

    Raises KafkaConnectionError when no known broker can be reached.
    """
    request = MetadataRequest(
        list(topics) if topics is not None else None, allow_auto_topic_creation=False
    )
    node_ids = [broker.nodeId for broker in client.cluster.brokers()]
    random.shuffle(node_ids)
    last_error: Exception | None = None
    for node_id in node_ids:
        try:
            response = await client.send(node_id, request)
        except KafkaError as exc:
            last_error = exc
            continue
        result: dict[str, Any] = response.to_object()
        return result
    raise KafkaConnectionError(
        f"no broker answered a metadata request (last error: {last_error})"
        if last_error is not None
        else "no broker is known: the client has not bootstrapped"
    )
