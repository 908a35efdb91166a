"""make_engine's URL handling and refusals: no server needed (nothing connects)."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from typing import Any

import pytest
from session_runtime import NotConfiguredError, make_engine
from session_runtime.engine import DEFAULT_CONNECT_TIMEOUT, DEFAULT_POOL_RECYCLE
from session_runtime.pool import FailFastQueuePool
from session_runtime.urls import detect_pooler, resolve_url
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

PGBOUNCER = "postgresql://u:p@db.internal:6432/app?pgbouncer=true"


class _Captured(Exception):
    pass


def connect_args(engine: AsyncEngine) -> dict[str, Any]:
    """The keyword arguments the driver's connect() would receive; stops before connecting."""
    seen: dict[str, Any] = {}

    def capture(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        seen.update(cparams)
        raise _Captured

    event.listen(engine.sync_engine, "do_connect", capture)

    async def attempt() -> None:
        try:
            async with engine.connect():
                pass
        except _Captured:
            pass
        finally:
            await engine.dispose()

    asyncio.run(attempt())
    return seen


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DB_POOLER", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgresql://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgresql+asyncpg://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
    ],
)
def test_url_normalisation(given: str, expected: str) -> None:
    assert resolve_url(given).url.render_as_string(hide_password=False) == expected


@pytest.mark.parametrize("driver", ["psycopg2", "pg8000", "mysql"])
def test_non_async_or_foreign_urls_are_refused(driver: str) -> None:
    url = f"postgresql+{driver}://h/db" if driver != "mysql" else "mysql://h/db"
    with pytest.raises(ValueError, match=r"asyncio|not a PostgreSQL URL"):
        resolve_url(url)


def test_sslmode_becomes_asyncpg_ssl() -> None:
    resolved = resolve_url("postgres://u@h/db?sslmode=require&application_name=api")
    assert resolved.url.query == {}
    assert resolved.connect_args == {
        "ssl": "require",
        "server_settings": {"application_name": "api"},
    }
    assert resolve_url("postgresql://h/db?ssl=true").connect_args == {"ssl": "require"}


def test_sslrootcert_builds_a_verifying_context(tmp_path: Any) -> None:
    ca = ssl.get_default_verify_paths().cafile
    if ca is None:
        pytest.skip("no system CA bundle")
    resolved = resolve_url(f"postgresql://h/db?sslmode=verify-full&sslrootcert={ca}")
    context = resolved.connect_args["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


def test_sslmode_left_alone_for_psycopg() -> None:
    resolved = resolve_url("postgresql+psycopg://h/db?sslmode=require")
    assert resolved.url.query == {"sslmode": "require"}


def test_numeric_asyncpg_args_in_the_url_become_numbers() -> None:
    """A string "0" from the URL would fail every query with TypeError; it must arrive as an int."""
    resolved = resolve_url("postgresql://h/db?statement_cache_size=0&command_timeout=5")
    assert resolved.connect_args == {"statement_cache_size": 0, "command_timeout": 5.0}
    assert resolved.url.query == {}


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        ("postgresql://u@aws-0-eu-west-1.pooler.supabase.com:6543/postgres", None, "transaction"),
        ("postgresql://u@aws-0-eu-west-1.pooler.supabase.com:5432/postgres", None, "none"),
        ("postgresql://u@db.example.com:6543/postgres", None, "none"),
        ("postgresql://u@h/db?pgbouncer=true", None, "transaction"),
        ("postgresql://u@h/db?pgbouncer=false", None, "none"),
        ("postgresql://u@h/db", "transaction", "transaction"),
        ("postgresql://u@h/db", "session", "session"),
        ("postgresql://u@h/db", None, "none"),
    ],
)
def test_pooler_detection(
    url: str, env: str | None, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if env:
        monkeypatch.setenv("DB_POOLER", env)
    assert detect_pooler(resolve_url(url)) == expected


def test_pgbouncer_flag_never_reaches_the_driver() -> None:
    assert "pgbouncer" not in resolve_url(PGBOUNCER).url.query
    assert "pgbouncer" not in connect_args(make_engine(PGBOUNCER))


def test_explicit_pooler_wins_and_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert detect_pooler(resolve_url(PGBOUNCER), "none") == "none"
    with pytest.raises(ValueError, match="pooler"):
        detect_pooler(resolve_url(PGBOUNCER), "bogus")  # type: ignore[arg-type]
    monkeypatch.setenv("DB_POOLER", "yes")
    with pytest.raises(ValueError, match="DB_POOLER"):
        detect_pooler(resolve_url("postgresql://h/db"))


def test_transaction_mode_defaults() -> None:
    engine = make_engine(PGBOUNCER)
    args = connect_args(engine)
    assert args["statement_cache_size"] == 0
    assert args["timeout"] == DEFAULT_CONNECT_TIMEOUT
    # Nothing else about prepared statements (FACTS: slower, and the uuid name func leaks).
    assert "prepared_statement_name_func" not in args
    assert "prepared_statement_cache_size" not in args
    assert isinstance(engine.sync_engine.pool, FailFastQueuePool)
    assert engine.sync_engine.pool._recycle == DEFAULT_POOL_RECYCLE
    assert engine.sync_engine.pool._pre_ping is False


def test_direct_mode_keeps_the_statement_cache() -> None:
    args = connect_args(make_engine("postgresql://h/db"))
    assert "statement_cache_size" not in args
    assert args["timeout"] == DEFAULT_CONNECT_TIMEOUT


def test_caller_kwargs_win() -> None:
    engine = make_engine(
        PGBOUNCER,
        pool_size=7,
        pool_recycle=60,
        pool_pre_ping=True,
        connect_args={"timeout": 2, "server_settings": {"application_name": "api"}},
    )
    args = connect_args(engine)
    assert args["timeout"] == 2
    assert args["server_settings"] == {"application_name": "api"}
    assert engine.sync_engine.pool.size() == 7  # type: ignore[attr-defined]
    assert engine.sync_engine.pool._recycle == 60
    assert engine.sync_engine.pool._pre_ping is True


def test_database_url_env_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u@envhost/db")
    assert make_engine().url.host == "envhost"


def test_no_url_at_all_is_a_clear_error() -> None:
    with pytest.raises(NotConfiguredError, match="DATABASE_URL"):
        make_engine()


@pytest.mark.parametrize("pooler", ["transaction", "none"])
def test_driver_arg_in_server_settings_is_refused_before_connecting(pooler: str) -> None:
    """The real-world mistake: every connect fails (docs/pooler-facts.md); refused at
    creation, in any mode."""
    with pytest.raises(ValueError, match=r"statement_cache_size.*asyncpg connect argument, not a"):
        make_engine(
            "postgresql://h/db",
            pooler=pooler,  # type: ignore[arg-type]
            connect_args={"server_settings": {"statement_cache_size": "0"}},
        )


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"connect_args": {"statement_cache_size": 100}}, "statement_cache_size"),
        (
            {
                "connect_args": {
                    "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4()}__"
                }
            },
            "prepared_statement_name_func",
        ),
        ({"connect_args": {"server_settings": {"search_path": "app"}}}, "search_path"),
        ({"connect_args": {"server_settings": {"jit": "off"}}}, "jit"),
    ],
)
def test_pooler_unsafe_kwargs_are_refused(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=key):
        make_engine(PGBOUNCER, **kwargs)


def test_statement_cache_in_url_is_checked_too() -> None:
    with pytest.raises(ValueError, match="statement_cache_size"):
        make_engine(PGBOUNCER + "&statement_cache_size=100")


def test_accepted_startup_parameters_pass() -> None:
    settings = {"application_name": "api", "TimeZone": "UTC", "DateStyle": "ISO"}
    args = connect_args(make_engine(PGBOUNCER, connect_args={"server_settings": settings}))
    assert args["server_settings"] == settings


def test_extra_startup_parameters_for_newer_poolers() -> None:
    settings = {"search_path": "app"}
    engine = make_engine(
        PGBOUNCER,
        extra_startup_parameters=["search_path"],
        connect_args={"server_settings": settings},
    )
    assert connect_args(engine)["server_settings"] == settings


def test_unnamed_statement_name_func_is_allowed() -> None:
    make_engine(PGBOUNCER, connect_args={"prepared_statement_name_func": lambda: ""})


def test_autocommit_is_allowed_in_transaction_mode() -> None:
    """Measured safe (test_runtime_pooler.test_autocommit_through_pgbouncer), so not refused."""
    make_engine(PGBOUNCER, isolation_level="AUTOCOMMIT")


def test_psycopg_gets_prepare_threshold_none() -> None:
    engine = make_engine("postgresql+psycopg://h/db?pgbouncer=true")
    assert connect_args(engine)["prepare_threshold"] is None
    with pytest.raises(ValueError, match="prepare_threshold"):
        make_engine(
            "postgresql+psycopg://h/db?pgbouncer=true", connect_args={"prepare_threshold": 5}
        )
