"""Which rules run on a file, and whether it needs a parse at all: decided once per
file, from its path and bytes, before libcst sees it.

A rule declares when it may fire (:meth:`Rule.prefilter`): clauses, each a tuple
of groups of tokens; a clause holds when every group has one of its tokens in the
file. A token is found as a substring (``Session`` is in ``AsyncSession``), or,
written :class:`Whole`, only where it stands as a whole identifier: a configured
session name such as ``db`` is compared with names (a parameter, ``self.db``),
while as a substring it is in ``pdb``, ``dbapi`` and half of SQLAlchemy's source.
Groups may name what the config decides (:data:`SESSION`,
:data:`SESSION_OR_CONNECTION`); :func:`clauses` expands them.

:func:`plan` is the one decision: the rules meant for the file (selected, not
ignored for its path, meant for its role), those of them that walk the tree (the
ones that need evidence of SQLAlchemy only where the file has it), and whether
any of those may fire. The runner makes it while sorting files, and the analysis
takes it from there. The test that it is sound (it never skips a file with a
finding) is ``tests/lint/test_prefilter.py``.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from session_lint.config import Config
from session_lint.evidence import has_evidence
from session_lint.roles import role_of

if TYPE_CHECKING:
    from session_lint.rules.base import Rule


class Whole(NamedTuple):
    """A token found only as a whole identifier."""

    name: str


class Placeholder(enum.Enum):
    """A group the config decides (see :func:`clauses`)."""

    SESSION = "session"
    SESSION_OR_CONNECTION = "session-or-connection"


Token = str | Whole
Group = tuple[Token, ...]
Clause = tuple[Group, ...]
# A group as a rule declares it: tokens, or one placeholder.
Declared = tuple[Token | Placeholder, ...]

# Strings without which no SQLAlchemy name can be imported into a file.
SQLALCHEMY_IMPORT: tuple[str, ...] = ("sqlalchemy", "sqlmodel")
# Strings without which nothing in a file can be a session (``session-names`` and
# the configured factories' names included), or a session or a connection.
SESSION: Declared = (Placeholder.SESSION,)
SESSION_OR_CONNECTION: Declared = (Placeholder.SESSION_OR_CONNECTION,)
# Strings without which nothing is an engine: a constructor (``create_engine``,
# ``create_async_engine``, ``engine_from_config``...) or a name ending in "engine".
ENGINE_SPELLINGS: tuple[str, ...] = ("engine", "Engine", "ENGINE")
SESSION_SPELLINGS: tuple[str, ...] = ("session", "Session", "SESSION")

# A non-ASCII neighbour counts as a boundary: more files pass, never fewer.
_NAME_CHAR = rb"[A-Za-z0-9_]"


def pattern(token: Token) -> bytes:
    """The regular expression (on bytes) that finds ``token``."""
    if isinstance(token, Whole):
        word = re.escape(token.name.encode())
        return rb"(?<!" + _NAME_CHAR + rb")" + word + rb"(?!" + _NAME_CHAR + rb")"
    return re.escape(token.encode())


# -- what rules declare ----------------------------------------------------------------


def session_tokens(config: Config) -> Group:
    """Tokens a file must contain for any expression in it to be a session: a
    session class or factory (``Session``, ``sessionmaker``, ``get_session``), an
    annotation, a configured session name (as a whole name), or a configured
    factory's name."""
    tokens: set[Token] = set(SESSION_SPELLINGS)
    tokens.update(Whole(name) for name in config.session_names)
    tokens.update(name.rpartition(".")[2] for name in config.configured_factories)
    return tuple(sorted(tokens, key=str))


def async_session_groups(config: Config) -> tuple[Group, Group]:
    """Groups for a rule about async sessions: a session's spelling, and what
    makes one async (``async with``, an ``async_sessionmaker``, an ``AsyncSession``
    annotation, a configured factory)."""
    factories = tuple(name.rpartition(".")[2] for name in sorted(config.configured_factories))
    return session_tokens(config), ("async", "Async", *factories)


def clauses(config: Config, *groups: Declared) -> tuple[Clause, ...]:
    """The clauses for "every one of ``groups``", placeholders expanded: one clause
    per choice among each group's alternatives."""
    result: list[Clause] = [()]
    for group in groups:
        result = [
            clause + alternative
            for clause in result
            for alternative in _alternatives(group, config)
        ]
    return tuple(result)


def _alternatives(group: Declared, config: Config) -> tuple[Clause, ...]:
    if group == SESSION:
        return ((session_tokens(config),),)
    if group == SESSION_OR_CONNECTION:
        # A session; or a connection: from an engine (``engine.connect()``, by binding
        # or by an ``*engine`` name; a session's ``connection()`` needs a session), or
        # a parameter annotated ``Connection``, which resolves only through an import
        # of SQLAlchemy.
        return (
            (tuple(sorted({*session_tokens(config), *ENGINE_SPELLINGS}, key=str)),),
            (("Connection",), SQLALCHEMY_IMPORT),
        )
    tokens = tuple(t for t in group if not isinstance(t, Placeholder))
    assert len(tokens) == len(group), f"a placeholder stands alone in its group: {group}"
    return ((tokens,),)


# -- deciding ----------------------------------------------------------------------------


class Prefilter:
    """A cheap, sound test on a file's bytes: can any of these rules fire on it?

    One regular expression per distinct group, evaluated lazily and at most once
    per file."""

    def __init__(self, rules: Sequence[type[Rule]], config: Config) -> None:
        groups: dict[Group, int] = {}
        seen: set[tuple[int, ...]] = set()
        for rule in rules:
            for clause in rule.prefilter(config):
                ids: list[int] = []
                for group in clause:
                    key = tuple(sorted(set(group), key=str))
                    ids.append(groups.setdefault(key, len(groups)))
                seen.add(tuple(sorted(set(ids))))
        self._regexes = [
            re.compile(b"|".join(pattern(t) for t in group)) if group else None
            for group in groups
        ]
        # Fewest groups first: most files are decided by the first clause's answers.
        self._clauses = sorted(seen, key=len)

    def __call__(self, source: bytes) -> bool:
        answers: dict[int, bool] = {}
        for clause in self._clauses:
            for gid in clause:
                hit = answers.get(gid)
                if hit is None:
                    regex = self._regexes[gid]
                    hit = answers[gid] = regex is not None and regex.search(source) is not None
                if not hit:
                    break
            else:
                return True
        return False


def prefilter_for(rules: Sequence[type[Rule]], config: Config) -> Prefilter:
    """The (cached) prefilter of these rules under this config."""
    return _prefilter(tuple(rules), config)


@functools.lru_cache(maxsize=32)
def _prefilter(rules: tuple[type[Rule], ...], config: Config) -> Prefilter:
    return Prefilter(rules, config)


def enabled_rules(
    config: Config, path: str, rules: Sequence[type[Rule]], source: bytes | None = None
) -> list[type[Rule]]:
    """The rules that run on this file: selected, not ignored for its path, and
    meant for its role (``source``, its bytes, lets a script be told by its
    ``__main__`` block)."""
    ignored = config.ignored_for(path) or ("\0",)
    role = role_of(path, config, source)  # once per file, not once per rule
    return [
        r
        for r in rules
        if config.is_enabled(r.code, opt_in=r.opt_in)
        and not r.code.startswith(ignored)
        and role in r.roles_in(config)
    ]


@dataclass(frozen=True)
class Plan:
    """What runs on one file (rule classes pickle by reference: a plan travels to
    the process pool with its file)."""

    active: tuple[type[Rule], ...]  # every rule meant for the file, SL000 and SL001 included
    walkers: tuple[type[Rule], ...]  # the rules that walk the tree
    may_fire: bool  # whether some walker may fire: else the file is not parsed


def plan(source: bytes, path: str, config: Config, rules: Sequence[type[Rule]]) -> Plan:
    """The plan for one file's bytes (``rules``: the candidates, usually all)."""
    from session_lint.rules import SyntaxErrorRule
    from session_lint.rules.SL001_unused_noqa import UnusedNoqa

    active = enabled_rules(config, path, rules, source)
    walkers = [r for r in active if r is not SyntaxErrorRule and r is not UnusedNoqa]
    # Without evidence of SQLAlchemy, only rules that need none (``evidence``).
    if any(r.needs_evidence for r in walkers) and not has_evidence(source, path, config):
        walkers = [r for r in walkers if not r.needs_evidence]
    may_fire = bool(walkers) and prefilter_for(walkers, config)(source)
    return Plan(tuple(active), tuple(walkers), may_fire)
