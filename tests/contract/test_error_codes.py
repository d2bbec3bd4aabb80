"""Contract section 6: the library's code table is the contract's, code for code."""

from __future__ import annotations

from qi.base.streaming import ErrorCode

from ._support import CATEGORIES


def test_every_contract_code_exists_with_its_category() -> None:
    assert {code.value: code.category for code in ErrorCode} == CATEGORIES
