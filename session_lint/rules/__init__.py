"""The rule registry: an explicit tuple, in code order.

A test checks that every ``SLxxx_*.py`` module here is listed, has a fixture and docs.
"""

from __future__ import annotations

from session_lint.rules.base import Rule
from session_lint.rules.SL000_syntax_error import SyntaxErrorRule
from session_lint.rules.SL001_unused_noqa import UnusedNoqa
from session_lint.rules.SL101_direct_session import DirectSession
from session_lint.rules.SL102_stray_engine import StrayEngine
from session_lint.rules.SL103_engine_per_call import EnginePerCall
from session_lint.rules.SL104_raw_driver_connection import RawDriverConnection
from session_lint.rules.SL105_async_expire_on_commit import AsyncExpireOnCommit
from session_lint.rules.SL201_ineffective_execution_option import IneffectiveExecutionOption
from session_lint.rules.SL202_runtime_engine_mutation import RuntimeEngineMutation
from session_lint.rules.SL203_bad_server_settings import BadServerSettings
from session_lint.rules.SL204_pooler_unsafe_engine import PoolerUnsafeEngine
from session_lint.rules.SL205_leaky_statement_names import LeakyStatementNames
from session_lint.rules.SL206_statement_cache_in_url import StatementCacheInUrl
from session_lint.rules.SL207_asyncpg_too_old_for_pooler import AsyncpgTooOldForPooler
from session_lint.rules.SL301_missing_transaction import MissingTransaction
from session_lint.rules.SL302_borrowed_session_transaction import BorrowedSessionTransaction
from session_lint.rules.SL303_nested_begin import NestedBegin
from session_lint.rules.SL304_bare_begin import BareBegin
from session_lint.rules.SL305_slow_await_in_transaction import SlowAwaitInTransaction
from session_lint.rules.SL306_non_atomic_unit_of_work import NonAtomicUnitOfWork
from session_lint.rules.SL307_swallowed_session_error import SwallowedSessionError
from session_lint.rules.SL308_second_connection_in_unit_of_work import SecondConnectionInUnitOfWork
from session_lint.rules.SL309_commit_inside_begin import CommitInsideBegin
from session_lint.rules.SL310_failed_statement_swallowed import FailedStatementSwallowed
from session_lint.rules.SL311_isolation_level_in_transaction import IsolationLevelInTransaction
from session_lint.rules.SL401_session_escapes_to_task import SessionEscapesToTask
from session_lint.rules.SL402_session_shared_by_gather import SessionSharedByGather
from session_lint.rules.SL403_unawaited_session_call import UnawaitedSessionCall
from session_lint.rules.SL404_unclosed_session import UnclosedSession
from session_lint.rules.SL405_await_misuse import AwaitMisuse
from session_lint.rules.SL406_scoped_session_shared_by_tasks import ScopedSessionSharedByTasks
from session_lint.rules.SL407_scoped_session_never_removed import ScopedSessionNeverRemoved
from session_lint.rules.SL408_engine_across_event_loops import EngineAcrossEventLoops
from session_lint.rules.SL409_session_on_shared_object import SessionOnSharedObject
from session_lint.rules.SL501_string_sql import StringSql
from session_lint.rules.SL502_interpolated_sql import InterpolatedSql
from session_lint.rules.SL503_session_level_set import SessionLevelSet

ALL_RULES: tuple[type[Rule], ...] = (
    SyntaxErrorRule,
    UnusedNoqa,
    DirectSession,
    StrayEngine,
    EnginePerCall,
    RawDriverConnection,
    AsyncExpireOnCommit,
    IneffectiveExecutionOption,
    RuntimeEngineMutation,
    BadServerSettings,
    PoolerUnsafeEngine,
    LeakyStatementNames,
    StatementCacheInUrl,
    AsyncpgTooOldForPooler,
    MissingTransaction,
    BorrowedSessionTransaction,
    NestedBegin,
    BareBegin,
    SlowAwaitInTransaction,
    NonAtomicUnitOfWork,
    SwallowedSessionError,
    SecondConnectionInUnitOfWork,
    CommitInsideBegin,
    FailedStatementSwallowed,
    IsolationLevelInTransaction,
    SessionEscapesToTask,
    SessionSharedByGather,
    UnawaitedSessionCall,
    UnclosedSession,
    AwaitMisuse,
    ScopedSessionSharedByTasks,
    ScopedSessionNeverRemoved,
    EngineAcrossEventLoops,
    SessionOnSharedObject,
    StringSql,
    InterpolatedSql,
    SessionLevelSet,
)

RULES_BY_CODE: dict[str, type[Rule]] = {rule.code: rule for rule in ALL_RULES}

__all__ = ["ALL_RULES", "RULES_BY_CODE", "Rule", "SyntaxErrorRule"]
