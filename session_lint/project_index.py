"""What one cheap pass over the project learns before any file is linted.

A rule sees one file; the facts it needs from other files live here: the
project's own session types and factories, where it builds its engine, which
packages it declares, and which top-level modules are its own. The pass reads
files with the standard library's ``ast`` (no libcst), and only files whose bytes
can hold such a fact. The index is part of the :class:`~session_lint.config.Config`
every analysis gets, so the CLI (any ``--jobs``), the flake8 plugin, the analysis
server and the cache all see the same facts, and the cache key covers them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass


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
    # with the factory's kind.
    attribute_factories: tuple[tuple[str, str], ...] = ()
    # Project modules (dotted) that build the app's engine or session factory at
    # module level: engine modules whatever their file name.
    engine_modules: tuple[str, ...] = ()
    # Project modules (dotted) that export a session type or factory: importing from
    # one is evidence of SQLAlchemy in a file.
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

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


EMPTY_INDEX = ProjectIndex()
