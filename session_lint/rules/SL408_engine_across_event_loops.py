from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import libcst as cst

from session_lint.core.context import FileContext
from session_lint.core.prefilter import Clause, Pattern, Token, clauses
from session_lint.core.scopes import BindingKind, Scope, ScopeKind, dotted_name, function_scope
from session_lint.core.walker import children, iter_nodes
from session_lint.known import ASYNC_ENGINE_CONSTRUCTORS
from session_lint.project.config import Config
from session_lint.project.effects import file_engine_reach
from session_lint.project.roles import APP_AND_SCRIPT
from session_lint.rules.base import Rule
from session_lint.semantics.effects import candidates
from session_lint.semantics.index_names import project_names

# Calls that run a coroutine on a new event loop, closed when they return.
_RUNNERS = frozenset({"asyncio.run", "asyncio.runners.run", "uvloop.run"})
_ANYIO_RUN = frozenset({"anyio.run"})
_UVLOOP_RUN = frozenset({"uvloop.run"})
_NEW_LOOP = frozenset(
    {"asyncio.new_event_loop", "asyncio.events.new_event_loop", "uvloop.new_event_loop"}
)
_ASYNC_TO_SYNC = frozenset({"asgiref.sync.async_to_sync", "asgiref.sync.AsyncToSync"})
_TO_THREAD = frozenset({"asyncio.to_thread", "asyncio.threads.to_thread"})
_PARTIAL = frozenset({"functools.partial"})
# Decorators of functions a worker runs once per job.
_TASK_DECORATORS = frozenset(
    {
        "celery.shared_task",
        "celery.task",
        "dramatiq.actor",
        "rq.decorators.job",
        "rq.job",
        "huey.contrib.djhuey.task",
        "huey.contrib.djhuey.db_task",
        "huey.contrib.djhuey.periodic_task",
    }
)
# ``@app.task``, ``@celery.task(bind=True)``, ``@huey.periodic_task(...)``,
# ``@broker.actor``: a method of a task queue's application object.
_TASK_METHODS = frozenset({"task", "periodic_task", "db_task", "actor"})
_THREAD = frozenset({"threading.Thread", "threading.Timer"})
# session_runtime (runtime/session_runtime/session.py) keeps its pooled engines in a
# module global for the process; ``dispose()`` closes them and forgets them.
_RUNTIME = "session_runtime"
_KNOWN_REACH: dict[str, tuple[str, bool]] = {
    **{
        f"{module}.{name}": (_RUNTIME, False)
        for module in (_RUNTIME, f"{_RUNTIME}.session")
        for name in ("get_session", "get_background_session", "get_engine", "get_background_engine")
    },
    **{f"{module}.dispose": ("", True) for module in (_RUNTIME, f"{_RUNTIME}.session")},
}
_OWN_ENGINE_WORDS = (_RUNTIME, *sorted({n.rsplit(".", 1)[1] for n in ASYNC_ENGINE_CONSTRUCTORS}))
_MAX_DEPTH = 4
_COMPREHENSIONS = (cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp)
_EXITS = (cst.Return, cst.Raise, cst.Break, cst.Continue)


class EngineAcrossEventLoops(Rule):
    """
    ## What it does
    Finds a coroutine run on a new event loop — `asyncio.run(job())`,
    `anyio.run(job)`, `loop.run_until_complete(job())` on a loop from
    `asyncio.new_event_loop()` in the same function, `async_to_sync(job)()`,
    `executor.submit(asyncio.run, job())` — where `job` reaches a pooled async
    engine shared by the whole process, and the call runs more than once:

    - in a Celery, Dramatiq, RQ or Huey task (`@app.task`, `@shared_task`,
      `@dramatiq.actor`, `@job`);
    - in a function the same file runs as a thread or executor target
      (`threading.Thread(target=...)`, `executor.submit(...)`,
      `loop.run_in_executor(...)`, `asyncio.to_thread(...)`);
    - in the body of a `for`/`while` loop or a comprehension;
    - after another such call in the same body whose coroutine reached the same
      engine (the later one is reported).

    The engine is a module-level `create_async_engine(...)` without
    `poolclass=NullPool`, a name built on one (an `async_sessionmaker(engine)`, a
    repository given it), a module-level instance of a class that builds one, a
    `global` engine a lazy getter fills, or what a cached function
    (`functools.cache`/`lru_cache`) builds; `session_runtime`'s `get_session()`,
    `get_background_session()` and `get_engine()` count too. The project index's
    effect summaries (docs/project-index.md) follow the coroutine through calls into
    other modules, so `job()` reaches the engine when anything it calls does.

    Not reported: a `NullPool` engine; an engine the coroutine creates itself; a
    coroutine that disposes the engine (`await engine.dispose()`, `session_runtime`'s
    `await dispose()`), which leaves no connection for the next loop; an engine to an SQLite URL literal (aiosqlite's
    connections are not tied to a loop); a single run — a module-level
    `asyncio.run(main())`, a `main()` function, an `if __name__ == "__main__":`
    block; `asyncio.get_event_loop().run_until_complete(...)` and a module-level
    loop, which are one long-lived loop per process.

    ## Why is this bad?
    A pooled engine keeps connections open after each use, and an asyncpg
    connection belongs to the event loop it was opened on. `asyncio.run` closes its
    loop when it returns; the next run checks the same connection out of the pool
    on a new loop, and its first statement fails (asyncpg 0.32, SQLAlchemy 2.1,
    through PgBouncer in transaction mode and directly):

    ```
    RuntimeError: Task <Task pending name='Task-8' coro=<job() running at ...>
    cb=[_run_until_complete_cb() at .../asyncio/base_events.py:180]> got Future
    <Future pending cb=[BaseProtocol._on_waiter_completed()]> attached to a different loop
    ```

    The run after that gets the same connection back and fails with
    `sqlalchemy.exc.InterfaceError: (sqlalchemy.dialects.postgresql.asyncpg.InterfaceError)
    cannot perform operation: another operation is in progress`. `pool_pre_ping=True`
    does not prevent the first failure. A worker process runs many tasks: every
    task the pool hands a connection of an earlier loop fails.

    `poolclass=NullPool` opens and closes a connection per checkout, so nothing
    outlives a loop; disposing the engine at the end of each run empties the pool
    the same way (both work run after run: tests/runtime/test_engine_across_loops.py);
    or run one long-lived event loop per worker process and submit coroutines to it.

    ## Known problems
    A function the rule cannot see running twice — a CLI command a user calls
    repeatedly in one process, a Flask view — is not reported. Decorators are
    matched by name: `@<anything>.task` is taken for a task queue's; thread and
    executor targets by the function's name within the file.

    ## Example
    ```python
    import asyncio

    from celery import shared_task
    from sqlalchemy import update
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from app.models import Order

    engine = create_async_engine("postgresql+asyncpg://app@db/app")
    async_session = async_sessionmaker(engine, expire_on_commit=False)


    async def _close_order(order_id: int) -> None:
        async with async_session() as session, session.begin():
            await session.execute(update(Order).where(Order.id == order_id).values(closed=True))


    @shared_task
    def close_order(order_id: int) -> None:
        asyncio.run(_close_order(order_id))
    ```

    Use instead:
    ```python
    import asyncio

    from celery import shared_task
    from sqlalchemy import update
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
    from sqlalchemy.pool import NullPool

    from app.models import Order

    # Each task runs on a new event loop: no connection may outlive it.
    engine = create_async_engine("postgresql+asyncpg://app@db/app", poolclass=NullPool)
    async_session = async_sessionmaker(engine, expire_on_commit=False)


    async def _close_order(order_id: int) -> None:
        async with async_session() as session, session.begin():
            await session.execute(update(Order).where(Order.id == order_id).values(closed=True))


    @shared_task
    def close_order(order_id: int) -> None:
        asyncio.run(_close_order(order_id))
    ```

    ## Where it runs
    `app` and `script` files, where workers and commands run. Not `test` files,
    where a test builds its own engines and loops, nor `migration` files: Alembic's
    `env.py` runs its coroutine once per command. `rule-roles` widens it
    (docs/roles.md).
    """

    code = "SL408"
    name = "engine-across-event-loops"
    message = (
        "`{runner}` runs `{coroutine}` on a new event loop {why}, and it reaches the pooled "
        "engine `{engine}`: the next run gets a connection opened on an earlier, closed loop "
        "(`RuntimeError: ... attached to a different loop`); give these runs a "
        "`poolclass=NullPool` engine, dispose the engine at the end of each run, or keep "
        "one event loop per process"
    )
    roles = APP_AND_SCRIPT  # see ## Where it runs
    tokens = ("asyncio", "anyio", "uvloop", "async_to_sync", "AsyncToSync")
    # Every runner is spelled so: ``asyncio.run`` (``uvloop.run``, ``anyio.run``,
    # ``runners.run``, also passed as a value: ``submit(asyncio.run, ...)``), a
    # module imported under another name (``import asyncio as aio``), ``run``
    # imported from one of them, ``run_until_complete``, ``async_to_sync``. The
    # words alone are in most async files (``asyncio``, ``run``).
    # Each pattern starts with a literal: it is searched for that first (core/prefilter.py).
    _RUNNER_WORDS: tuple[Token, ...] = (
        *(
            Pattern(rf"{module}\s*\.\s*run\b")
            for module in ("asyncio", "anyio", "uvloop", "runners")
        ),
        "run_until_complete",
        "async_to_sync",
        "AsyncToSync",
        Pattern(r"import\s+(?:asyncio|anyio|uvloop)\s+as\b"),
        Pattern(r"from\s+(?:asyncio|anyio|uvloop)[\w.]*\s+import\b[^;]*?\brun\b"),
    )
    # The engine may be in another module: the file itself need not mention SQLAlchemy.
    needs_evidence = False

    @classmethod
    def prefilter(cls, config: Config) -> tuple[Clause, ...]:
        if config.project.pooled_engines:
            return clauses(config, cls.tokens, cls._RUNNER_WORDS)
        # No pooled engine in the index: only session_runtime's engines, or one the
        # file builds itself (``_reach_of``), can be reached.
        return clauses(config, cls.tokens, cls._RUNNER_WORDS, _OWN_ENGINE_WORDS)

    def __init__(self, ctx: FileContext) -> None:
        super().__init__(ctx)
        self._reach_map: dict[str, tuple[str, bool]] | None = None
        self._targets: frozenset[str] | None = None
        # Runs seen so far, by the scope they are in: (call, ancestors, engine, disposes).
        self._runs: dict[int, list[tuple[cst.Call, list[cst.CSTNode], str, bool]]] = {}

    # -- the walk ---------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        found = self._runner(node)
        if found is None:
            return
        runner, coroutine = found
        scope = self.ctx.scope
        reached = self._reach(coroutine, scope, 0, set())
        if reached is None or not reached[0]:
            return
        engine, disposes = reached
        chain = list(self.ctx.ancestor_chain())
        runs = self._runs.setdefault(id(scope), [])
        # A run that disposes the engine leaves nothing for the next one; the run
        # after another that did not still gets that one's connection.
        why = None if disposes else self._repeated(node, chain, scope)
        if why is None:
            why = self._after_another(chain, runs, engine)
        runs.append((node, chain, engine, disposes))
        if why is None:
            return
        name = dotted_name(coroutine) or "the coroutine"
        self.report(
            node,
            self.message.format(runner=runner, why=why, coroutine=f"{name}()", engine=engine),
        )

    # -- which calls start a loop ---------------------------------------------------------
    def _runner(self, call: cst.Call) -> tuple[str, cst.BaseExpression] | None:
        """(the runner, the coroutine function it runs) for a call that runs a
        coroutine on a new event loop."""
        func = call.func
        positional = [a.value for a in call.args if a.keyword is None and not a.star]
        if self.ctx.resolves_to(func, _RUNNERS):
            label = "uvloop.run()" if self.ctx.resolves_to(func, _UVLOOP_RUN) else "asyncio.run()"
            return (label, _called(positional[0])) if positional else None
        if self.ctx.resolves_to(func, _ANYIO_RUN):
            return ("anyio.run()", self._unwrapped(positional[0])) if positional else None
        if isinstance(func, cst.Call) and self.ctx.resolves_to(func.func, _ASYNC_TO_SYNC):
            inner = [a.value for a in func.args if a.keyword is None and not a.star]
            return ("async_to_sync()", inner[0]) if inner else None
        if isinstance(func, cst.Attribute):
            method = func.attr.value
            if method == "run_until_complete" and positional and self._new_loop(func.value):
                return "run_until_complete()", _called(positional[0])
            # ``executor.submit(asyncio.run, job())``: a new loop in a worker thread.
            offset = {"submit": 0, "run_in_executor": 1}.get(method)
            if offset is not None and len(positional) > offset + 1:
                if self.ctx.resolves_to(positional[offset], _RUNNERS):
                    return f"{method}(asyncio.run, ...)", _called(positional[offset + 1])
        if self.ctx.resolves_to(func, _TO_THREAD) and len(positional) > 1:
            if self.ctx.resolves_to(positional[0], _RUNNERS):
                return "to_thread(asyncio.run, ...)", _called(positional[1])
        return None

    def _unwrapped(self, expr: cst.BaseExpression) -> cst.BaseExpression:
        """``job`` of ``functools.partial(job, ...)``."""
        if isinstance(expr, cst.Call) and self.ctx.resolves_to(expr.func, _PARTIAL) and expr.args:
            return expr.args[0].value
        return expr

    def _new_loop(self, expr: cst.BaseExpression) -> bool:
        """``asyncio.new_event_loop()``, or a name of the enclosing function bound
        only to one (a module-level loop is one loop for the process)."""
        if isinstance(expr, cst.Call):
            return self.ctx.resolves_to(expr.func, _NEW_LOOP)
        if not isinstance(expr, cst.Name) or self.ctx.scope.kind is not ScopeKind.FUNCTION:
            return False
        bindings = self.ctx.scope.bindings.get(expr.value, [])
        return bool(bindings) and all(
            b.kind is BindingKind.ASSIGNMENT
            and isinstance(b.value, cst.Call)
            and self.ctx.resolves_to(b.value.func, _NEW_LOOP)
            for b in bindings
        )

    # -- which engine the coroutine reaches -------------------------------------------
    def _reach(
        self, expr: cst.BaseExpression, scope: Scope, depth: int, seen: set[int]
    ) -> tuple[str, bool] | None:
        """(the pooled engine or "", whether it disposes one) for the function
        ``expr`` names: a function of this file (read here, nested ones included),
        or one the project index summarised."""
        if depth > _MAX_DEPTH:
            return None
        if isinstance(expr, cst.Name):
            local = _local_def(expr.value, scope)
            if local is not None:
                function, outer = local
                if id(function) in seen:
                    return None
                seen.add(id(function))
                return self._body_reach(function, outer, depth, seen)
        reach = self._reach_of()
        for name in candidates(self.ctx, expr, scope):
            found = reach.get(name)
            if found is not None:
                return found
        return None

    def _body_reach(
        self, function: cst.FunctionDef, outer: Scope, depth: int, seen: set[int]
    ) -> tuple[str, bool] | None:
        scope = function_scope(function, outer)
        reach = self._reach_of()
        engine = ""
        disposes = False
        for node in iter_nodes(function.body):  # nested scopes' insides left out
            if isinstance(node, cst.Call):
                func = node.func
                if (
                    isinstance(func, cst.Attribute)
                    and func.attr.value == "dispose"
                    and self._is_engine(func.value, scope)
                ):
                    disposes = True
                    continue
                # Otherwise a function's own ``dispose()`` (``session_runtime.dispose()``)
                # is known by what it reaches, as any call.
                found = self._reach(func, scope, depth + 1, seen)
                if found is not None:
                    engine = engine or found[0]
                    disposes = disposes or found[1]
            elif isinstance(node, (cst.Name, cst.Attribute)) and not engine:
                for name in project_names(self.ctx, node, scope):
                    hit = reach.get(name)
                    if hit is not None and hit[0]:
                        engine = hit[0]
                        break
        return (engine, disposes) if engine or disposes else None

    def _is_engine(self, expr: cst.BaseExpression, scope: Scope) -> bool:
        """The receiver of ``.dispose()`` (``engine``, ``db.engine``, ``get_engine()``)."""
        if isinstance(expr, cst.Call):
            expr = expr.func
        dotted = dotted_name(expr) or ""
        if "engine" in dotted.rsplit(".", 1)[-1].lower():
            return True
        reach = self._reach_of()
        return any(reach.get(n, ("", False))[0] for n in project_names(self.ctx, expr, scope))

    def _reach_of(self) -> dict[str, tuple[str, bool]]:
        """The index's summaries, plus this file's own (a file the index did not
        read: a new file, a snippet)."""
        if self._reach_map is None:
            source = self.ctx.source
            if source is None:
                source = self.ctx.module.code.encode(self.ctx.module.encoding, "surrogateescape")
            local = file_engine_reach(source, self.ctx.relative_path)
            self._reach_map = {**_KNOWN_REACH, **local, **self.ctx.config.project.reach_of}
        return self._reach_map

    # -- does the call run more than once ---------------------------------------------
    def _repeated(self, call: cst.Call, chain: list[cst.CSTNode], scope: Scope) -> str | None:
        inner = _inside(chain, scope.node)
        path = [*inner, call]
        for parent, child in itertools.pairwise(path):
            if isinstance(parent, (cst.For, cst.While)) and child is parent.body:
                return "in a loop"
            if isinstance(parent, _COMPREHENSIONS) and not isinstance(child, cst.CompFor):
                return "in a comprehension"
        function = scope.node
        if scope.kind is not ScopeKind.FUNCTION or not isinstance(function, cst.FunctionDef):
            return None
        outer = scope.parent
        assert outer is not None
        for decorator in function.decorators:
            expr = decorator.decorator
            if isinstance(expr, cst.Call):
                expr = expr.func
            if self.ctx.resolves_to(expr, _TASK_DECORATORS, outer) or (
                isinstance(expr, cst.Attribute) and expr.attr.value in _TASK_METHODS
            ):
                return f"on every call of the task `{function.name.value}`"
        if function.name.value in self._thread_targets():
            return (
                f"on every call of `{function.name.value}`, which runs in a thread or an executor"
            )
        return None

    def _after_another(
        self,
        chain: list[cst.CSTNode],
        runs: list[tuple[cst.Call, list[cst.CSTNode], str, bool]],
        engine: str,
    ) -> str | None:
        """Another run in the same body, before this one and on the same path (not
        in another branch of an ``if``/``try``, not followed by a ``return``),
        whose coroutine reached the same engine and left it undisposed."""
        for call, earlier, reached, disposes in runs:
            if reached != engine or disposes:
                continue
            common = 0
            while common < min(len(chain), len(earlier)) and chain[common] is earlier[common]:
                common += 1
            block = chain[common - 1] if common else None
            if not isinstance(block, (cst.IndentedBlock, cst.Module)):
                continue  # two branches of one statement, or one expression
            if _exits_after([*earlier[common - 1 :], call]):
                continue
            return "after an earlier run that reached the same engine"
        return None

    def _thread_targets(self) -> frozenset[str]:
        """Last names of functions the file runs in a thread or an executor:
        ``Thread(target=f)``, ``executor.submit(f, ...)``,
        ``loop.run_in_executor(None, f)``, ``asyncio.to_thread(f)``."""
        if self._targets is not None:
            return self._targets
        found: set[str] = set()
        module = self.ctx.scope.module
        for node in _all_calls(self.ctx.module):
            func = node.func
            target: cst.BaseExpression | None = None
            positional = [a.value for a in node.args if a.keyword is None and not a.star]
            if isinstance(func, cst.Attribute) and func.attr.value in ("submit", "run_in_executor"):
                index = 0 if func.attr.value == "submit" else 1
                target = positional[index] if len(positional) > index else None
            elif isinstance(func, (cst.Name, cst.Attribute)):
                names = self.ctx.qualified_names(func, module)
                if names & _THREAD or _last(func) in ("Thread", "Timer"):
                    target = next(
                        (a.value for a in node.args if a.keyword and a.keyword.value == "target"),
                        positional[1] if _last(func) == "Timer" and len(positional) > 1 else None,
                    )
                elif names & _TO_THREAD:
                    target = positional[0] if positional else None
            if isinstance(target, (cst.Name, cst.Attribute)):
                found.add(_last(target))
        self._targets = frozenset(found)
        return self._targets


def _called(expr: cst.BaseExpression) -> cst.BaseExpression:
    """``job`` of the coroutine ``job(...)``."""
    return expr.func if isinstance(expr, cst.Call) else expr


def _last(expr: cst.BaseExpression) -> str:
    if isinstance(expr, cst.Attribute):
        return expr.attr.value
    return expr.value if isinstance(expr, cst.Name) else ""


def _local_def(name: str, scope: Scope) -> tuple[cst.FunctionDef, Scope] | None:
    """The one function of this file ``name`` binds, and the scope it is defined in."""
    current: Scope | None = scope
    first = True
    while current is not None:
        if first or current.kind is not ScopeKind.CLASS:
            bindings = current.bindings.get(name)
            if bindings:
                if len(bindings) == 1 and bindings[0].kind is BindingKind.DEF:
                    node = bindings[0].node
                    if isinstance(node, cst.FunctionDef):
                        return node, current
                return None
        first = False
        current = current.parent
    return None


def _inside(chain: Sequence[cst.CSTNode], owner: cst.CSTNode) -> list[cst.CSTNode]:
    """The part of an ancestor chain below ``owner``."""
    for index in range(len(chain) - 1, -1, -1):
        if chain[index] is owner:
            return list(chain[index:])
    return list(chain)


def _exits_after(path: list[cst.CSTNode]) -> bool:
    """Whether, on the path from a block down to a call, a block below the first
    has a ``return``/``raise``/``break``/``continue`` after the statement that
    holds the call: the code after the outer statement does not run then."""
    for index in range(1, len(path) - 1):
        block = path[index]
        if not isinstance(block, cst.IndentedBlock):
            continue
        held = path[index + 1]
        position = next((i for i, s in enumerate(block.body) if s is held), None)
        if position is None:
            continue
        for statement in block.body[position + 1 :]:
            if isinstance(statement, cst.SimpleStatementLine) and any(
                isinstance(small, _EXITS) for small in statement.body
            ):
                return True
    return False


def _all_calls(module: cst.Module) -> Iterator[cst.Call]:
    stack: list[cst.CSTNode] = [module]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.Call):
            yield node
        stack.extend(children(node))
