"""get_session / get_background_session / strict mode / FastAPI dependency on a real database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import session_runtime
from session_runtime import (
    NotConfiguredError,
    SessionClosedError,
    SessionUsedAcrossTasksError,
    configure,
    dispose,
    get_background_engine,
    get_background_session,
    get_engine,
    get_session,
    session_dependency,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.pool import NullPool


def run_configured(work: Callable[[], Awaitable[None]], *args: Any, **kwargs: Any) -> None:
    """configure(*args, **kwargs), run ``work`` and dispose, all in one event loop."""

    async def main() -> None:
        configure(*args, **kwargs)
        try:
            await work()
        finally:
            await dispose()

    asyncio.run(main())


def test_unconfigured_without_database_url_is_a_clear_error(unconfigured: None) -> None:
    async def go() -> None:
        with pytest.raises(NotConfiguredError, match="DATABASE_URL"):
            async with get_session():
                pass

    asyncio.run(go())


def test_auto_configures_from_database_url(
    unconfigured: None, pgbouncer_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", pgbouncer_url + "?pgbouncer=true")

    async def go() -> None:
        try:
            async with get_session() as s:
                assert (await s.execute(text("SELECT 41 + 1"))).scalar_one() == 42
            assert get_engine().url.port == int(pgbouncer_url.rsplit(":", 1)[1].split("/")[0])
        finally:
            await dispose()

    asyncio.run(go())


def test_get_session_contract(unconfigured: None, pgbouncer_url: str) -> None:
    """AsyncSession, expire_on_commit=False, no transaction opened for you, closed (rolled back) on exit."""

    async def go() -> None:
        async with get_session() as s, s.begin():
            await s.execute(text("CREATE TABLE IF NOT EXISTS sr_notes (id int PRIMARY KEY)"))
            await s.execute(text("DELETE FROM sr_notes"))
        async with get_session() as s:
            assert isinstance(s, AsyncSession)
            assert s.sync_session.expire_on_commit is False
            assert not s.in_transaction()
            await s.execute(text("INSERT INTO sr_notes VALUES (1)"))  # autobegins
            assert s.in_transaction()
            # no commit: closing the session rolls back
        async with get_session() as s:
            assert (await s.execute(text("SELECT count(*) FROM sr_notes"))).scalar_one() == 0
        engine = get_engine()
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    run_configured(go, pgbouncer_url, pooler="transaction")


def test_background_sessions_have_their_own_smaller_pool(
    unconfigured: None, pgbouncer_url: str
) -> None:
    """Background work cannot starve request handlers: its pool is separate and smaller."""

    async def go() -> None:
        request_engine, background_engine = get_engine(), get_background_engine()
        assert request_engine is not background_engine
        assert background_engine.sync_engine.pool is not request_engine.sync_engine.pool
        # Same pooler safety on the background engine.
        assert background_engine.dialect.name == "postgresql"

        async with get_background_session() as busy:
            await busy.execute(text("SELECT 1"))  # holds the only background connection

            # Requests still get connections while background work holds its whole pool.
            async def request(n: int) -> int:
                async with get_session() as s:
                    return int(
                        (await s.execute(text("SELECT CAST(:n AS int)"), {"n": n})).scalar_one()
                    )

            assert await asyncio.gather(*(request(n) for n in range(8))) == list(range(8))
            assert background_engine.sync_engine.pool.checkedout() == 1  # type: ignore[attr-defined]

    run_configured(
        go, pgbouncer_url, pooler="transaction", background_pool_size=1, background_max_overflow=0
    )


def test_configure_with_an_engine(unconfigured: None, pgbouncer_url: str) -> None:
    engine = session_runtime.make_engine(pgbouncer_url, pooler="transaction")

    async def go() -> None:
        assert get_engine() is engine
        async with get_background_session() as s:
            assert (await s.execute(text("SELECT 1"))).scalar_one() == 1

    run_configured(go, engine)


def test_strict_mode_catches_a_session_shared_by_gather(
    unconfigured: None, pgbouncer_url: str
) -> None:
    """SL402 at runtime: one session, two tasks."""

    async def go() -> None:
        async with get_session() as s:
            await s.execute(text("SELECT 1"))  # the opening task may use it
            with pytest.raises(SessionUsedAcrossTasksError, match="opened in task"):
                await asyncio.gather(s.execute(text("SELECT 1")), s.execute(text("SELECT 2")))

    run_configured(go, pgbouncer_url, pooler="transaction", strict=True)


def test_strict_mode_catches_use_after_close(unconfigured: None, pgbouncer_url: str) -> None:
    """SL401 at runtime: a session handed to work that runs after its block closed it."""

    async def go() -> None:
        async with get_session() as s:
            pass
        with pytest.raises(SessionClosedError, match="get_background_session"):
            await s.execute(text("SELECT 1"))
        with pytest.raises(SessionClosedError):
            s.add(object())

    run_configured(go, pgbouncer_url, pooler="transaction", strict=True)


def test_without_strict_mode_sessions_are_plain(unconfigured: None, pgbouncer_url: str) -> None:

    async def go() -> None:
        async with get_session() as s:
            assert type(s) is AsyncSession

    run_configured(go, pgbouncer_url, pooler="transaction")


def test_fastapi_dependency(unconfigured: None, pgbouncer_url: str) -> None:
    """Depends(session_dependency()) through a real app and database, strict mode on."""
    fastapi = pytest.importorskip("fastapi")
    db = fastapi.Depends(session_dependency())
    app = fastapi.FastAPI()
    seen: list[AsyncSession] = []

    @app.get("/add/{a}/{b}")
    async def add(a: int, b: int, s: AsyncSession = db) -> dict[str, int]:
        seen.append(s)
        async with s.begin():
            total = (
                await s.execute(text("SELECT CAST(:a AS int) + CAST(:b AS int)"), {"a": a, "b": b})
            ).scalar_one()
        return {"sum": total}

    async def go() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = await asyncio.gather(*(client.get(f"/add/{n}/1") for n in range(20)))
        assert [r.json() for r in responses] == [{"sum": n + 1} for n in range(20)]
        assert len({id(s) for s in seen}) == 20  # one session per request
        with pytest.raises(SessionClosedError):  # and each closed after its request
            await seen[0].execute(text("SELECT 1"))
        assert get_engine().sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    run_configured(go, pgbouncer_url, pooler="transaction", strict=True)


def test_configure_with_nullpool(unconfigured: None) -> None:
    """A NullPool engine gets a NullPool background sibling (no pool sizes to shrink); nothing connects."""

    async def go() -> None:
        assert isinstance(get_engine().sync_engine.pool, NullPool)
        assert isinstance(get_background_engine().sync_engine.pool, NullPool)
        assert get_background_engine() is not get_engine()

    run_configured(go, "postgresql://u@db.internal/app?pgbouncer=true", poolclass=NullPool)
