"""Kafka and Redpanda transport for asyncio, where every operation returns a Result.

    client = create_streaming_client("confluent", StreamingConfig("app", ("localhost:9092",)))
    producer = (await client.get_producer()).unwrap()
    await producer.send("events", StreamingMessage(b"hello", key="user-1"))

``StreamingClient`` hands out cached, connected producers, consumers and
admins; a ``StreamingConnector`` is what a backend (``confluent``,
``aiokafka`` or the in-process ``memory`` broker) provides.
"""

from qi.base.streaming._admin import StreamingAdmin
from qi.base.streaming._client import StreamingClient, create_streaming_client
from qi.base.streaming._codes import ErrorCode
from qi.base.streaming._config import (
    ConsumerConfig,
    ConsumerRunConfig,
    ProducerConfig,
    SecurityConfig,
    StreamingConfig,
    SubscriptionConfig,
    TelemetryConfig,
    TopicConfig,
)
from qi.base.streaming._connector import StreamingConnector
from qi.base.streaming._consumer import StreamingConsumer
from qi.base.streaming._factory import create_connector
from qi.base.streaming._producer import StreamingProducer
from qi.base.streaming._transaction import Transaction
from qi.base.streaming._types import (
    BatchProduceResult,
    ConsumedMessage,
    EachBatchPayload,
    EachMessagePayload,
    GroupDescription,
    GroupMember,
    MessageBatch,
    PartitionLag,
    PartitionMetadata,
    PartitionOffsets,
    PartitionPosition,
    ProduceResult,
    StreamingMessage,
    TopicMetadata,
)

__all__ = [
    "BatchProduceResult",
    "ConsumedMessage",
    "ConsumerConfig",
    "ConsumerRunConfig",
    "EachBatchPayload",
    "EachMessagePayload",
    "ErrorCode",
    "GroupDescription",
    "GroupMember",
    "MessageBatch",
    "PartitionLag",
    "PartitionMetadata",
    "PartitionOffsets",
    "PartitionPosition",
    "ProduceResult",
    "ProducerConfig",
    "SecurityConfig",
    "StreamingAdmin",
    "StreamingClient",
    "StreamingConfig",
    "StreamingConnector",
    "StreamingConsumer",
    "StreamingMessage",
    "StreamingProducer",
    "SubscriptionConfig",
    "TelemetryConfig",
    "TopicConfig",
    "TopicMetadata",
    "Transaction",
    "create_connector",
    "create_streaming_client",
]
