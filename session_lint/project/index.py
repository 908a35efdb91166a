"""What one cheap pass over the project learns before any file is linted.

A rule sees one file; the facts it needs from other files live here: the
project's own session types and factories, where it builds its engine, which
packages it declares, and which top-level modules are its own. The pass reads
files with the standard library's ``ast`` (no libcst), and only files whose bytes
can hold such a fact. The index is part of the :class:`~session_lint.project.config.Config`
every analysis gets, so the CLI (any ``--jobs``), the flake8 plugin, the analysis
server and the cache all see the same facts, and the cache key covers them.
"""

from __future__ import annotations

import ast
import bisect
import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from session_lint.known import (
    ASYNC_SESSION_CLASSES,
    ASYNC_SESSIONMAKERS,
    CACHE_DECORATORS,
    DEFAULT_SLOW_CALLS,
    ENGINE_CONSTRUCTORS,
    SESSIONMAKERS,
    SYNC_SESSION_CLASSES,
    SYNC_SESSIONMAKERS,
    TEXT_FUNCTIONS,
    WRITE_CONSTRUCTORS,
    is_write_sql,
)
from session_lint.project.effects import learn_effects
from session_lint.project.facts import (
    ASYNC,
    COMMITS,
    NO_COMMIT,
    SYNC,
    UNKNOWN,
    ProjectIndex,
)
from session_lint.project.modules import (
    absolute_import,
    import_statements,
    imports_of,
    module_name,
    module_sources,
    walk,
)
from session_lint.project.parallel import in_background
from session_lint.project.removals import learn_removals
from session_lint.syntax import AST_LOCK, parse_ast

# -- building the index ---------------------------------------------------------------

# The shapes of statements that make a fact (a file without any of them is not
# parsed): a sessionmaker or a type alias (``_DEFINING_WORDS``), a context manager
# or dependency that yields a name (``yield session``), a function that returns a
# session-like call, an ``Annotated`` session alias. A file that mentions neither
# "session"/"Session" nor SQLAlchemy holds no fact at all.
# ``async with async_session() as session:``, ``with SessionLocal.begin() as db:``:
# a function may open a session of its own there (a committing helper).
_OPENS_SESSION = re.compile(
    rb"^[ \t]+(?:async[ \t]+)?with[ \t]+[\w.]*(?:[Ss]ession|[Mm]aker|[Ss]cope)[\w.]*\(", re.M
)
# A write through whatever was opened: without one, no function here is a
# committing helper.
_WRITES = re.compile(
    rb"\.(?:add|add_all|delete|merge|execute|exec|bulk_save_objects|bulk_insert_mappings"
    rb"|bulk_update_mappings)\("
)
_DEFINES = re.compile(
    rb"^[ \t]*yield[ \t]+\w+[ \t]*$"
    rb"|^[ \t]*return[ \t]+(?:await[ \t]+)?[\w.]*(?:[Ss]ession|[Mm]aker)[\w.]*\("
    rb"|=[ \t]*Annotated\[[^\n]*Session"
    # A factory class: ``db = DbSessionFactory(maker)``, ``async with db() as s``.
    rb"|^[ \t]+(?:async[ \t]+)?def[ \t]+__call__\b",
    re.M,
)  # Imports, read from the bytes of files that are not parsed: enough for
# re-exports (``from sqlalchemy.ext.asyncio import AsyncSession`` in ``app/db.py``).
_FROM_IMPORT = re.compile(rb"^[ \t]*from[ \t]+([.\w]+)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]*)", re.M)
_IMPORT = re.compile(rb"^[ \t]*import[ \t]+([^\n#;]+)", re.M)
_COMMENT = re.compile(r"#[^\n]*")  # inside a parenthesized import list
_SKIPPED_DIRS = frozenset(
    {
        ".git", ".hg", ".svn", ".venv", "venv", ".direnv", "__pycache__", "__pypackages__",
        "build", "dist", "_build", ".eggs", ".tox", ".nox", ".mypy_cache", ".pytest_cache",
        ".ruff_cache", "node_modules", "site-packages", ".session_lint_cache", ".corpus",
    }
)  # fmt: skip
_MAX_FILES = 20_000  # a root that is a home directory is not a project
_FIXPOINT_ROUNDS = 6  # re-exports and factories built on factories: a few hops deep


@dataclass
class _Module:
    name: str
    relative: str
    is_package: bool
    tree: ast.Module
    imports: dict[str, str]  # local name -> qualified name (every import in the file)
    # Walked once: every call, every assignment, and per function its nodes that
    # matter (rounds of the fixpoint only look at these).
    calls: list[ast.Call]
    assignments: list[ast.Assign | ast.AnnAssign]
    bodies: dict[int, list[ast.AST]]  # functions that yield or return
    makers: dict[str, str] | None = None  # local name -> kind, once learned
    # Functions that open a ``with`` block: candidates for committing helpers.
    openers: dict[int, list[ast.AST]] = field(default_factory=dict)
    # Neither parser reads the file: only its imports (read from the bytes) count.
    unparsed: bool = False
    # ``tree`` is the whole file's (not only its helper functions): the effect and
    # factory-object passes reuse it instead of parsing the file again.
    whole: bool = False


def _project_files(root: Path) -> list[tuple[str, Path]]:
    """The project's regular ``.py`` files (a FIFO or a device named ``x.py`` is
    never opened), with paths relative to ``root``; symlinked directories are not
    followed (no loops)."""
    out: list[tuple[str, Path]] = []
    pending = [(root, "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name not in _SKIPPED_DIRS and not entry.name.startswith("."):
                        pending.append((Path(entry.path), f"{prefix}{entry.name}/"))
                elif entry.name.endswith(".py") and entry.is_file():
                    out.append((f"{prefix}{entry.name}", Path(entry.path)))
            except OSError:
                continue
            if len(out) > _MAX_FILES:
                return []
    out.sort()
    return out


def _qualify(expr: ast.expr, imports: Mapping[str, str], local: str) -> str | None:
    """The qualified name an expression refers to: imports first, else a name of
    this module (``local.name``)."""
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    head = imports.get(expr.id, f"{local}.{expr.id}")
    return ".".join([head, *reversed(parts)])


class _Facts:
    """What is known so far, across modules; grown to a fixpoint."""

    def __init__(self) -> None:
        self.types: dict[str, str] = {}  # qualified name -> async|sync
        self.factories: dict[str, tuple[str, str]] = {}  # qualified -> (kind, transaction)
        self.attributes: dict[str, tuple[str, str]] = {}  # name -> (kind, transaction)
        self.engine_modules: set[str] = set()
        self.engine_builders: set[str] = set()
        self.engine_factories: set[str] = set()
        self.committing_helpers: set[str] = set()
        # Helpers that open their own session, execute the SQL a parameter gives
        # and commit: qualified -> (position of that parameter, its name).
        self.sql_helpers: dict[str, tuple[int, str]] = {}
        self.context_factories: set[str] = set()
        self.engine_module_names: set[str] = set()
        self.classes: dict[str, tuple[str, str]] = {}  # factory classes (``__call__``)

    def add_attribute(self, name: str, found: tuple[str, str]) -> None:
        """Attribute names are not qualified: two classes may give the same name to
        an async and a sync factory (``get_session`` of an async and of a sync
        config). Then the name's kind, or what it does on exit, is unknown."""
        known = self.attributes.get(name)
        if known is None:
            self.attributes[name] = found
        elif known != found:
            self.attributes[name] = (
                known[0] if known[0] == found[0] else UNKNOWN,
                known[1] if known[1] == found[1] else UNKNOWN,
            )

    def size(self) -> int:
        return len(self.types) + len(self.factories) + len(self.attributes) + len(self.classes)


def _session_class_kind(qualified: str | None, facts: _Facts) -> str | None:
    if qualified is None:
        return None
    if qualified in ASYNC_SESSION_CLASSES:
        return ASYNC
    if qualified in SYNC_SESSION_CLASSES:
        return SYNC
    return facts.types.get(qualified)


@functools.lru_cache(maxsize=1024)
def _string_annotation(text: str) -> ast.expr | None:
    """A string annotation's expression; the same few strings recur in every file."""
    if "Session" not in text and "session" not in text:
        return None  # cannot name a session type (aliases keep the word, or are names)
    try:
        with AST_LOCK:
            return ast.parse(text, mode="eval").body
    except SyntaxError:
        return None


def _annotation_kind(
    expr: ast.expr | None, module: _Module, facts: _Facts, depth: int = 0
) -> str | None:
    """``AsyncSession``, ``Optional[...]``, ``AsyncGenerator[AsyncSession, None]``,
    ``Annotated[AsyncSession, ...]``, ``X | None``, a project alias: async or sync."""
    if expr is None or depth > 4:
        return None
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        parsed = _string_annotation(expr.value)
        if parsed is None:
            return None
        expr = parsed
    if isinstance(expr, ast.Subscript):
        inner = expr.slice
        first = inner.elts[0] if isinstance(inner, ast.Tuple) and inner.elts else inner
        return _annotation_kind(first, module, facts, depth + 1)
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.BitOr):
        return _annotation_kind(expr.left, module, facts, depth + 1) or _annotation_kind(
            expr.right, module, facts, depth + 1
        )
    return _session_class_kind(_qualify(expr, module.imports, module.name), facts)


def _maker_kind(call: ast.Call, module: _Module, facts: _Facts) -> str | None:
    """``async_sessionmaker(...)`` -> async, ``sessionmaker(...)`` -> sync (async with
    ``class_=AsyncSession``); None for any other call."""
    name = _qualify(call.func, module.imports, module.name)
    if name in ASYNC_SESSIONMAKERS:
        return ASYNC
    if name in SYNC_SESSIONMAKERS:
        for kw in call.keywords:
            if (
                kw.arg == "class_"
                and _session_class_kind(_qualify(kw.value, module.imports, module.name), facts)
                == ASYNC
            ):
                return ASYNC
        return SYNC
    return None


def _source_facts(
    expr: ast.expr, module: _Module, facts: _Facts, makers: Mapping[str, str]
) -> tuple[str, str] | None:
    """(kind, transaction) when ``expr`` opens a session: ``AsyncSession(...)``,
    ``factory()``, ``factory.begin()``, ``self.factory()``, a project factory's call."""
    if isinstance(expr, ast.Await):
        expr = expr.value
    if not isinstance(expr, ast.Call):
        return None
    func = expr.func
    begins = isinstance(func, ast.Attribute) and func.attr == "begin"
    target = func.value if begins and isinstance(func, ast.Attribute) else func
    if isinstance(target, ast.Call):  # sessionmaker(...)() / async_sessionmaker(...).begin()
        kind = _maker_kind(target, module, facts)
        return (kind, COMMITS if begins else NO_COMMIT) if kind else None
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
        if target.attr in facts.attributes:
            kind, transaction = facts.attributes[target.attr]
            return kind, COMMITS if begins else transaction
    if isinstance(target, ast.Name) and target.id in makers:
        return makers[target.id], COMMITS if begins else NO_COMMIT
    qualified = _qualify(target, module.imports, module.name)
    kind = _session_class_kind(qualified, facts)
    if kind is not None and not begins:
        return kind, NO_COMMIT
    if qualified in facts.factories:
        kind, transaction = facts.factories[qualified]
        return kind, COMMITS if begins else transaction
    return None


_CM_DECORATORS = frozenset({"contextlib.asynccontextmanager", "contextlib.contextmanager"})


def _receiver_of(expr: ast.expr, method: str) -> str | None:
    """``name`` for ``name.<method>(...)``."""
    if (
        isinstance(expr, ast.Call)
        and isinstance(expr.func, ast.Attribute)
        and expr.func.attr == method
        and isinstance(expr.func.value, ast.Name)
    ):
        return expr.func.value.id
    return None


def _function_factory(
    func: ast.FunctionDef | ast.AsyncFunctionDef,
    module: _Module,
    facts: _Facts,
    makers: Mapping[str, str],
) -> tuple[str, str] | None:
    """(kind, transaction) when the function yields or returns a session."""
    bound: dict[str, tuple[str, str]] = {}  # local name -> facts of what opened it
    begun: set[str] = set()  # names some ``with x.begin()`` covers
    committed: set[str] = set()
    given: list[ast.expr] = []
    for node in module.bodies.get(id(func), ()):
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                found = _source_facts(item.context_expr, module, facts, makers)
                if found and isinstance(item.optional_vars, ast.Name):
                    bound[item.optional_vars.id] = found
                receiver = _receiver_of(item.context_expr, "begin")
                if receiver is not None:
                    begun.add(receiver)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            found = _source_facts(node.value, module, facts, makers)
            if found and isinstance(node.targets[0], ast.Name):
                bound[node.targets[0].id] = found
        elif isinstance(node, (ast.Yield, ast.Return)) and node.value is not None:
            given.append(node.value)
        elif isinstance(node, ast.Call):
            receiver = _receiver_of(node, "commit")
            if receiver is not None:
                committed.add(receiver)
    for value in given:
        if isinstance(value, ast.Name) and value.id in bound:
            kind, transaction = bound[value.id]
            if value.id in begun or value.id in committed:
                transaction = COMMITS
            return kind, transaction
        direct = _source_facts(value, module, facts, makers)
        if direct is not None:
            return direct
    # Evidence from the signature alone: ``-> AsyncIterator[AsyncSession]``; what it
    # does on exit is not known.
    declared = _annotation_kind(func.returns, module, facts)
    if declared is not None and given:
        return declared, UNKNOWN
    return None


# Session methods that write (``execute`` writes when its statement does).
_WRITE_METHODS = frozenset(
    {"add", "add_all", "delete", "merge", "bulk_save_objects", "bulk_insert_mappings",
     "bulk_update_mappings"}
)  # fmt: skip
_EXECUTE_METHODS = frozenset({"execute", "exec"})
# Parameter names that carry the caller's session: a helper taking one may write
# in its caller's transaction instead of opening its own.
_SESSION_PARAMETER = re.compile(r"(?i)session|^db$|^conn(ection)?$|^uow$|^tx$")


def _commits_own_session(
    func: ast.FunctionDef | ast.AsyncFunctionDef,
    module: _Module,
    facts: _Facts,
    makers: Mapping[str, str],
    executed: list[str] | None = None,
) -> bool:
    """Whether ``func`` opens a session of its own (``with factory() as s``,
    ``factory.begin()``), writes through it and commits it: each call of the
    function is then a transaction of its own. A function that can be handed its
    caller's session (a parameter named or annotated as one) is not one."""
    arguments = func.args
    for parameter in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs):
        if _SESSION_PARAMETER.search(parameter.arg) or _annotation_kind(
            parameter.annotation, module, facts
        ):
            return False
    opened: dict[str, str] = {}  # name -> transaction of its source
    parameters = {p.arg for p in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)}
    takes_sql: set[str] = set()  # sessions that execute a parameter: ``execute(sql)``
    begun: set[str] = set()
    committed: set[str] = set()
    written: set[str] = set()
    statements: dict[str, ast.expr] = {}  # names bound to a write statement
    for node in module.openers.get(id(func), ()):
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                found = _source_facts(item.context_expr, module, facts, makers)
                if (
                    found
                    and isinstance(item.optional_vars, ast.Name)
                    and _OPENER_NAME.search(_callee_name(item.context_expr))
                ):
                    opened[item.optional_vars.id] = found[1]
                receiver = _receiver_of(item.context_expr, "begin")
                if receiver is not None:
                    begun.add(receiver)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            if isinstance(node.targets[0], ast.Name) and _is_write(node.value, module, {}):
                statements[node.targets[0].id] = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
            if not isinstance(target, ast.Name):
                continue
            method = node.func.attr
            if method == "commit":
                committed.add(target.id)
            elif method in _WRITE_METHODS or (
                method in _EXECUTE_METHODS
                and node.args
                and _is_write(node.args[0], module, statements)
            ):
                written.add(target.id)
            elif (
                method in _EXECUTE_METHODS
                and node.args
                and executed is not None
                and (sql := _sql_parameter(node.args[0], parameters)) is not None
            ):
                takes_sql.add(target.id)
                executed.append(sql)

    def commits(name: str, transaction: str) -> bool:
        return transaction == COMMITS or name in begun or name in committed

    if executed is not None and not any(
        name in takes_sql and commits(name, t) for name, t in opened.items()
    ):
        executed.clear()
    return any(name in written and commits(name, t) for name, t in opened.items())


def _sql_parameter(expr: ast.expr, parameters: set[str]) -> str | None:
    """``sql`` of ``execute(sql)`` or ``execute(text(sql))`` when ``sql`` is a parameter."""
    if isinstance(expr, ast.Call) and expr.args:
        expr = expr.args[0]
    return expr.id if isinstance(expr, ast.Name) and expr.id in parameters else None


# What a helper's factory is called (``async_session``, ``SessionLocal``,
# ``session_maker``, ``session_scope``): the words SL306's prefilter looks for in a
# file that defines a helper (``OPENER_WORDS``).
_OPENER_NAME = re.compile(r"(?i)session|maker|scope")
OPENER_WORDS = ("ession", "ESSION", "aker", "AKER", "cope", "COPE")


def _callee_name(expr: ast.expr) -> str:
    """``factory`` of ``factory()``, ``factory.begin()``, ``self.factory()``."""
    if isinstance(expr, ast.Call):
        func = expr.func
        if isinstance(func, ast.Attribute) and func.attr == "begin":
            func = func.value.func if isinstance(func.value, ast.Call) else func.value
        if isinstance(func, ast.Attribute):
            return func.attr
        if isinstance(func, ast.Name):
            return func.id
    return ""


def _is_write(expr: ast.expr, module: _Module, statements: Mapping[str, ast.expr]) -> bool:
    """``insert(User).values(...)``, ``delete(T).where(...)``, ``text("UPDATE ...")``,
    a write SQL literal, or a name bound to one of these earlier in the function."""
    while isinstance(expr, ast.Call):
        called = _qualify(expr.func, module.imports, module.name)
        if called in WRITE_CONSTRUCTORS:
            return True
        if called in TEXT_FUNCTIONS:
            first = expr.args[0] if expr.args else None
            return (
                isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and is_write_sql(first.value)
            )
        if not isinstance(expr.func, ast.Attribute):
            return False
        expr = expr.func.value  # ``delete(T).where(...)``: the constructor is inside
    if isinstance(expr, ast.Name):
        return expr.id in statements
    return (
        isinstance(expr, ast.Constant) and isinstance(expr.value, str) and is_write_sql(expr.value)
    )


_EXPIRE_OVERRIDE = re.compile(rb"(\w+)\([ \t\n]*expire_on_commit[ \t]*=")


def _parse_modules(
    where: Path | list[tuple[str, Path]], overrides: set[str] | None = None
) -> list[_Module]:
    """The modules that may define facts; ``overrides`` collects the names called
    with ``expire_on_commit=`` (``ProjectIndex.expire_overrides``)."""
    overrides = set() if overrides is None else overrides
    modules: list[_Module] = []
    for relative, path in _project_files(where) if isinstance(where, Path) else where:
        name = module_name(relative)
        if name is None:
            continue
        read = _read_module(path, relative, name)
        if read is None:
            continue
        module, names = read
        overrides.update(names)
        if module is not None:
            module.makers = None  # learned again: other modules' facts may differ
            modules.append(module)
    return modules


# What one file gave, by (size, modification time): a resident process (the
# analysis server) rebuilds the index after every save, and then re-reads only
# the files that changed. Bounded: a project is at most ``_MAX_FILES`` files.
_FILE_MEMO: dict[str, tuple[int, int, _Module | None, frozenset[str]]] = {}


def _read_module(
    path: Path, relative: str, name: str
) -> tuple[_Module | None, frozenset[str]] | None:
    """The file's module (None: it defines and imports nothing of interest) and the
    names it calls with ``expire_on_commit=``; None when it cannot be read."""
    try:
        info = path.stat()
    except OSError:
        return None
    key = f"{path}\0{relative}"  # the module's name depends on the root
    memo = _FILE_MEMO.get(key)
    if memo is not None and memo[:2] == (info.st_size, info.st_mtime_ns):
        return memo[2], memo[3]
    try:
        source = path.read_bytes()
    except OSError:
        return None
    names = frozenset[str]()
    if b"expire_on_commit" in source:
        names = frozenset(
            m.group(1).decode("ascii", "replace") for m in _EXPIRE_OVERRIDE.finditer(source)
        )
    module = _module_of(source, relative, name)
    if len(_FILE_MEMO) > 2 * _MAX_FILES:
        _FILE_MEMO.clear()
    _FILE_MEMO[key] = (info.st_size, info.st_mtime_ns, module, names)
    return module, names


def _module_of(source: bytes, relative: str, name: str) -> _Module | None:
    is_package = relative.endswith("__init__.py")
    # A package's ``__init__`` re-exports its modules' helpers under names that
    # need not say "session" (``from .delete_data import delete_data``).
    if not (is_package or b"ession" in source or b"sqlalchemy" in source or b"sqlmodel" in source):
        return None
    if not _defines(source):
        # Nothing defined here but, maybe, committing helpers (``_helper_functions``),
        # and what it imports (and so re-exports).
        imported = _imports_from_bytes(source, name, is_package)
        functions = _helper_functions(source, relative)
        if not imported and not functions:
            return None
        module = _Module(
            name, relative, is_package, ast.Module(functions, []), imported, [], [], {}
        )
        lazy: list[ast.Import | ast.ImportFrom] = []
        for function in functions:
            _collect(function, module, lazy)
        module.imports.update(imports_of(lazy, name, is_package))
        return module
    tree = parse_ast(source, relative)
    if tree is None:
        imported = _imports_from_bytes(source, name, is_package)
        return _Module(
            name, relative, is_package, ast.Module([], []), imported, [], [], {}, unparsed=True
        )
    module = _Module(name, relative, is_package, tree, {}, [], [], {}, whole=True)
    imports: list[ast.Import | ast.ImportFrom] = []
    # Walking every statement costs more than the parse: only statements that
    # span a line that can make a fact are walked (``_INTERESTING``).
    lines = _interesting_lines(source)
    for statement in tree.body:
        if isinstance(statement, ast.ClassDef):
            for inner in statement.body:
                if _spans(inner, lines):
                    _collect(inner, module, imports)
        elif _spans(statement, lines):
            _collect(statement, module, imports)
    module.imports = _imports_from_bytes(source, name, is_package)
    module.imports.update(imports_of(imports, name, is_package))
    return module


_DEF = re.compile(rb"(?:async[ \t]+)?def[ \t]")


def _helper_functions(source: bytes, relative: str) -> list[ast.stmt]:
    """The module-level functions that open a session (``with factory() as s``) in
    a file that writes: each parsed on its own, which costs a fraction of parsing
    the file (most files that open a session define nothing else the index learns).
    A function whose text does not parse alone is passed over."""
    if _WRITES.search(source) is None:
        return []
    lines = source.splitlines(keepends=True)
    starts = [
        i
        for i, line in enumerate(lines)
        if line[:1] not in (b" ", b"\t", b"\r", b"\n", b"#", b")", b"]", b"}", b"")
    ]
    out: list[ast.stmt] = []
    taken: set[int] = set()
    for match in _OPENS_SESSION.finditer(source):
        line = source.count(b"\n", 0, match.start())
        index = bisect.bisect_right(starts, line) - 1
        if index < 0 or index in taken:
            continue
        taken.add(index)
        first = starts[index]
        if _DEF.match(lines[first]) is None:
            continue  # a class, or a statement: methods are not helpers
        begin = first
        while begin > 0 and lines[begin - 1].startswith(b"@"):
            begin -= 1
        end = starts[index + 1] if index + 1 < len(starts) else len(lines)
        segment = b"".join(lines[begin:end])
        if _WRITES.search(segment) is None:
            continue  # writes nothing: not a helper
        parsed = parse_ast(segment, relative)
        if parsed is None:
            continue
        out.extend(s for s in parsed.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return out


_INTERESTING = re.compile(
    rb"sessionmaker|create_async_engine|create_engine|engine_from_config|NewType|TypeAlias"
    rb"|Annotated\[|^[ \t]*yield\b|^[ \t]*return[ \t][^\n]*(?:[Ss]ession|[Mm]aker)"
    rb"|def[ \t]+__call__\b"
    rb"|" + _OPENS_SESSION.pattern,
    re.M,
)


def _interesting_lines(source: bytes) -> list[int]:
    """Line numbers (1-based, sorted) of the lines that can make a fact."""
    out: list[int] = []
    line, position = 1, 0
    for match in _INTERESTING.finditer(source):
        line += source.count(b"\n", position, match.start())
        position = match.start()
        if not out or out[-1] != line:
            out.append(line)
    return out


def _spans(statement: ast.stmt, lines: list[int]) -> bool:
    end = statement.end_lineno or statement.lineno
    start = statement.lineno - len(getattr(statement, "decorator_list", ()))
    index = bisect.bisect_left(lines, start)
    return index < len(lines) and lines[index] <= end


_DEFINING_WORDS = (
    b"sessionmaker",
    b"NewType",
    b"TypeAlias",
    b"create_async_engine",
    b"create_engine",
)


def _defines(source: bytes) -> bool:
    """Whether the file may define a fact (``_DEFINES``); plain ``in`` tests first,
    which are an order of magnitude cheaper than the regular expression."""
    if any(word in source for word in _DEFINING_WORDS):
        return True
    if b"yield" not in source and b"return" not in source:
        return False
    return _DEFINES.search(source) is not None


def _imports_from_bytes(source: bytes, name: str, is_package: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for match in _FROM_IMPORT.finditer(source):
        module = absolute_import(match.group(1).decode("ascii", "replace"), name, is_package)
        names = _COMMENT.sub("", match.group(2).decode("ascii", "replace"))
        for item in names.strip("()").split(","):
            words = item.split()
            if len(words) == 1 and words[0].isidentifier():
                out[words[0]] = f"{module}.{words[0]}"
            elif len(words) == 3 and words[1] == "as" and words[0].isidentifier():
                out[words[2]] = f"{module}.{words[0]}"
    for match in _IMPORT.finditer(source):
        for item in match.group(1).decode("ascii", "replace").split(","):
            words = item.split()
            if len(words) == 3 and words[1] == "as":
                out[words[2]] = words[0]
            elif len(words) == 1:
                head = words[0].split(".", 1)[0]
                out[head] = head
    return out


_RELEVANT = (ast.With, ast.AsyncWith, ast.Assign, ast.Yield, ast.Return, ast.Call)


def _collect(
    statement: ast.stmt, module: _Module, imports: list[ast.Import | ast.ImportFrom]
) -> None:
    """One walk of a top-level statement (or method): calls, assignments, imports,
    and for a function the nodes a factory is recognised by."""
    relevant: list[ast.AST] = []
    gives = opens = False
    for node in walk(statement):
        if isinstance(node, ast.Call):
            module.calls.append(node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            module.assignments.append(node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(node)
        if isinstance(node, _RELEVANT):
            relevant.append(node)
            gives = gives or isinstance(node, (ast.Yield, ast.Return))
            opens = opens or isinstance(node, (ast.With, ast.AsyncWith))
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
        if gives:
            module.bodies[id(statement)] = relevant
        if opens:
            module.openers[id(statement)] = relevant


def _learn(module: _Module, facts: _Facts) -> None:
    """One round over one module: what it defines, given what is known so far."""
    local = module.name
    # Re-exports: ``from sqlalchemy.ext.asyncio import AsyncSession`` in ``app.db``
    # makes ``app.db.AsyncSession`` a name of the class; same for factories.
    for alias, qualified in module.imports.items():
        kind = _session_class_kind(qualified, facts)
        if kind is not None:
            facts.types.setdefault(f"{local}.{alias}", kind)
        if qualified in facts.factories:
            facts.factories.setdefault(f"{local}.{alias}", facts.factories[qualified])
        if qualified in facts.classes:
            facts.classes.setdefault(f"{local}.{alias}", facts.classes[qualified])
    if module.makers is None:
        # What does not depend on other modules' facts, learned in the first round.
        module.makers = {}
        builds_engine = builds_maker = False
        for call in module.calls:
            called = _qualify(call.func, module.imports, local)
            if called in ENGINE_CONSTRUCTORS:
                builds_engine = True
            elif called in SESSIONMAKERS:
                builds_maker = True
        for node in module.assignments:
            if isinstance(node.value, ast.Call):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                kind = _maker_kind(node.value, module, facts)
                if kind is not None:
                    for target in targets:
                        if isinstance(target, ast.Name):
                            module.makers[target.id] = kind
                        elif isinstance(target, ast.Attribute):
                            facts.add_attribute(target.attr, (kind, NO_COMMIT))
        if builds_engine:
            facts.engine_builders.add(module.relative)
            facts.engine_module_names.add(local)
            if builds_maker:
                facts.engine_modules.add(local)
    makers = module.makers
    for statement in module.tree.body:
        _learn_statement(statement, module, facts, makers, local)


def _learn_statement(
    statement: ast.stmt, module: _Module, facts: _Facts, makers: Mapping[str, str], prefix: str
) -> None:
    if isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        value = statement.value
        kind: str | None = None
        if isinstance(value, ast.Call):
            instance = facts.classes.get(_qualify(value.func, module.imports, module.name) or "")
            if instance is not None:  # ``db = DbSessionFactory(maker)``
                for name in names:
                    if prefix == module.name:
                        facts.factories.setdefault(f"{prefix}.{name}", instance)
                    else:  # a class attribute: ``self.db()``
                        facts.add_attribute(name, instance)
                return
            maker = _maker_kind(value, module, facts)
            if maker is not None:
                for name in names:
                    facts.factories.setdefault(f"{prefix}.{name}", (maker, NO_COMMIT))
                    if maker == ASYNC and prefix == module.name:
                        facts.context_factories.add(f"{prefix}.{name}")
                return
            # ``AsyncSession = NewType("AsyncSession", sqlalchemy.ext.asyncio.AsyncSession)``
            called = _qualify(value.func, module.imports, module.name)
            if called in ("typing.NewType", "typing_extensions.NewType") and len(value.args) == 2:
                kind = _annotation_kind(value.args[1], module, facts)
        elif isinstance(value, (ast.Name, ast.Attribute, ast.Subscript, ast.BinOp, ast.Constant)):
            # ``DbSession = Annotated[AsyncSession, Depends(get_db)]``, ``X: TypeAlias = ...``
            kind = _annotation_kind(value, module, facts)
        if kind is not None:
            for name in names:
                facts.types.setdefault(f"{prefix}.{name}", kind)
    elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
        if prefix == module.name and _returns_new_engine(statement, module):
            facts.engine_factories.add(f"{prefix}.{statement.name}")
        found = _function_factory(statement, module, facts, makers)
        if found is not None:
            facts.factories.setdefault(f"{prefix}.{statement.name}", found)
            if (
                found[0] == ASYNC
                and prefix == module.name
                and isinstance(statement, ast.AsyncFunctionDef)
                and any(
                    _qualify(d, module.imports, module.name) == "contextlib.asynccontextmanager"
                    for d in statement.decorator_list
                )
            ):
                facts.context_factories.add(f"{prefix}.{statement.name}")
            if prefix != module.name:  # a method: ``self.with_session()``
                decorated = any(
                    _qualify(d, module.imports, module.name) in _CM_DECORATORS
                    for d in statement.decorator_list
                )
                if decorated:
                    facts.add_attribute(statement.name, found)
    elif isinstance(statement, ast.ClassDef) and prefix == module.name:
        qualified = f"{prefix}.{statement.name}"
        for inner in statement.body:
            _learn_statement(inner, module, facts, makers, qualified)
        # An instance is called for a session: ``async with db() as session``.
        found = facts.factories.get(f"{qualified}.__call__")
        if found is not None:
            facts.classes.setdefault(qualified, found)


def _returns_new_engine(function: ast.FunctionDef | ast.AsyncFunctionDef, module: _Module) -> bool:
    """``return create_async_engine(...)``, or ``engine = create_async_engine(...)``
    then ``return engine``, in a function no cache decorator wraps."""
    local = module.name
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if _qualify(target, module.imports, local) in CACHE_DECORATORS:
            return False
    built: set[str] = set()
    for statement in function.body:
        value = getattr(statement, "value", None)
        if isinstance(statement, ast.Assign) and isinstance(value, ast.Call):
            if _qualify(value.func, module.imports, local) in ENGINE_CONSTRUCTORS:
                built.update(t.id for t in statement.targets if isinstance(t, ast.Name))
        elif isinstance(statement, ast.Return) and value is not None:
            if isinstance(value, ast.Name):
                return value.id in built
            return isinstance(value, ast.Call) and (
                _qualify(value.func, module.imports, local) in ENGINE_CONSTRUCTORS
            )
    return False


def _learn_committing_helpers(modules: list[_Module], facts: _Facts) -> None:
    """Once the factories are known: the module-level functions that open a
    session of their own, write and commit (``_commits_own_session``), then their
    re-exports (``from .delete_data import delete_data`` in a package)."""
    for module in modules:
        makers = module.makers or {}
        for statement in module.tree.body:
            if not isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            qualified = f"{module.name}.{statement.name}"
            if qualified in facts.factories:
                continue
            executed: list[str] = []
            if _commits_own_session(statement, module, facts, makers, executed):
                facts.committing_helpers.add(qualified)
            elif executed:
                # ``execute_sql(sql)``: a transaction of its own for each call that
                # passes write SQL (SL306 looks at the call's argument).
                arguments = [a.arg for a in (*statement.args.posonlyargs, *statement.args.args)]
                position = arguments.index(executed[0]) if executed[0] in arguments else -1
                facts.sql_helpers[qualified] = (position, executed[0])
    for _ in range(_FIXPOINT_ROUNDS):
        before = len(facts.committing_helpers) + len(facts.sql_helpers)
        for module in modules:
            for alias, qualified in module.imports.items():
                if qualified in facts.committing_helpers:
                    facts.committing_helpers.add(f"{module.name}.{alias}")
            for alias, qualified in module.imports.items():
                if qualified in facts.sql_helpers:
                    facts.sql_helpers.setdefault(
                        f"{module.name}.{alias}", facts.sql_helpers[qualified]
                    )
        if len(facts.committing_helpers) + len(facts.sql_helpers) == before:
            break


def _learn_factory_objects(
    files: list[tuple[str, Path]],
    modules: list[_Module],
    facts: _Facts,
    trees: Mapping[str, ast.Module],
) -> None:
    """Once the factory classes are known: what holds an instance of one. Each file
    naming such a class (by its last name, in its bytes) is read for a module-level
    instance (``db = DbSessionFactory(maker)``: a factory), an attribute annotated
    with the class (a dataclass field ``db: DbSessionFactory``), and an attribute
    assigned an instance or a parameter annotated with the class
    (``self._db = db``, ``app.state.db = DbSessionFactory(...)``): the attribute
    name is then a factory (``info.context.db()``, ``self._db()``)."""
    words = {name.rsplit(".", 1)[-1].encode() for name in facts.classes}
    pattern = re.compile(rb"\b(?:" + b"|".join(sorted(map(re.escape, words))) + rb")\b")
    known = {m.relative: m for m in modules}
    for relative, name, source in module_sources(files):
        if pattern.search(source) is None:
            continue
        module = known.get(relative)
        tree = trees.get(relative) or parse_ast(source, relative)
        if tree is None:
            continue
        is_package = relative.endswith("__init__.py")
        imports = dict(module.imports) if module is not None else {}
        imports.update(_imports_from_bytes(source, name, is_package))
        lazy = import_statements(tree)
        imports.update(imports_of(lazy, name, is_package))
        _factory_objects_of(tree, name, imports, facts)


def _factory_objects_of(
    tree: ast.Module, local: str, imports: Mapping[str, str], facts: _Facts
) -> None:
    def instance_of(annotation: ast.expr | None) -> tuple[str, str] | None:
        # ``C``, ``Optional[C]``, ``C | None``, ``"C"``
        if annotation is None:
            return None
        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            try:
                with AST_LOCK:
                    annotation = ast.parse(annotation.value, mode="eval").body
            except SyntaxError:
                return None
        if isinstance(annotation, ast.Subscript):
            inner = annotation.slice
            return instance_of(inner.elts[0] if isinstance(inner, ast.Tuple) else inner)
        if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
            return instance_of(annotation.left) or instance_of(annotation.right)
        return facts.classes.get(_qualify(annotation, imports, local) or "")

    def made(
        value: ast.expr | None, parameters: Mapping[str, tuple[str, str]]
    ) -> tuple[str, str] | None:
        if isinstance(value, ast.Call):
            return facts.classes.get(_qualify(value.func, imports, local) or "")
        if isinstance(value, ast.Name):
            return parameters.get(value.id)
        return None

    def bind(target: ast.expr, found: tuple[str, str], top: bool) -> None:
        if isinstance(target, ast.Attribute):
            facts.add_attribute(target.attr, found)
        elif isinstance(target, ast.Name) and top:
            facts.factories.setdefault(f"{local}.{target.id}", found)

    def visit(
        body: list[ast.stmt], parameters: Mapping[str, tuple[str, str]], top: bool, in_class: bool
    ) -> None:
        for statement in body:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = statement.args
                typed = {
                    a.arg: found
                    for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)
                    if (found := instance_of(a.annotation)) is not None
                }
                visit(statement.body, typed, False, False)
                continue
            if isinstance(statement, ast.ClassDef):
                visit(statement.body, {}, False, True)
                continue
            if isinstance(statement, ast.AnnAssign):
                found = instance_of(statement.annotation) or made(statement.value, parameters)
                if found is not None:
                    if in_class and isinstance(statement.target, ast.Name):
                        facts.add_attribute(statement.target.id, found)  # a field
                    else:
                        bind(statement.target, found, top)
                continue
            if isinstance(statement, ast.Assign):
                found = made(statement.value, parameters)
                if found is not None:
                    for target in statement.targets:
                        if in_class and isinstance(target, ast.Name):
                            facts.add_attribute(target.id, found)
                        else:
                            bind(target, found, top)
                continue
            for field_name in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(statement, field_name, None)
                if isinstance(inner, list):
                    nested = [s for s in inner if isinstance(s, ast.stmt)]
                    nested += [s for h in inner if isinstance(h, ast.ExceptHandler) for s in h.body]
                    visit(nested, parameters, top, in_class)

    visit(tree.body, {}, True, False)


def scan(
    root: Path,
    files: list[tuple[str, Path]] | None = None,
    slow_calls: tuple[str, ...] = DEFAULT_SLOW_CALLS,
    jobs: int = 1,
) -> ProjectIndex:
    """The index of the project under ``root``: facts about sessions, factories and
    engine modules; dependency facts are added by :func:`build_index`. ``jobs``:
    the processes that read the files for the effect summaries."""
    overrides: set[str] = set()
    listing = _project_files(root) if files is None else files
    # Read from every file's bytes and from nothing else the index learns: done
    # beside the rest (a twentieth of a cold run on a large tree).
    removals = in_background(lambda: learn_removals(listing), jobs)
    modules = _parse_modules(listing, overrides)
    facts = _Facts()
    for _ in range(_FIXPOINT_ROUNDS):
        before = facts.size()
        for module in modules:
            _learn(module, facts)
        if facts.size() == before:
            break
    trees = {m.relative: m.tree for m in modules if m.whole}
    effects = learn_effects(
        listing,
        facts.types,
        slow_calls,
        set(facts.factories),
        set(facts.attributes),
        trees,
        jobs=jobs,
    )
    # ``@with_async_session async def delete_nodes(..., session)``: called without
    # a session, each call opens one and commits, as a committing helper does.
    facts.committing_helpers.update(effects.session_wrapped)
    _learn_committing_helpers(modules, facts)
    if facts.classes:
        _learn_factory_objects(listing, modules, facts, trees)
    # Modules whose importers do database work: they export a session type or
    # factory, or build an engine.
    exporting = {name.rsplit(".", 1)[0] for name in (*facts.types, *facts.factories) if "." in name}
    exporting |= facts.engine_module_names
    return ProjectIndex(
        session_types=tuple(sorted(facts.types.items())),
        session_factories=tuple(sorted((k, *v) for k, v in facts.factories.items())),
        attribute_factories=tuple(sorted((k, *v) for k, v in facts.attributes.items())),
        engine_modules=tuple(sorted(facts.engine_modules)),
        engine_builders=tuple(sorted(facts.engine_builders)),
        engine_factories=tuple(sorted(facts.engine_factories)),
        committing_helpers=tuple(sorted(facts.committing_helpers - set(facts.factories))),
        sql_helpers=tuple(sorted((k, *v) for k, v in facts.sql_helpers.items())),
        context_factories=tuple(sorted(facts.context_factories)),
        factory_classes=tuple(sorted((k, *v) for k, v in facts.classes.items())),
        unparsed=tuple(sorted(m.relative for m in modules if m.unparsed)),
        effects=tuple(
            sorted(
                (k, v.slow, v.commits, v.rolls_back, v.uses_db, v.opens, v.closes_every_path)
                for k, v in effects.functions.items()
            )
        ),
        held_attributes=tuple(sorted((o, a, c) for (o, a), c in effects.attributes.items())),
        instances=tuple(sorted(effects.instances.items())),
        session_holders=tuple(sorted(effects.session_holders)),
        pooled_engines=effects.pooled_engines,
        engine_reach=tuple(sorted((k, *v) for k, v in effects.engine_reach.items())),
        scoped_removals=removals(),
        # A maker's own keyword is not an override.
        expire_overrides=tuple(sorted(overrides - {"sessionmaker", "async_sessionmaker"})),
        evidence_modules=tuple(sorted(exporting)),
        scanned=True,
    )


# -- the index of a run ------------------------------------------------------------

_INDEX_CACHE = "index"  # a directory in the result cache, one entry per key
# Files ``dependencies`` reads: a change to one refreshes the index. Requirement
# files pulled in with ``-r`` under other names are read too; any ``*.txt`` or
# ``*.in`` at the root or in ``requirements/`` counts, to be safe.
_DEPENDENCY_FILES = re.compile(
    r"(?:pyproject\.toml|setup\.cfg|uv\.lock|poetry\.lock|Pipfile(?:\.lock)?|[^/]*\.txt|[^/]*\.in)$"
)


def build_index(
    root: str,
    excluded: Callable[[str], bool] | None = None,
    *,
    use_cache: bool = True,
    slow_calls: tuple[str, ...] = DEFAULT_SLOW_CALLS,
    jobs: int = 1,
) -> ProjectIndex:
    """The index of the project at ``root`` (the config file's directory, or the
    working directory), from the on-disk cache when no file changed since.
    ``excluded`` takes a path relative to the root: what the config keeps out of
    linting is not the project's code either. ``jobs``: the processes that may
    read the files (the command line's ``--jobs``)."""
    base = Path(root)
    files = _project_files(base)
    if excluded is not None:
        files = [(relative, path) for relative, path in files if not excluded(relative)]
    if not use_cache:
        return _with_dependencies(scan(base, files, slow_calls, jobs), base)
    key = _index_key(base, files, slow_calls)
    entry = base / ".session_lint_cache" / _INDEX_CACHE / f"{key}.json"
    try:
        return _from_json(json.loads(entry.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError):
        pass
    index = _with_dependencies(scan(base, files, slow_calls, jobs), base)
    _store(entry, index)
    return index


def _with_dependencies(index: ProjectIndex, root: Path) -> ProjectIndex:
    from session_lint.project.dependencies import dependency_facts

    return replace(index, **dependency_facts(root))


def _index_key(root: Path, files: list[tuple[str, Path]], slow_calls: tuple[str, ...]) -> str:
    from session_lint.fingerprint import tool_fingerprint

    digest = hashlib.sha256(tool_fingerprint().encode())
    digest.update("\n".join(slow_calls).encode() + b"\0")
    stats = list(files)
    try:
        stats.extend((p.name, p) for p in root.iterdir() if _DEPENDENCY_FILES.search(p.name))
        requirements = root / "requirements"
        if requirements.is_dir():
            stats.extend(
                (f"requirements/{p.name}", p)
                for p in requirements.iterdir()
                if _DEPENDENCY_FILES.search(p.name)
            )
    except OSError:
        pass
    for relative, path in stats:
        try:
            info = path.stat()
        except OSError:
            continue
        digest.update(f"{relative}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _from_json(data: dict[str, Any]) -> ProjectIndex:
    values: dict[str, Any] = {}
    for f in fields(ProjectIndex):
        raw = data[f.name]
        if isinstance(raw, list):
            raw = tuple(tuple(x) if isinstance(x, list) else x for x in raw)
        values[f.name] = raw
    return ProjectIndex(**values)


def _store(entry: Path, index: ProjectIndex) -> None:
    """Best effort, atomic: a cache that cannot be written only costs time."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        cache_dir = entry.parent.parent
        ignore = cache_dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# Automatically created by session-lint.\n*\n", encoding="utf-8")
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(asdict(index), handle)
            os.replace(tmp, entry)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass
