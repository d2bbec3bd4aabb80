"""``qi-stream topics``: list, create, delete and describe topics through the admin API."""

from __future__ import annotations

from types import MappingProxyType

import click
from rich.table import Table

from qi.base import Failure
from qi.base.streaming import StreamingAdmin, TopicConfig
from qi.base.streaming.cli._client import run_admin, value_or_exit
from qi.base.streaming.cli._options import CommonOptions, common_options, format_option
from qi.base.streaming.cli._output import print_json, print_result, stdout


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

    run_admin(options, action)


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

    run_admin(options, action)


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

    run_admin(options, action)


@topics.command("describe")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@format_option
@common_options
def describe_topics(options: CommonOptions, names: tuple[str, ...], output_format: str) -> None:
    """Show each partition of the named topics: leader, replicas, in-sync replicas, and
    where its log starts and ends.

    \b
    Example:
      qi-stream topics describe events --format json
    """

    async def action(admin: StreamingAdmin) -> None:
        metadata = value_or_exit(await admin.get_topic_metadata(list(names)))
        rows = [
            (topic.name, partition, offsets)
            for topic in metadata
            for partition, offsets in zip(
                topic.partitions,
                value_or_exit(await admin.get_topic_offsets(topic.name)),
                strict=True,
            )
        ]
        if output_format == "json":
            print_json(
                [
                    {
                        "topic": name,
                        "partition": partition.partition_id,
                        "leader": partition.leader,
                        "replicas": list(partition.replicas),
                        "isr": list(partition.isr),
                        "start": offsets.start,
                        "end": offsets.end,
                    }
                    for name, partition, offsets in rows
                ]
            )
            return
        table = Table("topic")
        for heading in ("partition", "leader", "replicas", "isr", "start", "end"):
            table.add_column(heading, justify="right")
        for name, partition, offsets in rows:
            table.add_row(
                name,
                str(partition.partition_id),
                str(partition.leader),
                ",".join(map(str, partition.replicas)),
                ",".join(map(str, partition.isr)),
                str(offsets.start),
                str(offsets.end),
            )
        stdout.print(table)

    run_admin(options, action)
