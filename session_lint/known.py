"""Qualified names the rules recognise, in one place.

Both the public import path and the defining module are listed: code imports
``sqlalchemy.ext.asyncio.AsyncSession`` as often as ``sqlalchemy.ext.asyncio.session.AsyncSession``.
"""

from __future__ import annotations

import functools
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
# Scoped sessions: a registry of sessions keyed by what ``scopefunc`` returns.
ASYNC_SCOPED_SESSIONS = frozenset(
    {
        "sqlalchemy.ext.asyncio.async_scoped_session",
        "sqlalchemy.ext.asyncio.scoping.async_scoped_session",
    }
)
SYNC_SCOPED_SESSIONS = frozenset(
    {"sqlalchemy.orm.scoped_session", "sqlalchemy.orm.scoping.scoped_session"}
)

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


# -- slow calls ---------------------------------------------------------------------
# What waits on the network or sleeps: the default ``slow-calls`` (a name, or a
# prefix ending in ``.*``). The wildcards take any call under the prefix, through
# imports and through the client a name was built from (``client.get`` of
# ``client = httpx.AsyncClient()`` is ``httpx.AsyncClient.get``), except building
# a client or a value (see ``is_slow_call``).
DEFAULT_SLOW_CALLS = (
    "asyncio.sleep",
    "time.sleep",
    "httpx.*",
    "aiohttp.ClientSession.*",
    "aiohttp.request",
    "requests.*",
    "urllib.request.urlopen",
    "openai.*",
    "anthropic.*",
    "boto3.*",
    "aioboto3.*",
    "botocore.*",
    "aiobotocore.*",
    "smtplib.*",
    "aiosmtplib.*",
)
# Calls under a wildcard that build a client, a session or a value, and wait on
# nothing: ``boto3.client("s3")``, ``httpx.Timeout(5)``, ``requests.Session()``.
_NOT_SLOW_LAST = frozenset(
    {"client", "resource", "session", "Session", "AsyncClient", "Client", "ClientSession",
     "close", "aclose", "raise_for_status", "json", "build_request", "headers", "cookies",
     "get_paginator", "get_waiter", "with_options", "with_raw_response"}
)  # fmt: skip


def is_slow_call(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether a call of ``name`` (a qualified name) matches one of ``patterns``:
    equal to a name, or under a ``prefix.*`` wildcard and not the building of a
    client or a value (a capitalised last part is a class: ``httpx.Timeout``)."""
    found = _by_head(patterns).get(name.partition(".")[0])
    if found is None:
        return False
    names, prefixes = found
    if name in names:
        return True
    for prefix in prefixes:
        if name.startswith(prefix) and len(name) > len(prefix):
            last = name.rsplit(".", 1)[-1]
            if last not in _NOT_SLOW_LAST and not last[:1].isupper() and not last.startswith("_"):
                return True
    return False


@functools.lru_cache(maxsize=16)
def _by_head(patterns: tuple[str, ...]) -> dict[str, tuple[frozenset[str], tuple[str, ...]]]:
    """The patterns by the first part of the names they match (a name and its
    pattern share it: a wildcard's prefix ends with a dot), as (the names, the
    prefixes of the wildcards): the index asks for every call of the project."""
    names: dict[str, set[str]] = {}
    prefixes: dict[str, list[str]] = {}
    for pattern in patterns:
        head = pattern.partition(".")[0]
        if pattern.endswith(".*"):
            prefixes.setdefault(head, []).append(pattern[:-1])
        else:
            names.setdefault(head, set()).add(pattern)
    return {
        head: (frozenset(names.get(head, ())), tuple(prefixes.get(head, ())))
        for head in {*names, *prefixes}
    }


# Session and connection classes a parameter's annotation may name.
CONNECTION_CLASSES = frozenset(
    {"sqlalchemy.engine.Connection", "sqlalchemy.Connection",
     "sqlalchemy.ext.asyncio.AsyncConnection", "sqlalchemy.ext.asyncio.engine.AsyncConnection"}
)  # fmt: skip
SESSION_CLASSES_ALL = SESSION_CLASSES | CONNECTION_CLASSES
