"""The public surface: ``__all__`` is exactly the documented API, and every name resolves."""

from __future__ import annotations

import qi.base

QI_BASE_API = {
    # Result core (contract section 2)
    "Result",
    "Success",
    "Failure",
    "success",
    "failure",
    "map",
    "map_error",
    "flat_map",
    "match",
    "unwrap_or",
    "from_try_catch",
    "from_async_try_catch",
    "flat_map_async",
    "map_async",
    "sequence",
    "UnwrapError",
    # TypeIs narrowing helpers (mypy cannot narrow on the methods of the same name)
    "is_success",
    "is_failure",
    # QiError
    "QiError",
    "ErrorCategory",
    "RetryStrategy",
    "create_error",
    "from_exception",
    "from_string",
}


def test_qi_base_exports() -> None:
    assert len(qi.base.__all__) == len(set(qi.base.__all__)), "duplicate names in __all__"
    assert set(qi.base.__all__) == QI_BASE_API
    for name in qi.base.__all__:
        member = getattr(qi.base, name)
        # Re-exported from a private module, never defined in the package __init__.
        module = getattr(member, "__module__", None)
        if module is not None and name != "Result" and name != "RetryStrategy":
            assert module.startswith("qi.base._"), f"{name} comes from {module}"


def test_public_names_have_docstrings() -> None:
    for name in qi.base.__all__:
        if name in {"Result", "RetryStrategy"}:  # type aliases cannot carry one
            continue
        doc = getattr(qi.base, name).__doc__
        assert doc and doc.strip(), f"{name} has no docstring"


STREAMING_API = {
    # Configuration and data types (contract section 3)
    "StreamingConfig",
    "SecurityConfig",
    # Operations: telemetry and a running consumer's positions (README, Operations)
    "TelemetryConfig",
    "PartitionPosition",
    "ProducerConfig",
    "ConsumerConfig",
    "SubscriptionConfig",
    "ConsumerRunConfig",
    "TopicConfig",
    "StreamingMessage",
    "MessageBatch",
    "ProduceResult",
    "BatchProduceResult",
    "ConsumedMessage",
    "EachMessagePayload",
    "EachBatchPayload",
    "PartitionMetadata",
    "TopicMetadata",
    # Consumer groups and offsets (section 10)
    "PartitionOffsets",
    "GroupMember",
    "GroupDescription",
    "PartitionLag",
    # Client, factory and contracts (sections 4 and 5)
    "StreamingClient",
    "StreamingConnector",
    "StreamingProducer",
    "StreamingConsumer",
    "StreamingAdmin",
    "create_streaming_client",
    "create_connector",
    # Transactions (section 9)
    "Transaction",
    # The error codes of section 6
    "ErrorCode",
}


def test_qi_base_streaming_exports() -> None:
    import qi.base.streaming as streaming

    assert len(streaming.__all__) == len(set(streaming.__all__)), "duplicate names in __all__"
    assert set(streaming.__all__) == STREAMING_API
    for name in streaming.__all__:
        member = getattr(streaming, name)
        assert member.__module__.startswith("qi.base.streaming._"), f"{name} is not re-exported"
        assert member.__doc__ and member.__doc__.strip(), f"{name} has no docstring"


def test_bare_install_imports_without_kafka_clients() -> None:
    """`pip install qi-base` alone must import and run memory: no client library at import."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['confluent_kafka'] = None\n"  # make the import fail as if not installed
        "sys.modules['aiokafka'] = None\n"
        "import asyncio\n"
        "from qi.base.streaming import StreamingConfig, create_streaming_client\n"
        "async def main():\n"
        "    client = create_streaming_client('memory', StreamingConfig('t', ('bare:1',)))\n"
        "    assert (await client.get_producer()).is_success()\n"
        "    other = create_streaming_client('confluent', StreamingConfig('t', ('b:1',)))\n"
        "    missing = await other.get_producer()\n"
        "    assert missing.error.code == 'STREAMING_UNKNOWN_IMPLEMENTATION', missing\n"
        '    assert "qi-base[confluent]" in missing.error.message\n'
        "    await client.disconnect()\n"
        "asyncio.run(main())\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
