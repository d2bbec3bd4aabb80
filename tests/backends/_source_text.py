"""The source text of a library class, read without parsing it.

``inspect.getsource(SomeClass)`` parses the class's whole module with ``ast``, and
CPython 3.11.7's AST constructor keeps its recursion depth per interpreter, not per
thread: a parse while another thread compiles (a module imported for the first time,
as in a fresh checkout without bytecode) can fail with "SystemError: AST constructor
recursion depth mismatch" (CPython issue 106905, fixed in later releases). A
function's source needs no parse, so a class's is read function by function.
"""

from __future__ import annotations

import inspect


def class_source(cls: type) -> str:
    """The source of every function defined in ``cls``'s body, joined."""
    return "\n".join(
        inspect.getsource(member) for member in vars(cls).values() if inspect.isfunction(member)
    )
