"""Prefilter tokens: substrings, or whole identifiers for configured session names."""

from __future__ import annotations

import re

from session_lint.core.prefilter import Token, Whole, pattern, prefilter_for
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
