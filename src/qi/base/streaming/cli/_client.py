"""Small helpers every command uses to talk to the library: unwrap or fail with one line."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from qi.base import Failure, QiError, Result
from qi.base.streaming import StreamingAdmin, StreamingClient, create_streaming_client
from qi.base.streaming.cli._options import CommonOptions
from qi.base.streaming.cli._output import EXIT_OK, CliError
from qi.base.streaming.cli._runner import Stop, exit_with, run_async

T = TypeVar("T")


def value_or_exit(result: Result[T, QiError], prefix: str = "") -> T:
    """The Success value, or raise the CliError that reports the Failure in one line."""
    if isinstance(result, Failure):
        raise CliError.from_qi_error(result.error, prefix)
    return result.value


async def connected_admin(client: StreamingClient) -> StreamingAdmin:
    """The client's admin, or exit with the reason it could not connect."""
    return value_or_exit(await client.get_admin())


async def disconnect_or_exit(client: StreamingClient) -> None:
    """Disconnect everything the client handed out; a failure (e.g. a commit) is reported."""
    value_or_exit(await client.disconnect())


def run_admin(options: CommonOptions, action: Callable[[StreamingAdmin], Awaitable[None]]) -> None:
    """Connect an admin with the shared options, run ``action``, disconnect."""
    config = options.require_brokers()

    async def main(_stop: Stop) -> int:
        async with create_streaming_client(options.chosen_backend, config) as client:
            await action(await connected_admin(client))
        return EXIT_OK

    exit_with(run_async(main))
