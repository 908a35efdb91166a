"""The parse that skips libcst's node checks (session_lint/core/parsing.py): the same
trees and errors as ``libcst.parse_module``, and the checks still on for every node
made outside it."""

from __future__ import annotations

import threading
from pathlib import Path

import libcst as cst
import pytest

from session_lint.core import parsing
from session_lint.core.parsing import parse_module

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    p
    for p in [*(ROOT / "fixtures" / "rules").glob("*.py"), *(ROOT / "session_lint").rglob("*.py")]
    if not p.name.startswith("SL000")
)


def test_the_same_trees_as_libcst() -> None:
    assert len(SOURCES) > 100
    for path in SOURCES:
        source = path.read_bytes()
        ours, theirs = parse_module(source), cst.parse_module(source)
        assert ours.deep_equals(theirs), path
        assert ours.code == theirs.code == source.decode("utf-8"), path


def test_the_same_errors_and_the_checks_back_on_afterwards() -> None:
    with pytest.raises(cst.ParserSyntaxError):
        parse_module(b"def f(:\n    pass\n")
    with pytest.raises(cst.CSTValidationError):
        cst.Name("")  # a hand-made node is checked after a failed parse too
    parse_module(b"x = 1\n")
    with pytest.raises(cst.CSTValidationError):
        cst.Name("")


def test_the_checks_skipped_only_in_the_parsing_thread() -> None:
    raised: list[BaseException] = []

    def build() -> None:
        try:
            cst.Name("")
        except cst.CSTValidationError as exc:
            raised.append(exc)

    parsing._PARSING.active = True  # as while this thread parses
    try:
        cst.Name("")  # skipped here
        other = threading.Thread(target=build)
        other.start()
        other.join()
    finally:
        parsing._PARSING.active = False
    assert len(raised) == 1


def test_installed_once() -> None:
    installed = cst.CSTNode.__post_init__
    parsing._install()
    assert cst.CSTNode.__post_init__ is installed
