"""Fixtures for the runtime tests: schema setup on the plugin's servers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import session_runtime
from runtime_workload import create_schema
from sqlalchemy.ext.asyncio import create_async_engine


@pytest.fixture(scope="session")
def schema(postgres_url: str) -> str:
    """Create the workload tables (JSONB/ENUM/UUID) once, directly on PostgreSQL."""

    async def setup() -> None:
        engine = create_async_engine(postgres_url)
        try:
            await create_schema(engine)
        finally:
            await engine.dispose()

    asyncio.run(setup())
    return postgres_url


@pytest.fixture
def unconfigured(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No session_runtime configuration and no $DATABASE_URL/$DB_POOLER, before and after."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DB_POOLER", raising=False)
    asyncio.run(session_runtime.dispose())
    yield
    asyncio.run(session_runtime.dispose())
