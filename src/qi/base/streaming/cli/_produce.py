"""``qi-stream produce``: send lines of stdin or a file to a topic, in batches."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO, Final

import click
from rich.progress import Progress, ProgressColumn, SpinnerColumn, Task, TextColumn
from rich.text import Text

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming import (
    ErrorCode,
    MessageBatch,
    ProducerConfig,
    ProduceResult,
    StreamingMessage,
    StreamingProducer,
    create_streaming_client,
)
from qi.base.streaming.cli._client import value_or_exit
from qi.base.streaming.cli._lines import LineReader
from qi.base.streaming.cli._options import CommonOptions, common_options
from qi.base.streaming.cli._output import (
    EXIT_FAILURE,
    EXIT_OK,
    CliError,
    one_line,
    print_error,
    print_note,
    stderr,
)
from qi.base.streaming.cli._runner import Stop, exit_with, run_async

# A batch in which every message failed with one of these will not go better next time.
_FATAL: Final = frozenset(
    {
        ErrorCode.TOPIC_NOT_FOUND,
        ErrorCode.INVALID_TOPIC,
        ErrorCode.CONNECTION_FAILED,
        ErrorCode.NOT_CONNECTED,
        ErrorCode.AUTHENTICATION_FAILED,
        ErrorCode.AUTHORIZATION_FAILED,
        ErrorCode.UNKNOWN_IMPLEMENTATION,
        ErrorCode.INVALID_CONFIG,
    }
)
_JSON_FIELDS: Final = frozenset({"key", "value", "headers", "partition"})
_FAILURES_SHOWN: Final = 5


class _InvalidLine(ValueError):
    """A ``--format json`` line that does not describe a message."""


def _parse_headers(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected name=value, got {item!r}")
        headers[name] = value
    return headers


def _json_message(
    line: bytes, default_key: str | None, default_headers: Mapping[str, str]
) -> StreamingMessage | None:
    """The message a JSON line describes; None for a blank line. Raises _InvalidLine."""
    if not line.strip():
        return None
    try:
        document = json.loads(line)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise _InvalidLine(f"not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise _InvalidLine("expected a JSON object with a value field")
    unknown = sorted(set(document) - _JSON_FIELDS)
    if unknown:
        raise _InvalidLine(
            f"unknown field(s) {', '.join(unknown)}: use key, value, headers, partition"
        )
    if "value" not in document:
        raise _InvalidLine('missing value (write "value": null for a tombstone)')
    raw_value = document["value"]
    # A string is the payload itself; null is a tombstone; any other JSON value is sent as
    # compact JSON.
    value: bytes | None
    if raw_value is None:
        value = None
    elif isinstance(raw_value, str):
        value = raw_value.encode()
    else:
        value = json.dumps(raw_value, separators=(",", ":")).encode()
    key = document.get("key", default_key)
    if key is not None and not isinstance(key, str):
        raise _InvalidLine("key must be a string or null")
    headers = dict(default_headers)
    extra = document.get("headers", {})
    if not isinstance(extra, dict) or not all(isinstance(v, str) for v in extra.values()):
        raise _InvalidLine("headers must be an object of strings")
    headers.update(extra)
    partition = document.get("partition")
    if partition is not None and (type(partition) is not int or partition < 0):
        raise _InvalidLine("partition must be an integer >= 0")
    return StreamingMessage(
        value=value, key=key, partition=partition, headers=MappingProxyType(headers)
    )


@dataclass(slots=True)
class _Tally:
    """Acknowledged and failed counts, with the first few failures to show."""

    acknowledged: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def fail(self, line_number: int, reason: str) -> None:
        self.failed += 1
        if len(self.failures) < _FAILURES_SHOWN:
            self.failures.append(f"line {line_number}: {one_line(reason)}")

    def record(self, outcome: Result[object, QiError], line_numbers: list[int]) -> None:
        """Count a send_batch outcome; raise CliError when the whole batch failed for good."""
        if isinstance(outcome, Success):
            self.acknowledged += len(line_numbers)
            return
        error = outcome.error
        results = error.context.get("results")
        if error.code != ErrorCode.BATCH_PARTIAL_FAILURE or not isinstance(results, tuple):
            self._fatal_or_fail_all(error, line_numbers)
            return
        per_message: list[Result[ProduceResult, QiError]] = list(results)
        errors = [r.error for r in per_message if isinstance(r, Failure)]
        if len(errors) == len(per_message):
            self._fatal_or_fail_all(errors[0], line_numbers, per_message)
            return
        for line_number, result in zip(line_numbers, per_message, strict=True):
            if isinstance(result, Failure):
                self.fail(line_number, str(result.error))
            else:
                self.acknowledged += 1

    def _fatal_or_fail_all(
        self,
        error: QiError,
        line_numbers: list[int],
        per_message: list[Result[ProduceResult, QiError]] | None = None,
    ) -> None:
        if error.code in _FATAL:
            fatal = CliError.from_qi_error(error)
            if self.acknowledged:
                fatal = CliError(
                    f"{fatal.message} (after {self.acknowledged} acknowledged)", fatal.exit_code
                )
            raise fatal
        for index, line_number in enumerate(line_numbers):
            own = per_message[index] if per_message is not None else None
            self.fail(line_number, str(own.error) if isinstance(own, Failure) else str(error))


class _RateColumn(ProgressColumn):
    """Messages acknowledged per second."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text(f"{speed:,.0f} msg/s" if speed else "", style="progress.data.speed")


async def _take(reader: LineReader, limit: int, stop: Stop) -> list[tuple[int, bytes]]:
    """The next lines, or none when input ended or a stop was requested first."""
    taking = asyncio.ensure_future(reader.take(limit))
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({taking, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if taking not in done:
        taking.cancel()
        reader.close()
        return []
    return taking.result()


async def _produce_all(
    producer: StreamingProducer,
    topic: str,
    reader: LineReader,
    parse: _Parser,
    batch_size: int,
    stop: Stop,
    progress: Progress,
) -> _Tally:
    tally = _Tally()
    task = progress.add_task("producing", total=None)
    while not stop.is_set():
        try:
            lines = await _take(reader, batch_size, stop)
        except OSError as exc:
            raise CliError(f"cannot read input: {exc}") from None
        if not lines:
            break
        messages: list[StreamingMessage] = []
        line_numbers: list[int] = []
        for line_number, line in lines:
            try:
                message = parse.message(line)
            except _InvalidLine as exc:
                tally.fail(line_number, str(exc))
                continue
            if message is not None:
                messages.append(message)
                line_numbers.append(line_number)
        if messages:
            acknowledged_before = tally.acknowledged
            tally.record(
                await producer.send_batch(MessageBatch(topic, tuple(messages))), line_numbers
            )
            progress.advance(task, tally.acknowledged - acknowledged_before)
    return tally


@dataclass(frozen=True, slots=True)
class _Parser:
    """Turns one input line into a message, per ``--format``, ``--key`` and ``--header``."""

    json_lines: bool
    key: str | None
    headers: Mapping[str, str]

    def message(self, line: bytes) -> StreamingMessage | None:
        if self.json_lines:
            return _json_message(line, self.key, self.headers)
        return StreamingMessage(value=line, key=self.key, headers=self.headers)


@click.command()
@click.argument("topic")
@click.option(
    "--file",
    "input_path",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
    help="Read messages from this file instead of stdin.",
)
@click.option(
    "--format",
    "input_format",
    type=click.Choice(["raw", "json"]),
    default="raw",
    show_default=True,
    help="raw: each line (without its newline) is a value; json: each line is an object "
    'such as {"key": "k", "value": "v", "headers": {"h": "x"}, "partition": 0} '
    '("value": null is a tombstone).',
)
@click.option("--key", help="Key of every message (a JSON line's own key wins).")
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="NAME=VALUE",
    callback=_parse_headers,
    help="Header on every message (repeatable; a JSON line's own headers win).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Most messages per send_batch call.",
)
@click.option(
    "--idempotent/--no-idempotent",
    default=True,
    show_default=True,
    help="Idempotent producer. The development broker (Tansu 0.6) rejects aiokafka's: "
    "use --no-idempotent with --backend aiokafka there.",
)
@common_options
def produce(
    options: CommonOptions,
    topic: str,
    input_path: Path | None,
    input_format: str,
    key: str | None,
    headers: dict[str, str],
    batch_size: int,
    idempotent: bool,
) -> None:
    """Send each line of stdin (or --file) to TOPIC as one message.

    Prints "acknowledged N, failed M" on stderr and exits 1 if any message failed
    (showing the first few reasons); a batch that fails entirely for a reason
    that will not go away (missing topic, unreachable cluster) stops at once.

    \b
    Examples:
      printf 'hello\\nworld\\n' | qi-stream produce events --key greeting
      qi-stream produce events --format json --file messages.jsonl
    """
    config = options.require_brokers()
    parser = _Parser(input_format == "json", key, MappingProxyType(headers))
    from_stdin = input_path is None or str(input_path) == "-"
    interactive = from_stdin and sys.stdin.isatty()

    async def main(stop: Stop) -> int:
        stream: BinaryIO = sys.stdin.buffer if from_stdin else _open(input_path)
        reader = LineReader(stream)
        progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.completed:,.0f} acknowledged"),
            _RateColumn(),
            console=stderr,
            transient=True,
            # Only on a terminal, and not while someone is typing the messages there.
            disable=not stderr.is_terminal or interactive,
        )
        if interactive:
            print_note("reading messages from the terminal, one a line; Ctrl-D to finish")
        try:
            async with create_streaming_client(options.chosen_backend, config) as client:
                producer = value_or_exit(
                    _hint_idempotence(
                        await client.get_producer(ProducerConfig(idempotent=idempotent))
                    )
                )
                with progress:
                    tally = await _produce_all(
                        producer, topic, reader, parser, batch_size, stop, progress
                    )
        finally:
            reader.close()
            if not from_stdin:
                stream.close()
        for failure in tally.failures:
            print_error(failure)
        if tally.failed > len(tally.failures):
            print_error(f"... and {tally.failed - len(tally.failures)} more failures")
        print_note(f"acknowledged {tally.acknowledged}, failed {tally.failed}")
        return EXIT_FAILURE if tally.failed else EXIT_OK

    exit_with(run_async(main, graceful=True))


def _hint_idempotence(
    result: Result[StreamingProducer, QiError],
) -> Result[StreamingProducer, QiError]:
    """Point at --no-idempotent when a broker turned idempotence down (Tansu 0.6 with aiokafka)."""
    if (
        isinstance(result, Failure)
        and result.error.code == ErrorCode.INVALID_CONFIG
        and "idempoten" in result.error.message
    ):
        return Failure(
            replace(
                result.error, message=f"{result.error.message} (qi-stream: pass --no-idempotent)"
            )
        )
    return result


def _open(path: Path | None) -> BinaryIO:
    assert path is not None
    try:
        return path.open("rb")
    except OSError as exc:
        raise CliError(f"cannot open {path}: {exc.strerror}") from None
