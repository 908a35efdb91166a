"""Pooler rules SL201-SL206: configuration that turns them off or extends them,
and the URL evidence they share (semantics/pooler.py)."""

from __future__ import annotations

import pytest

from session_lint.analyzer import analyze
from session_lint.project.config import Config
from session_lint.rules import RULES_BY_CODE
from session_lint.semantics.execution_options import Kind, classify
from session_lint.semantics.pooler import HOLE, UrlText

POOLER_RULES = [RULES_BY_CODE[f"SL20{i}"] for i in range(1, 7)]

ENGINE = b"""
from uuid import uuid4
from sqlalchemy.ext.asyncio import create_async_engine

engine = create_async_engine(
    "postgresql+asyncpg://app@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
    connect_args={
        "prepared_statement_name_func": lambda: f"__asyncpg_{uuid4()}__",
        "server_settings": {"search_path": "app", "statement_cache_size": "0"},
    },
)
"""


def _codes(source: bytes, config: Config) -> list[str]:
    result = analyze(source, "app/db/engine.py", config, POOLER_RULES)
    assert result.errors == []
    return sorted(f.code for f in result.findings)


def test_pooler_evidence_from_the_url() -> None:
    # SL204 waits for SL203's fix (statement_cache_size sits in server_settings).
    assert _codes(ENGINE, Config()) == ["SL203", "SL203", "SL205"]


@pytest.mark.parametrize("mode", ["none", "session"])
def test_no_pooler_configured_keeps_only_what_fails_everywhere(mode: str) -> None:
    # A driver key in server_settings fails every connect, pooler or not.
    assert _codes(ENGINE, Config(pooler=mode)) == ["SL203"]


def test_extra_execution_options_are_never_reported() -> None:
    source = b"""
from sqlalchemy import select  # evidence: this file does database work
async def f(session, stmt):
    await session.execute(stmt, execution_options={"raw_sql": True, "prepare": False})
"""
    assert _codes(source, Config()) == ["SL201", "SL201"]
    assert _codes(source, Config(extra_execution_options=("raw_sql", "prepare"))) == []


def test_classification() -> None:
    assert classify("isolation_level") is None
    assert classify("postgresql_readonly") is None
    assert classify("my_custom_option") is None  # may be read by an event hook
    assert classify("_sa_orm_load_options") is None
    assert classify("statement_cache_size") == classify("prepared_statement_cache_size")
    verdict = classify("populate_exisiting")
    assert verdict is not None and verdict.kind is Kind.TYPO
    assert verdict.suggestion == "populate_existing"
    no_params = classify("no_parameters")
    assert no_params is not None and no_params.kind is Kind.NO_PARAMETERS
    assert classify("no_parameters", ("no_parameters",)) is None


@pytest.mark.parametrize(
    ("text", "evidence"),
    [
        ("postgresql+asyncpg://u:p@db.internal:6543/app", True),
        (f"postgresql+asyncpg://{HOLE}:{HOLE}@aws-0-x.pooler.supabase.com:5432/postgres", True),
        ("postgresql://u@h:6432/app?pgbouncer=true", True),
        ("postgresql+asyncpg://u@h1:5432,h2:6543/app", True),
        ("postgresql+asyncpg://u@db.internal:5432/app", False),
        (f"postgresql+asyncpg://u@{HOLE}/app", False),
        (f"postgresql+asyncpg://u@db:{HOLE}/app", False),
        ("mysql+aiomysql://u@h:6543/app", False),
        ("see postgresql://u@h:6543/app for details", False),
    ],
)
def test_url_evidence(text: str, evidence: bool) -> None:
    assert UrlText(text).pooler_evidence() is evidence


def test_url_scheme_decidability() -> None:
    assert UrlText("postgresql+asyncpg://u@h/db").is_asyncpg is True
    assert UrlText("postgresql+psycopg://u@h/db").is_asyncpg is False
    assert UrlText(f"{HOLE}://u@h/db").is_asyncpg is None
    assert not UrlText(f"postgresql+asyncpg://u@{HOLE}/db").decided


def test_the_dialect_execution_options_are_the_ones_sqlalchemy_reads() -> None:
    """SL201 reports a dialect-prefixed option outside DIALECT_EXECUTION_OPTIONS:
    that list must hold every one the installed SQLAlchemy's dialects read."""
    import inspect

    from sqlalchemy.dialects.mssql.base import MSDialect
    from sqlalchemy.dialects.mysql.base import MySQLDialect
    from sqlalchemy.dialects.oracle.base import OracleDialect
    from sqlalchemy.dialects.postgresql.base import PGDialect
    from sqlalchemy.dialects.sqlite import base as sqlite_base

    from session_lint.semantics.execution_options import (
        DIALECT_EXECUTION_OPTIONS,
        DIALECT_PREFIXES,
        classify,
    )

    read = {"sqlite_raw_colnames"} if 'get("sqlite_raw_colnames"' in inspect.getsource(
        sqlite_base
    ) else set()
    for dialect in (PGDialect, MySQLDialect, sqlite_base.SQLiteDialect, MSDialect, OracleDialect):
        read |= {n for n in dialect.connection_characteristics if n.startswith(DIALECT_PREFIXES)}
    assert read == set(DIALECT_EXECUTION_OPTIONS)
    assert all(classify(name) is None for name in read)
    assert classify("postgresql_expert_mode") is not None
    assert classify("_sa_orm_update_options") is None
