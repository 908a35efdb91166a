"""Prefilter tokens: substrings, or whole identifiers for configured session names."""

from __future__ import annotations

import re

from session_lint.core.prefilter import Called, Pattern, Token, Whole, pattern, prefilter_for
from session_lint.project.config import Config
from session_lint.rules.SL404_unclosed_session import UnclosedSession


def found(token: Token, text: bytes) -> bool:
    return re.search(pattern(token), text) is not None


def test_a_plain_token_is_a_substring() -> None:
    assert found("Session", b"x: AsyncSession")
    assert not found("Session", b"x: session")


def test_a_whole_name_is_an_identifier() -> None:
    name = Whole("db")
    for text in (b"db", b"def f(db): ...", b"self.db.add(x)", b"(db,", b"db\n", b"db=1"):
        assert found(name, text), text
    for text in (b"import pdb", b"dbapi", b"sqlite3.dbm", b"_db", b"db_name", b"db2"):
        assert not found(name, text), text
    # A non-ASCII neighbour still counts as a boundary: the test stays sound.
    assert found(name, "dbé = 1".encode())


def test_session_names_pass_the_prefilter_only_as_names() -> None:
    config = Config(root=".", session_names=("db",))
    may_fire = prefilter_for([UnclosedSession], config)
    assert may_fire(b"async def f(db):\n    db.add(x)\n")
    assert not may_fire(b"import pdb\npdb.set_trace()\n")


class _Declares:
    """A rule's prefilter declaration, for the tokens below."""

    def __init__(self, *clause: tuple[Token, ...]) -> None:
        self._clause = clause

    def prefilter(self, config: Config) -> tuple[tuple[tuple[Token, ...], ...], ...]:
        return (self._clause,)


def test_a_pattern_token_is_a_regular_expression() -> None:
    may_fire = prefilter_for([_Declares((Pattern(r"(?i:set[\s'])"),))], Config(root="."))
    assert may_fire(b"text('SET x')") and may_fire(b"text('set x')")
    assert not may_fire(b"x = set(y)")


def test_a_called_token_counts_the_calls_of_its_names() -> None:
    twice = prefilter_for([_Declares((Called(frozenset({"save", "drop"}), 2),))], Config(root="."))
    assert twice(b"await save(a)\nawait drop(b)\n")
    assert twice(b"repo.save (a)\nrepo.save  # why\n  (b)\n")  # blanks and comments
    assert not twice(b"from app import save\nawait save(a)\n")  # one call
    assert not twice(b"save_all(a)\nautosave(b)\ndrop = 1\n")  # other names
    # A banner comment after a name: the search stays linear (it once took hours).
    assert not twice(b"save  # " + b"#" * 80 + b"\n" + b"x = 1\n" * 3)


def test_a_called_token_with_a_name_it_cannot_see_is_always_found() -> None:
    called = prefilter_for([_Declares((Called(frozenset({"créer"}), 2),))], Config(root="."))
    assert called(b"x = 1\n")
