"""SL406's claim (session_lint/rules/SL406_scoped_session_shared_by_tasks.py) through
a real pgbouncer in transaction mode: an async_scoped_session scoped by a
ContextVar hands the request's session to the tasks it starts, which then fail
when they use it at once; scoped by task, each task has its own."""

from __future__ import annotations

import asyncio
from contextvars import ContextVar

import pytest
from sqlalchemy import text
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import (
    AsyncSession,
    async_scoped_session,
    async_sessionmaker,
    create_async_engine,
)

request_id: ContextVar[str] = ContextVar("request_id")


async def _tasks_share(scopefunc: object, pgbouncer_url: str) -> tuple[bool, list[object]]:
    engine = create_async_engine(pgbouncer_url, connect_args={"statement_cache_size": 0})
    scoped = async_scoped_session(
        async_sessionmaker(engine, expire_on_commit=False), scopefunc=scopefunc  # type: ignore[arg-type]
    )
    seen: list[AsyncSession] = []

    async def work() -> object:
        session = scoped()
        seen.append(session)
        return (await session.execute(text("SELECT pg_sleep(0.2), 1"))).one()[1]

    async def request() -> list[object]:
        request_id.set("request-1")  # as a middleware does
        tasks = [asyncio.create_task(work()) for _ in range(2)]
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    try:
        results = await request()
    finally:
        for session in {id(s): s for s in seen}.values():
            await session.close()
        await engine.dispose()
    return seen[0] is seen[1], results


def test_a_context_var_scope_shares_the_session_and_fails(pgbouncer_url: str) -> None:
    shared, results = asyncio.run(_tasks_share(request_id.get, pgbouncer_url))
    assert shared, "both tasks got the request's session"
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1, results
    assert isinstance(errors[0], InvalidRequestError)
    assert "concurrent operations are not permitted" in str(errors[0])
    assert "This session is provisioning a new connection" in str(errors[0])


def test_a_task_scope_gives_each_task_its_own(pgbouncer_url: str) -> None:
    shared, results = asyncio.run(_tasks_share(asyncio.current_task, pgbouncer_url))
    assert not shared
    assert results == [1, 1]


@pytest.mark.parametrize("scope", ["context", "task"])
def test_the_rule_tells_the_two_apart(scope: str) -> None:
    from session_lint.analyzer import analyze
    from session_lint.project.config import Config
    from session_lint.rules import RULES_BY_CODE

    scopefunc = "request_id.get" if scope == "context" else "current_task"
    source = (
        "from asyncio import current_task\n"
        "from contextvars import ContextVar\n"
        "from sqlalchemy.ext.asyncio import async_scoped_session, async_sessionmaker\n"
        'request_id = ContextVar("request_id")\n'
        f"Session = async_scoped_session(async_sessionmaker(), scopefunc={scopefunc})\n"
    )
    found = analyze(source.encode(), "app/db.py", Config(), [RULES_BY_CODE["SL406"]]).findings
    assert [f.code for f in found] == (["SL406"] if scope == "context" else [])
