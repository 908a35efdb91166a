from __future__ import annotations

import libcst as cst

from session_lint.core.scopes import BindingKind
from session_lint.core.walker import children
from session_lint.finding import Applicability, Fix, FixAvailability
from session_lint.fixes.edits import with_entry, without_entries
from session_lint.project.dependencies import asyncpg_too_old_for_pooler
from session_lint.project.roles import ALL_ROLES
from session_lint.rules.base import Rule
from session_lint.semantics.mappings import Mapping, int_value, read_mapping, string_value
from session_lint.semantics.pooler import is_engine_call, pooler_expected

# Calls whose result differs on every call: a name built from them is never reused.
UNIQUE_SOURCES = frozenset(
    {
        "uuid.uuid1",
        "uuid.uuid4",
        "secrets.token_hex",
        "secrets.token_urlsafe",
        "secrets.token_bytes",
        "os.urandom",
        "random.random",
        "random.randint",
        "random.getrandbits",
        "random.choices",
        "time.time",
        "time.time_ns",
        "time.perf_counter",
        "time.perf_counter_ns",
        "time.monotonic",
        "time.monotonic_ns",
    }
)
_COUNTERS = frozenset({"itertools.count"})

_MESSAGE = (
    "`prepared_statement_name_func` returning unique names behind a transaction pooler: "
    "every name leaves a prepared statement on a server connection that transaction mode "
    "never resets (no `server_reset_query`); measured through pgbouncer: 216 -> 440 -> 665 "
    "-> 892 statements per server connection over four runs of 1,000 transactions. With "
    'asyncpg >= 0.32, `connect_args={"statement_cache_size": 0}` alone is correct and '
    "~30 % faster: drop the name function and `prepared_statement_cache_size`"
)

_UNKNOWN_ASYNCPG = (
    "; no fix: no dependency declaration was found, so the asyncpg version is unknown "
    "(the fix is right only from 0.32 on)"
)
_OLD_ASYNCPG = (
    "; no fix: this project keeps asyncpg below 0.32, where the name function is what "
    "makes it work behind the pooler: upgrade asyncpg first (SL207)"
)


class LeakyStatementNames(Rule):
    """
    ## What it does
    Finds `connect_args` with a `prepared_statement_name_func` that returns unique
    names (`lambda: f"__asyncpg_{uuid4()}__"`, the recipe in SQLAlchemy's asyncpg
    docs) when a transaction pooler is expected.

    ## Why is this bad?
    The recipe makes the pooler errors go away, and leaks instead: every unique
    name leaves a prepared statement on whichever server connection ran it, and a
    pooler in transaction mode never runs `server_reset_query` (`DISCARD ALL`)
    between clients. Measured through pgbouncer 1.18: 216, then 440, 665 and 892
    statements per server connection over four runs of 1,000 transactions, without
    bound, until the server connections are recycled. It is also slower: with
    asyncpg >= 0.32, `connect_args={"statement_cache_size": 0}` alone is correct
    (0 failures, 0 leaked statements) and ~30 % faster than the recipe, because
    asyncpg then uses unnamed statements. With the statement caches left on, the
    recipe fails outright (~62 %: `prepared statement "__asyncpg_<uuid>__" does not exist`).

    ## Known problems
    A pooler is expected when the `pooler` option is `"transaction"`, a database
    URL in the call or the file points at one (port 6543, a `pooler.supabase.com`
    host, `pgbouncer=true`), or `"statement_cache_size": 0` sits beside the name
    function, which shows the intent. Name functions defined in another module are
    not inspected.

    ## Example
    ```python
    from uuid import uuid4

    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        "postgresql+asyncpg://app@db/app",
        connect_args={
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": lambda: f"__asyncpg_{uuid4()}__",
        },
    )
    ```

    Use instead:
    ```python
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        "postgresql+asyncpg://app@db/app",
        connect_args={"statement_cache_size": 0},
    )
    ```

    ## Options
    - `pooler`: `"session"` or `"none"` turns the rule off.

    ## Where it runs
    Every role (`app`, `script`, `test`, `migration`): the pooler's server connections
    fill up with prepared statements whoever leaks them.

    ## Fix safety
    The fix removes `prepared_statement_name_func` and
    `prepared_statement_cache_size`, and makes sure `"statement_cache_size": 0` is
    there. It is unsafe: it changes how statements are prepared, and with asyncpg
    older than 0.32 that configuration fails ~65 % behind a pooler (require
    `asyncpg>=0.32`). It is not offered when the project's dependencies keep asyncpg
    below 0.32 (SL207 reports that), nor when no dependency declaration was found
    (the version that runs is then unknown). The now unused `uuid4` import is left to your
    import linter.

    ## References
    - SQLAlchemy: "Prepared Statement Name with PGBouncer" in the asyncpg dialect docs
    """

    code = "SL205"
    name = "leaky-statement-names"
    message = _MESSAGE
    fix_availability = FixAvailability.SOMETIMES
    roles = ALL_ROLES  # see ## Where it runs
    tokens = ("prepared_statement_name_func",)

    def visit_Dict(self, node: cst.Dict) -> None:
        self._check(read_mapping(self.ctx, node))

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Name) and node.func.value == "dict":
            self._check(read_mapping(self.ctx, node))

    def _check(self, mapping: Mapping | None) -> None:
        if mapping is None:
            return
        entry = mapping.get("prepared_statement_name_func")
        if entry is None or not self._unique(entry.value):
            return
        cache = mapping.get("statement_cache_size")
        intent = cache is not None and int_value(cache.value) == 0
        if self.ctx.config.pooler in ("session", "none"):
            return
        if not (intent or pooler_expected(self.ctx, self._engine_call())):
            return
        if asyncpg_too_old_for_pooler(self.ctx.config.project):
            # Before 0.32 the name function is what keeps the engine working behind
            # the pooler: removing it would fail ~65 % of transactions.
            self.report(entry.key_node, _MESSAGE + _OLD_ASYNCPG)
            return
        if not self.ctx.config.project.dependencies_known:
            # Which asyncpg runs is unknown: the fix is right only from 0.32 on.
            self.report(entry.key_node, _MESSAGE + _UNKNOWN_ASYNCPG)
            return
        new = without_entries(
            mapping, {"prepared_statement_name_func", "prepared_statement_cache_size"}
        )
        if not intent:
            rest = read_mapping(self.ctx, new)
            assert rest is not None
            new = with_entry(rest, "statement_cache_size", cst.Integer("0"))
        fix = Fix.replace(
            mapping.node,
            new,
            Applicability.UNSAFE,
            description='keep only connect_args={"statement_cache_size": 0}',
        )
        self.report(entry.key_node, fix=fix)

    def visit_Assign(self, node: cst.Assign) -> None:
        """``args["prepared_statement_name_func"] = lambda: f"__asyncpg_{uuid4()}__"``:
        a ``connect_args`` dict filled item by item, often in a helper that returns
        it. Reported without a fix: the dict's other items are not all in sight."""
        if len(node.targets) != 1 or not _is_item(
            node.targets[0].target, "prepared_statement_name_func"
        ):
            return
        if self.ctx.config.pooler in ("session", "none") or not self._unique(node.value):
            return
        if not (self._cache_off_nearby() or self._under_pooler_test() or pooler_expected(self.ctx)):
            return
        target = node.targets[0].target
        assert isinstance(target, cst.Subscript)
        index = target.slice[0].slice
        assert isinstance(index, cst.Index)
        self.report(index.value)

    def _cache_off_nearby(self) -> bool:
        """``statement_cache_size`` set to 0 in the same function (or module): the
        code means to run behind a transaction pooler."""
        function = self.ctx.function
        root: cst.CSTNode = function if function is not None else self.ctx.module
        stack = [root]
        while stack:
            node = stack.pop()
            if isinstance(node, cst.Assign) and any(
                _is_item(t.target, "statement_cache_size") for t in node.targets
            ):
                if int_value(node.value) == 0:
                    return True
            elif isinstance(node, cst.Dict):
                mapping = read_mapping(self.ctx, node)
                entry = mapping.get("statement_cache_size") if mapping else None
                if entry is not None and int_value(entry.value) == 0:
                    return True
            stack.extend(children(node))
        return False

    def _under_pooler_test(self) -> bool:
        """Inside ``if <pooler detected>:`` (the test names a pooler)."""
        for node in self.ctx.ancestor_chain():
            if isinstance(node, cst.If):
                test = self.ctx.module.code_for_node(node.test).lower()
                if any(word in test for word in ("pooler", "bouncer", "supavisor", "6543")):
                    return True
        return False

    def _engine_call(self) -> cst.Call | None:
        for node in reversed(self.ctx.ancestor_chain()):
            if isinstance(node, cst.Call) and is_engine_call(self.ctx, node):
                return node
        return None

    def _unique(self, value: cst.BaseExpression) -> bool:
        """Whether the name function's body calls something that differs per call."""
        body: cst.CSTNode | None = None
        if isinstance(value, cst.Lambda):
            body = value.body
        elif isinstance(value, cst.Name):
            bindings = self.ctx.scope.lookup(value.value)
            if len(bindings) == 1:
                binding = bindings[0]
                if binding.kind is BindingKind.DEF:
                    body = binding.node
                elif binding.kind is BindingKind.ASSIGNMENT and isinstance(
                    binding.value, cst.Lambda
                ):
                    body = binding.value.body
        return body is not None and self._calls_unique_source(body)

    def _calls_unique_source(self, root: cst.CSTNode) -> bool:
        stack = [root]
        while stack:
            node = stack.pop()
            if isinstance(node, cst.Call):
                if self.ctx.resolves_to(node.func, UNIQUE_SOURCES):
                    return True
                if (
                    isinstance(node.func, cst.Name)
                    and node.func.value == "next"
                    and node.args
                    and self._is_counter(node.args[0].value)
                ):
                    return True
            stack.extend(children(node))
        return False

    def _is_counter(self, expr: cst.BaseExpression) -> bool:
        if isinstance(expr, cst.Call):
            return self.ctx.resolves_to(expr.func, _COUNTERS)
        if isinstance(expr, cst.Name):
            bindings = self.ctx.scope.lookup(expr.value)
            return (
                len(bindings) == 1
                and bindings[0].kind is BindingKind.ASSIGNMENT
                and isinstance(bindings[0].value, cst.Call)
                and self.ctx.resolves_to(bindings[0].value.func, _COUNTERS)
            )
        return False


def _is_item(target: cst.BaseExpression, key: str) -> bool:
    """``<name>["<key>"]``."""
    return (
        isinstance(target, cst.Subscript)
        and len(target.slice) == 1
        and isinstance(target.slice[0].slice, cst.Index)
        and string_value(target.slice[0].slice.value) == key
    )
