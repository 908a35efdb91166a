"""The project index never goes blind (docs/project-index.md, "Newer syntax" and
"Factory objects"): a module in syntax newer than the running interpreter keeps
its facts, a valid file is never reported as broken, NewType chains travel
through re-exports, and instances of a project class whose ``__call__`` gives a
session are session factories."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from session_lint.analyzer import analyze
from session_lint.project.config import load_config
from session_lint.project.facts import ASYNC
from session_lint.project.index import scan
from session_lint.syntax import compiles, parse_ast, parses

from .test_project_index import write

# Newer than this interpreter (3.11): each line is valid for libcst, refused by ast.
NEWER = {
    "type statement": "type JSON = dict[str, object]\n",
    "generic function": "def first[T](items: list[T]) -> T:\n    return items[0]\n",
    "generic class": "class Box[T]:\n    item: T\n",
    "f-string reusing its quote": 'x = f"{d["a"]}"\n',
    "multi-line f-string reusing its quote": 'x = f"""\n{d["""a"""]}\n"""\n',
    "except without parentheses": "try:\n    pass\nexcept A, B:\n    pass\n",
    "template string": 'x = t"hi {name}"\n',
}


@pytest.mark.parametrize("source", NEWER.values(), ids=NEWER.keys())
def test_newer_syntax_is_read_line_for_line(source: str) -> None:
    if sys.version_info < (3, 12):  # the premise: this interpreter refuses it
        assert not compiles(source)
    text = f"import os\n{source}LAST = 1\n"
    tree = parse_ast(text.encode(), "x.py")
    assert tree is not None
    assert parses(text)
    last = tree.body[-1]
    assert isinstance(last, ast.Assign)
    assert last.lineno == text.count("\n")  # every line kept: positions stay right


def test_a_file_neither_parser_reads() -> None:
    assert parse_ast(b"def (:\n", "x.py") is None
    assert not parses("def (:\n")


TYPES_3_12 = {
    "pyproject.toml": """
        [project]
        name = "shop"
        dependencies = ["sqlalchemy[asyncio]>=2.0"]
        [tool.session-lint]
    """,
    "app/__init__.py": "",
    # The chain: AsyncSession -> AsyncReadSession -> SQLAlchemy's class, beside a
    # ``type`` statement that CPython 3.11 refuses.
    "app/db/types.py": """
        from typing import NewType

        from sqlalchemy.ext.asyncio import AsyncSession as _SqlaAsyncSession

        type JSON = dict[str, object]

        AsyncReadSession = NewType("AsyncReadSession", _SqlaAsyncSession)
        AsyncSession = NewType("AsyncSession", AsyncReadSession)


        def first[T](items: list[T]) -> T:
            return items[0]
    """,
    # The re-export: a parenthesized import with comments, ``__all__``, and a
    # ``type`` statement of its own.
    "app/db/__init__.py": """
        from .types import (  # the session types
            AsyncReadSession,  # reads only
            AsyncSession,
        )

        type Row = tuple[int, str]

        __all__ = ["AsyncReadSession", "AsyncSession"]
    """,
    "app/services/orders.py": """
        from app.db import AsyncReadSession, AsyncSession


        async def cancel(session: AsyncSession, order_id: int) -> None:
            session.delete(order_id)


        async def count(session: AsyncReadSession) -> int:
            session.expunge_all()
            return await session.scalar("SELECT count(*) FROM orders")
    """,
}


def test_newtype_chain_through_reexports_beside_type_statements(tmp_path: Path) -> None:
    write(tmp_path, TYPES_3_12)
    index = scan(tmp_path)
    types = dict(index.session_types)
    for name in (
        "app.db.types.AsyncReadSession",
        "app.db.types.AsyncSession",
        "app.db.AsyncReadSession",
        "app.db.AsyncSession",
    ):
        assert types.get(name) == ASYNC, name
    assert index.unparsed == ()
    path = tmp_path / "app/services/orders.py"
    result = analyze(path.read_bytes(), str(path), load_config([str(tmp_path)]))
    found = [(f.line, f.code) for f in result.findings]
    # SL403: the un-awaited delete; SL501: a plain string as SQL.
    assert found == [(5, "SL403"), (10, "SL501")]


def test_valid_newer_file_is_never_a_syntax_error(tmp_path: Path) -> None:
    """The deep-expression guard asks CPython's parser only for depth: a large
    3.12 module with a ``type`` statement (enough operators to pass its screen)
    is parsed by libcst and linted, not reported as SL000."""
    body = "".join(f"value_{i} = ({i} + {i}) * ({i} - 1) / 2 % 7\n" for i in range(400))
    source = textwrap.dedent(
        """
        from sqlalchemy.ext.asyncio import AsyncSession

        type JSON = dict[str, object]


        async def drop(session: AsyncSession, row: object) -> None:
            session.delete(row)
        """
    ).lstrip() + body
    path = tmp_path / "big.py"
    path.write_text(source, encoding="utf-8")
    result = analyze(path.read_bytes(), str(path), load_config([str(tmp_path)]))
    assert [(f.line, f.code) for f in result.findings] == [(7, "SL403")]


def test_unreadable_module_is_named_and_keeps_its_imports(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": "[tool.session-lint]\n",
            "app/__init__.py": "",
            "app/db.py": """
                from sqlalchemy.ext.asyncio import AsyncSession

                def broken(:
                    return AsyncSession()
            """,
        },
    )
    index = scan(tmp_path)
    assert index.unparsed == ("app/db.py",)
    assert dict(index.session_types).get("app.db.AsyncSession") == ASYNC
    shown = subprocess.run(
        [sys.executable, "-m", "session_lint", "--show-settings", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "# files neither parser reads (only their imports were learned): 1:\n#  app/db.py" in (
        shown.stdout
    )
    linted = subprocess.run(
        [sys.executable, "-m", "session_lint", "--no-cache", "--format", "concise", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "app/db.py:3:" in linted.stdout and "SL000" in linted.stdout


FACTORY_OBJECTS = {
    "pyproject.toml": """
        [project]
        name = "traces"
        dependencies = ["sqlalchemy[asyncio]>=2.0"]
        [tool.session-lint]
    """,
    "app/__init__.py": "",
    "app/types.py": """
        from contextlib import AbstractAsyncContextManager
        from typing import Callable

        from sqlalchemy.ext.asyncio import AsyncSession


        class DbSessionFactory:
            def __init__(self, db: Callable[[], AbstractAsyncContextManager[AsyncSession]]) -> None:
                self._db = db

            def __call__(self) -> AbstractAsyncContextManager[AsyncSession]:
                return self._db()


        class Clock:
            def __call__(self) -> float:
                return 0.0
    """,
    "app/__main__.py": """
        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

        from app.types import DbSessionFactory

        engine = create_async_engine("postgresql+asyncpg://db/app")
        db = DbSessionFactory(async_sessionmaker(engine, expire_on_commit=False))
    """,
    "app/context.py": """
        from dataclasses import dataclass

        from app.types import Clock, DbSessionFactory


        @dataclass
        class Context:
            db: DbSessionFactory
            clock: Clock
    """,
    "app/daemon.py": """
        from app.types import DbSessionFactory


        class Sweeper:
            def __init__(self, db: DbSessionFactory) -> None:
                self._store = db

            async def sweep(self) -> None:
                async with self._store() as session:
                    session.delete(1)
    """,
    "app/mutations.py": """
        from app.__main__ import db
        from app.types import DbSessionFactory


        async def delete_experiments(info) -> None:
            async with info.context.db() as session:
                savepoint = await session.begin_nested()
                await session.commit()


        async def purge(factory: DbSessionFactory) -> None:
            async with factory() as session:
                session.delete(1)


        async def module_instance() -> None:
            async with db() as session:
                session.delete(2)


        async def not_a_session(info) -> None:
            async with info.context.clock() as tick:
                tick.delete(3)
    """,
}


def test_factory_objects_are_session_factories(tmp_path: Path) -> None:
    write(tmp_path, FACTORY_OBJECTS)
    index = scan(tmp_path)
    assert index.classes.get("app.types.DbSessionFactory") == (ASYNC, "unknown")
    assert "app.types.Clock" not in index.classes
    assert index.factories.get("app.__main__.db") == (ASYNC, "unknown")
    # A field of the request context, and an attribute set from a parameter.
    assert {"db", "_store"} <= set(index.attributes)
    assert "clock" not in index.attributes
    config = load_config([str(tmp_path)])
    found = {}
    for relative in ("app/mutations.py", "app/daemon.py"):
        path = tmp_path / relative
        result = analyze(path.read_bytes(), str(path), config)
        assert result.errors == []
        found[relative] = [(f.line, f.code) for f in result.findings]
    assert found["app/mutations.py"] == [(7, "SL304"), (13, "SL403"), (18, "SL403")]
    assert found["app/daemon.py"] == [(10, "SL403")]
