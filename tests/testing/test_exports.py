"""The testing module's public surface, and that its helpers need no pytest."""

from __future__ import annotations

import subprocess
import sys

import qi.base.streaming.testing as testing

TESTING_API = {
    "TEST_BROKERS_ENV",
    "DevCluster",
    "assert_produced",
    "crash",
    "describe_messages",
    "quick_config",
    "read_topic",
    "wait_for_group",
}


def test_all_is_exactly_the_documented_api() -> None:
    assert sorted(testing.__all__) == sorted(TESTING_API)
    for name in testing.__all__:
        member = getattr(testing, name)
        if not isinstance(member, str):
            assert member.__doc__ and member.__doc__.strip(), f"{name} has no docstring"


def test_the_helpers_import_without_pytest() -> None:
    # ``None`` in sys.modules makes an import fail as if the package were not installed.
    code = "import sys; sys.modules['pytest'] = None; import qi.base.streaming.testing"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
