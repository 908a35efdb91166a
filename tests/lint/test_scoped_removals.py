"""SL407 across modules: the project index records the names through which any
module reaches a scoped session's ``.remove`` (session_lint/project/removals.py),
so a task-scoped session removed in another module (a middleware) is silent, and
one that no module removes is reported at its construction."""

from __future__ import annotations

import textwrap
from pathlib import Path

from session_lint.analyzer import analyze
from session_lint.project.config import load_config
from session_lint.project.index import scan
from session_lint.project.removals import removal_names

DB = """
    from asyncio import current_task

    from sqlalchemy.ext.asyncio import async_scoped_session, async_sessionmaker

    Session = async_scoped_session(async_sessionmaker(), scopefunc=current_task)
    """


def write(root: Path, files: dict[str, str]) -> None:
    files = {"pyproject.toml": '[tool.session-lint]\nselect = ["SL407"]\n', **files}
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def codes(root: Path, relative: str) -> list[tuple[int, str]]:
    config = load_config([str(root)], use_cache=False)
    path = root / relative
    result = analyze(path.read_bytes(), str(path), config)
    assert result.errors == []
    return [(f.line, f.code) for f in result.findings]


def test_removed_in_another_module_is_silent(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/db.py": DB,
            "app/middleware.py": """
                from app.db import Session


                async def session_middleware(request, call_next):
                    try:
                        return await call_next(request)
                    finally:
                        await Session.remove()
                """,
        },
    )
    assert "Session" in scan(tmp_path).scoped_removals
    assert codes(tmp_path, "app/db.py") == []


def test_never_removed_is_reported(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/db.py": DB,
            "app/middleware.py": """
                from app.db import Session


                async def session_middleware(request, call_next):
                    try:
                        return await call_next(request)
                    finally:
                        await Session.close()
                """,
        },
    )
    assert scan(tmp_path).scoped_removals == ()
    assert codes(tmp_path, "app/db.py") == [(5, "SL407")]


def test_removed_through_an_import_alias_is_silent(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/db.py": DB,
            "app/deps.py": """
                from app.db import Session as TaskSession


                async def get_db():
                    try:
                        yield TaskSession()
                    finally:
                        await TaskSession.remove()
                """,
        },
    )
    assert {"Session", "TaskSession"} <= set(scan(tmp_path).scoped_removals)
    assert codes(tmp_path, "app/db.py") == []


def test_removed_by_the_object_it_is_handed_to_is_silent(tmp_path: Path) -> None:
    """``Database(scoped=Session)`` in one module, ``self.scoped.remove()`` in another."""
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/db.py": DB,
            "app/database.py": """
                class Database:
                    def __init__(self, *, scoped):
                        self._scoped = scoped

                    async def end_task(self):
                        await self._scoped.remove()
                """,
            "app/main.py": """
                from app.database import Database
                from app.db import Session

                database = Database(scoped=Session)
                """,
        },
    )
    assert codes(tmp_path, "app/db.py") == []


def test_what_the_names_are() -> None:
    source = b"""
from app.db import Session as S
import app.other.Scoped as T

await S.remove()
stack.push_async_callback(T.remove)
await self.scoped.remove()
db.Sync.registry.clear()
items.remove(item)
names.remove_all()
"""
    assert removal_names(source) == {"S", "Session", "T", "Scoped", "scoped", "Sync"}
