"""Every produce failure says whether its message may have been written, whatever failed.

A caller judges a resend by ``context["delivery"]``: a failure without it, or one that says
``not_written`` while an attempt may have reached the broker, makes a resend a duplicate.
"""

from __future__ import annotations

from qi.base import Failure, QiError, Result
from qi.base.streaming import MessageBatch, StreamingMessage, StreamingProducer

from ._support import DELIVERY_VALUES, TopicFactory


class UnreadableValue(bytes):
    """A value that passes validation and then fails when a backend copies it: an error
    the backend's send path did not expect."""

    def __bytes__(self) -> bytes:
        raise RuntimeError("this value cannot be read")


def _verdict(result: Result[object, QiError]) -> object:
    assert isinstance(result, Failure), result
    return result.error.context.get("delivery")


async def test_an_unexpected_error_in_the_send_path_still_carries_a_verdict(
    producer: StreamingProducer, make_topic: TopicFactory
) -> None:
    topic = await make_topic(1)
    unreadable = StreamingMessage(UnreadableValue(b"value"))
    assert _verdict(await producer.send(topic, unreadable)) in DELIVERY_VALUES
    outcome = await producer.send_batch(
        MessageBatch(topic, (StreamingMessage(b"fine"), unreadable))
    )
    assert isinstance(outcome, Failure)
    per_message = outcome.error.context.get("results")
    if per_message is None:  # the backend failed the whole batch
        assert _verdict(outcome) in DELIVERY_VALUES
    else:
        for result in per_message:
            if isinstance(result, Failure):
                assert _verdict(result) in DELIVERY_VALUES


async def test_a_wrongly_called_send_says_nothing_was_written(
    producer: StreamingProducer,
) -> None:
    wrong = await producer.send("topic", StreamingMessage(b"v"), "extra")  # type: ignore[call-arg]
    assert _verdict(wrong) == "not_written"
    wrong_batch = await producer.send_batch()  # type: ignore[call-arg]
    assert _verdict(wrong_batch) == "not_written"
