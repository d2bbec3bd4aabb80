"""``qi-stream groups``: list, describe (with lag), reset and delete consumer groups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import click
from rich.table import Column, Table

from qi.base.streaming import (
    GroupDescription,
    PartitionLag,
    StreamingAdmin,
)
from qi.base.streaming.cli._client import run_admin, value_or_exit
from qi.base.streaming.cli._options import CommonOptions, common_options, format_option
from qi.base.streaming.cli._output import (
    EXIT_FAILURE,
    CliError,
    print_json,
    print_note,
    print_result,
    stdout,
)

ResetTo = Literal["earliest", "latest"] | int | datetime


@click.group()
def groups() -> None:
    """List, describe, reset and delete consumer groups."""


@groups.command("list")
@format_option
@common_options
def list_groups(options: CommonOptions, output_format: str) -> None:
    """Print the cluster's consumer group ids, one a line.

    \b
    Example:
      qi-stream groups list --format json
    """

    async def action(admin: StreamingAdmin) -> None:
        ids = value_or_exit(await admin.list_groups())
        if output_format == "json":
            print_json(list(ids))
            return
        for group_id in ids:
            print_result(group_id)

    run_admin(options, action)


@groups.command("describe")
@click.argument("group_id", metavar="GROUP")
@format_option
@common_options
def describe_group(options: CommonOptions, group_id: str, output_format: str) -> None:
    """Show GROUP's state, members and assignment, and per partition the committed offset,
    the log end and the lag, with the total.

    \b
    Example:
      qi-stream groups describe billing
    """

    async def action(admin: StreamingAdmin) -> None:
        described = value_or_exit(await admin.describe_group(group_id))
        if described.state == "dead":
            raise CliError(f"consumer group {group_id!r} does not exist")
        lags = await _group_lags(admin, described)
        if output_format == "json":
            print_json(_description_json(described, lags))
        else:
            _print_description(described, lags)

    run_admin(options, action)


@groups.command("reset")
@click.argument("group_id", metavar="GROUP")
@click.option("--topic", required=True, help="Topic whose offsets move (all its partitions).")
@click.option(
    "--to",
    "to_text",
    required=True,
    metavar="earliest|latest|OFFSET|ISO-TIME",
    help="Log start, log end, an offset, or the first message at or after a time "
    "(ISO 8601; local time without an offset).",
)
@click.option("--yes", is_flag=True, help="Do not ask before resetting.")
@format_option
@common_options
def reset_group(
    options: CommonOptions,
    group_id: str,
    topic: str,
    to_text: str,
    yes: bool,
    output_format: str,
) -> None:
    """Move GROUP's committed offsets on TOPIC. The group must have no active members;
    the plan is shown and confirmed first unless --yes.

    \b
    Example:
      qi-stream groups reset billing --topic orders --to 2026-01-31T08:00:00+00:00 --yes
    """
    to = _parse_target(to_text)
    plan = _Plan(group_id, topic, to)
    run_admin(options, plan.show)
    if not yes and not _confirmed(f"reset group {group_id} on {topic}?"):
        raise CliError("reset cancelled: nothing changed", EXIT_FAILURE)
    run_admin(options, plan.apply)
    if output_format == "json":
        print_json(
            {
                "group_id": group_id,
                "topic": topic,
                "partitions": [
                    {"partition": lag.partition, "from": before.committed, "to": lag.committed}
                    for before, lag in zip(plan.before, plan.after, strict=True)
                ],
            }
        )
        return
    for before, lag in zip(plan.before, plan.after, strict=True):
        print_result(
            f"{topic}[{lag.partition}]: {_offset_text(before.committed)} -> {lag.committed}"
        )


@groups.command("delete")
@click.argument("group_id", metavar="GROUP")
@format_option
@common_options
def delete_group(options: CommonOptions, group_id: str, output_format: str) -> None:
    """Delete GROUP and its committed offsets (refused while it has active members).

    \b
    Example:
      qi-stream groups delete billing
    """

    async def action(admin: StreamingAdmin) -> None:
        value_or_exit(await admin.delete_group(group_id))
        if output_format == "json":
            print_json({"deleted": group_id})
        else:
            print_result(f"deleted group {group_id}")

    run_admin(options, action)


# -- reset ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Plan:
    """A reset in two steps around the user's confirmation (asked outside the event loop)."""

    group_id: str
    topic: str
    to: ResetTo
    before: tuple[PartitionLag, ...] = ()
    after: tuple[PartitionLag, ...] = ()

    async def show(self, admin: StreamingAdmin) -> None:
        """Refuse an active group, then print where each partition stands and will go."""
        await _refuse_active(admin, self.group_id)
        self.before = value_or_exit(await admin.get_group_lag(self.group_id, [self.topic]))
        print_note(f"reset group {self.group_id} on {self.topic} to {_target_text(self.to)}:")
        for lag in self.before:
            print_note(
                f"  {self.topic}[{lag.partition}]: committed {_offset_text(lag.committed)}, "
                f"log {lag.start}..{lag.end} -> {_planned(lag, self.to)}"
            )

    async def apply(self, admin: StreamingAdmin) -> None:
        value_or_exit(await admin.reset_group_offsets(self.group_id, self.topic, self.to))
        self.after = value_or_exit(await admin.get_group_lag(self.group_id, [self.topic]))


def _confirmed(question: str) -> bool:
    """Ask on stderr; no answer (end of input) is a no."""
    try:
        return click.confirm(question, default=False, err=True)
    except click.Abort:
        return False


async def _refuse_active(admin: StreamingAdmin, group_id: str) -> None:
    described = value_or_exit(await admin.describe_group(group_id))
    if described.members:
        members = ", ".join(member.member_id for member in described.members)
        raise CliError(f"group {group_id} has active members ({members}): stop them first")


def _parse_target(text: str) -> ResetTo:
    if text == "earliest":
        return "earliest"
    if text == "latest":
        return "latest"
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"expected earliest, latest, an offset or an ISO time, got {text!r}",
            param_hint="'--to'",
        ) from None
    if moment.tzinfo is not None:
        return moment
    try:
        return moment.astimezone()
    except (OverflowError, ValueError, OSError):
        # Local time cannot be computed at datetime's ends (year 1): the library takes
        # such a naive time as UTC.
        return moment


def _planned(lag: PartitionLag, to: ResetTo) -> str:
    if to == "earliest":
        return str(lag.start)
    if to == "latest":
        return str(lag.end)
    if isinstance(to, int):
        return str(min(max(to, lag.start), lag.end))
    return "the first offset at or after that time"


def _target_text(to: ResetTo) -> str:
    return to.isoformat() if isinstance(to, datetime) else str(to)


def _offset_text(offset: int | None) -> str:
    return "-" if offset is None else str(offset)


# -- describe ---------------------------------------------------------------------------------


async def _group_lags(
    admin: StreamingAdmin, described: GroupDescription
) -> tuple[PartitionLag, ...]:
    """Lag on every topic the group committed to or its members are assigned."""
    lags = value_or_exit(await admin.get_group_lag(described.group_id))
    committed_topics = {lag.topic for lag in lags}
    assigned = sorted(
        {topic for member in described.members for topic, _ in member.assignment} - committed_topics
    )
    if assigned:
        lags += value_or_exit(await admin.get_group_lag(described.group_id, assigned))
    return tuple(sorted(lags, key=lambda lag: (lag.topic, lag.partition)))


def _owners(described: GroupDescription) -> dict[tuple[str, int], str]:
    return {pair: member.member_id for member in described.members for pair in member.assignment}


def _description_json(described: GroupDescription, lags: tuple[PartitionLag, ...]) -> object:
    owners = _owners(described)
    return {
        "group_id": described.group_id,
        "state": described.state,
        "members": [
            {
                "member_id": member.member_id,
                "client_id": member.client_id,
                "host": member.host,
                "assignment": [
                    {"topic": topic, "partition": partition}
                    for topic, partition in member.assignment
                ],
            }
            for member in described.members
        ],
        "partitions": [
            {
                "topic": lag.topic,
                "partition": lag.partition,
                "committed": lag.committed,
                "start": lag.start,
                "end": lag.end,
                "lag": lag.lag,
                "member_id": owners.get((lag.topic, lag.partition)),
            }
            for lag in lags
        ],
        "total_lag": sum(lag.lag for lag in lags),
    }


def _print_description(described: GroupDescription, lags: tuple[PartitionLag, ...]) -> None:
    print_result(
        f"group {described.group_id}: {described.state}, {len(described.members)} member(s)"
    )
    if described.members:
        # Member ids are what users copy into other commands: folded, never cut short.
        members = Table(Column("member", overflow="fold"), "client id", "host", "partitions")
        for member in described.members:
            assignment = ", ".join(
                f"{topic}[{partition}]" for topic, partition in member.assignment
            )
            members.add_row(member.member_id, member.client_id, member.host, assignment or "-")
        stdout.print(members)
    owners = _owners(described)
    partitions = Table("topic")
    for heading in ("partition", "committed", "log end", "lag"):
        partitions.add_column(heading, justify="right")
    partitions.add_column("member", overflow="fold")
    for lag in lags:
        partitions.add_row(
            lag.topic,
            str(lag.partition),
            _offset_text(lag.committed),
            str(lag.end),
            str(lag.lag),
            owners.get((lag.topic, lag.partition), "-"),
        )
    stdout.print(partitions)
    print_result(f"total lag {sum(lag.lag for lag in lags)}")
