"""What a call of each project function does to a transaction: its effect summary.

A rule sees one function; the hazards that run through calls need to know what
the callee does (docs/project-index.md, "Effect summaries"):

- **slow**: it waits on the network or sleeps — a call the ``slow-calls`` list
  names (``httpx.*``, ``asyncio.sleep``…), matched through imports and through
  the client object a name was built from (``client = httpx.AsyncClient()``;
  ``self.client = openai.AsyncOpenAI()`` in ``__init__``), or a call of a
  project function that is slow. The chain is kept for the message:
  ``refresh_name → fetch_profile → httpx.AsyncClient.get``.
- **commits** or **rolls back** a session it receives (a parameter, or
  ``self.<attr>`` set from a parameter in ``__init__``), directly or through a
  call that is handed that session (``self.repo.create()`` where ``self.repo``
  was built on it). A commit under ``if <parameter>:`` is the caller's choice
  (``owns_transaction=True``) and does not count.
- **uses the database**: it runs a statement on a session it receives, which
  opens (autobegins) the caller's transaction.
- **opens** a session of its own from one of the project's factories, and
  whether that session is closed on every path (an ``async with`` block, or
  ``close()`` in a ``finally``). Not propagated: it is the function's own.
- **reaches a pooled engine** shared by every call: it reads a module-level async
  engine (``create_async_engine(...)`` without ``poolclass=NullPool``, not an
  SQLite URL literal), a module-level name built on one (``async_sessionmaker(engine)``,
  a repository given it), a module-level instance of a class that builds one on
  ``self``, a ``global`` engine a lazy getter fills, or it calls a cached function
  (``functools.cache``/``lru_cache``) that builds one; or it calls a function
  that reaches one. The engine's qualified name is kept (SL408 names it). Also
  whether it (or a callee) **disposes** an engine (``engine.dispose()``): a run
  that ends so leaves no connection behind.

Calls are resolved through imports, ``self.method``, ``self.<attr>.method``
where the attribute's class is known (assigned in ``__init__`` from a project
class's constructor or from a parameter annotated with it), a local name bound to
a project class's instance, and module-level instances. Anything unresolved has
no effect: names are never guessed. Effects propagate to a fixpoint.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from session_lint.known import (
    ASYNC_ENGINE_CONSTRUCTORS,
    CACHE_DECORATORS,
    SESSION_CLASSES_ALL,
    is_slow_call,
    is_write_sql,
)
from session_lint.project.modules import (
    absolute_import,
    child_nodes,
    import_statements,
    imports_of,
    module_name,
    walk,
)
from session_lint.project.parallel import map_forked
from session_lint.syntax import AST_LOCK, parse_ast, parsed_digest, remember_parsed

# Methods of a session or connection that run a statement, and so begin its
# transaction when none is open (autobegin).
STATEMENT_METHODS = frozenset(
    {"execute", "exec", "scalar", "scalars", "stream", "stream_scalars", "get", "get_one",
     "refresh", "flush", "merge", "delete", "connection", "exec_driver_sql"}
)  # fmt: skip
_FLAGS = ("commits", "rolls_back", "uses_db")
# Parameters and attributes that carry a session when nothing says otherwise.
_SESSION_WORDS = frozenset({"session", "db", "db_session", "_session", "_db", "conn", "connection"})
_MAX_CHAIN = 6  # names kept in a slow chain's message
_T = TypeVar("_T")  # a fact kept per function


@dataclass
class _Call:
    callee: str  # a qualified name, or "<class>::<attr>.<method>" to resolve later
    passes_session: bool  # the callee is handed a session this function received


@dataclass
class _Function:
    qualified: str
    slow: str | None = None  # a slow call made here, by name
    commits: bool = False
    rolls_back: bool = False
    uses_db: bool = False
    opens: bool = False  # a session of its own, from a known factory
    leaves_open: bool = False  # one of those is not closed on every path
    calls: list[_Call] = field(default_factory=list)
    # Module-level (or imported) names read here, qualified: a pooled engine or a
    # name built on one makes the function reach that engine.
    reads: set[str] = field(default_factory=set)
    builds_engine: bool = False  # calls a pooled async engine constructor
    cached: bool = False  # ``functools.cache``/``lru_cache``: built once, shared
    disposes: list[str] = field(default_factory=list)  # receivers of ``.dispose()``
    builds_on_self: bool = False  # ``self.<attr> = <pooled engine>``


@dataclass
class _File:
    functions: list[_Function]
    # (class, attribute) -> class or qualified constructor the attribute holds
    attributes: dict[tuple[str, str], str]
    instances: dict[str, str]  # module-level ``name = Class(...)``: qualified -> class
    bases: dict[str, list[str]] = field(default_factory=dict)  # class -> its bases
    # Decorators whose wrapper opens a session, calls the function with it and
    # commits (``@with_async_session``), and each function's decorators.
    session_decorators: set[str] = field(default_factory=set)
    decorated: dict[str, list[str]] = field(default_factory=dict)
    # Module-level imports: ``pkg.name`` -> what it names (re-exports).
    reexports: dict[str, str] = field(default_factory=dict)
    # Classes whose instances hold a session they were given (``self.session``).
    session_holders: set[str] = field(default_factory=set)
    # Module-level pooled async engines (``engine = create_async_engine(url)``, or a
    # ``global`` a getter fills), qualified; module-level names built from other
    # names (``factory = async_sessionmaker(engine)``): name -> what it was given;
    # classes that build a pooled engine on ``self``.
    engines: set[str] = field(default_factory=set)
    built_from: dict[str, list[str]] = field(default_factory=dict)
    engine_classes: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Effect:
    slow: str  # the chain, "" when not slow
    commits: bool
    rolls_back: bool
    uses_db: bool
    opens: bool = False
    closes_every_path: bool = True


@dataclass(frozen=True)
class Effects:
    """What :func:`learn_effects` learned: the summaries of the functions with an
    effect, and what a caller needs to resolve a call to one: the classes of
    objects held on ``self`` and of module-level instances (only classes with a
    method that has an effect)."""

    functions: dict[str, Effect]
    attributes: dict[tuple[str, str], str]  # (class, attribute) -> class
    instances: dict[str, str]  # qualified instance -> class
    # Module-level functions wrapped by a session-opening decorator: called
    # without a session, each call opens one, runs and commits.
    session_wrapped: frozenset[str] = frozenset()
    # Classes whose instances hold a session they were given (and their subclasses).
    session_holders: frozenset[str] = frozenset()
    # The pooled engines found (qualified names, sorted), and the functions,
    # methods and module-level names that reach one or dispose one: name ->
    # (position of the engine in ``pooled_engines`` or -1, disposes one). Stored
    # so because the engines are few and their callers many.
    pooled_engines: tuple[str, ...] = ()
    engine_reach: dict[str, tuple[int, bool]] = field(default_factory=dict)

    def reach(self) -> dict[str, tuple[str, bool]]:
        """``engine_reach`` with the engines' names."""
        return decoded_reach(self.pooled_engines, self.engine_reach.items())


def decoded_reach(
    engines: tuple[str, ...], stored: Iterable[tuple[str, tuple[int, bool]]]
) -> dict[str, tuple[str, bool]]:
    """name -> (the qualified name of the pooled engine it reaches or "", whether it
    disposes an engine), from the stored form."""
    return {name: (engines[at] if at >= 0 else "", disposes) for name, (at, disposes) in stored}


def learn_effects(
    files: Iterable[tuple[str, Path]],
    session_types: Mapping[str, str],
    slow_calls: tuple[str, ...],
    factories: Collection[str] = (),
    attribute_factories: Collection[str] = (),
    trees: Mapping[str, ast.Module] | None = None,
    jobs: int = 1,
) -> Effects:
    """Effect summaries of the project's functions and methods, by qualified name.
    ``trees``: whole-file trees the index already parsed, by relative path. The
    other files are read and parsed by ``jobs`` processes (session_lint/project/parallel.py)
    while this one reads those trees."""
    known = trees or {}
    files = list(files)
    openers = (frozenset(factories), frozenset(attribute_factories))

    def read_tree(relative: str, name: str, tree: ast.Module) -> _File:
        is_package = relative.endswith("__init__.py")
        return _read_file(tree, name, is_package, session_types, slow_calls, openers)

    def read_path(item: tuple[str, Path]) -> tuple[_File | None, bytes | None]:
        """The file's summary (None: nothing to read), and the digest of its bytes
        when CPython parsed them (``syntax.remember_parsed``)."""
        relative, path = item
        name = module_name(relative)
        if name is None:
            return None, None
        try:
            source = path.read_bytes()
        except OSError:
            return None, None
        if b"def " not in source and not (
            b"import" in source and relative.endswith("__init__.py")
        ):
            return None, None  # neither functions nor a package's re-exports
        tree = parse_ast(source, relative)
        if tree is None:
            return None, None
        return read_tree(relative, name, tree), parsed_digest(source)

    from_trees: list[_File] = []

    def read_known() -> None:
        for relative, _ in files:
            tree = known.get(relative)
            name = module_name(relative)
            if tree is not None and name is not None:
                from_trees.append(read_tree(relative, name, tree))

    unparsed = [(relative, path) for relative, path in files if relative not in known]
    read = map_forked(read_path, unparsed, jobs, read_known)
    remember_parsed(digest for _, digest in read if digest is not None)
    return _propagate([*from_trees, *(f for f, _ in read if f is not None)], slow_calls)


def file_engine_reach(source: bytes, relative: str) -> dict[str, tuple[str, bool]]:
    """The engine reach (``Effects.engine_reach``) of one file on its own: for a file
    the project index did not read (a new file, a snippet)."""
    name = module_name(relative)
    tree = parse_ast(source, relative) if name is not None else None
    if tree is None or name is None:
        return {}
    file = _read_file(tree, name, relative.endswith("__init__.py"), {}, ())
    return _propagate([file], ()).reach()


def _propagate(files: list[_File], slow_calls: tuple[str, ...]) -> Effects:
    attributes: dict[tuple[str, str], str] = {}
    instances: dict[str, str] = {}
    functions: dict[str, _Function] = {}
    bases: dict[str, list[str]] = {}
    reexports: dict[str, str] = {}
    for file in files:
        attributes.update(file.attributes)
        instances.update(file.instances)
        bases.update(file.bases)
        reexports.update(file.reexports)
        for function in file.functions:
            functions[function.qualified] = function

    def followed(name: str) -> str:
        """Through re-exports: ``pkg.helper`` -> ``pkg.module.helper``."""
        for _ in range(6):
            if name in functions or name not in reexports:
                break
            name = reexports[name]
        return name

    def method(owner: str, name: str, depth: int = 0) -> str | None:
        """``owner.name``, or the method a base class defines (inheritance)."""
        if f"{owner}.{name}" in functions:
            return f"{owner}.{name}"
        if depth > 8:
            return None
        for base in bases.get(owner, ()):
            found = method(base, name, depth + 1)
            if found is not None:
                return found
        return None

    def resolve(callee: str) -> str | None:
        callee = followed(callee)
        if "::" in callee:
            owner, _, rest = callee.partition("::")
            attribute, _, name = rest.partition(".")
            held = attributes.get((owner, attribute))
            return method(held, name) if held is not None else None
        if callee in functions:
            return callee
        head, _, name = callee.rpartition(".")
        if head in instances:
            return method(instances[head], name)
        return method(head, name) if head in bases else None

    edges = {
        q: [(target, call.passes_session) for call in f.calls if (target := resolve(call.callee))]
        for q, f in functions.items()
    }
    slow = {q: f.slow for q, f in functions.items() if f.slow}
    chains: dict[str, str] = {q: name for q, name in slow.items()}
    flagged = {flag: {q for q, f in functions.items() if getattr(f, flag)} for flag in _FLAGS}
    changed = True
    while changed:
        changed = False
        for q, targets in edges.items():
            for target, passes in targets:
                if target not in functions:
                    continue
                if q not in chains and target in chains:
                    chain = chains[target]
                    if chain.count(" → ") < _MAX_CHAIN:
                        chains[q] = f"{target.rsplit('.', 1)[-1]} → {chain}"
                    else:
                        chains[q] = chain
                    changed = True
                if not passes:
                    continue
                for members in flagged.values():
                    if target in members and q not in members:
                        members.add(q)
                        changed = True
    out: dict[str, Effect] = {}
    for q, function in functions.items():
        commits, rolls_back, uses_db = (q in flagged[flag] for flag in _FLAGS)
        if q in chains or commits or rolls_back or uses_db or function.opens:
            out[q] = Effect(
                slow=chains.get(q, ""),
                commits=commits,
                rolls_back=rolls_back,
                uses_db=uses_db,
                opens=function.opens,
                closes_every_path=not function.leaves_open,
            )
    _under_every_name(out, bases, reexports, followed)
    owners = {q.rsplit(".", 1)[0] for q in out}
    decorators = {d for file in files for d in file.session_decorators}
    wrapped = frozenset(
        q
        for file in files
        for q, names in file.decorated.items()
        if decorators.intersection(followed(n) for n in names)
    )
    holders = {h for file in files for h in file.session_holders}
    holders |= {owner for owner in bases if holders.intersection(_ancestors(owner, bases))}
    reach = _engine_reach(files, functions, instances, edges, followed)
    pooled = tuple(sorted({engine for engine, _ in reach.values() if engine}))
    position = {engine: at for at, engine in enumerate(pooled)}
    _under_every_name(reach, bases, reexports, followed)
    return Effects(
        out,
        # What a caller needs: objects with an effect, and clients of slow calls
        # (``self.http = httpx.AsyncClient()``: ``self.http.post`` is slow).
        {
            k: v
            for k, v in attributes.items()
            if v in owners or is_slow_call(f"{v}.call", slow_calls)
        },
        {k: v for k, v in instances.items() if v in owners},
        wrapped,
        frozenset(holders),
        pooled,
        {q: (position.get(engine, -1), disposes) for q, (engine, disposes) in reach.items()},
    )


def _engine_reach(
    files: list[_File],
    functions: Mapping[str, _Function],
    instances: Mapping[str, str],
    edges: Mapping[str, list[tuple[str, bool]]],
    followed: Callable[[str], str],
) -> dict[str, tuple[str, bool]]:
    """Which pooled engine each function and module-level name reaches, and
    whether it disposes an engine (both through calls, to a fixpoint)."""
    engines: dict[str, str] = {}  # a name that is or holds an engine -> the engine
    classes = {c for file in files for c in file.engine_classes}
    for file in files:
        engines.update((e, e) for e in file.engines)
    for name, cls in instances.items():
        if followed(cls) in classes:
            engines[name] = name  # ``db = Database(url)`` whose ``__init__`` builds one
    builders = {
        q
        for q, f in functions.items()
        if f.builds_engine or any(followed(c.callee) in classes for c in f.calls)
    }
    for q, f in functions.items():
        if f.cached and (
            q in builders or any(target in builders for target, _ in edges.get(q, ()))
        ):
            engines[q] = q  # a cached getter: every caller shares what it built
    built = {name: given for file in files for name, given in file.built_from.items()}
    for _ in range(4):  # ``factory = async_sessionmaker(engine)``, then a repository on it
        grew = False
        for name, given in built.items():
            if name in engines:
                continue
            engine = next((engines[g] for g in map(followed, given) if g in engines), None)
            if engine is not None:
                engines[name] = engine
                grew = True
        if not grew:
            break
    reached: dict[str, str] = {q: q for q in engines if q in functions}
    disposing: set[str] = set()
    for q, f in functions.items():
        if q not in reached:
            engine = next((engines[r] for r in map(followed, f.reads) if r in engines), None)
            if engine is not None:
                reached[q] = engine
        if any(
            followed(r) in engines or "engine" in r.rsplit(".", 1)[-1].lower() for r in f.disposes
        ):
            disposing.add(q)
    changed = True
    while changed:
        changed = False
        for q, targets in edges.items():
            for target, _ in targets:
                if q not in reached and target in reached:
                    reached[q] = reached[target]
                    changed = True
                if q not in disposing and target in disposing:
                    disposing.add(q)
                    changed = True
    out = {name: (engine, name in disposing) for name, engine in engines.items()}
    out.update((q, (engine, q in disposing)) for q, engine in reached.items())
    out.update((q, ("", True)) for q in disposing if q not in out)
    return out


def _under_every_name(
    found: dict[str, _T],
    bases: Mapping[str, list[str]],
    reexports: Iterable[str],
    followed: Callable[[str], str],
) -> None:
    """Add to ``found`` (facts by qualified function) the other names callers use:
    inherited methods under the subclass's name (``Conversation.create_async``),
    re-exported functions under their importers' names."""
    # ``found`` by owner (``Class`` -> its members' facts), kept in step with it:
    # scanning all of ``found`` per class and ancestor was quadratic.
    members: dict[str, dict[str, _T]] = {}
    for qualified, fact in found.items():
        owner, _, member = qualified.rpartition(".")
        members.setdefault(owner, {})[member] = fact
    for owner in bases:
        for inherited in _ancestors(owner, bases):
            for member, fact in list(members.get(inherited, {}).items()):
                name = f"{owner}.{member}"
                if name not in found:  # the nearest ancestor's comes first
                    found[name] = fact
                    members.setdefault(owner, {})[member] = fact
    for alias in reexports:
        target = followed(alias)
        if target in found and alias not in found:
            found[alias] = found[target]


def _ancestors(owner: str, bases: Mapping[str, list[str]]) -> list[str]:
    """The project classes ``owner`` inherits from, nearest first."""
    out: list[str] = []
    pending = list(bases.get(owner, ()))
    while pending and len(out) < 16:
        base = pending.pop(0)
        if base not in out and base != owner:
            out.append(base)
            pending += bases.get(base, [])
    return out


# -- one file ---------------------------------------------------------------------


def _dotted(expr: ast.expr) -> list[str] | None:
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    parts.append(expr.id)
    return parts[::-1]


class _Reader:
    def __init__(
        self,
        module: str,
        imports: Mapping[str, str],
        session_types: Mapping[str, str],
        slow_calls: tuple[str, ...],
        local_names: set[str],
    ) -> None:
        self.module = module
        self.imports = imports
        self.session_types = session_types
        self.slow_calls = slow_calls
        self.local_names = local_names  # module-level defs and assignments
        # The project's session factories (qualified) and attribute factories.
        self.factories: frozenset[str] = frozenset()
        self.attribute_factories: frozenset[str] = frozenset()
        # Every module-level name (annotated ones included): a read of one, or of
        # an import, may reach a pooled engine.
        self.module_level: set[str] = set(local_names)

    def read_name(self, parts: list[str]) -> str | None:
        """The qualified name a read of ``a.b.c`` names, when ``a`` is imported or
        module-level; None for a local or unknown name."""
        head = parts[0]
        if head in self.imports:
            return ".".join([self.imports[head], *parts[1:]])
        if head in self.module_level:
            return ".".join([self.module, *parts])
        return None

    def builds_pooled_engine(self, value: ast.expr | None) -> bool:
        """``create_async_engine(url, ...)`` (``.execution_options(...)`` too) whose
        pool keeps connections: no ``poolclass=NullPool``, no SQLite URL literal
        (aiosqlite's connections are not tied to a loop)."""
        if (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Attribute)
            and value.func.attr == "execution_options"
        ):
            value = value.func.value
        if not isinstance(value, ast.Call):
            return False
        parts = _dotted(value.func)
        if parts is None or self.qualify(parts) not in ASYNC_ENGINE_CONSTRUCTORS:
            return False
        for keyword in value.keywords:
            pool = _dotted(keyword.value) if keyword.arg == "poolclass" else None
            if pool is not None and pool[-1] == "NullPool":
                return False
        url = value.args[0] if value.args else None
        url = url or next((k.value for k in value.keywords if k.arg == "url"), None)
        if isinstance(url, ast.JoinedStr) and url.values:
            url = url.values[0]
        return not (
            isinstance(url, ast.Constant)
            and isinstance(url.value, str)
            and url.value.startswith("sqlite")
        )

    def given(self, call: ast.Call, depth: int = 0) -> list[str]:
        """Qualified names a call is given (``async_sessionmaker(engine)``,
        ``async_scoped_session(async_sessionmaker(bind=engine))``,
        ``Repository(get_engine())``)."""
        out: list[str] = []
        for argument in [*call.args, *(k.value for k in call.keywords)]:
            if isinstance(argument, ast.Starred):
                argument = argument.value
            if isinstance(argument, ast.Call):
                parts = _dotted(argument.func)
                found = self.read_name(parts) if parts else None
                if found:
                    out.append(found)
                if depth < 2:
                    out += self.given(argument, depth + 1)
            elif (parts := _dotted(argument)) is not None and (found := self.read_name(parts)):
                out.append(found)
        return out

    def opens_session(self, expr: ast.expr) -> bool:
        """``factory()``, ``factory.begin()``, ``self.async_session()``: one of the
        project's session factories."""
        if isinstance(expr, ast.Await):
            expr = expr.value
        if not isinstance(expr, ast.Call):
            return False
        func = expr.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "begin"
            and isinstance(func.value, ast.Call)
        ):
            func = func.value.func
        elif isinstance(func, ast.Attribute) and func.attr == "begin":
            func = func.value
        if isinstance(func, ast.Attribute) and func.attr in self.attribute_factories:
            return True
        parts = _dotted(func)
        return parts is not None and self.qualify(parts) in self.factories

    def qualify(self, parts: list[str]) -> str:
        head = parts[0]
        if head in self.imports:
            base = self.imports[head]
        elif head in self.local_names:
            base = f"{self.module}.{head}"
        else:
            base = head
        return ".".join([base, *parts[1:]])

    def annotation_names(self, annotation: ast.expr | None) -> list[str]:
        """Qualified names an annotation may stand for (``Optional[X]``, ``X | None``)."""
        if annotation is None:
            return []
        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            try:
                with AST_LOCK:  # CPython 3.11: one parse at a time (session_lint/syntax.py)
                    annotation = ast.parse(annotation.value, mode="eval").body
            except SyntaxError:
                return []
        if isinstance(annotation, ast.Subscript):
            inner = annotation.slice
            items = inner.elts if isinstance(inner, ast.Tuple) else [inner]
            return [n for item in items for n in self.annotation_names(item)]
        if isinstance(annotation, ast.BinOp):
            return self.annotation_names(annotation.left) + self.annotation_names(annotation.right)
        parts = _dotted(annotation)
        return [self.qualify(parts)] if parts else []

    def is_session_annotation(self, annotation: ast.expr | None) -> bool:
        return any(
            n in SESSION_CLASSES_ALL or n in self.session_types
            for n in self.annotation_names(annotation)
        )


def _read_file(
    tree: ast.Module,
    module: str,
    is_package: bool,
    session_types: Mapping[str, str],
    slow_calls: tuple[str, ...],
    openers: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset()),
) -> _File:
    imports = imports_of(
        import_statements(tree),
        module,
        is_package,
    )
    local_names: set[str] = set()
    for statement in tree.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            local_names.add(statement.name)
        elif isinstance(statement, ast.Assign):
            local_names.update(t.id for t in statement.targets if isinstance(t, ast.Name))
    reader = _Reader(module, imports, session_types, slow_calls, local_names)
    reader.factories, reader.attribute_factories = openers
    file = _File([], {}, {})
    _read_module_engines(tree, module, reader, file)
    for statement in tree.body:
        if isinstance(statement, ast.ImportFrom):
            source = absolute_import(
                "." * statement.level + (statement.module or ""), module, is_package
            )
            for alias in statement.names:
                if alias.name != "*":
                    file.reexports[f"{module}.{alias.asname or alias.name}"] = (
                        f"{source}.{alias.name}"
                    )
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Call):
            parts = _dotted(statement.value.func)
            if parts is not None:
                for target in statement.targets:
                    if isinstance(target, ast.Name):
                        file.instances[f"{module}.{target.id}"] = reader.qualify(parts)
        elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
            qualified = f"{module}.{statement.name}"
            if _opens_session_around_call(statement):
                file.session_decorators.add(qualified)
            if _writes(statement):  # a decorated reader commits nothing worth a finding
                file.decorated[qualified] = [
                    reader.qualify(parts)
                    for d in statement.decorator_list
                    if (parts := _dotted(d.func if isinstance(d, ast.Call) else d)) is not None
                ]
            file.functions.append(
                _read_function(
                    statement, f"{module}.{statement.name}", None, reader, {}, set(), False
                )
            )
        elif isinstance(statement, ast.ClassDef):
            _read_class(statement, f"{module}.{statement.name}", reader, file)
    return file


def _module_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Module-level statements, those under ``if``/``try``/``with`` included."""
    for statement in body:
        yield statement
        if isinstance(statement, (ast.If, ast.Try, ast.With)):
            nested = [*statement.body, *getattr(statement, "orelse", [])]
            nested += getattr(statement, "finalbody", [])
            for handler in getattr(statement, "handlers", []):
                nested += handler.body
            yield from _module_statements(nested)


def _read_module_engines(tree: ast.Module, module: str, reader: _Reader, file: _File) -> None:
    """Module-level pooled engines, names built from other names, and the engines
    a ``global`` statement makes module-level (``global _engine; _engine = ...``)."""
    for statement in tree.body:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            reader.module_level.add(statement.target.id)
        elif isinstance(statement, ast.Assign):
            reader.module_level.update(t.id for t in statement.targets if isinstance(t, ast.Name))
    assignments: list[tuple[ast.expr, ast.expr | None]] = []
    for statement in _module_statements(tree.body):
        if isinstance(statement, ast.Assign):
            assignments += [(t, statement.value) for t in statement.targets]
        elif isinstance(statement, ast.AnnAssign):
            assignments.append((statement.target, statement.value))
        elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # ``global`` comes first in a function body (Python requires it before
            # any use): the top-level statements are enough.
            shared = {
                n for node in statement.body if isinstance(node, ast.Global) for n in node.names
            }
            if shared:
                reader.module_level |= shared
                assignments += [
                    (t, node.value)
                    for node in walk(statement)
                    if isinstance(node, ast.Assign)
                    for t in node.targets
                    if isinstance(t, ast.Name) and t.id in shared
                ]
    for target, value in assignments:
        if not isinstance(target, ast.Name) or not isinstance(value, ast.Call):
            continue
        name = f"{module}.{target.id}"
        if reader.builds_pooled_engine(value):
            file.engines.add(name)
            continue
        parts = _dotted(value.func)
        called = reader.qualify(parts) if parts is not None else ""
        # SQLAlchemy's own helpers given an engine (``MetaData``, ``inspect``) do not
        # hand out its connections; its session factories and scoped sessions do,
        # as do the project's own classes and functions (a repository, a wrapper).
        if called.partition(".")[0] in _SQLALCHEMY and called.rsplit(".", 1)[-1] not in _FACTORIES:
            continue
        file.built_from.setdefault(name, []).extend(reader.given(value))


def _read_class(node: ast.ClassDef, qualified: str, reader: _Reader, file: _File) -> None:
    """The class's bases and attributes (what ``__init__`` stores on ``self``),
    then its methods."""
    file.bases[qualified] = [
        reader.qualify(parts) for base in node.bases if (parts := _dotted(base)) is not None
    ]
    held: dict[str, str] = {}  # attribute -> qualified class or constructor
    sessions: set[str] = set()  # attributes that hold a received session
    built_on_session = False  # ``self.users = UserRepository(session)``
    for statement in node.body:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            if reader.is_session_annotation(statement.annotation):
                sessions.add(statement.target.id)
            else:
                names = reader.annotation_names(statement.annotation)
                if names:
                    held[statement.target.id] = names[0]
    for statement in node.body:
        if (
            isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef))
            and statement.name == "__init__"
        ):
            parameters = _parameters(statement)
            for sub in walk(statement):
                if not isinstance(sub, (ast.Assign, ast.AnnAssign)):
                    continue
                targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
                value = sub.value
                for target in targets:
                    if not (
                        isinstance(target, ast.Attribute)
                        and isinstance(target.value, ast.Name)
                        and target.value.id == "self"
                    ):
                        continue
                    if isinstance(value, ast.Name) and value.id in parameters:
                        annotation = parameters[value.id]
                        if reader.is_session_annotation(annotation) or (
                            annotation is None and value.id in _SESSION_WORDS
                        ):
                            sessions.add(target.attr)
                        else:
                            names = reader.annotation_names(annotation)
                            if names:
                                held[target.attr] = names[0]
                    elif isinstance(value, ast.Call):
                        parts = _dotted(value.func)
                        if parts is not None:
                            held[target.attr] = reader.qualify(parts)
                        given = [*value.args, *(k.value for k in value.keywords)]
                        built_on_session = built_on_session or any(
                            isinstance(a, ast.Name)
                            and a.id in parameters
                            and (
                                reader.is_session_annotation(parameters[a.id])
                                or (parameters[a.id] is None and a.id in _SESSION_WORDS)
                            )
                            for a in given
                        )
    holds_session = bool(sessions) or built_on_session
    if holds_session:
        file.session_holders.add(qualified)
    elif file.bases[qualified]:
        # A subclass whose base stored the session (``BaseRepository.__init__``,
        # maybe in another module): ``self.session`` is the one it was given.
        sessions = {a for a in ("session", "_session", "db_session") if a not in held}
    for attribute, cls in held.items():
        file.attributes[(qualified, attribute)] = cls
    for statement in node.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
            method = _read_function(
                statement,
                f"{qualified}.{statement.name}",
                qualified,
                reader,
                held,
                sessions,
                holds_session,
            )
            file.functions.append(method)
            if method.builds_on_self:  # ``self.engine = create_async_engine(url)``
                file.engine_classes.add(qualified)


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, ast.expr | None]:
    arguments = function.args
    return {
        a.arg: a.annotation
        for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)
        if a.arg not in ("self", "cls")
    }


def _read_function(
    function: ast.FunctionDef | ast.AsyncFunctionDef,
    qualified: str,
    owner: str | None,
    reader: _Reader,
    held: Mapping[str, str],
    session_attributes: set[str],
    holds_session: bool,
) -> _Function:
    out = _Function(qualified)
    out.cached = any(
        (parts := _dotted(d.func if isinstance(d, ast.Call) else d)) is not None
        and reader.qualify(parts) in CACHE_DECORATORS
        for d in function.decorator_list
    )
    received: set[str] = set()  # parameter names that carry a session
    clients: dict[str, str] = {}  # local name -> qualified constructor or annotated class
    for name, annotation in _parameters(function).items():
        if reader.is_session_annotation(annotation) or (
            annotation is None and name in _SESSION_WORDS
        ):
            received.add(name)
        else:
            names = reader.annotation_names(annotation)
            if names:
                clients[name] = names[0]
    body = _own_nodes(function)
    # The few kinds of node the passes below look at, in source order: one pass
    # over the body instead of one per kind (the index reads every function).
    binders: list[ast.AST] = []  # with statements and assignments
    calls: list[ast.Call] = []
    tries: list[ast.Try] = []
    for node in body:
        kind = type(node)
        if kind is ast.Call:
            calls.append(node)  # type: ignore[arg-type]
        elif kind is ast.Assign or kind is ast.With or kind is ast.AsyncWith:
            binders.append(node)
        elif kind is ast.Try:
            tries.append(node)  # type: ignore[arg-type]
    _read_engine_use(body, reader, out, function)
    built_on_session: set[str] = set()  # ``repo = UserRepository(session)``
    # ``if owns_transaction: await session.commit()``: the caller decides, unless
    # the parameter says commit by default (``commit: bool = True``).
    # Both sets are made when first needed: most functions neither commit nor wait.
    guarded: set[int] | None = None
    handled: set[int] | None = None

    def is_guarded(call: ast.Call) -> bool:
        nonlocal guarded
        if guarded is None:
            opt_in = _opt_in_parameters(function)
            guarded = {
                id(sub)
                for node in body
                if isinstance(node, ast.If) and _names_a(node.test, opt_in)
                for statement in node.body
                for sub in walk(statement)
            }
        return id(call) in guarded

    def is_handled(call: ast.Call) -> bool:
        # A wait in an ``except`` handler is a retry's backoff after a failure (most
        # often after a rollback), not the function's normal work: it does not make
        # the function slow for its callers.
        nonlocal handled
        if handled is None:
            handled = {
                id(sub)
                for node in body
                if isinstance(node, ast.ExceptHandler)
                for sub in walk(node)
            }
        return id(call) in handled

    def is_received(expr: ast.expr) -> bool:
        if isinstance(expr, ast.Name):
            return expr.id in received
        return (
            isinstance(expr, ast.Attribute)
            and isinstance(expr.value, ast.Name)
            and expr.value.id == "self"
            and expr.attr in session_attributes
        )

    # FastAPI dependencies share the request's session: ``user = Depends(get_user)``
    # runs ``get_user``'s statements on it before this function's body.
    arguments = function.args
    for default in (*arguments.defaults, *arguments.kw_defaults):
        target = _depends_target(default)
        if target is not None:
            out.calls.append(_Call(reader.qualify(target), True))
    for argument in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs):
        annotation = argument.annotation
        if isinstance(annotation, ast.Subscript) and isinstance(annotation.slice, ast.Tuple):
            for element in annotation.slice.elts[1:]:
                target = _depends_target(element)
                if target is not None:
                    out.calls.append(_Call(reader.qualify(target), True))
    for node in binders:  # names bound to a constructed object: ``client = httpx.AsyncClient()``
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                _bind(item.optional_vars, item.context_expr, reader, clients)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            _bind(node.targets[0], node.value, reader, clients)
            value = node.value.value if isinstance(node.value, ast.Await) else node.value
            if (
                isinstance(node.targets[0], ast.Name)
                and isinstance(value, ast.Call)
                and any(is_received(a) for a in [*value.args, *(k.value for k in value.keywords)])
            ):
                built_on_session.add(node.targets[0].id)
    closed_finally = {
        sub.func.value.id
        for node in tries
        for statement in node.finalbody
        for sub in walk(statement)
        if isinstance(sub, ast.Call)
        and isinstance(sub.func, ast.Attribute)
        and sub.func.attr == "close"
        and isinstance(sub.func.value, ast.Name)
    }
    for node in binders:
        if isinstance(node, (ast.With, ast.AsyncWith)):
            out.opens = out.opens or any(reader.opens_session(i.context_expr) for i in node.items)
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and reader.opens_session(node.value)
        ):
            out.opens = True
            out.leaves_open = out.leaves_open or node.targets[0].id not in closed_finally
    for node in calls:
        func = node.func
        if isinstance(func, ast.Attribute) and is_received(func.value):
            if func.attr == "commit":
                out.commits = out.commits or not is_guarded(node)
            elif func.attr == "rollback":
                out.rolls_back = True
            elif func.attr in STATEMENT_METHODS:
                out.uses_db = True
            continue
        called = _call_name(func, reader, clients, held)
        if called is None:
            continue
        if is_slow_call(called, reader.slow_calls):
            if out.slow is None and not is_handled(node):
                out.slow = called
            continue
        passes = any(is_received(a) for a in node.args) or any(
            is_received(k.value) for k in node.keywords
        )
        callee = _callee(func, reader, clients, owner)
        if callee is not None:
            # ``self.method()``/``self.repo.method()`` share the session this object
            # was given, if it was given one.
            self_call = (holds_session or bool(session_attributes)) and (
                callee.startswith(f"{owner}.") or "::" in callee
            )
            on_session = isinstance(func, ast.Attribute) and (
                isinstance(func.value, ast.Name) and func.value.id in built_on_session
            )
            out.calls.append(_Call(callee, passes or self_call or on_session))
    return out


def _read_engine_use(
    body: list[ast.AST],
    reader: _Reader,
    out: _Function,
    function: ast.FunctionDef | ast.AsyncFunctionDef,
) -> None:
    """What the function reads that may be (or hold) a shared engine (a module-level
    or imported name, or one attribute of one: ``db.engine``), whether it builds a
    pooled engine, and what it disposes. One pass over nodes the caller already
    listed; names are qualified only when they are module-level or imported."""
    imports, module_level, module = reader.imports, reader.module_level, reader.module
    read: dict[str, set[str]] = {}  # head name -> qualified names read through it
    # Names the function binds itself shadow the module's (``engine = ...`` in a
    # function is its own engine), unless declared ``global``.
    local = {a.arg for a in (*function.args.posonlyargs, *function.args.args)}
    local.update(a.arg for a in function.args.kwonlyargs)
    shared: set[str] = set()
    for node in body:
        kind = type(node)
        if kind is ast.Name:
            name = node.id  # type: ignore[attr-defined]
            if type(node.ctx) is not ast.Load:  # type: ignore[attr-defined]
                local.add(name)
            elif name in imports:
                read.setdefault(name, set()).add(imports[name])
            elif name in module_level:
                read.setdefault(name, set()).add(f"{module}.{name}")
        elif kind is ast.Attribute:
            value = node.value  # type: ignore[attr-defined]
            if type(value) is ast.Name:
                head = value.id
                if head in imports:
                    qualified = f"{imports[head]}.{node.attr}"  # type: ignore[attr-defined]
                    read.setdefault(head, set()).add(qualified)
                elif head in module_level:
                    qualified = f"{module}.{head}.{node.attr}"  # type: ignore[attr-defined]
                    read.setdefault(head, set()).add(qualified)
        elif kind is ast.Global:
            shared.update(node.names)  # type: ignore[attr-defined]
        elif kind is ast.Call:
            func = node.func  # type: ignore[attr-defined]
            last = func.attr if type(func) is ast.Attribute else getattr(func, "id", "")
            if last == "dispose" and type(func) is ast.Attribute:
                receiver = func.value.func if isinstance(func.value, ast.Call) else func.value
                parts = _dotted(receiver)
                if parts is not None:
                    out.disposes.append(reader.read_name(parts) or ".".join(parts))
            elif last in _ENGINE_CALLS and reader.builds_pooled_engine(node):  # type: ignore[arg-type]
                out.builds_engine = True
        elif kind is ast.Assign and any(
            isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
            for t in node.targets  # type: ignore[attr-defined]
        ):
            value = node.value  # type: ignore[attr-defined]
            if reader.builds_pooled_engine(value):
                out.builds_on_self = True
    for head, names in read.items():
        if head not in local or head in shared:
            out.reads.update(names)


_SQLALCHEMY = frozenset({"sqlalchemy", "sqlmodel"})
_FACTORIES = frozenset(
    {"sessionmaker", "async_sessionmaker", "scoped_session", "async_scoped_session"}
)
# The last names of the calls ``builds_pooled_engine`` may accept.
_ENGINE_CALLS = frozenset(
    {q.rsplit(".", 1)[-1] for q in ASYNC_ENGINE_CONSTRUCTORS} | {"execution_options"}
)


_WRITE_METHODS = frozenset(
    {"add", "add_all", "merge", "delete", "bulk_save_objects", "bulk_insert_mappings",
     "bulk_update_mappings"}
)  # fmt: skip
_WRITE_STATEMENTS = frozenset({"insert", "update", "delete", "upsert"})


def _writes(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether the function writes through its session parameter (named so, or
    annotated with a ``...Session`` class): ``add``/``delete``/``merge``, or
    ``execute`` of an ``insert``/``update``/``delete`` statement or write SQL."""
    sessions = {
        name
        for name, annotation in _parameters(function).items()
        if name in _SESSION_WORDS
        or (
            annotation is not None
            and (parts := _dotted(annotation)) is not None
            and parts[-1].endswith("Session")
        )
    }
    if not sessions:
        return False
    for node in walk(function):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in sessions
        ):
            continue
        if node.func.attr in _WRITE_METHODS:
            return True
        if node.func.attr in ("execute", "exec") and node.args:
            first = node.args[0]
            while isinstance(first, ast.Call):
                parts = _dotted(first.func)
                if parts and parts[-1] in _WRITE_STATEMENTS:
                    return True
                if parts and parts[-1] == "text" and first.args:
                    literal = first.args[0]
                    return (
                        isinstance(literal, ast.Constant)
                        and isinstance(literal.value, str)
                        and is_write_sql(literal.value)
                    )
                first = first.func.value if isinstance(first.func, ast.Attribute) else None  # type: ignore[assignment]
    return False


def _opens_session_around_call(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A decorator whose wrapper does ``async with factory() as session: result =
    await func(*args, session=session); await session.commit()``."""
    if not function.args.args:
        return False
    wrapped = function.args.args[0].arg
    for inner in function.body:
        if not isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        opened: set[str] = set()
        committed: set[str] = set()
        calls_it = False
        for node in walk(inner):
            if isinstance(node, (ast.With, ast.AsyncWith)):
                opened.update(
                    item.optional_vars.id
                    for item in node.items
                    if isinstance(item.optional_vars, ast.Name)
                )
            elif isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id == wrapped:
                    calls_it = True
                elif (
                    isinstance(func, ast.Attribute)
                    and func.attr == "commit"
                    and isinstance(func.value, ast.Name)
                ):
                    committed.add(func.value.id)
        if calls_it and opened & committed:
            return True
    return False


def _opt_in_parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Parameters without a ``True`` default: a flag the caller must set."""
    arguments = function.args
    positional = [*arguments.posonlyargs, *arguments.args]
    defaults: dict[str, ast.expr | None] = dict.fromkeys(a.arg for a in positional)
    for argument, default in zip(
        positional[len(positional) - len(arguments.defaults) :], arguments.defaults, strict=True
    ):
        defaults[argument.arg] = default
    for argument, kw_default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True):
        defaults[argument.arg] = kw_default
    return {
        name
        for name, default in defaults.items()
        if not (isinstance(default, ast.Constant) and default.value is True)
    }


def _names_a(test: ast.expr, names: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in walk(test))


def _depends_target(expr: ast.expr | None) -> list[str] | None:
    """``get_user`` of ``Depends(get_user)`` (dotted parts)."""
    if not (isinstance(expr, ast.Call) and expr.args):
        return None
    called = _dotted(expr.func)
    if called is None or called[-1] not in ("Depends", "Security"):
        return None
    return _dotted(expr.args[0])


_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _own_nodes(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.AST]:
    """The function's nodes in source order, nested definitions left out (a list
    built in one loop: the index reads every function of the project)."""
    out: list[ast.AST] = []
    stack: list[ast.AST] = list(reversed(function.body))
    while stack:
        node = stack.pop()
        out.append(node)
        if not isinstance(node, _NESTED):
            stack.extend(reversed(child_nodes(node)))
    return out


def _bind(
    target: ast.expr | None, value: ast.expr, reader: _Reader, clients: dict[str, str]
) -> None:
    if isinstance(value, ast.Await):
        value = value.value
    if isinstance(target, ast.Name) and isinstance(value, ast.Call):
        parts = _dotted(value.func)
        if parts is not None:
            clients[target.id] = reader.qualify(parts)


def _call_name(
    func: ast.expr, reader: _Reader, clients: Mapping[str, str], held: Mapping[str, str]
) -> str | None:
    """The qualified name a call is matched against the slow list with:
    ``httpx.AsyncClient.get`` for ``client.get`` (``client`` built by
    ``httpx.AsyncClient(...)``), ``openai.AsyncOpenAI.chat.completions.create``
    for ``self.llm.chat.completions.create``."""
    parts = _dotted(func)
    if parts is None:
        return None
    head = parts[0]
    if head == "self" and len(parts) > 2 and parts[1] in held:
        return ".".join([held[parts[1]], *parts[2:]])
    if head in clients and len(parts) > 1:
        return ".".join([clients[head], *parts[1:]])
    return reader.qualify(parts)


def _callee(
    func: ast.expr, reader: _Reader, clients: Mapping[str, str], owner: str | None
) -> str | None:
    """The project function a call may reach, for propagation."""
    parts = _dotted(func)
    if parts is None:
        return None
    head = parts[0]
    if head in ("self", "cls") and owner is not None:
        if len(parts) == 2:
            return f"{owner}.{parts[1]}"
        if len(parts) == 3:
            return f"{owner}::{parts[1]}.{parts[2]}"
        return None
    if head in clients and len(parts) == 2:
        return f"{clients[head]}.{parts[1]}"
    return reader.qualify(parts)
