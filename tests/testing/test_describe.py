"""The listing of a topic's messages that failure messages show."""

from __future__ import annotations

from qi.base.streaming import ConsumedMessage
from qi.base.streaming.testing import describe_messages


def _message(offset: int) -> ConsumedMessage:
    return ConsumedMessage("t", 0, offset, b"k", b"v", None, {})


def test_a_long_topic_is_listed_up_to_fifty_messages() -> None:
    listing = describe_messages("t", tuple(_message(offset) for offset in range(53))).splitlines()

    assert listing[0] == "topic 't' holds 53 message(s):"
    assert listing[1] == "  partition 0 offset 0: key=b'k' value=b'v'"
    assert listing[50] == "  partition 0 offset 49: key=b'k' value=b'v'"
    assert listing[51:] == ["  ... and 3 more"]


def test_an_empty_topic_says_so() -> None:
    assert describe_messages("t", ()) == "topic 't' holds no messages"
