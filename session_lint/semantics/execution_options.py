"""Execution-option keys: which ones SQLAlchemy reads, and which ones people pass
that it silently ignores. The one place these lists live.

Checked against SQLAlchemy 2.1.9's source (``_CoreKnownExecutionOptions`` in
``engine/interfaces.py``, ``_OrmKnownExecutionOptions`` in ``orm/_typing.py``, the
``execution_options()`` overloads in ``sql/base.py``, ``orm/query.py`` and
``engine/base.py``, the ORM's ``from_execution_options`` calls, PostgreSQL's
``connection_characteristics``) and the 2.0 documentation.

SQLAlchemy also supports user-defined options read back by event hooks
(``do_orm_execute``, ``before_cursor_execute``; its own docs use ``shard_id`` and
``my_option``), so "not in the known list" alone is not a finding. A key is
reported only when it is recognisably something else: a driver connect argument,
an engine argument, a made-up prepared-statement switch, or a near-miss spelling
of a known option.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable
from dataclasses import dataclass

from session_lint.known import EXECUTE_METHODS

# Methods that take ``execution_options=`` per call (Session, AsyncSession,
# Connection, AsyncConnection).
PER_CALL_METHODS = EXECUTE_METHODS | {"get", "get_one", "exec_driver_sql", "connection"}

DIALECT_EXECUTION_OPTIONS = frozenset(
    {"postgresql_readonly", "postgresql_deferrable", "sqlite_raw_colnames"}
)
# A key with a dialect's prefix is that dialect's business; one the dialect does not
# read is not a user-defined option (those carry no dialect name) but a made-up one
# (``postgresql_expert_mode``, added "for Supavisor compatibility" in real code).
DIALECT_PREFIXES = (
    "postgresql_",
    "asyncpg_",
    "psycopg_",
    "mysql_",
    "mariadb_",
    "sqlite_",
    "oracle_",
    "mssql_",
)

KNOWN_EXECUTION_OPTIONS = frozenset(
    {
        # Core (engine/interfaces.py, engine/base.py, sql/base.py)
        "compiled_cache",
        "logging_token",
        "isolation_level",
        "no_parameters",
        "stream_results",
        "max_row_buffer",
        "yield_per",
        "insertmanyvalues_page_size",
        "schema_translate_map",
        "preserve_rowcount",
        "driver_column_names",
        # ORM (orm/_typing.py, orm/context.py, orm/bulk_persistence.py)
        "populate_existing",
        "autoflush",
        "synchronize_session",
        "dml_strategy",
        "is_delete_using",
        "is_update_from",
        "render_nulls",
        "identity_token",
        "sa_top_level_orm_context",
        # the dialects' own: PostgreSQL's connection characteristics
        # (dialects/postgresql/base.py) and SQLite's raw column names
        # (dialects/sqlite/base.py); the only dialect-prefixed execution options
        # SQLAlchemy reads (tests/lint/test_pooler_rules.py checks them against
        # the installed SQLAlchemy).
        *DIALECT_EXECUTION_OPTIONS,
    }
)

# Keys with this prefix belong to SQLAlchemy's internals (``_sa_orm_update_options``).
_INTERNAL_PREFIX = "_"


class Kind(enum.Enum):
    """Why a key does nothing as an execution option."""

    DRIVER = "driver"  # a DBAPI connect argument
    ENGINE = "engine"  # a create_engine()/session argument
    INVENTED = "invented"  # a prepared-statement switch that exists nowhere
    TYPO = "typo"  # a near-miss of a known option
    NO_PARAMETERS = "no_parameters"  # valid, but not the prepared-statement switch it is used as
    DIALECT = "dialect"  # a dialect's prefix on an option that dialect does not have


# asyncpg.connect() keywords, and the two SQLAlchemy's asyncpg dialect takes from
# connect_args; psycopg 3's prepared-statement settings. With the Python type the
# driver expects, for fixes that move a value out of a string.
DRIVER_CONNECT_ARGS: dict[str, type] = {
    "statement_cache_size": int,
    "prepared_statement_cache_size": int,
    "prepared_statement_name_func": object,
    "max_cached_statement_lifetime": int,
    "max_cacheable_statement_size": int,
    "command_timeout": float,
    "server_settings": object,
    "record_class": object,
    "connection_class": object,
    "direct_tls": bool,
    "target_session_attrs": object,
    "prepare_threshold": int,
    "prepared_max": int,
}

ENGINE_ARGUMENTS = frozenset(
    {
        "pool_size",
        "max_overflow",
        "pool_timeout",
        "pool_recycle",
        "pool_pre_ping",
        "pool_use_lifo",
        "pool_reset_on_return",
        "poolclass",
        "connect_args",
        "query_cache_size",
        "expire_on_commit",
    }
)

INVENTED_SWITCHES = frozenset(
    {
        "no_prepare",
        "prepare",
        "prepared",
        "raw_sql",
        "prepared_statements",
        "use_prepared_statements",
        "disable_prepared_statements",
        "statement_cache",
        "pgbouncer",
    }
)


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    suggestion: str | None = None  # the known option a typo probably meant


def is_known(key: str, extra: Iterable[str] = ()) -> bool:
    return key in KNOWN_EXECUTION_OPTIONS or key.startswith(_INTERNAL_PREFIX) or key in extra


def classify(key: str, extra: Iterable[str] = ()) -> Verdict | None:
    """Why ``key`` is ineffective as an execution option, or None when it is a known
    option, a user-configured one (``extra-execution-options``) or possibly a
    user-defined one."""
    extra = tuple(extra)
    if key == "no_parameters" and key not in extra:
        return Verdict(Kind.NO_PARAMETERS)
    if is_known(key, extra):
        return None
    if key in DRIVER_CONNECT_ARGS:
        return Verdict(Kind.DRIVER)
    if key in ENGINE_ARGUMENTS:
        return Verdict(Kind.ENGINE)
    if key in INVENTED_SWITCHES:
        return Verdict(Kind.INVENTED)
    if key.startswith(DIALECT_PREFIXES):
        return Verdict(Kind.DIALECT)
    close = _near_miss(key)
    if close is not None:
        return Verdict(Kind.TYPO, close)
    return None


def _near_miss(key: str) -> str | None:
    """A known option ``key`` is a misspelling of: same first letter, length within
    two, and a similarity ratio of at least 0.85 (``populate_exisiting``)."""
    best: tuple[float, str] | None = None
    for known in KNOWN_EXECUTION_OPTIONS:
        if known[0] != key[:1] or abs(len(known) - len(key)) > 2:
            continue
        ratio = difflib.SequenceMatcher(None, key, known).ratio()
        if ratio >= 0.85 and (best is None or ratio > best[0]):
            best = (ratio, known)
    return best[1] if best else None
