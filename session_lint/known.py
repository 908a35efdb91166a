"""Qualified names the rules recognise, in one place.

Both the public import path and the defining module are listed: code imports
``sqlalchemy.ext.asyncio.AsyncSession`` as often as ``sqlalchemy.ext.asyncio.session.AsyncSession``.
"""

from __future__ import annotations

import re

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

# Statement constructors that write.
WRITE_CONSTRUCTORS = frozenset(
    {
        f"{module}.{name}"
        for module in (
            "sqlalchemy",
            "sqlalchemy.sql",
            "sqlalchemy.sql.expression",
            "sqlalchemy.sql.dml",
            "sqlalchemy.sql._dml_constructors",
            "sqlmodel",
        )
        for name in ("insert", "update", "delete")
    }
    | {
        f"sqlalchemy.dialects.{dialect}.{name}"
        for dialect in ("postgresql", "sqlite", "mysql")
        for name in ("insert", "Insert")
    }
    | {"sqlalchemy.dialects.postgresql.dml.insert", "sqlalchemy.dialects.sqlite.dml.insert"}
)

# Calls that make SQL text a statement.
TEXT_FUNCTIONS = frozenset(
    {
        "sqlalchemy.text",
        "sqlalchemy.sql.text",
        "sqlalchemy.sql.expression.text",
        "sqlalchemy.sql._elements_constructors.text",
        "sqlmodel.text",
    }
)

# SQL text that writes: its first word after whitespace and comments.
_LEADING_NOISE = re.compile(r"^(?:\s+|--[^\n]*\n?|/\*.*?\*/)*", re.S)
_WRITE = re.compile(
    r"^(?:INSERT|UPDATE|DELETE|MERGE|UPSERT|TRUNCATE|CREATE|DROP|ALTER|GRANT|REVOKE|COPY)\b",
    re.I,
)


def sql_head(text: str) -> str:
    """The statement text without leading whitespace and SQL comments."""
    return _LEADING_NOISE.sub("", text, count=1)


def is_write_sql(text: str) -> bool:
    return bool(_WRITE.match(sql_head(text)))


# Methods of Session/AsyncSession/Connection/AsyncConnection that take a statement
# (and, with ``get``/``get_one``, start a transaction and take execution options).
EXECUTE_METHODS = frozenset({"execute", "scalar", "scalars", "stream", "stream_scalars"})
DRIVER_SQL_METHODS = frozenset({"exec_driver_sql"})
