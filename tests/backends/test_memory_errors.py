"""The memory backend's error table: every broker error has a contract code, and the
broker's native answers become QiErrors only through it."""

from __future__ import annotations

import pytest

from qi.base import QiError
from qi.base.streaming import ErrorCode, StreamingMessage, TopicConfig
from qi.base.streaming._codes import CATEGORY_OF, TRANSACTION_CONTEXT
from qi.base.streaming.backends.memory import BrokerError, MemoryBroker
from qi.base.streaming.backends.memory._errors import (
    ERROR_TABLE,
    MemoryBrokerError,
    produce_outcomes,
    translate,
)
from qi.base.streaming.backends.memory._records import StickyPartitions


def test_every_broker_error_has_an_entry() -> None:
    assert set(ERROR_TABLE) == set(BrokerError)


@pytest.mark.parametrize("error", list(BrokerError), ids=str)
def test_broker_errors_translate_through_the_table(error: BrokerError) -> None:
    code, retriable = ERROR_TABLE[error]
    translated = translate(MemoryBrokerError(error, "boom"), "send", ErrorCode.PRODUCE_FAILED)
    assert translated.code == code.value
    assert translated.category == CATEGORY_OF[code]
    assert translated.message == "boom"
    assert dict(translated.context) == {
        "operation": "send",
        "implementation": "memory",
        "kafka_error": error.value,
        "retriable": retriable,
        **TRANSACTION_CONTEXT.get(code, {}),
    }


def test_other_exceptions_take_the_fallback_code() -> None:
    translated = translate(ValueError("odd"), "commit", ErrorCode.COMMIT_FAILED)
    assert translated.code == ErrorCode.COMMIT_FAILED.value
    assert translated.context["exception_type"] == "ValueError"
    assert "odd" in translated.message


def test_a_refused_message_is_a_native_outcome_that_the_table_translates() -> None:
    # The broker answers a produce with native errors; only the producer's translate makes
    # QiErrors of them, keeping the context the broker gave (a hook's retriable included).
    broker = MemoryBroker(("errors-test:9092",))
    broker.create_topic(TopicConfig("t", 1))
    broker.fail_next_produces("t", 1, retriable=False)
    produced = broker.produce(
        "t",
        [StreamingMessage(b"a"), StreamingMessage(b"b", partition=5)],
        StickyPartitions(0.0),
        False,
    )
    assert not isinstance(produced, MemoryBrokerError)
    outcomes, failures = produced
    assert failures == 2
    injected, missing = outcomes
    assert isinstance(injected, MemoryBrokerError) and isinstance(missing, MemoryBrokerError)
    assert missing.error is BrokerError.UNKNOWN_PARTITION
    translated = produce_outcomes(outcomes, "send_batch")
    assert [outcome.code for outcome in translated if isinstance(outcome, QiError)] == [
        ErrorCode.PRODUCE_FAILED.value,
        ErrorCode.INVALID_MESSAGE.value,
    ]
    first = translated[0]
    assert isinstance(first, QiError)
    assert dict(first.context) == {
        "operation": "send_batch",
        "implementation": "memory",
        "kafka_error": "INJECTED_FAULT",
        "retriable": False,
        "topic": "t",
        "partition": 0,
        "delivery": "not_written",
    }
