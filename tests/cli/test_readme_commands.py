"""The command-line page's session (docs/cli.md) runs as written against a real broker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from testkit import unique

from ._support import cli_env

CLI_PAGE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
pytestmark = pytest.mark.broker


def _session() -> list[tuple[str, list[str]]]:
    """The console block that uses QI_BROKERS: each `$ command` with the lines it prints."""
    blocks = re.findall(r"```console\n(.*?)```", CLI_PAGE.read_text(), flags=re.DOTALL)
    session = next(block for block in blocks if block.startswith("$ export QI_BROKERS"))
    steps: list[tuple[str, list[str]]] = []
    for line in session.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif line.strip():
            steps[-1][1].append(line)
    return steps


def test_the_cli_pages_command_session_runs_as_written(kafka_bootstrap: str) -> None:
    topic = unique("readme")
    env = cli_env({"QI_BROKERS": kafka_bootstrap})
    # The console examples call `qi-stream`: make this interpreter's one the first found.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for command, expected in _session():
        if command.startswith("export "):
            continue  # the environment above already holds QI_BROKERS
        command = re.sub(r"\bevents\b", topic, command)
        command = command.replace("--group audit", f"--group {unique('audit')}")
        completed = subprocess.run(
            ["bash", "-c", command], capture_output=True, env=env, timeout=90, check=False
        )
        output = (completed.stdout + completed.stderr).decode()
        assert completed.returncode == 0, f"{command!r} exited {completed.returncode}: {output}"
        for line in expected:
            assert line in output, f"{command!r} did not print {line!r}: {output}"
