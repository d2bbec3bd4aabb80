"""The public surface: ``__all__`` is exactly the documented API, and every name resolves."""

from __future__ import annotations

import qi.base

QI_BASE_API = {
    # Result core (contract section 2)
    "Result",
    "Success",
    "Failure",
    "success",
    "failure",
    "map",
    "map_error",
    "flat_map",
    "match",
    "unwrap_or",
    "from_try_catch",
    "from_async_try_catch",
    "flat_map_async",
    "map_async",
    "sequence",
    "UnwrapError",
    # TypeIs narrowing helpers (mypy cannot narrow on the methods of the same name)
    "is_success",
    "is_failure",
    # QiError
    "QiError",
    "ErrorCategory",
    "RetryStrategy",
    "create_error",
    "from_exception",
    "from_string",
}


def test_qi_base_exports() -> None:
    assert len(qi.base.__all__) == len(set(qi.base.__all__)), "duplicate names in __all__"
    assert set(qi.base.__all__) == QI_BASE_API
    for name in qi.base.__all__:
        member = getattr(qi.base, name)
        # Re-exported from a private module, never defined in the package __init__.
        module = getattr(member, "__module__", None)
        if module is not None and name != "Result" and name != "RetryStrategy":
            assert module.startswith("qi.base._"), f"{name} comes from {module}"


def test_public_names_have_docstrings() -> None:
    for name in qi.base.__all__:
        if name in {"Result", "RetryStrategy"}:  # type aliases cannot carry one
            continue
        doc = getattr(qi.base, name).__doc__
        assert doc and doc.strip(), f"{name} has no docstring"
