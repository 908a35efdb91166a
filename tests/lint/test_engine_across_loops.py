"""SL408 across modules: the effect summaries (session_lint/project/effects.py) know
which pooled engine a coroutine reaches through calls into other modules — a
module-level engine, a session factory or repository built on it, a cached
getter, a module-level instance of a class that builds one — and the rule
reports a worker that runs such a coroutine on a new loop per call."""

from __future__ import annotations

from pathlib import Path

from session_lint.analyzer import analyze
from session_lint.project.config import load_config
from session_lint.project.index import build_index, scan
from session_lint.rules import RULES_BY_CODE

from .test_project_index import write

PROJECT = {
    "pyproject.toml": """
        [project]
        name = "shop"
        dependencies = ["sqlalchemy[asyncio]>=2.0", "asyncpg", "celery"]
        [tool.session-lint]
    """,
    "app/__init__.py": "",
    "app/db.py": """
        import os

        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
        from sqlalchemy.pool import NullPool

        engine = create_async_engine(os.environ["DATABASE_URL"], pool_size=10)
        async_session = async_sessionmaker(engine, expire_on_commit=False)
        worker_engine = create_async_engine(os.environ["DATABASE_URL"], poolclass=NullPool)
        worker_session = async_sessionmaker(bind=worker_engine, expire_on_commit=False)


        async def shutdown() -> None:
            await engine.dispose()


        async def probe(url: str) -> None:
            engine = create_async_engine(url, poolclass=NullPool)  # its own
            async with engine.connect():
                pass
    """,
    # The cognee shape: a cached function returns an adapter that builds the engine.
    "app/relational/__init__.py": "from .adapter import get_relational_engine\n",
    "app/relational/adapter.py": """
        from functools import lru_cache

        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine


        class Adapter:
            def __init__(self, url: str, **pool_args: object) -> None:
                self.engine = create_async_engine(url, **pool_args)
                self.sessionmaker = async_sessionmaker(bind=self.engine)


        @lru_cache
        def create_relational_engine(url: str) -> Adapter:
            return Adapter(url)


        def get_relational_engine() -> Adapter:
            return create_relational_engine("postgresql+asyncpg://db/shop")
    """,
    "app/repos.py": """
        from sqlalchemy import text

        from app.db import async_session, worker_session


        class OrderRepository:
            async def close(self, order_id: int) -> None:
                async with async_session() as session, session.begin():
                    await session.execute(text("UPDATE orders SET closed = true"))


        async def count_orders() -> int:
            async with worker_session() as session:
                return await session.scalar(text("SELECT count(*) FROM orders"))
    """,
    "app/services.py": """
        from app.db import shutdown
        from app.relational import get_relational_engine
        from app.repos import OrderRepository


        async def close_order(order_id: int) -> None:
            orders = OrderRepository()
            await orders.close(order_id)


        async def close_and_dispose(order_id: int) -> None:
            await close_order(order_id)
            await shutdown()


        async def list_datasets() -> list[str]:
            adapter = get_relational_engine()
            async with adapter.sessionmaker() as session:
                return list(await session.scalars("SELECT name FROM datasets"))
    """,
    "app/tasks.py": """
        import asyncio

        from celery import shared_task

        from app.repos import count_orders
        from app.services import close_and_dispose, close_order, list_datasets


        @shared_task
        def close_order_task(order_id: int) -> None:
            asyncio.run(close_order(order_id))


        def preview_then_delete() -> None:
            asyncio.run(list_datasets())
            asyncio.run(list_datasets())


        @shared_task
        def count_task() -> None:
            asyncio.run(count_orders())  # NullPool


        @shared_task
        def close_and_dispose_task(order_id: int) -> None:
            asyncio.run(close_and_dispose(order_id))  # disposes the pool at the end


        def main() -> None:
            asyncio.run(close_order(1))  # runs once
    """,
}

ADAPTER = "app.relational.adapter.create_relational_engine"


def test_the_index_knows_which_engine_a_function_reaches(tmp_path: Path) -> None:
    write(tmp_path, PROJECT)
    reach = scan(tmp_path).reach_of
    assert reach["app.db.engine"] == ("app.db.engine", False)
    assert reach["app.db.async_session"] == ("app.db.engine", False)
    assert "app.db.worker_engine" not in reach  # NullPool
    assert "app.db.worker_session" not in reach
    assert reach["app.repos.OrderRepository.close"] == ("app.db.engine", False)
    assert reach["app.services.close_order"] == ("app.db.engine", False)  # a method call
    assert reach["app.services.close_and_dispose"] == ("app.db.engine", True)
    assert reach["app.services.list_datasets"] == (ADAPTER, False)  # a cached getter
    assert reach["app.relational.get_relational_engine"] == (ADAPTER, False)  # re-export
    assert "app.repos.count_orders" not in reach
    assert "app.db.probe" not in reach  # a local engine shadows the module's


def test_the_rule_follows_the_index(tmp_path: Path) -> None:
    write(tmp_path, PROJECT)
    path = tmp_path / "app/tasks.py"
    config = load_config([str(tmp_path)])
    result = analyze(path.read_bytes(), str(path), config, [RULES_BY_CODE["SL408"]])
    assert result.errors == []
    found = [(f.line, f.code) for f in result.findings]
    assert found == [(11, "SL408"), (16, "SL408")]
    messages = {f.line: f.message for f in result.findings}
    assert "the task `close_order_task`" in messages[11]
    assert "`app.db.engine`" in messages[11]
    assert "after an earlier run" in messages[16]
    assert f"`{ADAPTER}`" in messages[16]


def test_the_index_survives_its_cache(tmp_path: Path) -> None:
    write(tmp_path, PROJECT)
    fresh = build_index(str(tmp_path), use_cache=True)
    cached = build_index(str(tmp_path), use_cache=True)
    assert cached == fresh
    assert cached.reach_of["app.services.close_order"] == ("app.db.engine", False)
