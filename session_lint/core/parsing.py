"""libcst's parser, without checking again what it has just built.

Every libcst node checks itself when it is made (``CSTNode.__post_init__`` calls
``_validate``): parentheses balanced, whitespace where the grammar needs it. The
check is there for nodes built by hand; a node the parser builds from source
passes it by construction. On the large trees of ``bench/large_bench.py`` the
check was about a seventh of the parse (docs/architecture.md, "Large trees").

:func:`parse_module` skips it for the nodes made while it parses, and only those:
the switch is per thread, so a fix building nodes at the same time in another
thread, or another libcst tool in the same process (a flake8 plugin), still has
every node checked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import libcst as cst
from libcst._nodes.base import CSTNode


class _Parsing(threading.local):
    active = False


_PARSING = _Parsing()


def _checked_unless_parsing(check: Callable[[CSTNode], None]) -> Callable[[CSTNode], None]:
    def __post_init__(self: CSTNode) -> None:
        if not _PARSING.active:
            check(self)

    __post_init__.__wrapped__ = check  # type: ignore[attr-defined]
    return __post_init__


def _install() -> None:
    # Once per process, however often the module is reloaded: the original check
    # is kept as ``__wrapped__``.
    current = CSTNode.__post_init__
    if getattr(current, "__wrapped__", None) is None:
        CSTNode.__post_init__ = _checked_unless_parsing(current)  # type: ignore[method-assign,assignment]


_install()


def parse_module(source: bytes | str) -> cst.Module:
    """``libcst.parse_module``, the same tree and the same errors, less the check."""
    if _PARSING.active:  # re-entered (never today): the outer call restores
        return cst.parse_module(source)
    _PARSING.active = True
    try:
        return cst.parse_module(source)
    finally:
        _PARSING.active = False
