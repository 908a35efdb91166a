"""The project index: what one pass over a project learns about its own session
types, factories and engine modules, and how the analysis of one file uses it
(evidence before names, sync and async kept apart, commit-on-exit factories)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from session_lint.analyzer import analyze
from session_lint.project.config import Config, load_config, with_project_index
from session_lint.project.evidence import has_evidence
from session_lint.project.facts import ASYNC, COMMITS, NO_COMMIT, SYNC, UNKNOWN
from session_lint.project.index import absolute_import, build_index, module_name, scan


def write(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def codes(root: Path, relative: str, config: Config | None = None) -> list[tuple[int, str]]:
    config = config or load_config([str(root)])
    path = root / relative
    result = analyze(path.read_bytes(), str(path), config)
    assert result.errors == []
    return [(f.line, f.code) for f in result.findings]


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("app/db/session.py", "app.db.session"),
        ("app/db/__init__.py", "app.db"),
        ("src/app/db.py", "app.db"),
        ("main.py", "main"),
        ("app/my-scripts/x.py", None),  # not importable
        ("README.md", None),
    ],
)
def test_module_names(relative: str, expected: str | None) -> None:
    assert module_name(relative) == expected


@pytest.mark.parametrize(
    ("module", "current", "is_package", "expected"),
    [
        (".db", "app.api.users", False, "app.api.db"),
        ("..db", "app.api.users", False, "app.db"),
        (".", "app.api", True, "app.api"),
        (".session", "app.db", True, "app.db.session"),
        ("sqlalchemy.orm", "app.x", False, "sqlalchemy.orm"),
    ],
)
def test_relative_imports_are_made_absolute(
    module: str, current: str, is_package: bool, expected: str
) -> None:
    assert absolute_import(module, current, is_package) == expected


PROJECT = {
    "app/__init__.py": "",
    "app/db/__init__.py": """
        from typing import Annotated, NewType, TypeAlias

        import sqlalchemy.ext.asyncio
        from fastapi import Depends
        from sqlalchemy.orm import Session

        AsyncSession = NewType("AsyncSession", sqlalchemy.ext.asyncio.AsyncSession)
        SyncSession: TypeAlias = Session
        """,
    "app/db/engine.py": """
        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
        from sqlalchemy.orm import sessionmaker

        engine = create_async_engine("postgresql+asyncpg://db/app")
        SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
        SyncSessionLocal = sessionmaker()
        """,
    "app/db/session.py": """
        from collections.abc import AsyncIterator
        from contextlib import asynccontextmanager

        from external.db import scope as external_scope

        from . import AsyncSession
        from .engine import SessionLocal, SyncSessionLocal


        @asynccontextmanager
        async def session_scope() -> AsyncIterator[AsyncSession]:
            async with SessionLocal() as session:
                yield session
                await session.commit()


        @asynccontextmanager
        async def read_only() -> AsyncIterator[AsyncSession]:
            async with SessionLocal() as session:
                yield session


        async def get_db() -> AsyncIterator[AsyncSession]:
            async with SessionLocal.begin() as session:
                yield session


        @asynccontextmanager
        async def wrapped() -> AsyncIterator[AsyncSession]:
            async with external_scope() as session:
                yield session


        def sync_session():
            return SyncSessionLocal()
        """,
    "app/repo.py": """
        from contextlib import asynccontextmanager

        from sqlalchemy.ext.asyncio import async_sessionmaker


        class Repo:
            def __init__(self, engine):
                self.async_session = async_sessionmaker(engine)

            @asynccontextmanager
            async def transaction(self):
                async with self.async_session() as session:
                    async with session.begin():
                        yield session
        """,
    "app/types.py": """
        from app.db import AsyncSession as Session
        """,
    "app/ws.py": """
        from websockets import WebsocketSession

        def open_session(ws):
            return WebsocketSession(ws)
        """,
}


def test_scan_learns_types_factories_and_engine_modules(tmp_path: Path) -> None:
    write(tmp_path, PROJECT)
    index = scan(tmp_path)
    assert index.types["app.db.AsyncSession"] == ASYNC
    assert index.types["app.db.SyncSession"] == SYNC
    assert index.types["app.types.Session"] == ASYNC  # a re-export under another name
    factories = index.factories
    assert factories["app.db.engine.SessionLocal"] == (ASYNC, NO_COMMIT)
    assert factories["app.db.engine.SyncSessionLocal"] == (SYNC, NO_COMMIT)
    assert factories["app.db.session.session_scope"] == (ASYNC, COMMITS)
    assert factories["app.db.session.read_only"] == (ASYNC, NO_COMMIT)
    assert factories["app.db.session.get_db"] == (ASYNC, COMMITS)  # factory.begin()
    # Wraps a factory of another package: a session by its annotation, what it does
    # on exit unknown.
    assert factories["app.db.session.wrapped"] == (ASYNC, UNKNOWN)
    assert factories["app.db.session.sync_session"] == (SYNC, NO_COMMIT)
    assert index.attributes["async_session"] == (ASYNC, NO_COMMIT)
    assert index.attributes["transaction"] == (ASYNC, COMMITS)
    assert "app.ws.open_session" not in factories  # a websocket's session
    assert index.engine_modules == ("app.db.engine",)
    assert index.engine_builders == ("app/db/engine.py",)
    assert set(index.evidence_modules) >= {"app.db", "app.db.engine", "app.db.session"}


def test_index_is_cached_and_refreshed_when_a_file_changes(tmp_path: Path) -> None:
    write(tmp_path, PROJECT)
    first = build_index(str(tmp_path))
    entries = list((tmp_path / ".session_lint_cache" / "index").glob("*.json"))
    assert len(entries) == 1
    assert build_index(str(tmp_path)) == first  # from the cache entry
    (tmp_path / "app/db/session.py").write_text("", encoding="utf-8")
    second = build_index(str(tmp_path))
    assert "app.db.session.session_scope" not in second.factories
    assert second != first


def test_excluded_directories_are_not_indexed(tmp_path: Path) -> None:
    write(tmp_path, PROJECT)
    write(
        tmp_path,
        {
            "pyproject.toml": '[tool.session-lint]\nexclude = ["app/repo.py"]\n',
        },
    )
    config = load_config([str(tmp_path)])
    assert "async_session" not in config.project.attributes
    assert "app.db.engine.SessionLocal" in config.project.factories


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_named_like_a_module_is_never_opened(tmp_path: Path) -> None:
    write(tmp_path, PROJECT)
    os.mkfifo(tmp_path / "app" / "pipe.py")
    assert "app.db.engine.SessionLocal" in build_index(str(tmp_path)).factories


def test_the_index_is_part_of_the_config_fingerprint(tmp_path: Path) -> None:
    bare = Config(root=str(tmp_path))
    write(tmp_path, PROJECT)
    indexed = with_project_index(bare)
    assert indexed.project.scanned and not bare.project.scanned
    assert indexed.fingerprint() != bare.fingerprint()


# -- evidence ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "text", "expected"),
    [
        ("app/a.py", "from sqlalchemy import select\n", True),
        ("app/a.py", "import sqlmodel\n", True),
        ("app/a.py", "def f():\n    from sqlalchemy.orm import Session\n", True),
        ("app/a.py", "from app.db.session import session_scope\n", True),
        ("app/a.py", "from app.db import (\n    AsyncSession,\n)\n", True),
        ("app/api/a.py", "from ..db.session import get_db\n", True),
        ("app/a.py", "import app.db.session\n", True),
        ("app/a.py", "from app.ws import open_session\n", False),
        # A module that exports a session type, imported from its package.
        ("app/a.py", "from app import db\n", True),
        ("app/api/a.py", "from .. import db\n", True),
        ("app/a.py", "from app import ws\n", False),
        ("app/a.py", "from websockets import WebsocketSession\nsession = 1\n", False),
        ("app/a.py", "# sqlalchemy is mentioned in a comment only\n", False),
    ],
)
def test_evidence(tmp_path: Path, relative: str, text: str, expected: bool) -> None:
    write(tmp_path, PROJECT)
    config = load_config([str(tmp_path)])
    assert has_evidence(text.encode(), str(tmp_path / relative), config) is expected


def test_no_finding_without_evidence(tmp_path: Path) -> None:
    write(tmp_path, PROJECT)
    write(
        tmp_path,
        {
            "app/relay.py": """
                import asyncio

                from websockets import WebsocketSession


                async def relay(ws, session: WebsocketSession, db):
                    session.commit()
                    asyncio.create_task(session.flush())
                    await asyncio.gather(db.send("a"), db.send("b"))
                """
        },
    )
    assert codes(tmp_path, "app/relay.py") == []


# -- what the rules make of it -------------------------------------------------------


def test_a_newtype_session_is_a_session(tmp_path: Path) -> None:
    write(tmp_path, PROJECT)
    write(
        tmp_path,
        {
            "app/service.py": """
                from app.types import Session


                async def rename(session: Session, user) -> None:
                    user.name = "x"
                    session.flush()
                """
        },
    )
    assert codes(tmp_path, "app/service.py") == [(6, "SL403")]


def test_sync_in_one_branch_is_not_awaited(tmp_path: Path) -> None:
    write(tmp_path, PROJECT)
    write(
        tmp_path,
        {
            "app/mixed.py": """
                from app.db.engine import SessionLocal, SyncSessionLocal


                async def refresh(use_async: bool) -> None:
                    if use_async:
                        session = SessionLocal()
                    else:
                        session = SyncSessionLocal()
                    try:
                        session.commit()
                    finally:
                        session.close()


                async def only_async() -> None:
                    session = SessionLocal()
                    try:
                        session.commit()
                    finally:
                        await session.close()
                """
        },
    )
    assert codes(tmp_path, "app/mixed.py") == [(18, "SL403")]


def test_writes_in_a_commit_on_exit_factory_are_committed(tmp_path: Path) -> None:
    write(tmp_path, PROJECT)
    write(
        tmp_path,
        {
            "app/jobs.py": """
                from app.db.session import read_only, session_scope, wrapped


                async def committed(job) -> None:
                    async with session_scope() as session:
                        session.add(job)


                async def unknown_exit(job) -> None:
                    async with wrapped() as session:
                        session.add(job)


                async def lost(job) -> None:
                    async with read_only() as session:
                        session.add(job)
                """
        },
    )
    assert codes(tmp_path, "app/jobs.py") == [(16, "SL301")]


def test_an_attribute_factory_opens_sessions(tmp_path: Path) -> None:
    write(tmp_path, PROJECT)
    write(
        tmp_path,
        {
            "app/orders.py": """
                from app.repo import Repo


                class Orders(Repo):
                    async def touch(self, order) -> None:
                        async with self.async_session() as s:
                            await s.begin()
                            s.add(order)
                            await s.commit()
                """
        },
    )
    assert codes(tmp_path, "app/orders.py") == [(7, "SL304")]


def test_a_factory_its_callers_override_per_session_is_not_sl105(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/admin.py": """
                from sqlalchemy.ext.asyncio import async_sessionmaker


                class Admin:
                    def __init__(self, engine):
                        self.session_maker = async_sessionmaker(bind=engine)
                        self.other_maker = async_sessionmaker(bind=engine)
                """,
            "app/views.py": """
                async def update(admin, obj):
                    async with admin.session_maker(expire_on_commit=False) as session:
                        session.add(obj)
                        await session.commit()
                        return obj.id
                """,
        },
    )
    config = load_config([str(tmp_path)])
    assert config.project.expire_overrides == ("session_maker",)
    assert codes(tmp_path, "app/admin.py", config) == [(7, "SL105")]


def test_the_projects_one_context_factory_is_the_fix_target(tmp_path: Path) -> None:
    from session_lint.fixes.apply import fix_source

    write(
        tmp_path,
        {
            "pyproject.toml": '[project]\nname = "x"\ndependencies = ["sqlalchemy"]\n',
            "app/__init__.py": "",
            "app/db.py": """
                from collections.abc import AsyncIterator
                from contextlib import asynccontextmanager

                from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

                _factory = async_sessionmaker(expire_on_commit=False)


                async def get_db() -> AsyncIterator[AsyncSession]:
                    async with _factory() as session:
                        yield session
                """,
            "app/service.py": """
                from sqlalchemy.ext.asyncio import AsyncSession


                async def rename(engine, user) -> None:
                    async with AsyncSession(engine) as session:
                        session.add(user)
                        await session.commit()
                """,
        },
    )
    config = load_config([str(tmp_path)])
    # One async factory usable with ``async with`` (the dependency is not).
    assert config.project.context_factories == ("app.db._factory",)
    path = tmp_path / "app/service.py"
    outcome = fix_source(path.read_bytes(), str(path), config, unsafe=True)
    assert outcome.errors == []
    assert b"from app.db import _factory" in outcome.source
    assert b"async with _factory() as session:" in outcome.source
    # A second one: which to use is not certain, so no fix, and the hint.
    write(
        tmp_path,
        {
            "app/other.py": """
                from sqlalchemy.ext.asyncio import async_sessionmaker

                replica = async_sessionmaker(expire_on_commit=False)
                """
        },
    )
    config = load_config([str(tmp_path)])
    assert len(config.project.context_factories) == 2
    result = analyze(path.read_bytes(), str(path), config)
    [finding] = result.findings
    assert finding.code == "SL101" and finding.fix is None
    assert "set `session-factory`" in finding.message


def test_an_engine_factory_called_per_request_is_sl103(tmp_path: Path) -> None:
    """A project function that builds and returns an engine is a factory (silent
    itself); a call of it from a function run per request builds a pool per
    request. Module level, a cached function, an entry point and a lazy
    singleton call it once."""
    write(
        tmp_path,
        {
            "pyproject.toml": '[tool.session-lint]\nselect = ["SL103"]\n',
            "app/__init__.py": "",
            "app/engines.py": """
                import functools

                from sqlalchemy.ext.asyncio import create_async_engine

                URL = "postgresql+asyncpg://db/app"


                def make_engine():
                    return create_async_engine(URL)


                def make_engine_too(url):
                    engine = create_async_engine(url, pool_size=5)
                    return engine


                @functools.lru_cache
                def cached_engine():
                    return create_async_engine(URL)
                """,
            "app/routes.py": """
                from sqlalchemy import text

                from app.engines import cached_engine, make_engine, make_engine_too

                engine = make_engine()


                async def count(request):
                    engine = make_engine()
                    async with engine.connect() as conn:
                        return await conn.scalar(text("SELECT 1"))


                async def report(request):
                    async with make_engine_too("postgresql+asyncpg://db/r").begin() as conn:
                        await conn.execute(text("SELECT 1"))


                async def cached(request):
                    async with cached_engine().connect() as conn:
                        await conn.execute(text("SELECT 1"))


                async def main():
                    engine = make_engine()
                    await engine.dispose()


                class Holder:
                    async def start(self):
                        self.engine = make_engine()
                """,
        },
    )
    assert codes(tmp_path, "app/routes.py") == [(9, "SL103"), (15, "SL103")]
    assert codes(tmp_path, "app/engines.py") == []


def test_helpers_that_commit_their_own_session_are_sl306(tmp_path: Path) -> None:
    """The index learns module-level helpers that open a session from a factory of
    another module, write and commit; two calls of them in a row, through an import
    or a module attribute, are two transactions. A helper that can take its
    caller's session, one that only reads, and one that never commits are not
    helpers."""
    write(
        tmp_path,
        {
            "pyproject.toml": '[tool.session-lint]\nselect = ["SL306"]\n',
            "app/__init__.py": "",
            "app/db.py": """
                from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

                engine = create_async_engine("postgresql+asyncpg://db/app")
                SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
                """,
            "app/crud.py": """
                from sqlalchemy import delete

                from app.db import SessionLocal
                from app.models import Item, Tag


                async def delete_items(owner: int) -> None:
                    async with SessionLocal() as db_session:
                        await db_session.execute(delete(Item).where(Item.owner == owner))
                        await db_session.commit()


                async def add_tag(name: str) -> None:
                    async with SessionLocal.begin() as s:
                        s.add(Tag(name=name))


                async def add_tag_in(name: str, db=None) -> None:
                    async with SessionLocal() as s:
                        s.add(Tag(name=name))
                        await s.commit()


                async def read_tag(name: str) -> None:
                    async with SessionLocal() as s:
                        await s.get(Tag, name)
                        await s.commit()


                async def stage_tag(name: str) -> None:
                    async with SessionLocal() as s:
                        s.add(Tag(name=name))
                """,
            "app/routes.py": """
                from app import crud
                from app.crud import add_tag, add_tag_in, read_tag, stage_tag


                async def remove(owner: int) -> None:
                    await crud.delete_items(owner)
                    await add_tag("removed")


                async def quiet(owner: int) -> None:
                    await add_tag_in("a")
                    await add_tag_in("b")
                    await read_tag("a")
                    await read_tag("b")
                    await stage_tag("a")
                    await stage_tag("b")
                """,
        },
    )
    config = load_config([str(tmp_path)])
    assert config.project.committing_helpers == ("app.crud.add_tag", "app.crud.delete_items")
    assert codes(tmp_path, "app/routes.py") == [(6, "SL306")]


def test_the_index_walks_the_nodes_ast_walk_gives_less_contexts_and_operators() -> None:
    import ast

    from session_lint.project.modules import child_nodes, walk

    left_out = (ast.expr_context, ast.operator, ast.boolop, ast.unaryop, ast.cmpop)
    root = Path(__file__).resolve().parents[2] / "session_lint"
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_bytes())
        expected = [n for n in ast.walk(tree) if not isinstance(n, left_out)]
        assert list(walk(tree)) == expected, path
        for node in expected[:200]:
            children = [n for n in ast.iter_child_nodes(node) if not isinstance(n, left_out)]
            assert child_nodes(node) == children, path
