"""The run loop's payloads: built through their slots, they behave as constructed ones."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from qi.base.streaming import ConsumedMessage, EachBatchPayload, EachMessagePayload
from qi.base.streaming._fast_values import EACH_MESSAGE_SETTERS

MESSAGE = ConsumedMessage("orders", 0, 7, None, b"value", None)


def built_as_the_at_least_once_loop_does() -> EachMessagePayload:
    """Topic, partition and message set through the slots; ``transaction`` left unset."""
    set_topic, set_partition, set_message, _ = EACH_MESSAGE_SETTERS
    payload = object.__new__(EachMessagePayload)
    set_topic(payload, "orders")
    set_partition(payload, 0)
    set_message(payload, MESSAGE)
    return payload


def test_an_unset_transaction_reads_as_none_and_the_payload_equals_a_constructed_one() -> None:
    payload = built_as_the_at_least_once_loop_does()
    constructed = EachMessagePayload("orders", 0, MESSAGE)
    assert payload.transaction is None
    assert payload == constructed
    assert repr(payload) == repr(constructed)
    assert copy.copy(payload) == constructed
    assert dataclasses.replace(payload, partition=1).transaction is None


def test_other_missing_attributes_still_raise() -> None:
    payload = built_as_the_at_least_once_loop_does()
    with pytest.raises(AttributeError, match="offset"):
        getattr(payload, "offset")  # noqa: B009 - the name is what is tested


def test_payloads_default_to_no_transaction() -> None:
    assert EachMessagePayload("orders", 0, MESSAGE).transaction is None
    assert EachBatchPayload("orders", 0, (MESSAGE,)).transaction is None
