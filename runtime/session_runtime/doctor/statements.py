"""The statements every burst runs: parameterised, repeated, two shapes, results checkable.

Each carries a tag (``/* session-runtime doctor <token> */``) so the cleanup
can find exactly the doctor's statements in ``pg_prepared_statements``. Two
shapes with different parameter counts and types make a statement confused
with another show up as an error or a wrong result.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

__all__ = ["Statements"]


@dataclass(frozen=True)
class Statements:
    token: str
    tag: str
    #: asyncpg placeholders
    one: str
    two: str
    #: SQLAlchemy ``text()`` placeholders
    one_named: str
    two_named: str

    @classmethod
    def new(cls) -> Statements:
        token = secrets.token_hex(6)
        tag = f"session-runtime doctor {token}"
        one = f"/* {tag} */ SELECT pg_backend_pid() AS pid, CAST({{n}} AS int) * 2 AS v"
        two = f"/* {tag} */ SELECT CAST({{a}} AS text) || '-' || CAST({{b}} AS text) AS v"
        return cls(
            token,
            tag,
            one.format(n="$1"),
            two.format(a="$1", b="$2"),
            one.format(n=":n"),
            two.format(a=":a", b=":b"),
        )
