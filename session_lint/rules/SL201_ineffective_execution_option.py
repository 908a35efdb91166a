from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst

from session_lint.finding import Applicability, Fix, FixAvailability, Replacement
from session_lint.fixes.edits import (
    call_without,
    delete_statement,
    without_entries,
    without_keyword,
)
from session_lint.known import (
    ENGINE_CONSTRUCTORS,
    SESSION_CLASSES,
    SESSIONMAKERS,
)
from session_lint.project.roles import ALL_ROLES
from session_lint.rules.base import Rule
from session_lint.semantics.execution_options import (
    DIALECT_EXECUTION_OPTIONS,
    PER_CALL_METHODS,
    Kind,
    Verdict,
    classify,
)
from session_lint.semantics.mappings import Entry, Mapping, keyword, read_mapping, statement_of

_DIALECT_OPTIONS = " and ".join(
    (
        ", ".join(f"`{o}`" for o in sorted(DIALECT_EXECUTION_OPTIONS)[:-1]),
        f"`{max(DIALECT_EXECUTION_OPTIONS)}`",
    )
)
_WHY = {
    Kind.DRIVER: (
        "`{key}` is a driver connect argument, not an execution option: SQLAlchemy "
        "silently ignores it here (measured behind pgbouncer: no effect). Set it once "
        'where the engine is built: `create_async_engine(url, connect_args={{"{key}": …}})`'
    ),
    Kind.ENGINE: (
        "`{key}` is an engine or session argument, not an execution option: SQLAlchemy "
        "silently ignores it here; pass it where the engine or session factory is built"
    ),
    Kind.INVENTED: (
        "`{key}` is not an execution option of SQLAlchemy or asyncpg: it is silently "
        "ignored and does not turn prepared statements off. Behind a transaction pooler "
        'the setting that does is `connect_args={{"statement_cache_size": 0}}` on the engine'
    ),
    Kind.TYPO: (
        "`{key}` is not an execution option (did you mean `{suggestion}`?): SQLAlchemy "
        "silently ignores unknown keys"
    ),
    Kind.DIALECT: (
        "`{key}` is not an execution option of any SQLAlchemy dialect (a dialect reads "
        f"only {_DIALECT_OPTIONS}): SQLAlchemy silently ignores it, and no pooler sees it"
    ),
    Kind.NO_PARAMETERS: (
        "`no_parameters` does not disable prepared statements: it only makes SQLAlchemy "
        "call `cursor.execute(sql)` without a parameter collection when there are no "
        "parameters (measured behind pgbouncer: no effect, still `prepared statement "
        '"__asyncpg_stmt_…__" does not exist`). The setting that works is '
        '`connect_args={{"statement_cache_size": 0}}` on the engine'
    ),
}
_FACTORY_MESSAGE = (
    "`execution_options=` on a session factory or session: SQLAlchemy 2.0 raises "
    "`TypeError: Session.__init__() got an unexpected keyword argument "
    "'execution_options'` when the first session is created (2.1 accepts it); set "
    "options per statement, or on the engine"
)


@dataclass(frozen=True, eq=False)
class _Finding:
    entry: Entry
    verdict: Verdict
    applicability: Applicability | None  # None: reported without a fix


class IneffectiveExecutionOption(Rule):
    """
    ## What it does
    Finds execution-option keys that SQLAlchemy silently ignores: driver connect
    arguments (`statement_cache_size`, `prepared_statement_cache_size`,
    `prepared_statement_name_func`, …), engine arguments (`pool_pre_ping`, …),
    made-up prepared-statement switches (`no_prepare`, `prepare`, `raw_sql`, …) and
    misspelt options, wherever execution options are given:
    `session.execute(..., execution_options={...})`, `.execution_options(...)` on
    statements, connections and engines, `update_execution_options(...)`,
    `create_async_engine(execution_options=...)`. Also finds `no_parameters` used as
    a prepared-statement switch, and `execution_options=` on `sessionmaker`,
    `async_sessionmaker` or a session constructor.

    ## Why is this bad?
    SQLAlchemy accepts any key as an execution option and passes none of these to
    the driver. Teams behind pgbouncer or Supavisor add
    `{"no_parameters": True, "statement_cache_size": 0}` to every query to stop
    `prepared statement "__asyncpg_stmt_5__" does not exist`; measured behind
    pgbouncer in transaction mode, these options change nothing: 59-66 % of
    transactions still fail. The only setting that works is
    `connect_args={"statement_cache_size": 0}` on the engine (asyncpg >= 0.32).
    `execution_options=` on a session factory is worse on SQLAlchemy 2.0: creating
    the first session raises
    `TypeError: Session.__init__() got an unexpected keyword argument 'execution_options'`.

    ## Known problems
    SQLAlchemy lets applications define their own execution options and read them
    in event hooks, so a key that is merely unknown is not reported: only keys that
    are recognisably a driver or engine setting, a made-up prepared-statement
    switch, a near-miss of a known option (`populate_exisiting`), or a dialect's
    prefix on an option that dialect does not have (`postgresql_expert_mode`, added
    "for Supavisor compatibility" in real code: the dialects read only
    `postgresql_readonly`, `postgresql_deferrable` and `sqlite_raw_colnames`; a
    project's own options carry no dialect name). `no_parameters`
    is reported only where it is clearly meant as a prepared-statement switch:
    beside another ineffective key, or engine-wide (engine options,
    `update_execution_options`, a session factory). Options passed as a variable
    or through `**kwargs` are not checked.

    ## Example
    ```python
    from sqlalchemy import select

    async def list_users(session):
        stmt = select(User)
        return await session.scalars(
            stmt, execution_options={"no_parameters": True, "statement_cache_size": 0}
        )
    ```

    Use instead:
    ```python
    from sqlalchemy import select

    async def list_users(session):
        stmt = select(User)
        return await session.scalars(stmt)
    ```
    with `connect_args={"statement_cache_size": 0}` where the engine is built (or
    `session_runtime.make_engine()`, which sets it behind a transaction pooler).

    ## Options
    - `extra-execution-options`: option names your own event hooks read; they are
      never reported.

    ## Where it runs
    Every role (`app`, `script`, `test`, `migration`): an option SQLAlchemy ignores does
    nothing in a test, a migration or a script either.

    ## Fix safety
    Removing a key SQLAlchemy ignores cannot change behaviour, so that fix is safe;
    an options dict, keyword or `.execution_options()` call left empty goes too (a
    bare `update_execution_options()` statement is deleted). Removing
    `no_parameters` is unsafe: it changes how the DBAPI `cursor.execute` is called
    for statements without parameters. Removing a made-up dialect option is unsafe
    too: an event hook of the project's could read it back. Misspelt options and
    `execution_options=` on
    a session factory that holds real options are reported without a fix.

    ## References
    - SQLAlchemy: `Connection.execution_options`, `Executable.execution_options`
    - asyncpg: `connect(statement_cache_size=...)`
    """

    code = "SL201"
    name = "ineffective-execution-option"
    message = "execution option that SQLAlchemy silently ignores"
    fix_availability = FixAvailability.SOMETIMES
    roles = ALL_ROLES  # see ## Where it runs
    tokens = ("execution_options",)

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if isinstance(func, cst.Attribute) and func.attr.value in (
            "execution_options",
            "update_execution_options",
        ):
            self._check_kwargs_site(node, engine_wide=func.attr.value == "update_execution_options")
        arg = keyword(node, "execution_options")
        if arg is None:
            return
        factory = self.ctx.resolves_to(func, SESSIONMAKERS | SESSION_CLASSES)
        if factory:
            self._check_factory(node, arg)
        elif self.ctx.resolves_to(func, ENGINE_CONSTRUCTORS):
            self._check_mapping_site(node, arg, engine_wide=True)
        elif isinstance(func, cst.Attribute) and func.attr.value in PER_CALL_METHODS:
            self._check_mapping_site(node, arg, engine_wide=False)

    # -- judging keys ------------------------------------------------------------
    def _judge(self, entries: Sequence[Entry], *, engine_wide: bool) -> list[_Finding]:
        extra = self.ctx.config.extra_execution_options
        verdicts = [(e, classify(e.key, extra)) for e in entries]
        cargo = any(
            v is not None and v.kind in (Kind.DRIVER, Kind.ENGINE, Kind.INVENTED)
            for _, v in verdicts
        )
        out: list[_Finding] = []
        for entry, verdict in verdicts:
            if verdict is None:
                continue
            if verdict.kind is Kind.NO_PARAMETERS:
                if not (cargo or engine_wide) or not _is_true(entry.value):
                    continue
                out.append(_Finding(entry, verdict, Applicability.UNSAFE))
            elif verdict.kind is Kind.TYPO:
                out.append(_Finding(entry, verdict, None))
            elif verdict.kind is Kind.DIALECT:
                # An event hook of the project's could read it: removing it is
                # only as safe as that is unlikely.
                out.append(_Finding(entry, verdict, Applicability.UNSAFE))
            else:
                out.append(_Finding(entry, verdict, Applicability.SAFE))
        return out

    def _message(self, verdict: Verdict, key: str) -> str:
        return _WHY[verdict.kind].format(key=key, suggestion=verdict.suggestion)

    def _report_all(
        self,
        findings: list[_Finding],
        build: dict[Applicability, Fix | None],
    ) -> None:
        for f in findings:
            fix = build.get(f.applicability) if f.applicability is not None else None
            self.report(f.entry.key_node, self._message(f.verdict, f.entry.key), fix=fix)

    @staticmethod
    def _removal_sets(findings: list[_Finding]) -> dict[Applicability, set[str]]:
        safe = {f.entry.key for f in findings if f.applicability is Applicability.SAFE}
        unsafe = safe | {f.entry.key for f in findings if f.applicability is Applicability.UNSAFE}
        return {Applicability.SAFE: safe, Applicability.UNSAFE: unsafe}

    # -- ``.execution_options(key=...)`` / ``.update_execution_options(key=...)`` ------
    def _check_kwargs_site(self, call: cst.Call, *, engine_wide: bool) -> None:
        entries = [
            Entry(a.keyword.value, a.keyword, a.value, a)
            for a in call.args
            if a.keyword is not None
        ]
        findings = self._judge(entries, engine_wide=engine_wide)
        if not findings:
            return
        build: dict[Applicability, Fix | None] = {}
        for applicability, keys in self._removal_sets(findings).items():
            build[applicability] = self._kwargs_fix(call, keys, applicability) if keys else None
        self._report_all(findings, build)

    def _kwargs_fix(
        self, call: cst.Call, keys: set[str], applicability: Applicability
    ) -> Fix | None:
        description = f"remove {', '.join(sorted(keys))}"

        def doomed(a: cst.Arg) -> bool:
            return a.keyword is not None and a.keyword.value in keys

        if not all(doomed(a) for a in call.args):
            new = call_without(call, doomed)
            return Fix.replace(call, new, applicability, description=description)
        ancestors = self.ctx.ancestor_chain()
        where = statement_of(ancestors, call) or _self_assignment(ancestors, call)
        if where is not None:
            edits = delete_statement(*where)
            if edits is None:
                return None
            return Fix(applicability, edits, description=description)
        func = call.func
        if not isinstance(func, cst.Attribute) or func.attr.value != "execution_options":
            return None  # ``x = engine.update_execution_options()`` stays
        receiver: cst.BaseExpression = func.value
        target: cst.CSTNode = call
        if ancestors and isinstance(ancestors[-1], cst.Await) and ancestors[-1].expression is call:
            # ``await conn.execution_options(...)`` returns the connection itself.
            target = ancestors[-1]
            if target.lpar:
                receiver = receiver.with_changes(lpar=target.lpar, rpar=target.rpar)
        elif call.lpar:
            receiver = receiver.with_changes(lpar=call.lpar, rpar=call.rpar)
        return Fix.replace(target, receiver, applicability, description=description)

    # -- ``execution_options={...}`` ----------------------------------------------
    def _check_mapping_site(self, call: cst.Call, arg: cst.Arg, *, engine_wide: bool) -> None:
        mapping = read_mapping(self.ctx, arg.value)
        if mapping is None:
            return
        findings = self._judge(mapping.entries, engine_wide=engine_wide)
        if not findings:
            return
        build: dict[Applicability, Fix | None] = {}
        for applicability, keys in self._removal_sets(findings).items():
            build[applicability] = (
                self._mapping_fix(call, mapping, keys, applicability) if keys else None
            )
        self._report_all(findings, build)

    def _mapping_fix(
        self, call: cst.Call, mapping: Mapping, keys: set[str], applicability: Applicability
    ) -> Fix:
        description = f"remove {', '.join(sorted(keys))}"
        if mapping.complete and mapping.keys() <= keys:
            new: Replacement = without_keyword(call, "execution_options")
            return Fix.replace(call, new, applicability, description=description)
        return Fix.replace(
            mapping.node, without_entries(mapping, keys), applicability, description=description
        )

    # -- ``async_sessionmaker(..., execution_options=...)`` ---------------------------
    def _check_factory(self, call: cst.Call, arg: cst.Arg) -> None:
        mapping = read_mapping(self.ctx, arg.value)
        findings = self._judge(mapping.entries, engine_wide=True) if mapping else []
        build: dict[Applicability, Fix | None] = {}
        if mapping is not None:
            for applicability, keys in self._removal_sets(findings).items():
                build[applicability] = (
                    self._mapping_fix(call, mapping, keys, applicability) if keys else None
                )
        factory_fix: Fix | None = None
        removable = {f.entry.key for f in findings if f.applicability is not None}
        if mapping is not None and mapping.complete and mapping.keys() <= removable:
            unsafe = any(f.applicability is Applicability.UNSAFE for f in findings)
            factory_fix = build[Applicability.UNSAFE if unsafe else Applicability.SAFE]
        assert arg.keyword is not None
        self.report(arg.keyword, _FACTORY_MESSAGE, fix=factory_fix)
        self._report_all(findings, build)


def _is_true(value: cst.BaseExpression) -> bool:
    """``no_parameters`` only does anything when true; ``False`` is left alone."""
    return not (isinstance(value, cst.Name) and value.value in ("False", "None"))


def _self_assignment(
    ancestors: Sequence[cst.CSTNode], call: cst.Call
) -> tuple[cst.SimpleStatementLine, cst.CSTNode] | None:
    """``conn = await conn.execution_options(...)`` alone on its line: once the
    options are gone the statement is ``conn = conn``, so it goes."""
    chain = list(ancestors)
    value: cst.CSTNode = call
    if chain and isinstance(chain[-1], cst.Await) and chain[-1].expression is call:
        value = chain.pop()
    if len(chain) < 3 or not isinstance(call.func, cst.Attribute):
        return None
    assign, line, block = chain[-1], chain[-2], chain[-3]
    if (
        isinstance(assign, cst.Assign)
        and assign.value is value
        and len(assign.targets) == 1
        and isinstance(assign.targets[0].target, cst.Name)
        and isinstance(call.func.value, cst.Name)
        and assign.targets[0].target.value == call.func.value.value
        and isinstance(line, cst.SimpleStatementLine)
        and len(line.body) == 1
        and isinstance(block, (cst.IndentedBlock, cst.Module))
    ):
        return line, block
    return None
