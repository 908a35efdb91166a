"""File roles: what a file is for, so that rules about how an application builds
engines and owns sessions stay out of the files that do so on purpose.

Each file has exactly one role, the first of these it matches (the patterns are
``[tool.session-lint.roles]``, see ``config.DEFAULT_ROLES`` and docs/roles.md):

- ``test``: ``tests/``, ``test/``, ``test_*.py``, ``*_test.py``, ``conftest.py``;
- ``migration``: Alembic's ``env.py`` (``<alembic-env>``), ``migrations/``,
  ``alembic/``, ``_migrations/`` (their ``versions/`` included);
- ``script``: ``scripts/``, a root ``bin/`` or ``tools/``, ``__main__.py``, and a
  module with a module-level ``if __name__ == "__main__":`` block
  (``<main-block>``). A module that also defines functions others import is still
  a script: it is run as a program, and that is where its engines and sessions
  come from;
- ``app``: everything else.

Globs are matched with :func:`~session_lint.project.config.glob_match` against the path
relative to the config root. The two content checks read the file's bytes with a
regular expression and never parse: roles are decided for every file of a run.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import PurePosixPath

from session_lint.project.config import (
    ALEMBIC_ENV,
    APP,
    MAIN_BLOCK,
    ROLE_CHECKS,
    ROLES,
    Config,
    glob_match,
)

ALL_ROLES: frozenset[str] = frozenset(ROLES)
APP_AND_SCRIPT: frozenset[str] = frozenset({APP, "script"})
APP_ONLY: frozenset[str] = frozenset({APP})
MIGRATION = "migration"
APP_AND_MIGRATION: frozenset[str] = frozenset({APP, MIGRATION})
APP_SCRIPT_AND_MIGRATION: frozenset[str] = frozenset({APP, "script", MIGRATION})
# How roles are listed to people (--explain, --list-rules, --show-settings): the
# code most rules are about first.
DISPLAY_ORDER = ("app", "script", "test", "migration")

# A module-level ``if __name__ == "__main__":`` (either operand order, either quote):
# no indent after the line break is what makes it module-level. A literal start
# (no ``^`` with re.M) lets the regex engine skip to each candidate line.
_MAIN_BLOCK = re.compile(
    rb"""\nif[ \t(]+(?:__name__[ \t]*==[ \t]*(['"])__main__\1|(['"])__main__\2[ \t]*==[ \t]*__name__)"""
    rb"""[ \t)]*:"""
)
_ALEMBIC = re.compile(rb"alembic|context\.configure")
_MIGRATION_DIRS = frozenset({"alembic", "migrations", "_migrations"})


def role_of(path: str, config: Config, source: bytes | None = None) -> str:
    """The role of the file at ``path`` (``source``: its bytes, when read)."""
    rel = config.relative(path)
    for role, patterns in config.roles:
        for pattern, literal in _with_literal(patterns):
            if pattern == MAIN_BLOCK:
                hit = _has_main_block(rel, source)
            elif pattern == ALEMBIC_ENV:
                hit = _is_alembic_env(path, rel, source)
            else:
                # Most files match no pattern: a substring test rules most out
                # before glob_match, ~20x slower, is asked.
                hit = literal in rel and glob_match(rel, pattern)
            if hit:
                return role
    return APP


def rule_roles(code: str, default: frozenset[str], config: Config) -> frozenset[str]:
    """A rule's roles: ``rule-roles`` when it names the rule, else its default."""
    configured = config.roles_of_rule(code)
    return default if configured is None else frozenset(configured)


def display(roles: frozenset[str] | tuple[str, ...]) -> str:
    """``app, script``: roles in :data:`DISPLAY_ORDER`."""
    return ", ".join(r for r in DISPLAY_ORDER if r in roles) or "(none)"


@functools.lru_cache(maxsize=16)
def _with_literal(patterns: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Each pattern with a text every path it matches contains: its longest run of
    plain characters, without the slashes at its ends (``**/tests/**`` matches
    ``tests/a.py``, ``tests/**`` the directory ``tests``); ``""`` for a pattern
    with a character class (``[`` may or may not open one)."""
    out: list[tuple[str, str]] = []
    for pattern in patterns:
        runs = [run.strip("/") for run in re.split(r"[*?]+", pattern)]
        plain = "[" not in pattern and pattern not in ROLE_CHECKS
        out.append((pattern, max(runs, key=len) if plain else ""))
    return tuple(out)


def _has_main_block(rel: str, source: bytes | None) -> bool:
    # A package's __init__ is imported, never run as a program, whatever it holds.
    if source is None or PurePosixPath(rel).name == "__init__.py":
        return False
    return b"__main__" in source and _MAIN_BLOCK.search(b"\n" + source) is not None


def _is_alembic_env(path: str, rel: str, source: bytes | None) -> bool:
    """An ``env.py`` that is Alembic's: from its bytes when given (it mentions
    ``alembic`` or ``context.configure``), else from where it sits: beside a
    ``versions/`` directory, or under ``alembic/``/``migrations/``."""
    parts = PurePosixPath(rel).parts
    if not parts or parts[-1] != "env.py":
        return False
    if source is not None:
        return _ALEMBIC.search(source) is not None
    if any(part in _MIGRATION_DIRS for part in parts[:-1]):
        return True
    return os.path.isdir(os.path.join(os.path.dirname(path) or ".", "versions"))
