"""The prefilter: whether a file needs a parse at all, decided from its bytes before
libcst sees it.

A rule declares when it may fire (:meth:`Rule.prefilter`): clauses, each a tuple
of groups of tokens; a clause holds when every group has one of its tokens in the
file. A token is found as a substring (``Session`` is in ``AsyncSession``), or,
written :class:`Whole`, only where it stands as a whole identifier: a configured
session name such as ``db`` is compared with names (a parameter, ``self.db``),
while as a substring it is in ``pdb``, ``dbapi`` and half of SQLAlchemy's source.
A token written :class:`Pattern` is a regular expression on the bytes: for what
no fixed string says, such as an SQL keyword in any case. A token written
:class:`Called` counts the calls of some names: a rule about two calls in a row
cannot fire where they are called once.
Groups may name what the config decides (:data:`SESSION`,
:data:`SESSION_OR_CONNECTION`); :func:`clauses` expands them.

:func:`session_lint.analyzer.plan` makes the decision once per file, with the
rules meant for it; the test that the prefilter is sound (it never skips a file
with a finding) is ``tests/lint/test_prefilter.py``.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol

from session_lint.project.config import Config


class Whole(NamedTuple):
    """A token found only as a whole identifier."""

    name: str


class Pattern(NamedTuple):
    """A token found by a regular expression (on bytes; flags inline, scoped)."""

    regex: str


class Called(NamedTuple):
    """A token found where the file calls these names (``name(``, ``x.name (``), at
    least ``times`` times in all."""

    names: frozenset[str]
    times: int


class Placeholder(enum.Enum):
    """A group the config decides (see :func:`clauses`)."""

    SESSION = "session"
    SESSION_OR_CONNECTION = "session-or-connection"


Token = str | Whole | Pattern | Called
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
# The runs of name characters of a file: its identifiers, as whole names see them.
_NAMES = re.compile(_NAME_CHAR + rb"+")
# A whole name: the name, not preceded by a name character (the look-behind comes
# after the name: a pattern that starts with its literal is searched for that
# literal first, 20-30x faster than one that starts with a look-behind), nor
# followed by one.
_WHOLE = rb"%s(?<!" + _NAME_CHAR + rb"%s)(?!" + _NAME_CHAR + rb")"
# A call of one name: the name, then ``(`` after blanks or comments (a comment is
# matched up to its newline: one that may end anywhere makes the search exponential
# in the ``#`` of a banner such as ``x  # ######``).
_CALL_OF = rb"%s(?<!" + _NAME_CHAR + rb"%s)(?:\s|#[^\n]*\n)*\("
_COMPILED: dict[tuple[bytes, bytes], re.Pattern[bytes]] = {}
# Up to this many whole names a group is searched name by name (most are not in
# the file at all: ``in`` says so); more, and the file's identifiers are listed once.
_FEW_NAMES = 16


def _compiled(form: bytes, name: bytes) -> re.Pattern[bytes]:
    regex = _COMPILED.get((form, name))
    if regex is None:
        if len(_COMPILED) > 4096:  # a resident process sees many projects' names
            _COMPILED.clear()
        escaped = re.escape(name)
        regex = _COMPILED[form, name] = re.compile(form % (escaped, escaped))
    return regex


def _calls_of(name: bytes, source: bytes) -> int:
    return len(_compiled(_CALL_OF, name).findall(source))


def _holds_whole(name: bytes, source: bytes) -> bool:
    return name in source and _compiled(_WHOLE, name).search(source) is not None


def pattern(token: Token) -> bytes:
    """The regular expression (on bytes) that finds ``token`` (a :class:`Called`
    token is counted, not searched: it has none)."""
    if isinstance(token, Called):
        raise TypeError(f"{token!r} has no pattern")
    if isinstance(token, Pattern):
        return token.regex.encode()
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


class Declares(Protocol):
    """What the prefilter needs of a rule class (``Rule.prefilter``)."""

    def prefilter(self, config: Config) -> tuple[Clause, ...]: ...


class Prefilter:
    """A cheap, sound test on a file's bytes: which of these rules can fire on it?

    Each distinct group is answered at most once per file, lazily: its substring
    tokens by ``in``, its patterns each by its own regular expression, its counted
    calls by a search per name the file holds, its whole names by a search per
    name when they are few, else by a look-up in the file's set of identifiers
    (made once per file, and only when a group has many whole names: a hundred
    alternatives with look-arounds cost more than the parse)."""

    def __init__(self, rules: Sequence[Declares], config: Config) -> None:
        groups: dict[Group, int] = {}
        # Per rule, its clauses as group ids, fewest groups first: most files are
        # decided by the first clause's answers.
        self._rules: list[list[tuple[int, ...]]] = []
        for rule in rules:
            seen: set[tuple[int, ...]] = set()
            for clause in rule.prefilter(config):
                ids: list[int] = []
                for group in clause:
                    key = tuple(sorted(set(group), key=str))
                    ids.append(groups.setdefault(key, len(groups)))
                seen.add(tuple(sorted(set(ids))))
            self._rules.append(sorted(seen, key=len))
        self._tests: list[_Test] = []
        for group in groups:
            # Fixed strings by ``in`` (3-5x faster than a regular expression of
            # alternatives).
            literals = tuple(t.encode() for t in group if isinstance(t, str))
            plain = [pattern(t) for t in group if isinstance(t, Pattern)]
            whole = frozenset(t.name.encode() for t in group if isinstance(t, Whole))
            called = tuple(
                (frozenset(n.encode() for n in t.names), t.times)
                for t in group
                if isinstance(t, Called)
            )
            # Each pattern by itself: one that starts with a literal is searched for
            # it first, which an alternation of patterns is not.
            regexes = tuple(re.compile(p) for p in plain)
            if any(not name.isascii() for t in group if isinstance(t, Called) for name in t.names):
                # The call search's name boundaries are ASCII (``_NAME_CHAR``): a
                # name with other characters is taken as found everywhere.
                regexes = (re.compile(b""),)
            self._tests.append(_Test(literals, regexes, whole, called))

    def __call__(self, source: bytes) -> bool:
        """Whether any of the rules can fire on ``source``."""
        answers = _Answers(self._tests, source)
        return any(answers.holds(clauses) for clauses in self._rules)

    def passing(self, source: bytes) -> list[bool]:
        """For each rule, in order, whether it can fire on ``source``: a rule that
        cannot is not walked, even on a file another rule makes the analysis parse."""
        answers = _Answers(self._tests, source)
        return [answers.holds(clauses) for clauses in self._rules]


class _Test(NamedTuple):
    """How one group is looked for: its fixed strings, its patterns (each compiled
    alone), its whole names, its counted calls."""

    literals: tuple[bytes, ...]
    regexes: tuple[re.Pattern[bytes], ...]
    whole: frozenset[bytes]
    called: tuple[tuple[frozenset[bytes], int], ...]


class _Answers:
    """One file's answers to the groups, each found once, when first asked."""

    def __init__(self, tests: list[_Test], source: bytes) -> None:
        self._tests = tests
        self._source = source
        self._answers: dict[int, bool] = {}
        self._names: set[bytes] | None = None

    def holds(self, clauses: list[tuple[int, ...]]) -> bool:
        """Whether some clause has every group present."""
        return any(all(self._has(gid) for gid in clause) for clause in clauses)

    def _has(self, gid: int) -> bool:
        hit = self._answers.get(gid)
        if hit is None:
            literals, regexes, whole, called = self._tests[gid]
            source = self._source
            hit = any(literal in source for literal in literals) or any(
                regex.search(source) is not None for regex in regexes
            )
            if not hit and 0 < len(whole) <= _FEW_NAMES:
                hit = any(_holds_whole(name, source) for name in whole)
            elif not hit and whole:
                hit = not whole.isdisjoint(self._identifiers())
            if not hit and called:
                # Counted only for the names the file holds (usually none or a few).
                hit = any(
                    sum(_calls_of(name, source) for name in self._held(names)) >= times
                    for names, times in called
                )
            self._answers[gid] = hit
        return hit

    def _identifiers(self) -> set[bytes]:
        if self._names is None:
            self._names = set(_NAMES.findall(self._source))
        return self._names

    def _held(self, names: frozenset[bytes]) -> Iterable[bytes]:
        """The names that stand whole in the file: a called name ends where a name
        character does not follow, as an identifier does. A few names are each
        looked for; more (a project's hundred committing helpers) in the file's
        identifiers, listed once (a search of the bytes per name cost more)."""
        if len(names) <= _FEW_NAMES:
            return [name for name in names if name in self._source]
        return names & self._identifiers()


def prefilter_for(rules: Sequence[Declares], config: Config) -> Prefilter:
    """The (cached) prefilter of these rules under this config."""
    return _prefilter(tuple(rules), config)


@functools.lru_cache(maxsize=32)
def _prefilter(rules: tuple[Declares, ...], config: Config) -> Prefilter:
    return Prefilter(rules, config)
