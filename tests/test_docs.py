"""The README's example and the quickstart run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(code_or_path: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *code_or_path], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_readme_usage_example_runs_as_written() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert blocks, "the README has no python example"
    completed = _run(["-c", blocks[0]])
    assert completed.returncode == 0, completed.stderr
    assert "written to partition" in completed.stdout
    assert 'received b\'{"action": "login"}\'' in completed.stdout


def test_quickstart_runs() -> None:
    completed = _run([str(ROOT / "examples" / "quickstart.py")])
    assert completed.returncode == 0, completed.stderr
    assert "sent 12 messages" in completed.stdout
    assert "consumed 12 messages" in completed.stdout


def test_every_other_readme_python_example_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)[1:]
    assert blocks, "the README has no python examples beyond the first"
    for block in blocks:
        completed = _run(["-c", block])
        assert completed.returncode == 0, f"{block}\n{completed.stderr}"
