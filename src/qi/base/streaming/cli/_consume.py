"""``qi-stream consume``: print messages of one or more topics as a consumer-group member.

Commits follow the library's rules: offsets are committed automatically every
few seconds, and on exit ``disconnect()`` commits everything printed. Messages
that arrive after ``--max`` is reached are refused (the handler returns a
Failure), so the group never commits past what was actually printed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from datetime import datetime
from typing import Any, Final, Literal

import click

from qi.base import ErrorCategory, Failure, QiError, Result, Success, create_error
from qi.base.streaming import (
    ConsumedMessage,
    ConsumerConfig,
    ConsumerRunConfig,
    EachMessagePayload,
    ErrorCode,
    SubscriptionConfig,
    create_streaming_client,
)
from qi.base.streaming.cli._client import connected_admin, value_or_exit
from qi.base.streaming.cli._options import CommonOptions, common_options
from qi.base.streaming.cli._output import EXIT_OK, print_note, print_warning, silence_stdout
from qi.base.streaming.cli._runner import Stop, exit_with, run_async

# Returned by the handler for messages beyond --max: the library then holds the
# partition (and commits nothing past it) until disconnect.
_HOLD: Final = create_error(
    "QI_STREAM_HOLD", "message not printed: --max reached", ErrorCategory.BUSINESS
)
_WARNINGS_SHOWN: Final = 5
Isolation = Literal["read_committed", "read_uncommitted"]
"""The values of ``--isolation``, as ``ConsumerConfig.isolation_level`` takes them."""


def text(data: bytes | None) -> str | None:
    """Bytes as text for JSON output: UTF-8, invalid bytes as ``\\xNN`` escapes."""
    return None if data is None else data.decode("utf-8", "backslashreplace")


def message_json(message: ConsumedMessage) -> str:
    """One line of ``--format json`` output for ``message``."""
    timestamp: datetime | None = message.timestamp
    document: dict[str, Any] = {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "key": text(message.key),
        "value": text(message.value),
        "headers": {name: text(value) for name, value in message.headers.items()},
        "timestamp": timestamp.isoformat() if timestamp is not None else None,
    }
    return json.dumps(document, ensure_ascii=False)


class _Printer:
    """The each_message handler: prints messages until --max, then holds the rest."""

    def __init__(self, json_lines: bool, max_messages: int | None) -> None:
        self._json_lines = json_lines
        self._max = max_messages
        self.count = 0
        self.last_message_at = time.monotonic()
        self.finished = asyncio.Event()
        self.broken_pipe = False
        self._warned: set[str] = set()

    async def handle(self, payload: EachMessagePayload) -> Result[None, QiError]:
        if self.finished.is_set():
            return Failure(_HOLD)
        message = payload.message
        try:
            if self._json_lines:
                sys.stdout.buffer.write(message_json(message).encode() + b"\n")
            else:
                sys.stdout.buffer.write((message.value or b"") + b"\n")
            sys.stdout.buffer.flush()
        except BrokenPipeError:  # e.g. `qi-stream consume ... | head -3`
            self.broken_pipe = True
            self.finished.set()
            return Failure(_HOLD)
        self.count += 1
        self.last_message_at = time.monotonic()
        if self._max is not None and self.count >= self._max:
            self.finished.set()
        return Success(None)

    def on_error(self, error: QiError) -> None:
        cause = error.context.get("cause")
        if isinstance(cause, QiError) and cause.code == _HOLD.code:
            return
        shown = f"[{error.code}] {error.message}"
        if shown not in self._warned and len(self._warned) < _WARNINGS_SHOWN:
            self._warned.add(shown)
            print_warning(shown)


async def _wait_until_done(printer: _Printer, stop: Stop, idle_timeout: float | None) -> None:
    """Return on --max, on a stop request, or after ``idle_timeout`` seconds without a message."""
    waiters = {
        asyncio.ensure_future(printer.finished.wait()),
        asyncio.ensure_future(stop.wait()),
    }
    try:
        while not printer.finished.is_set() and not stop.is_set():
            remaining = None
            if idle_timeout is not None:
                remaining = printer.last_message_at + idle_timeout - time.monotonic()
                if remaining <= 0:
                    return
            await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


@click.command()
@click.argument("topics", nargs=-1, required=True, metavar="TOPIC...")
@click.option("--group", help="Consumer group (default: a new qi-stream-<random> group).")
@click.option(
    "--from-beginning",
    is_flag=True,
    help="Start at the earliest offset where the group has no committed offset "
    "(default: only new messages).",
)
@click.option(
    "--max", "max_messages", type=click.IntRange(min=1), help="Stop after printing N messages."
)
@click.option(
    "--timeout",
    "idle_timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop once SECONDS pass without a new message (counted from when the group "
    "assigned partitions). Default: wait for ever.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["raw", "json"]),
    default="raw",
    show_default=True,
    help="raw: each value on a line; json: one object a line with topic, partition, offset, "
    "key, value, headers, timestamp (ISO 8601); bytes as UTF-8, invalid bytes as \\xNN.",
)
@click.option(
    "--session-timeout",
    type=click.FloatRange(min=1),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Group session timeout; joining takes about half of it on some brokers.",
)
@click.option(
    "--isolation",
    type=click.Choice(["read_committed", "read_uncommitted"]),
    default="read_committed",
    show_default=True,
    help="read_committed: only records of committed transactions (and non-transactional "
    "ones); read_uncommitted: also records of open and aborted transactions.",
)
@common_options
def consume(
    options: CommonOptions,
    topics: tuple[str, ...],
    group: str | None,
    from_beginning: bool,
    max_messages: int | None,
    idle_timeout: float | None,
    output_format: str,
    session_timeout: float,
    isolation: Isolation,
) -> None:
    """Print messages of TOPIC... on stdout until --max, --timeout or Ctrl-C.

    Offsets of printed messages are committed (every 5 s, and on exit), so running
    again with the same --group continues where this run stopped. Ctrl-C stops
    cleanly and exits with status 130; --max and --timeout exit with 0.

    \b
    Examples:
      qi-stream consume events --from-beginning --max 10
      qi-stream consume events orders --group audit --format json --timeout 5
      qi-stream consume payments --isolation read_uncommitted --from-beginning
    """
    config = options.require_brokers()
    group_id = group if group is not None else f"qi-stream-{uuid.uuid4().hex[:12]}"
    consumer_config = ConsumerConfig(
        group_id=group_id,
        session_timeout=session_timeout,
        heartbeat_interval=min(3.0, session_timeout / 3),
        isolation_level=isolation,
    )
    printer = _Printer(output_format == "json", max_messages)

    async def main(stop: Stop) -> int:
        async with create_streaming_client(options.chosen_backend, config) as client:
            # Kafka would wait for ever on a topic that does not exist: say so instead.
            admin = await connected_admin(client)
            value_or_exit(await admin.get_topic_metadata(list(topics)))
            consumer = value_or_exit(await client.get_consumer(consumer_config))
            value_or_exit(
                await consumer.subscribe(
                    SubscriptionConfig(topics=topics, from_beginning=from_beginning)
                )
            )
            run = ConsumerRunConfig(
                each_message=printer.handle, on_error=printer.on_error, retry_backoff=0.5
            )
            started = await consumer.run(run)
            timed_out = isinstance(started, Failure) and started.error.code == ErrorCode.TIMEOUT
            value_or_exit(
                started, "the group assigned no partitions in time: " if timed_out else ""
            )
            printer.last_message_at = time.monotonic()
            await _wait_until_done(printer, stop, idle_timeout)
            # Stops the loop and commits what was printed; a failed commit is an error.
            value_or_exit(await client.disconnect())
        if printer.broken_pipe:
            silence_stdout()
            return EXIT_OK
        plural = "" if printer.count == 1 else "s"
        print_note(f"consumed {printer.count} message{plural} (group {group_id})")
        return EXIT_OK

    exit_with(run_async(main, graceful=True))
