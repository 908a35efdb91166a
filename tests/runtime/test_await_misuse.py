"""SL405's claims (session_lint/rules/SL405_await_misuse.py) on a real database:
the errors its docs quote, and its method lists against the installed SQLAlchemy."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from session_lint.rules.SL405_await_misuse import RESULT_COROUTINES, SYNC_METHODS


def test_the_method_lists_match_the_installed_sqlalchemy() -> None:
    for name in SYNC_METHODS:
        method = getattr(AsyncSession, name)
        assert callable(method) and not inspect.iscoroutinefunction(method), name
    for name in RESULT_COROUTINES:
        assert inspect.iscoroutinefunction(getattr(AsyncSession, name)), name


def test_the_errors_the_docs_quote(postgres_url: str) -> None:
    errors: dict[str, str] = {}

    async def main() -> None:
        engine = create_async_engine(postgres_url)
        try:
            async with AsyncSession(engine, expire_on_commit=False) as session:
                for name, call in (
                    ("expunge_all", session.expunge_all),
                    ("in_transaction", session.in_transaction),
                    ("get_bind", session.get_bind),
                ):
                    with pytest.raises(TypeError) as raised:
                        await call()  # type: ignore[misc]
                    errors[name] = str(raised.value)
                # ``await session.execute(q).scalars()``: ``.scalars()`` is looked up
                # on the coroutine before anything is awaited. The coroutine is
                # closed here rather than left to warn when collected.
                coroutine = session.execute(text("SELECT 1"))
                try:
                    with pytest.raises(AttributeError) as raised:
                        await coroutine.scalars()  # type: ignore[attr-defined]
                    errors["scalars"] = str(raised.value)
                finally:
                    coroutine.close()
                # The fixed spelling runs on the server.
                assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
        finally:
            await engine.dispose()

    asyncio.run(main())
    assert errors == {
        "expunge_all": "object NoneType can't be used in 'await' expression",
        "in_transaction": "object bool can't be used in 'await' expression",
        "get_bind": "object Engine can't be used in 'await' expression",
        "scalars": "'coroutine' object has no attribute 'scalars'",
    }
    assert SYNC_METHODS["expunge_all"] == "NoneType"
    assert SYNC_METHODS["in_transaction"] == "bool"
    assert SYNC_METHODS["get_bind"] == "Engine"
