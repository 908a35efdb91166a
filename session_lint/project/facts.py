"""The facts of the project index (:mod:`session_lint.project.index` learns them,
:mod:`session_lint.project.dependencies` adds what the project declares): one
frozen value, part of every :class:`~session_lint.project.config.Config`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

from session_lint.project.hashing import hash_once, state_without_hash

# What a session factory gives, and what its block does on exit.
ASYNC, SYNC, UNKNOWN = "async", "sync", "unknown"
COMMITS, NO_COMMIT = "commits", "none"


@dataclass(frozen=True)
class ProjectIndex:
    # Qualified names (``app.db.AsyncSession``) of the project's session types:
    # NewType / alias / re-export of SQLAlchemy's classes. Maps to "async" or "sync".
    session_types: tuple[tuple[str, str], ...] = ()
    # Qualified names of project callables that give a session, with what they give:
    # ("app.db.get_session", "async", "commits") — kind: "async"|"sync"|"unknown";
    # transaction: "commits" (commits or begins on exit) | "none".
    session_factories: tuple[tuple[str, str, str], ...] = ()
    # Attribute names assigned a sessionmaker anywhere (``self.async_session = ...``),
    # or naming a method that is a session context manager, with (kind, transaction).
    attribute_factories: tuple[tuple[str, str, str], ...] = ()
    # Project modules (dotted) that build both an engine and a session factory:
    # engine modules whatever their file name, unless a file the config names an
    # engine module builds an engine (then those are the engine modules).
    engine_modules: tuple[str, ...] = ()
    # Files (relative paths) that construct an engine.
    engine_builders: tuple[str, ...] = ()
    # Qualified names of module-level functions, not cached, that build an engine
    # and return it: every call builds a new pool (SL103 reports the per-request
    # calls).
    engine_factories: tuple[str, ...] = ()
    # Qualified names of module-level functions that open a session of their own
    # from a factory, write through it and commit it, taking no session from their
    # caller: each call is a transaction of its own (SL306 reports two in a row).
    committing_helpers: tuple[str, ...] = ()
    # (qualified, position, parameter): module-level functions that open a session
    # of their own, execute the SQL that parameter gives and commit
    # (``execute_sql(sql)``): a call passing write SQL is a transaction of its own.
    sql_helpers: tuple[tuple[str, int, str], ...] = ()
    # Qualified names of the async factories usable as ``async with f() as s:``
    # (an ``async_sessionmaker`` bound at module level, an ``@asynccontextmanager``
    # function that yields an AsyncSession): fix targets when no session factory
    # is configured and exactly one exists.
    context_factories: tuple[str, ...] = ()
    # Project classes whose instances are session factories: their ``__call__``
    # gives a session (``db = DbSessionFactory(maker)``; ``async with db() as s``),
    # with (kind, transaction) as for ``session_factories``. Module-level instances
    # are in ``session_factories``; attributes tied to the class (a field
    # ``db: DbSessionFactory``, ``self._db = db``) in ``attribute_factories``.
    factory_classes: tuple[tuple[str, str, str], ...] = ()
    # Last names of callables called with ``expire_on_commit=`` somewhere in the
    # project (``self.session_maker(expire_on_commit=False)``): factories whose
    # callers choose per session.
    expire_overrides: tuple[str, ...] = ()
    # Project modules (dotted) that export a session type or factory, or build an
    # engine: importing from one is evidence of SQLAlchemy in a file.
    evidence_modules: tuple[str, ...] = ()
    # Top-level module and package names found in the project tree.
    local_modules: tuple[str, ...] = ()
    # Normalised distribution names the project declares (pyproject, setup.cfg,
    # requirements*.txt, uv.lock, poetry.lock).
    dependencies: tuple[str, ...] = ()
    # (distribution, upper bound or exact pin) where a declared requirement caps a
    # version, e.g. ("asyncpg", "0.29.0") from ``asyncpg==0.29.0`` or ``asyncpg<0.30``.
    version_caps: tuple[tuple[str, str], ...] = ()
    # Whether a dependency file was found at all: without one, nothing is known
    # about what the project can import.
    dependencies_known: bool = False
    # Effect summaries (session_lint/project/effects.py): (qualified function or
    # method, slow chain or "", commits / rolls back / runs a statement on a
    # session it receives, opens a session of its own, closes what it opens on
    # every path), for the functions with an effect.
    effects: tuple[tuple[str, str, bool, bool, bool, bool, bool], ...] = ()
    # (class, attribute, class): what ``self.<attribute>`` holds, for classes with
    # a method that has an effect; (instance, class) for module-level instances.
    held_attributes: tuple[tuple[str, str, str], ...] = ()
    instances: tuple[tuple[str, str], ...] = ()
    # Classes whose instances hold a session they were given (a repository):
    # ``self.repo.get()`` runs on that session.
    session_holders: tuple[str, ...] = ()
    # Last names of the receivers of ``X.remove`` anywhere in the project, and the
    # names they alias (session_lint/project/removals.py): a scoped session bound to
    # one of these is removed somewhere (SL407).
    scoped_removals: tuple[str, ...] = ()
    # Pooled engines shared by a whole process (qualified), and (function, method
    # or module-level name, position of the engine it reaches in ``pooled_engines``
    # or -1, whether it disposes an engine), through calls
    # (session_lint/project/effects.py): SL408 reports such an engine run on a new
    # event loop per call.
    pooled_engines: tuple[str, ...] = ()
    engine_reach: tuple[tuple[str, int, bool], ...] = ()
    # Project files (relative paths) that may hold facts but that neither
    # CPython's parser nor libcst reads: the index learned only their imports.
    unparsed: tuple[str, ...] = ()
    # Whether an index pass ran at all (tests that analyse a snippet have none).
    scanned: bool = False

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    # Hashed on every cached lookup of a rule (through its Config): once per index.
    def __hash__(self) -> int:
        return hash_once(self)

    def __getstate__(self) -> dict[str, Any]:
        return state_without_hash(self)

    # Lookups, built on first use (a cached_property writes the instance dict
    # directly, which a frozen dataclass allows).
    @cached_property
    def types(self) -> dict[str, str]:
        return dict(self.session_types)

    @cached_property
    def factories(self) -> dict[str, tuple[str, str]]:
        return {name: (kind, transaction) for name, kind, transaction in self.session_factories}

    @cached_property
    def effect_of(self) -> dict[str, tuple[str, bool, bool, bool]]:
        return {
            name: (slow, commits, rolls_back, uses_db)
            for name, slow, commits, rolls_back, uses_db, *_ in self.effects
        }

    @cached_property
    def held(self) -> dict[tuple[str, str], str]:
        return {(owner, attribute): cls for owner, attribute, cls in self.held_attributes}

    @cached_property
    def reach_of(self) -> dict[str, tuple[str, bool]]:
        engines = self.pooled_engines
        return {
            name: (engines[at] if at >= 0 else "", disposes)
            for name, at, disposes in self.engine_reach
        }

    @cached_property
    def instance_of(self) -> dict[str, str]:
        return dict(self.instances)

    @cached_property
    def classes(self) -> dict[str, tuple[str, str]]:
        return {name: (kind, transaction) for name, kind, transaction in self.factory_classes}

    @cached_property
    def attributes(self) -> dict[str, tuple[str, str]]:
        return {name: (kind, transaction) for name, kind, transaction in self.attribute_factories}


EMPTY_INDEX = ProjectIndex()
