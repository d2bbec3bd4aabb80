"""``qi-stream topics``: list, create, delete and describe topics through the admin API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import MappingProxyType

import click
from rich.table import Table

from qi.base import Failure
from qi.base.streaming import StreamingAdmin, TopicConfig, create_streaming_client
from qi.base.streaming.cli._client import connected_admin, value_or_exit
from qi.base.streaming.cli._options import CommonOptions, common_options
from qi.base.streaming.cli._output import EXIT_OK, print_result, stdout
from qi.base.streaming.cli._runner import Stop, exit_with, run_async


def _run_admin(options: CommonOptions, action: Callable[[StreamingAdmin], Awaitable[None]]) -> None:
    """Connect an admin with the shared options, run ``action``, disconnect."""
    config = options.require_brokers()

    async def main(_stop: Stop) -> int:
        async with create_streaming_client(options.chosen_backend, config) as client:
            await action(await connected_admin(client))
        return EXIT_OK

    exit_with(run_async(main))


def _parse_config_entries(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    entries: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected key=value, got {item!r}")
        entries[key.strip()] = value
    return entries


@click.group()
def topics() -> None:
    """List, create, delete and describe topics."""


@topics.command("list")
@common_options
def list_topics(options: CommonOptions) -> None:
    """Print the cluster's topic names, one a line (internal "__" topics left out).

    \b
    Example:
      qi-stream topics list --brokers 127.0.0.1:9092
    """

    async def action(admin: StreamingAdmin) -> None:
        names = value_or_exit(await admin.list_topics())
        for name in sorted(names):
            print_result(name)

    _run_admin(options, action)


@topics.command("create")
@click.argument("name")
@click.option(
    "--partitions", type=click.IntRange(min=1), default=1, show_default=True, help="Partitions."
)
@click.option(
    "--replication-factor",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Copies of each partition.",
)
@click.option(
    "--config",
    "config_entries",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_parse_config_entries,
    help="Topic setting such as retention.ms=60000 (repeatable).",
)
@common_options
def create_topic(
    options: CommonOptions,
    name: str,
    partitions: int,
    replication_factor: int,
    config_entries: dict[str, str],
) -> None:
    """Create topic NAME.

    \b
    Example:
      qi-stream topics create events --partitions 3 --config retention.ms=3600000
    """
    topic = TopicConfig(
        topic=name,
        num_partitions=partitions,
        replication_factor=replication_factor,
        config_entries=MappingProxyType(config_entries),
    )

    async def action(admin: StreamingAdmin) -> None:
        value_or_exit(await admin.create_topics([topic]))
        plural = "s" if partitions != 1 else ""
        print_result(f"created topic {name} ({partitions} partition{plural})")

    _run_admin(options, action)


@topics.command("delete")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@common_options
def delete_topics(options: CommonOptions, names: tuple[str, ...]) -> None:
    """Delete one or more topics (the existing ones are deleted even if some are missing).

    \b
    Example:
      qi-stream topics delete events
    """

    async def action(admin: StreamingAdmin) -> None:
        deleted = await admin.delete_topics(list(names))
        # Kafka deletes topics one by one: report the ones that went before the error.
        failed = deleted.error.context.get("topics", names) if isinstance(deleted, Failure) else ()
        for name in names:
            if name not in failed:
                print_result(f"deleted topic {name}")
        value_or_exit(deleted)

    _run_admin(options, action)


@topics.command("describe")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@common_options
def describe_topics(options: CommonOptions, names: tuple[str, ...]) -> None:
    """Show each partition of the named topics: leader, replicas and in-sync replicas.

    \b
    Example:
      qi-stream topics describe events
    """

    async def action(admin: StreamingAdmin) -> None:
        metadata = value_or_exit(await admin.get_topic_metadata(list(names)))
        table = Table("topic")
        for heading in ("partition", "leader", "replicas", "isr"):
            table.add_column(heading, justify="right")
        for topic in metadata:
            for partition in topic.partitions:
                table.add_row(
                    topic.name,
                    str(partition.partition_id),
                    str(partition.leader),
                    ",".join(map(str, partition.replicas)),
                    ",".join(map(str, partition.isr)),
                )
        stdout.print(table)

    _run_admin(options, action)
