"""A route's session injected from a dependency in another module: the project
index knows what the dependency does on exit, so SL301 stays silent when it
commits or begins, and never offers a ``begin()`` fix on an injected session
(docs/rules/SL301.md, "Fix safety")."""

from __future__ import annotations

from pathlib import Path

from session_lint.analyzer import analyze
from session_lint.project.config import load_config

from .test_project_index import write

PROJECT = {
    "pyproject.toml": """
        [project]
        name = "shop"
        dependencies = ["sqlalchemy[asyncio]>=2.0", "fastapi"]
        [tool.session-lint]
    """,
    "app/__init__.py": "",
    "app/db.py": """
        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

        engine = create_async_engine("postgresql+asyncpg://db/shop")
        factory = async_sessionmaker(engine, expire_on_commit=False)


        async def get_db():
            async with factory() as session, session.begin():
                yield session


        async def get_committing_db():
            async with factory() as session:
                yield session
                await session.commit()


        async def get_plain_db():
            async with factory() as session:
                yield session
    """,
    "app/deps.py": """
        from typing import Annotated

        from fastapi import Depends
        from sqlalchemy.ext.asyncio import AsyncSession

        from app.db import get_db

        DbSession = Annotated[AsyncSession, Depends(get_db)]
    """,
    "app/routes.py": """
        from fastapi import APIRouter, Depends
        from sqlalchemy.ext.asyncio import AsyncSession

        from app.db import get_committing_db, get_db, get_plain_db
        from app.deps import DbSession
        from app.models import User

        router = APIRouter()


        @router.post("/a")
        async def begun_by_dependency(name: str, db: AsyncSession = Depends(get_db)):
            db.add(User(name=name))


        @router.post("/b")
        async def committed_by_dependency(name: str, db: AsyncSession = Depends(get_committing_db)):
            db.add(User(name=name))


        @router.post("/c")
        async def through_an_alias(name: str, db: DbSession):
            db.add(User(name=name))


        @router.post("/d")
        async def nothing_commits(name: str, db: AsyncSession = Depends(get_plain_db)):
            db.add(User(name=name))
    """,
}


def test_injected_sessions_follow_the_dependency(tmp_path: Path) -> None:
    write(tmp_path, PROJECT)
    path = tmp_path / "app/routes.py"
    result = analyze(path.read_bytes(), str(path), load_config([str(tmp_path)]))
    assert result.errors == []
    found = [(f.line, f.code, f.fix is not None) for f in result.findings]
    # Only the route whose dependency neither begins nor commits, and no fix:
    # another dependency of the request may have used the session already.
    assert found == [(28, "SL301", False)]
