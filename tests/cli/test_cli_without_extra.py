"""Without the ``cli`` extra, ``qi-stream`` says in one line what to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ._support import cli_env

# What the installed console script runs (see [project.scripts]), and ``python -m``.
SCRIPT = "from qi.base.streaming.cli import main; sys.exit(main())"
MODULE = "import runpy; runpy.run_module('qi.base.streaming.cli', run_name='__main__')"


@pytest.mark.parametrize("missing", ["click", "rich"])
@pytest.mark.parametrize("entry", [SCRIPT, MODULE], ids=["script", "module"])
def test_a_missing_extra_is_one_line_saying_what_to_install(missing: str, entry: str) -> None:
    # A None entry in sys.modules makes `import click` fail as if it were not installed.
    code = f"import sys; sys.modules[{missing!r}] = None; {entry}"
    completed = subprocess.run(
        [sys.executable, "-c", code, "topics", "list"],
        capture_output=True,
        env=cli_env(),
        timeout=60,
        check=False,
    )
    lines = completed.stderr.decode().splitlines()
    assert completed.returncode == 1, completed.stderr.decode()
    assert len(lines) == 1, lines
    assert "pip install 'qi-base[cli]'" in lines[0]
    assert completed.stdout == b""
