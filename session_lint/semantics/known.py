"""Qualified names the rules recognise, in one place.

Both the public import path and the defining module are listed: code imports
``sqlalchemy.ext.asyncio.AsyncSession`` as often as ``sqlalchemy.ext.asyncio.session.AsyncSession``.
"""

from __future__ import annotations

ASYNC_SESSION_CLASSES = frozenset(
    {
        "sqlalchemy.ext.asyncio.AsyncSession",
        "sqlalchemy.ext.asyncio.session.AsyncSession",
        "sqlmodel.ext.asyncio.session.AsyncSession",
    }
)
SYNC_SESSION_CLASSES = frozenset(
    {
        "sqlalchemy.orm.Session",
        "sqlalchemy.orm.session.Session",
        "sqlmodel.Session",
        "sqlmodel.orm.session.Session",
    }
)
SESSION_CLASSES = ASYNC_SESSION_CLASSES | SYNC_SESSION_CLASSES

ASYNC_SESSIONMAKERS = frozenset(
    {
        "sqlalchemy.ext.asyncio.async_sessionmaker",
        "sqlalchemy.ext.asyncio.session.async_sessionmaker",
    }
)
SYNC_SESSIONMAKERS = frozenset(
    {
        "sqlalchemy.orm.sessionmaker",
        "sqlalchemy.orm.session.sessionmaker",
    }
)
SESSIONMAKERS = ASYNC_SESSIONMAKERS | SYNC_SESSIONMAKERS

ASYNC_ENGINE_CONSTRUCTORS = frozenset(
    {
        "sqlalchemy.ext.asyncio.create_async_engine",
        "sqlalchemy.ext.asyncio.engine.create_async_engine",
        "sqlmodel.ext.asyncio.create_async_engine",
    }
)
SYNC_ENGINE_CONSTRUCTORS = frozenset(
    {
        "sqlalchemy.create_engine",
        "sqlalchemy.engine.create_engine",
        "sqlalchemy.engine.create.create_engine",
        "sqlmodel.create_engine",
    }
)
ENGINE_CONSTRUCTORS = ASYNC_ENGINE_CONSTRUCTORS | SYNC_ENGINE_CONSTRUCTORS

RAW_DRIVER_CONNECTS = frozenset(
    {
        "asyncpg.connect",
        "asyncpg.connection.connect",
        "asyncpg.create_pool",
        "asyncpg.pool.create_pool",
        "psycopg2.connect",
        "psycopg.connect",
        "psycopg.Connection.connect",
        "psycopg.AsyncConnection.connect",
        "psycopg.connection.Connection.connect",
        "psycopg.connection_async.AsyncConnection.connect",
        "psycopg_pool.AsyncConnectionPool",
        "psycopg_pool.ConnectionPool",
    }
)

CACHE_DECORATORS = frozenset(
    {
        "functools.cache",
        "functools.lru_cache",
        "functools.cached_property",
        "async_lru.alru_cache",
    }
)
