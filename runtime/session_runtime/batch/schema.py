"""Creating and dropping the batch tables.

No Alembic migration ships with the runtime: an application owns its
migration history (one ``alembic_version`` table, one chain), and a library
that brought its own chain would fork it. Add
:data:`session_runtime.batch.metadata` to ``target_metadata`` and
autogenerate instead; :func:`create_all` is for tests, scripts and apps
without migrations.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from .models import metadata

__all__ = ["create_all", "drop_all"]

# Key of the transaction-scoped advisory lock that serialises concurrent
# create_all calls (several workers starting at once). Transaction-scoped
# locks end with the transaction, so they are safe behind a transaction
# pooler; session-level advisory locks are not.
_SCHEMA_LOCK_KEY = 0x5E551_0B47C4


def _check_engine(engine: object) -> None:
    if not isinstance(engine, AsyncEngine):
        raise TypeError(
            f"engine must be a sqlalchemy AsyncEngine (e.g. make_engine()), got {type(engine).__name__}"
        )


async def create_all(engine: AsyncEngine) -> None:
    """Create the batch tables and indexes that do not exist yet (idempotent, concurrency-safe)."""
    _check_engine(engine)
    async with engine.begin() as conn:
        await conn.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK_KEY)))
        await conn.run_sync(metadata.create_all)


async def drop_all(engine: AsyncEngine) -> None:
    """Drop the batch tables (and every batch in them)."""
    _check_engine(engine)
    async with engine.begin() as conn:
        await conn.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK_KEY)))
        await conn.run_sync(metadata.drop_all)
