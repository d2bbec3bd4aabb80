"""Every code sample of the documentation site (docs/*.md) runs as written.

Plain ``python`` blocks are scripts: mktestdocs runs a page's blocks one after the
other in a fresh interpreter (each sample uses a ``brokers`` value of its own, so
their memory brokers never meet). Blocks with a title are files of a user's project:
the testing page's test files run with pytester, as the plugin's users run them; the
examples page includes ``examples/``, which tests/examples runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from mktestdocs import grab_code_blocks

pytest_plugins = ["pytester"]

DOCS = Path(__file__).resolve().parents[2] / "docs"
RUN_PAGE = "import sys; from mktestdocs import check_md_file; check_md_file(sys.argv[1])"
USER_INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""


def pages_with_samples() -> list[pytest.ParameterSet]:
    pages = []
    for page in sorted(DOCS.glob("*.md")):
        blocks = grab_code_blocks(page.read_text(), lang="python")
        if blocks:
            # A development broker takes a second to start: such pages need the broker.
            needs_broker = any("DevBroker" in block for block in blocks)
            marks = [pytest.mark.broker] if needs_broker else []
            pages.append(pytest.param(page.name, marks=marks, id=page.name))
    return pages


def titled_blocks(page: str) -> dict[str, str]:
    """A page's blocks fenced as ```python title="NAME"```, by name."""
    text = (DOCS / page).read_text()
    return dict(re.findall(r'```python title="(.+?)"\n(.*?)```', text, flags=re.DOTALL))


@pytest.mark.parametrize("page", pages_with_samples())
def test_the_samples_of_a_page_run(page: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", RUN_PAGE, str(DOCS / page)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_the_guide_pages_have_samples() -> None:
    # Guards the collection above: a fence written differently would run nothing.
    pages = {param.id for param in pages_with_samples()}
    assert {"getting-started.md", "producing.md", "consuming.md", "transactions.md"} <= pages


def test_the_testing_pages_ten_line_test_passes_in_a_users_project(
    pytester: pytest.Pytester,
) -> None:
    files = titled_blocks("testing.md")
    pytester.makeini(USER_INI)
    pytester.makepyfile(orders=files["orders.py"], test_orders=files["test_orders.py"])
    test_lines = [line for line in files["test_orders.py"].splitlines() if line.startswith("  ")]

    result = pytester.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)
    assert len(test_lines) <= 10, "the testing page promises a test in ten lines"


@pytest.mark.broker
def test_the_testing_pages_per_backend_test_passes_on_memory_and_confluent(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(USER_INI)
    pytester.makepyfile(test_each_backend=titled_blocks("testing.md")["test_each_backend.py"])

    result = pytester.runpytest("-p", "no:cacheprovider", "-v")

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_a_message_comes_back?confluent? PASSED*"])
