"""SL407's claim (session_lint/rules/SL407_scoped_session_never_removed.py) through a
real pgbouncer in transaction mode: an ``async_scoped_session`` scoped by
``asyncio.current_task`` keeps one registry entry, with its session, for every
task that used it and only closed its session; tasks that ``remove()`` it leave
none. A thread-local ``scoped_session`` (the default scope) keeps nothing once its
threads have ended, which is why the rule leaves that form alone."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import async_scoped_session, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

TASKS = 200


async def _entries_after_tasks(pgbouncer_url: str, remove: bool) -> tuple[int, int, int]:
    """(registry entries, sessions still alive, finished tasks still alive) once
    ``TASKS`` tasks have each run a query through the scoped session and ended it
    with ``close()`` or ``remove()``."""
    engine = create_async_engine(pgbouncer_url, connect_args={"statement_cache_size": 0})
    scoped = async_scoped_session(
        async_sessionmaker(engine, expire_on_commit=False), scopefunc=asyncio.current_task
    )
    alive: weakref.WeakSet[object] = weakref.WeakSet()
    tasks: weakref.WeakSet[object] = weakref.WeakSet()

    async def work(number: int) -> int:
        session = scoped()
        alive.add(session)
        tasks.add(asyncio.current_task())
        try:
            value = (
                await session.execute(text("SELECT CAST(:n AS integer)"), {"n": number})
            ).scalar_one()
            return int(value)
        finally:
            if remove:
                await scoped.remove()
            else:
                await session.close()

    try:
        results = await asyncio.gather(*(asyncio.create_task(work(n)) for n in range(TASKS)))
        assert results == list(range(TASKS))
        await asyncio.sleep(0)  # gather's own callbacks run and drop its list of tasks
        gc.collect()
        return len(scoped.registry.registry), len(alive), len(tasks)
    finally:
        await engine.dispose()


def test_closing_keeps_one_entry_per_finished_task(pgbouncer_url: str) -> None:
    entries, alive, tasks = asyncio.run(_entries_after_tasks(pgbouncer_url, remove=False))
    assert entries == TASKS
    # The registry holds every session, closed but not freed, and every finished task.
    assert alive == TASKS
    assert tasks == TASKS


def test_removing_leaves_no_entry(pgbouncer_url: str) -> None:
    entries, alive, tasks = asyncio.run(_entries_after_tasks(pgbouncer_url, remove=True))
    assert entries == 0
    assert alive == 0
    assert tasks == 0


def test_a_thread_local_registry_forgets_ended_threads(pgbouncer_url: str) -> None:
    """The default scope of ``scoped_session`` is a ``threading.local``: a thread's
    session goes with its thread, removed or not."""
    engine = create_engine(
        pgbouncer_url.replace("+asyncpg", "+psycopg"), connect_args={"prepare_threshold": None}
    )
    scoped = scoped_session(sessionmaker(engine))
    alive: weakref.WeakSet[Session] = weakref.WeakSet()

    def work() -> None:
        session = scoped()
        alive.add(session)
        session.execute(text("SELECT 1"))
        session.close()

    try:
        threads = [threading.Thread(target=work) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        gc.collect()
        assert len(alive) == 0
    finally:
        engine.dispose()


@pytest.mark.parametrize("removed", [False, True])
def test_the_rule_tells_the_two_apart(removed: bool) -> None:
    from session_lint.analyzer import analyze
    from session_lint.project.config import Config
    from session_lint.rules import RULES_BY_CODE

    source = (
        "from asyncio import current_task\n"
        "from sqlalchemy.ext.asyncio import async_scoped_session, async_sessionmaker\n"
        "Session = async_scoped_session(async_sessionmaker(), scopefunc=current_task)\n"
        "async def handle():\n"
        "    try:\n"
        "        await Session().commit()\n"
        "    finally:\n"
        f"        await Session.{'remove' if removed else 'close'}()\n"
    )
    found = analyze(source.encode(), "app/db.py", Config(), [RULES_BY_CODE["SL407"]]).findings
    assert [f.code for f in found] == ([] if removed else ["SL407"])
