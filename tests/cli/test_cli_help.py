"""Every command has help, and every leaf command takes the shared options after its name."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from qi.base.streaming.cli import cli

SHARED_OPTIONS = {
    "--backend",
    "--brokers",
    "--client-id",
    "--sasl-mechanism",
    "--username",
    "--password-file",
    "--tls",
    "--tls-ca",
    "--tls-cert",
    "--tls-key",
    "--verbose",
}


def _commands(
    group: click.Group, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    found: list[tuple[tuple[str, ...], click.Command]] = []
    for name, command in group.commands.items():
        found.append(((*path, name), command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, (*path, name)))
    return found


ALL_COMMANDS = _commands(cli)
LEAF_COMMANDS = [(path, cmd) for path, cmd in ALL_COMMANDS if not isinstance(cmd, click.Group)]


def test_the_issue_commands_exist() -> None:
    paths = {" ".join(path) for path, _ in ALL_COMMANDS}
    assert paths == {
        "broker",
        "topics",
        "topics list",
        "topics create",
        "topics delete",
        "topics describe",
        "groups",
        "groups list",
        "groups describe",
        "groups reset",
        "groups delete",
        "produce",
        "consume",
        "bench",
        "demo",
    }


@pytest.mark.parametrize("path", [(), *(path for path, _ in ALL_COMMANDS)], ids=" ".join)
def test_help_exits_0(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="qi-stream")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: qi-stream {' '.join(path)}".rstrip())


@pytest.mark.parametrize("path,command", LEAF_COMMANDS, ids=[" ".join(p) for p, _ in LEAF_COMMANDS])
def test_leaf_commands_take_the_shared_options(
    path: tuple[str, ...], command: click.Command
) -> None:
    options = {name for param in command.params for name in param.opts}
    assert SHARED_OPTIONS <= options, f"{' '.join(path)} lacks {SHARED_OPTIONS - options}"
    assert "--password" not in options  # a password never goes on the command line
