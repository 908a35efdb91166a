from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from session_lint.core.prefilter import SQLALCHEMY_IMPORT, Clause, clauses
from session_lint.core.scopes import BindingKind, Scope, ScopeKind
from session_lint.core.walker import SCOPE_TYPES, children, subtree
from session_lint.known import (
    ASYNC_ENGINE_CONSTRUCTORS,
    CACHE_DECORATORS,
    ENGINE_CONSTRUCTORS,
    SESSION_CLASSES,
    SESSIONMAKERS,
)
from session_lint.project.config import Config
from session_lint.project.roles import APP_ONLY
from session_lint.rules.base import Rule
from session_lint.semantics.index_names import project_function
from session_lint.semantics.ownership import decorated_with

# Calls that run a coroutine function once, as a program's entry point.
_ENTRY_RUNNERS = frozenset({"asyncio.run", "anyio.run", "trio.run", "uvloop.run"})
# Conventional one-shot entry points: run once per process, not per request.
_ENTRY_NAMES = frozenset({"main", "async_main"})


class EnginePerCall(Rule):
    """
    ## What it does
    Finds an engine (`create_async_engine(...)`, `create_engine(...)`) created
    inside a function or method and used there — connected to, begun, disposed,
    handed to a session or a local session factory — so that every call builds a
    new engine with a new pool.

    A function that hands the engine back (`return`/`yield` it, or a name bound to
    it) is a factory, not a finding: lifespans, fixtures and `get_engine()`
    helpers are called once. An engine stored in a `global`/`nonlocal` name or an
    attribute (`self.engine`, `app.state.engine`) is a lazy singleton, and a
    function cached with `functools.cache`, `functools.lru_cache`,
    `functools.cached_property` or `async_lru.alru_cache` builds it once.

    A call of such a factory is reported in its turn when it is made the same way:
    the project index (docs/project-index.md) knows the project's module-level
    functions, not cached, that build an engine and return it (`def make_engine():
    return create_async_engine(URL)`), in any module; a function that calls one and
    uses the engine there builds a pool per call. Called at module level, from a
    cached function, an entry point, or stored as a lazy singleton, it is called
    once and is not reported.

    An engine created per call and disposed by the function (`await
    engine.dispose()`) is also reported at the `dispose()` when a failure before it
    skips it: the dispose comes after the `async with` block, or after the `yield` of a
    context manager or a dependency, instead of in a `finally`. This holds even where
    the engine per call is deliberate (a worker that builds one per task, for a new
    event loop each time). A dispose in a `finally`, in an `except` handler, or
    registered as a callback (`stack.push_async_callback(engine.dispose)`) is on every
    path; a `poolclass=NullPool` engine connected only in `async with` blocks keeps no
    connection once a block ends, whatever happens after it; and a dispose before
    anything used the engine has nothing to leave behind (engines connect lazily).

    ## Why is this bad?
    An engine is a connection pool. Building one per call opens fresh connections
    (a TCP and authentication round trip, through the pooler too) on every call
    and throws the pool away afterwards; an engine that is never disposed keeps
    its connections open until the garbage collector finds it, and under load the
    process runs into the pooler's or server's connection limit
    (`QueuePool limit of size 5 overflow 10 reached` on the shared engine,
    `too many connections` on the server).

    A `dispose()` that a failure skips leaves the engine's pool, with its open
    connection, to the garbage collector, and the failure itself keeps it alive: the
    exception's traceback holds the function's frame, and so the engine, for as long
    as a logger, a retry loop or a task result holds the exception. Measured on
    PostgreSQL (`tests/runtime/test_engine_dispose_on_failure.py`): after a block on
    such an engine raises, `pg_stat_activity` still shows its connection while the
    caller holds the error; with the dispose in a `finally` it shows none. A worker
    that retries failed tasks leaves one pool behind per failed attempt.

    ## Known problems
    A function that really runs once — a script's entry point — looks the same as
    a request handler. Functions named `main`/`async_main`, functions passed to
    `asyncio.run(...)` in the same module and `test_*` functions are not reported;
    other one-shot functions need a `# noqa: SL103`. An engine the function
    disposes itself (`engine.dispose()`, usually in a `finally`) is not reported
    when it is synchronous in a plain `def`, or when its URL is built from the
    function's parameters: on the real-code corpus (`docs/corpus.md`) every such
    engine was start-up or tooling code (a migration lock, a version probe) run
    once, or a connection to a database the caller names (creating or dropping a
    per-dataset database, reading a loader's database), which no shared engine
    can serve. A disposed engine to the application's own database (a URL from
    settings or a constant) is still reported.

    ## Example
    ```python
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def count_users(url: str) -> int:
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            return await conn.scalar(text("SELECT count(*) FROM users"))
    ```

    Use instead:
    ```python
    from sqlalchemy import text
    from app.db import engine

    async def count_users() -> int:
        async with engine.connect() as conn:
            return await conn.scalar(text("SELECT count(*) FROM users"))
    ```

    ## Where it runs
    `app` files only, not `test`, `migration` or `script` ones: an engine per test, per
    migration or per script run is the point there, not a pool lost per request.
    `rule-roles` widens it (docs/roles.md).
    """

    code = "SL103"
    name = "engine-per-call"
    message = (
        "engine created on every call: each call builds a new connection pool and opens "
        "new connections; create the engine once (module level, an engine module, or a "
        "cached factory) and reuse it"
    )
    factory_message = (
        "`{factory}()` builds a new engine on every call, and it is called here on "
        "every call of this function: each builds a new connection pool and opens new "
        "connections; build the engine once and reuse it"
    )
    dispose_message = (
        "`dispose()` of an engine created on every call runs only when nothing before it "
        "fails: when the body raises, the engine and its pool are never disposed and their "
        "connections stay open until garbage collection; dispose it in a `finally`"
    )
    roles = APP_ONLY  # see ## Where it runs
    tokens = ("create_engine", "create_async_engine")
    requires = (SQLALCHEMY_IMPORT,)  # the names resolve only through such an import

    @classmethod
    def prefilter(cls, config: Config) -> tuple[Clause, ...]:
        # A call of one of the project's engine factories is a finding too.
        own = clauses(config, cls.tokens, *cls.requires)
        names = tuple(sorted({n.rsplit(".", 1)[-1] for n in config.project.engine_factories}))
        return (*own, (names,)) if names else own

    def visit_Call(self, node: cst.Call) -> None:
        scope = self.ctx.scope
        if scope.kind is not ScopeKind.FUNCTION or not isinstance(scope.node, cst.FunctionDef):
            return  # module level, a class body or a lambda (which returns its value)
        factory = None
        if not self.ctx.resolves_to(node.func, ENGINE_CONSTRUCTORS):
            factory = self._engine_factory(node.func, scope)
            if factory is None:
                return
        function = scope.node
        if self._runs_once(function, scope) or not self._used_locally(node, scope):
            return
        late = self._dispose_skipped_on_failure(node, function)
        if late is not None:
            self.report(late, self.dispose_message)
        if factory is not None:
            self.report(node, self.factory_message.format(factory=factory))
            return
        if self._disposed(node, function):
            return
        self.report(node)

    def _engine_factory(self, func: cst.BaseExpression, scope: Scope) -> str | None:
        """The last name of the project's engine factory ``func`` calls (the project
        index: a module-level function, not cached, that builds an engine and
        returns it)."""
        found = project_function(self.ctx, func, self.ctx.config.project.engine_factories, scope)
        return found.rsplit(".", 1)[-1] if found else None

    def _disposed(self, node: cst.Call, function: cst.FunctionDef) -> bool:
        """``engine = create_engine(...)`` that the function disposes itself, and
        either a synchronous engine in a plain ``def`` (in an asyncio application
        the request path is async: this is start-up or tooling code, a migration
        lock or a version probe, run once), or an engine to a database the caller
        names (its URL is built from the function's parameters: provisioning or
        reading another database, which no shared engine can serve)."""
        parent = self.ctx.parent
        if not (
            isinstance(parent, cst.Assign)
            and len(parent.targets) == 1
            and isinstance(parent.targets[0].target, cst.Name)
        ):
            return False
        name = parent.targets[0].target.value
        if not any(
            isinstance(call.func, cst.Attribute)
            and call.func.attr.value == "dispose"
            and isinstance(call.func.value, cst.Name)
            and call.func.value.value == name
            for call in (n for n in subtree(function.body) if isinstance(n, cst.Call))
        ):
            return False
        if function.asynchronous is None and not self.ctx.resolves_to(
            node.func, ASYNC_ENGINE_CONSTRUCTORS
        ):
            return True
        return _url_from_parameters(node, function)

    def _dispose_skipped_on_failure(
        self, node: cst.Call, function: cst.FunctionDef
    ) -> cst.Call | None:
        """The ``<engine>.dispose()`` call of ``engine = <node>`` that a failure before it
        skips: every dispose of the engine sits outside any ``finally`` and any ``except``
        handler, and no ``push_async_callback(engine.dispose)``-style callback registers
        it. ``None`` when the engine is not bound to a local name, is never disposed, or
        is a ``NullPool`` engine only connected in ``async with`` blocks (each block
        closes its connection, and such a pool keeps none)."""
        name = _assigned_name(self.ctx.parent, node)
        if name is None:
            return None
        disposes: list[cst.Call] = []
        used = False  # connected before a dispose: an engine opens connections lazily
        for _, parents in _name_uses(function.body, name):
            if not parents or parents[-1] is _NESTED:
                continue
            parent = parents[-1]
            if not (isinstance(parent, cst.Attribute) and parent.attr.value == "dispose"):
                used = True
                continue
            if not used:
                continue  # nothing ran on the engine yet: its pool holds nothing
            above = parents[-2] if len(parents) > 1 else None
            if not (isinstance(above, cst.Call) and above.func is parent):
                return None  # handed on as a callback (an exit stack, ``atexit``...)
            if any(
                isinstance(p, (cst.Finally, cst.ExceptHandler, cst.ExceptStarHandler))
                for p in parents
            ):
                return None
            disposes.append(above)
        if not disposes:
            return None
        if _null_pool(node) and not self._connected_outside_blocks(name, function):
            return None
        return disposes[0]

    def _connected_outside_blocks(self, name: str, function: cst.FunctionDef) -> bool:
        """Whether ``name.connect()``/``name.begin()`` is called other than as the
        context manager of a ``with`` item."""
        for _, parents in _name_uses(function.body, name):
            if len(parents) < 2 or parents[-1] is _NESTED:
                continue
            parent, call = parents[-1], parents[-2]
            if (
                isinstance(parent, cst.Attribute)
                and parent.attr.value in {"connect", "begin", "raw_connection"}
                and isinstance(call, cst.Call)
                and call.func is parent
                and not (len(parents) > 2 and isinstance(parents[-3], cst.WithItem))
            ):
                return True
        return False

    # -- once-only functions ---------------------------------------------------------
    def _runs_once(self, function: cst.FunctionDef, scope: Scope) -> bool:
        name = function.name.value
        if name in _ENTRY_NAMES or name.startswith("test_"):
            return True
        outer = scope.parent
        assert outer is not None
        # Decorators are evaluated in the enclosing scope, not the function's.
        if decorated_with(self.ctx, function, CACHE_DECORATORS, outer):
            return True
        return name in self._entry_functions()

    def _entry_functions(self) -> frozenset[str]:
        """Names passed to ``asyncio.run(f())``/``anyio.run(f)`` anywhere in the module
        (computed once per file, only when a candidate is found)."""
        cached: frozenset[str] | None = getattr(self, "_entries", None)
        if cached is not None:
            return cached
        found: set[str] = set()
        module = self.ctx.scope.module
        # A name resolves in the module scope only through a module-level import of
        # the runner or of a package above it: without one, no call can match.
        if not any(
            binding.kind is BindingKind.IMPORT
            and binding.qualified_name
            and _leads_to_runner(binding.qualified_name)
            for bindings in module.bindings.values()
            for binding in bindings
        ):
            self._entries = frozenset[str]()
            return self._entries
        for call in (n for n in subtree(self.ctx.module) if isinstance(n, cst.Call)):
            if not call.args:
                continue
            # The module scope is right for the usual ``if __name__ == "__main__"`` block.
            if not self.ctx.resolves_to(call.func, _ENTRY_RUNNERS, module):
                continue
            target = call.args[0].value
            if isinstance(target, cst.Call):
                target = target.func
            if isinstance(target, cst.Name):
                found.add(target.value)
        self._entries = frozenset(found)
        return self._entries

    # -- where the engine goes ----------------------------------------------------------
    def _used_locally(self, node: cst.Call, scope: Scope) -> bool:
        assert isinstance(scope.node, cst.FunctionDef)
        return self._stays_local(
            node, list(self.ctx.ancestor_chain()), scope, scope.node, _ENGINE, 0
        )

    def _stays_local(
        self,
        value: cst.BaseExpression,
        parents: list[cst.CSTNode],
        scope: Scope,
        function: cst.FunctionDef,
        kind: str,
        depth: int,
    ) -> bool:
        """Whether ``value`` (an engine, or a session factory built on it) stays inside
        this call of the function. Precision first: any use we cannot account for
        counts as an escape."""
        if depth > _MAX_DEPTH or not parents or parents[-1] is _NESTED:
            return False
        parent = parents[-1]
        grandparent = parents[-2] if len(parents) > 1 else None
        if isinstance(parent, cst.Attribute) and parent.value is value:
            # ``engine.connect()``, ``engine.dispose()``, ``factory.begin()``
            return grandparent is not None and _is_method_call(parent, grandparent)
        if kind == _FACTORY and isinstance(parent, cst.Call) and parent.func is value:
            return True  # ``factory()`` makes a session: sessions are per call anyway
        if kind == _ENGINE and isinstance(parent, cst.Arg) and parent.value is value:
            if not isinstance(grandparent, cst.Call):
                return False
            if self.ctx.resolves_to(grandparent.func, SESSION_CLASSES, scope):
                return True
            if self.ctx.resolves_to(grandparent.func, SESSIONMAKERS, scope):
                # ``async_sessionmaker(engine)``: local if the factory is.
                return self._stays_local(
                    grandparent, parents[:-2], scope, function, _FACTORY, depth + 1
                )
            return False
        if isinstance(parent, (cst.Assign, cst.AnnAssign)) and parent.value is value:
            targets = (
                [t.target for t in parent.targets]
                if isinstance(parent, cst.Assign)
                else [parent.target]
            )
            if len(targets) != 1 or not isinstance(targets[0], cst.Name):
                return False  # an attribute, a subscript, several names: stored somewhere
            name = targets[0].value
            if name in scope.global_names or name in scope.nonlocal_names:
                return False  # a lazy singleton
            uses = list(_name_uses(function.body, name))
            return bool(uses) and all(
                self._stays_local(use, chain, scope, function, kind, depth + 1)
                for use, chain in uses
            )
        # Anything else, a bare ``create_engine(url)`` included (a probe that never
        # connects: engines open connections lazily), is not ours to judge.
        return False


_ENGINE = "engine"
_FACTORY = "factory"
_MAX_DEPTH = 6


def _url_from_parameters(node: cst.Call, function: cst.FunctionDef) -> bool:
    """Whether the engine's URL (first argument or ``url=``) reads a parameter of
    ``function``, directly or through a local name assigned from one."""
    url = next((a.value for a in node.args if a.keyword is None), None)
    url = url or next(
        (a.value for a in node.args if a.keyword is not None and a.keyword.value == "url"), None
    )
    if url is None:
        return False
    params = function.params
    parameters = {
        p.name.value
        for p in (*params.posonly_params, *params.params, *params.kwonly_params)
    }
    read = {n.value for n in subtree(url) if isinstance(n, cst.Name)}
    if read & parameters:
        return True
    for statement in (n for n in subtree(function.body) if isinstance(n, cst.Assign)):
        if (
            any(isinstance(t.target, cst.Name) and t.target.value in read for t in statement.targets)
            and {n.value for n in subtree(statement.value) if isinstance(n, cst.Name)} & parameters
        ):
            return True
    return False


def _assigned_name(parent: cst.CSTNode | None, value: cst.Call) -> str | None:
    """``name`` in ``name = value`` / ``name: T = value``."""
    if isinstance(parent, cst.Assign) and len(parent.targets) == 1:
        target: cst.BaseExpression = parent.targets[0].target
    elif isinstance(parent, cst.AnnAssign) and parent.value is value:
        target = parent.target
    else:
        return None
    return target.value if isinstance(target, cst.Name) else None


def _null_pool(node: cst.Call) -> bool:
    """``poolclass=NullPool`` (by its last name: ``pool.NullPool`` too)."""
    for arg in node.args:
        if arg.keyword is not None and arg.keyword.value == "poolclass":
            value = arg.value
            last = value.attr.value if isinstance(value, cst.Attribute) else None
            last = value.value if isinstance(value, cst.Name) else last
            return last == "NullPool"
    return False


def _leads_to_runner(qualified_name: str) -> bool:
    """Whether a name imported as ``qualified_name`` (or an attribute of it) can be
    one of the entry runners."""
    return any(
        runner == qualified_name or runner.startswith(qualified_name + ".")
        for runner in _ENTRY_RUNNERS
    )


def _is_method_call(attribute: cst.Attribute, grandparent: cst.CSTNode) -> bool:
    return isinstance(grandparent, cst.Call) and grandparent.func is attribute


# Stands in for "inside a nested function, class or lambda" in a parent chain.
_NESTED = cst.Pass()


def _name_uses(body: cst.CSTNode, name: str) -> Iterator[tuple[cst.Name, list[cst.CSTNode]]]:
    """Every ``Name`` spelled ``name`` that reads the variable (not an attribute name,
    keyword, import alias, or an assignment/``del`` target), with its parent chain.
    Uses inside a nested scope end their chain with ``_NESTED``."""
    stack: list[tuple[cst.CSTNode, list[cst.CSTNode], bool]] = [(body, [], False)]
    while stack:
        node, parents, nested = stack.pop()
        if isinstance(node, cst.Name):
            if node.value == name and not _is_not_a_read(node, parents):
                yield node, [*parents, _NESTED] if nested else parents
            continue
        inner = nested or type(node) in SCOPE_TYPES
        chain = [*parents, node]
        stack.extend((child, chain, inner) for child in reversed(children(node)))


def _is_not_a_read(node: cst.Name, parents: list[cst.CSTNode]) -> bool:
    """``x.<name>``, ``f(<name>=…)``, ``def <name>``, ``<name> = …``, ``del <name>``…"""
    if not parents:
        return False
    parent = parents[-1]
    if isinstance(parent, cst.Attribute):
        return parent.attr is node
    if isinstance(parent, cst.Arg):
        return parent.keyword is node
    if isinstance(parent, (cst.FunctionDef, cst.ClassDef)):
        return parent.name is node
    if isinstance(parent, (cst.AssignTarget, cst.Del)):
        return parent.target is node
    if isinstance(parent, cst.AnnAssign):
        return parent.target is node
    return isinstance(parent, (cst.ImportAlias, cst.AsName, cst.NameItem))
