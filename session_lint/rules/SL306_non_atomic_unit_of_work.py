from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

import libcst as cst

from session_lint.core.context import FileContext
from session_lint.core.prefilter import Called, Clause, Whole, clauses
from session_lint.core.scopes import Scope, ScopeKind, block_suites, suite_statements
from session_lint.core.walker import iter_nodes
from session_lint.known import is_write_sql
from session_lint.project.config import Config
from session_lint.project.index import OPENER_WORDS
from session_lint.project.roles import APP_ONLY
from session_lint.rules.base import Rule
from session_lint.semantics.effects import call_effect
from session_lint.semantics.index_names import project_function
from session_lint.semantics.sessions import head_name, is_session
from session_lint.semantics.sql import is_text_call, literal_string

# A call of a committing helper, with the helper's qualified name.
_Call = tuple[cst.Call, str]
# Stands in for "something else happens here" in a function's sequence of calls.
_BREAK = None


class NonAtomicUnitOfWork(Rule):
    """
    ## What it does
    Finds a function that writes through two or more calls, one after the other,
    that each commit: project helpers that open a session of their own, write and
    commit (`async with async_session() as session: ...; await
    session.commit()`), and any call whose effect commits (the project index's
    effect summaries, docs/project-index.md): a repository method that commits the
    session it was given (`UserRepository.create()` doing `self.session.add(x);
    await self.session.commit()`), reached through `self.repo`, a local
    `repo = UserRepository(session)`, an import or inheritance.

    The project index (docs/project-index.md) learns the helpers: module-level
    functions that open a session from a factory (`factory()`, `factory.begin()`,
    a project factory that commits on exit, a method the index knows opens one:
    `db_engine.get_async_session()`), write through it (`add`, `delete`,
    `merge`, `execute` of an `insert`/`update`/`delete` or of write SQL) and commit
    it, and take no session from their caller (no parameter named or annotated as
    a session). The finding is the first call of the run, naming the helper and
    the number of calls.

    Calls count in a row within one block: the function's body (through `with`
    blocks and a `try` body), or one branch, loop body or handler, where both calls
    are made whenever the block runs. Calls in different branches do not add up.
    Reads on a session between two calls (`refresh()`, `get()`, a `select`, a
    repository method that only reads) do not separate them, but an `await` of
    anything else ends the run: a job that marks itself started, does its work
    and marks itself done commits in steps on purpose.

    ## Why is this bad?
    Each helper call is a transaction of its own. When the second call fails, the
    first has already committed: deleting a conversation through
    `delete_messages(id)` then `delete_conversation_row(id)` can leave the
    conversation without its messages, and a retry runs the first write again.
    The caller looks like one unit of work and is not; nothing rolls back the
    writes that came before the failure (`tests/runtime/test_non_atomic_unit_of_work.py`
    shows the first row staying committed through pgbouncer). Each call also
    checks out a connection and commits on its own: N round trips and N commits
    where one would do.

    ## Known problems
    Many libraries commit in their repository methods on purpose (active-record
    `create()`/`update()`); two such calls in a row are still two transactions,
    and the rule reports them. A call that is also slow (it waits on the
    network) is not counted: it is other work. Helpers whose factory's name says
    neither session, maker nor scope (`with get_db() as db`) are not known as
    helpers: the prefilter finds a file that defines a helper by those words. A helper that takes the caller's session through a
    parameter with another name, or through a global, is taken for one that opens
    its own only if it also opens one.

    ## Example
    ```python
    # index: this file
    from sqlalchemy import delete
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from app.db import engine
    from app.models import Conversation, Message

    async_session = async_sessionmaker(engine, expire_on_commit=False)


    async def delete_messages(conversation_id: int) -> None:
        async with async_session() as session:
            await session.execute(delete(Message).where(Message.conversation_id == conversation_id))
            await session.commit()


    async def delete_conversation_row(conversation_id: int) -> None:
        async with async_session.begin() as session:
            await session.execute(delete(Conversation).where(Conversation.id == conversation_id))


    async def delete_conversation(conversation_id: int) -> None:
        await delete_messages(conversation_id)
        await delete_conversation_row(conversation_id)
    ```

    Use instead:
    ```python
    # index: this file
    from sqlalchemy import delete
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from app.db import engine
    from app.models import Conversation, Message

    async_session = async_sessionmaker(engine, expire_on_commit=False)


    async def delete_messages(session: AsyncSession, conversation_id: int) -> None:
        await session.execute(delete(Message).where(Message.conversation_id == conversation_id))


    async def delete_conversation_row(session: AsyncSession, conversation_id: int) -> None:
        await session.execute(delete(Conversation).where(Conversation.id == conversation_id))


    async def delete_conversation(conversation_id: int) -> None:
        async with async_session.begin() as session:
            await delete_messages(session, conversation_id)
            await delete_conversation_row(session, conversation_id)
    ```
    (the helpers write through their caller's session, which commits once).

    The `# index: this file` line only tells this example's test that the
    helpers come from the file itself; in a project the index finds them in any
    module.

    ## Where it runs
    `app` files only: a test, a migration or a script that writes in steps is
    usually setting up or repairing data one step at a time. `rule-roles` widens
    it (docs/roles.md).
    """

    code = "SL306"
    name = "non-atomic-unit-of-work"
    message = (
        "`{helper}()` opens its own session and commits, and this call is the first of "
        "{count} such calls in a row: {count} transactions, so when a later one fails "
        "the earlier writes stay committed; open one session here, pass it to the "
        "helpers and commit once"
    )
    committing_message = (
        "`{helper}()` commits, and this call is the first of {count} committing calls "
        "in a row ({names}): {count} transactions, so when a later one fails the "
        "earlier writes stay committed; let them write without committing and commit "
        "once here"
    )
    roles = APP_ONLY  # see ## Where it runs
    # A call of a helper the index saw open a session is its own evidence of
    # SQLAlchemy: the file that makes it may import nothing of it.
    needs_evidence = False

    @classmethod
    def prefilter(cls, config: Config) -> tuple[Clause, ...]:
        # Only a call of one of the project's committing helpers can be a finding:
        # its name stands whole in the file (``clear`` is not in ``clear_cache``),
        # and the file imports it (its module's name is there too) or defines it
        # (then the file names the helper's factory: ``OPENER_WORDS``).
        helpers = config.project.committing_helpers
        names = tuple(Whole(name) for name in sorted(_last_names(config)))
        modules = {name.rsplit(".", 2)[-2] for name in helpers if name.count(".") >= 1}
        # A call whose effect commits (a repository method) is resolved through
        # ``self``, a local object or an import: only its own name is sure to be there.
        methods = tuple(
            Whole(name) for name in sorted(_committing_names(config) | _sql_helper_names(config))
        )
        # And a finding is a run of two such calls: two calls of these names.
        called = frozenset(
            _last_names(config) | _committing_names(config) | _sql_helper_names(config)
        )
        twice = (Called(called, 2),)
        return (
            *clauses(config, names, tuple(Whole(m) for m in sorted(modules)), twice),
            *clauses(config, names, OPENER_WORDS, twice),
            *(clauses(config, methods, twice) if methods else ()),
        )

    def __init__(self, ctx: FileContext) -> None:
        super().__init__(ctx)
        # Per function (by identity, the node kept alive): its runs of helper calls.
        self._runs_of: dict[int, tuple[cst.FunctionDef, list[list[_Call]]]] = {}

    def visit_Call(self, node: cst.Call) -> None:
        scope = self.ctx.scope
        if (
            scope.kind is not ScopeKind.FUNCTION
            or not isinstance(scope.node, cst.FunctionDef)
            or self._helper(node, scope) is None
        ):
            return
        for run in self._runs(scope.node, scope):
            if len(run) > 1 and run[0][0] is node:
                helper = run[0][1].rsplit(".", 1)[-1]
                helpers = self.ctx.config.project.committing_helpers
                if all(qualified in helpers for _, qualified in run):
                    self.report(node, self.message.format(helper=helper, count=len(run)))
                else:
                    names = ", ".join(f"`{q.rsplit('.', 1)[-1]}()`" for _, q in run)
                    self.report(
                        node,
                        self.committing_message.format(helper=helper, count=len(run), names=names),
                    )

    def _helper(self, call: cst.Call, scope: Scope) -> str | None:
        """The committing helper or committing call ``call`` makes (its qualified
        name), if any."""
        name = head_name(call.func)
        config = self.ctx.config
        if name in _last_names(config) and not self._handed_a_session(call, scope):
            # A helper handed the caller's session writes in the caller's transaction.
            found = project_function(self.ctx, call.func, config.project.committing_helpers, scope)
            if found is not None:
                return found
        if name in _sql_helper_names(config):
            found = project_function(self.ctx, call.func, frozenset(_sql_helpers(config)), scope)
            if found is not None and self._passes_write_sql(call, *_sql_helpers(config)[found]):
                return found
        if name in _committing_names(config):
            effect = call_effect(self.ctx, call, scope)
            if effect is not None and effect.commits and not effect.slow:
                return effect.function
        return None

    def _passes_write_sql(self, call: cst.Call, position: int, parameter: str) -> bool:
        """``execute_sql("DELETE FROM steps WHERE ...")``: the SQL the helper
        executes, given at the call, writes."""
        positional = [a for a in call.args if a.keyword is None and a.star == ""]
        given = next(
            (a.value for a in call.args if a.keyword and a.keyword.value == parameter), None
        )
        if given is None and 0 <= position < len(positional):
            given = positional[position].value
        if given is None:
            return False
        if isinstance(given, cst.Call) and is_text_call(self.ctx, given) and given.args:
            given = given.args[0].value
        text = literal_string(given)
        return text is not None and is_write_sql(text)

    def _handed_a_session(self, call: cst.Call, scope: Scope) -> bool:
        names = self.ctx.config.session_names
        return any(
            (a.keyword is not None and a.keyword.value in names)
            or is_session(self.ctx, a.value, scope)
            for a in call.args
        )

    def _reads(self, call: cst.Call, scope: Scope) -> bool:
        """A read that does not separate two committing calls: a statement on a
        session (``session.refresh(user)``, ``session.get(...)``, a ``select``) or a
        project call that only reads through a session it is given."""
        func = call.func
        if isinstance(func, cst.Attribute) and func.attr.value in _READ_METHODS:
            return is_session(self.ctx, func.value, scope)
        effect = call_effect(self.ctx, call, scope)
        return (
            effect is not None
            and effect.uses_db
            and not (effect.commits or effect.rolls_back or effect.slow)
        )

    def _runs(self, function: cst.FunctionDef, scope: Scope) -> list[list[_Call]]:
        """The function's runs of helper calls in a row (computed once per function)."""
        cached = self._runs_of.get(id(function))
        if cached is not None and cached[0] is function:
            return cached[1]
        runs: list[list[_Call]] = [[]]
        for item in self._sequence(function.body.body, scope, function.asynchronous is not None):
            if item is _BREAK:
                if runs[-1]:
                    runs.append([])
            else:
                runs[-1].append(item)
        self._runs_of[id(function)] = (function, runs)
        return runs

    def _sequence(
        self, body: Sequence[cst.CSTNode], scope: Scope, asynchronous: bool
    ) -> Iterator[_Call | None]:
        """The helper calls the statements make on every path, in order, with a
        break wherever something else may happen between two of them."""
        for statement in body:
            if isinstance(statement, cst.SimpleStatementLine):
                for small in statement.body:
                    yield from self._small(small, scope, asynchronous)
            elif isinstance(statement, cst.With):
                if statement.asynchronous is not None:
                    yield _BREAK  # entering and leaving await something else
                yield from self._sequence(suite_statements(statement.body), scope, asynchronous)
                if statement.asynchronous is not None:
                    yield _BREAK
            elif isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
                continue  # a definition runs nothing
            elif isinstance(statement, cst.BaseCompoundStatement):
                blocks = block_suites(statement)
                if isinstance(statement, cst.Try | cst.TryStar):
                    # The body continues the run; handlers, else and finally run
                    # on some paths only.
                    yield from self._sequence(next(blocks), scope, asynchronous)
                # A branch or a loop: each of its blocks is a sequence of its own
                # (two calls in one branch are both made when it runs), and none
                # continues the run around it.
                yield _BREAK
                for block in blocks:
                    yield from self._sequence(block, scope, asynchronous)
                    yield _BREAK

    def _small(
        self, small: cst.BaseSmallStatement, scope: Scope, asynchronous: bool
    ) -> Iterator[_Call | None]:
        """A helper call, a break, or nothing (``x = y + 1`` does no work)."""
        value: cst.BaseExpression | None = None
        if isinstance(small, (cst.Expr, cst.Assign, cst.AnnAssign, cst.Return)):
            value = small.value
        if isinstance(value, cst.Await):
            value = value.expression
        if isinstance(value, cst.Call):
            helper = self._helper(value, scope)
            if helper is not None and not _does_work(value.args, asynchronous):
                yield value, helper
                return
            if self._reads(value, scope) and not _does_work(value.args, asynchronous):
                return  # a read between two writes does not end the run
        if _does_work(small, asynchronous):
            yield _BREAK


# Session reads that leave a run of committing calls whole.
_READ_METHODS = frozenset({"refresh", "get", "get_one", "scalar", "scalars", "execute", "exec"})


@functools.lru_cache(maxsize=8)
def _sql_helpers(config: Config) -> dict[str, tuple[int, str]]:
    return {name: (position, parameter) for name, position, parameter in config.project.sql_helpers}


@functools.lru_cache(maxsize=8)
def _sql_helper_names(config: Config) -> frozenset[str]:
    return frozenset(name.rsplit(".", 1)[-1] for name in _sql_helpers(config))


@functools.lru_cache(maxsize=8)
def _committing_names(config: Config) -> frozenset[str]:
    """Last names of the project functions and methods whose effect commits."""
    return frozenset(
        name.rsplit(".", 1)[-1] for name, _, commits, *_ in config.project.effects if commits
    )


@functools.lru_cache(maxsize=8)
def _last_names(config: Config) -> frozenset[str]:
    """The helpers' own names (``delete_messages`` of ``app.crud.delete_messages``)."""
    return frozenset(name.rsplit(".", 1)[-1] for name in config.project.committing_helpers)


def _does_work(node: cst.CSTNode | Sequence[cst.CSTNode], asynchronous: bool) -> bool:
    """Whether ``node`` may wait on I/O: an ``await`` (``async for``/``async with``
    included) in a coroutine, any call in a plain function."""
    for root in node if isinstance(node, Sequence) else (node,):
        for sub in iter_nodes(root):
            if isinstance(sub, cst.Await):
                return True
            if isinstance(sub, (cst.For, cst.With)) and sub.asynchronous is not None:
                return True
            if not asynchronous and isinstance(sub, cst.Call):
                return True
    return False
