"""The memory backend's error table: every broker error has a contract code."""

from __future__ import annotations

import pytest

from qi.base.streaming import ErrorCode
from qi.base.streaming._codes import CATEGORY_OF, TRANSACTION_CONTEXT
from qi.base.streaming.backends.memory import BrokerError
from qi.base.streaming.backends.memory._errors import ERROR_TABLE, MemoryBrokerError, translate


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
