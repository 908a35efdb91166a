"""Which expressions are sessions, session factories and engines.

Answers are computed from bindings (see ``scopes``), never from spelling alone,
except as docs/project-index.md ("Evidence before names") says: a parameter that cannot be resolved is a session
when annotated ``AsyncSession``/``Session`` or, failing an annotation, when named
as configured in ``session-names``.
"""

from __future__ import annotations

import enum

import libcst as cst

from session_lint.core.context import FileContext
from session_lint.core.prefilter import SESSION_SPELLINGS
from session_lint.core.scopes import Binding, BindingKind, Scope, strip_await
from session_lint.core.walker import children
from session_lint.known import (
    ASYNC_SESSION_CLASSES,
    ASYNC_SESSIONMAKERS,
    ENGINE_CONSTRUCTORS,
    SESSION_CLASSES,
    SESSIONMAKERS,
    SYNC_SESSION_CLASSES,
)
from session_lint.semantics.index_names import (
    ASYNC,
    NO_COMMIT,
    project_factory,
    project_session_type,
)


class Origin(enum.Enum):
    """How a function came to hold a session."""

    OPENED = "opened"  # built or opened here: the function owns it
    PARAMETER = "parameter"  # received: borrowed, unless a route handler's dependency


_MAX_DEPTH = 8  # bound on following ``a = b`` chains


def configured_factories(ctx: FileContext) -> frozenset[str]:
    """Qualified names of the configured session factories (``get_session`` …)."""
    return ctx.config.configured_factories


def is_session_factory(
    ctx: FileContext, expr: cst.BaseExpression, scope: Scope | None = None
) -> bool:
    """``async_sessionmaker(...)``/``sessionmaker(...)`` results, and names bound to them."""
    return _made_by(ctx, expr, SESSIONMAKERS, scope or ctx.scope, 0)


def _made_by(
    ctx: FileContext, expr: cst.BaseExpression, makers: frozenset[str], scope: Scope, depth: int
) -> bool:
    """A call of one of ``makers``, or a name every binding of which is one."""
    expr = strip_await(expr)
    if isinstance(expr, cst.Call):
        return ctx.resolves_to(expr.func, makers, scope)
    if isinstance(expr, cst.Name) and depth < _MAX_DEPTH:
        bindings = scope.lookup(expr.value)
        return bool(bindings) and all(
            b.kind is BindingKind.ASSIGNMENT
            and b.value is not None
            and _made_by(ctx, b.value, makers, scope, depth + 1)
            for b in bindings
        )
    return False


def is_session_source(
    ctx: FileContext, expr: cst.BaseExpression, scope: Scope | None = None
) -> bool:
    """An expression that *makes* a session: ``AsyncSession(...)``, ``factory()``,
    ``get_session()`` (the configured factories), ``factory.begin()``."""
    scope = scope or ctx.scope
    expr = strip_await(expr)
    if not isinstance(expr, cst.Call):
        return False
    func = expr.func
    if ctx.resolves_to(func, SESSION_CLASSES | configured_factories(ctx), scope):
        return True
    if isinstance(func, cst.Attribute) and func.attr.value == "begin":
        # ``factory.begin()``: a sessionmaker of this file, or one of the project's
        # factories (``from app.db import async_session``).
        return is_session_factory(ctx, func.value, scope) or is_project_session_factory(
            ctx, expr, scope
        )
    return is_session_factory(ctx, func, scope) or is_project_session_factory(ctx, expr, scope)


def may_end_transaction(
    ctx: FileContext, expr: cst.BaseExpression, scope: Scope | None = None
) -> bool:
    """Whether a session opened by ``expr`` may be committed for its user on exit:
    one of the project's factories that commits, begins, or does what the index
    cannot see (it wraps a factory from another package). Writes in its block are
    then not known to be lost."""
    expr = strip_await(expr)
    if not isinstance(expr, cst.Call):
        return False
    found = project_factory(ctx, expr, scope or ctx.scope)
    return found is not None and found[1] != NO_COMMIT


# Libraries whose "sessions" are not SQLAlchemy's (HTTP clients, cloud SDKs, ML runtimes…).
_NOT_SQLALCHEMY_ROOTS = frozenset(
    {
        "aiobotocore",
        "aiohttp",
        "aioredis",
        "asyncpg",
        "boto3",
        "botocore",
        "cassandra",
        "django",
        "fastapi",
        "flask",
        "grpc",
        "http",
        "httpx",
        "keras",
        "motor",
        "neo4j",
        "onnxruntime",
        "paramiko",
        "playwright",
        "psycopg",
        "psycopg2",
        "pymongo",
        "redis",
        "requests",
        "selenium",
        "sqlalchemy",
        "sqlmodel",
        "starlette",
        "tensorflow",
        "tornado",
        "torch",
        "urllib",
        "urllib3",
    }
)


def is_project_session_factory(
    ctx: FileContext, call: cst.Call, scope: Scope | None = None
) -> bool:
    """A call of one of the project's session factories. With a project index,
    only what the index proves (``semantics.project``). Without one (a snippet
    analysed on its own), a guess: a callable imported from a module that is not
    a known library, named like a session factory (``async_session()``,
    ``SessionLocal()``; not a ``...Maker``, which makes factories), called with no
    positional arguments (``object_session(obj)`` and the like look a session
    *up*)."""
    scope = scope or ctx.scope
    if ctx.config.project.scanned:
        return project_factory(ctx, call, scope) is not None
    func = call.func
    if not isinstance(func, cst.Name) or not any(t in func.value for t in SESSION_SPELLINGS):
        return False
    if "maker" in func.value.lower() or func.value.lower().endswith(("ids", "id")):
        return False
    if any(arg.keyword is None for arg in call.args):
        return False
    bindings = scope.lookup(func.value)
    if not bindings:
        return False
    for b in bindings:
        if b.kind is not BindingKind.IMPORT or not b.qualified_name:
            return False
        root = b.qualified_name.lstrip(".").split(".", 1)[0]
        if root in _NOT_SQLALCHEMY_ROOTS or b.qualified_name in configured_factories(ctx):
            return False
    return True


def is_async_session_source(
    ctx: FileContext, expr: cst.BaseExpression, scope: Scope | None = None
) -> bool:
    scope = scope or ctx.scope
    expr = strip_await(expr)
    if not isinstance(expr, cst.Call):
        return False
    if ctx.resolves_to(expr.func, ASYNC_SESSION_CLASSES | configured_factories(ctx), scope):
        return True
    found = project_factory(ctx, expr, scope)
    if found is not None:
        return found[0] == ASYNC
    target = (
        expr.func.value
        if isinstance(expr.func, cst.Attribute) and expr.func.attr.value == "begin"
        else expr.func
    )
    target = strip_await(target)
    if isinstance(target, cst.Call):
        return ctx.resolves_to(target.func, ASYNC_SESSIONMAKERS, scope) or _has_async_class_kw(
            ctx, target, scope
        )
    if isinstance(target, cst.Name):
        for b in scope.lookup(target.value):
            if (
                b.kind is BindingKind.ASSIGNMENT
                and isinstance(b.value, cst.Call)
                and (
                    ctx.resolves_to(b.value.func, ASYNC_SESSIONMAKERS, scope)
                    or _has_async_class_kw(ctx, b.value, scope)
                )
            ):
                return True
    return False


def _has_async_class_kw(ctx: FileContext, call: cst.Call, scope: Scope) -> bool:
    return any(
        a.keyword is not None
        and a.keyword.value == "class_"
        and ctx.resolves_to(a.value, ASYNC_SESSION_CLASSES, scope)
        for a in call.args
    )


def is_session_annotation(
    ctx: FileContext,
    annotation: cst.BaseExpression,
    scope: Scope | None = None,
    classes: frozenset[str] = SESSION_CLASSES,
    _depth: int = 0,
) -> bool:
    """``AsyncSession``, ``Session``, ``Optional[AsyncSession]``, ``AsyncSession | None``,
    ``Annotated[AsyncSession, Depends(...)]``, string forms of these, and names bound
    to one (``DbSession = Annotated[AsyncSession, Depends(get_db)]``). ``classes``
    narrows the session classes (e.g. to the async ones)."""
    scope = scope or ctx.scope
    if _depth > _MAX_DEPTH:
        return False
    if isinstance(annotation, cst.Subscript):
        head = annotation.value
        elements = [e.slice.value for e in annotation.slice if isinstance(e.slice, cst.Index)]
        if elements and (
            isinstance(head, (cst.Name, cst.Attribute))
            and head_name(head) in ("Annotated", "Optional")
        ):
            return is_session_annotation(ctx, elements[0], scope, classes, _depth + 1)
        return False
    if isinstance(annotation, cst.BinaryOperation) and isinstance(annotation.operator, cst.BitOr):
        return is_session_annotation(
            ctx, annotation.left, scope, classes, _depth + 1
        ) or is_session_annotation(ctx, annotation.right, scope, classes, _depth + 1)
    if isinstance(annotation, cst.SimpleString):
        text = annotation.evaluated_value
        if isinstance(text, bytes):
            return False
        try:
            parsed = cst.parse_expression(text)
        except cst.ParserSyntaxError:
            return False
        return is_session_annotation(ctx, parsed, scope, classes, _depth + 1)
    if ctx.resolves_to(annotation, classes, scope):
        return True
    kind = project_session_type(ctx, annotation, scope)
    if kind is not None:
        wanted = ASYNC_SESSION_CLASSES if kind == ASYNC else SYNC_SESSION_CLASSES
        return not classes.isdisjoint(wanted)
    if isinstance(annotation, cst.Name):
        # A type alias: ``DbSession = Annotated[AsyncSession, Depends(get_db)]``.
        return any(
            b.kind is BindingKind.ASSIGNMENT
            and b.value is not None
            and isinstance(b.value, (cst.Subscript, cst.Name, cst.Attribute, cst.BinaryOperation))
            and is_session_annotation(ctx, b.value, scope, classes, _depth + 1)
            for b in scope.lookup(annotation.value)
        )
    return False


def head_name(expr: cst.BaseExpression) -> str | None:
    if isinstance(expr, cst.Name):
        return expr.value
    if isinstance(expr, cst.Attribute):
        return expr.attr.value
    return None


def session_binding(
    ctx: FileContext, name: str, scope: Scope | None = None
) -> tuple[Binding, Origin] | None:
    """The binding that makes ``name`` a session here, and whether it was opened
    here or received as a parameter; None when ``name`` is not a session."""
    scope = scope or ctx.scope
    bindings = scope.lookup(name)
    if not bindings:
        return None
    for binding in bindings:
        if (
            binding.kind is BindingKind.WITH
            and binding.value is not None
            and is_session_source(ctx, binding.value, scope)
        ):
            return binding, Origin.OPENED
        if (
            binding.kind is BindingKind.ASSIGNMENT
            and binding.value is not None
            and is_session_source(ctx, binding.value, scope)
        ):
            return binding, Origin.OPENED
        if binding.kind is BindingKind.PARAM:
            if binding.annotation is not None:
                if is_session_annotation(ctx, binding.annotation, scope):
                    return binding, Origin.PARAMETER
                continue  # annotated as something else: not a session
            if name in ctx.config.session_names:
                return binding, Origin.PARAMETER
    return None


def is_session(ctx: FileContext, expr: cst.BaseExpression, scope: Scope | None = None) -> bool:
    """A name bound to a session, or ``self.<session-name>`` (a service's session)."""
    scope = scope or ctx.scope
    if isinstance(expr, cst.Name):
        return session_binding(ctx, expr.value, scope) is not None
    if (
        isinstance(expr, cst.Attribute)
        and isinstance(expr.value, cst.Name)
        and expr.value.value in ("self", "cls")
        and expr.attr.value in ctx.config.session_names
    ):
        return True
    return False


def is_engine(ctx: FileContext, expr: cst.BaseExpression, scope: Scope | None = None) -> bool:
    """``create_async_engine(...)``/``create_engine(...)`` results and names bound to them."""
    return _made_by(ctx, expr, ENGINE_CONSTRUCTORS, scope or ctx.scope, 0)


# -- connections and async sessions (flow rules) ---------------------------------

CONNECTION_CLASSES = frozenset(
    {
        "sqlalchemy.Connection",
        "sqlalchemy.engine.Connection",
        "sqlalchemy.engine.base.Connection",
        "sqlalchemy.ext.asyncio.AsyncConnection",
        "sqlalchemy.ext.asyncio.engine.AsyncConnection",
    }
)


def _is_engine_like(ctx: FileContext, expr: cst.BaseExpression, scope: Scope) -> bool:
    """An engine by binding, or an unresolvable name spelled ``engine``/``*_engine``
    (engines are usually imported from the engine module, which we cannot see)."""
    if is_engine(ctx, expr, scope):
        return True
    name = head_name(expr)
    if name is None or not name.lower().endswith("engine"):
        return False
    if isinstance(expr, cst.Name):
        return all(b.kind in (BindingKind.IMPORT, BindingKind.PARAM) for b in scope.lookup(name))
    return True


def is_connection_source(
    ctx: FileContext, expr: cst.BaseExpression, scope: Scope | None = None
) -> bool:
    """``engine.connect()``, ``engine.begin()`` and ``session.connection()``."""
    scope = scope or ctx.scope
    expr = strip_await(expr)
    if not isinstance(expr, cst.Call) or not isinstance(expr.func, cst.Attribute):
        return False
    method, receiver = expr.func.attr.value, expr.func.value
    if method in ("connect", "begin"):
        return _is_engine_like(ctx, receiver, scope)
    if method == "connection":
        return is_session(ctx, receiver, scope)
    return False


def is_connection(ctx: FileContext, expr: cst.BaseExpression, scope: Scope | None = None) -> bool:
    """A name bound to a SQLAlchemy connection (not a DB-API or asyncpg one)."""
    scope = scope or ctx.scope
    if not isinstance(expr, cst.Name):
        return False
    for b in scope.lookup(expr.value):
        if b.kind in (BindingKind.WITH, BindingKind.ASSIGNMENT) and b.value is not None:
            if is_connection_source(ctx, b.value, scope):
                return True
        elif b.kind is BindingKind.PARAM and b.annotation is not None:
            if ctx.resolves_to(b.annotation, CONNECTION_CLASSES, scope):
                return True
    return False


def is_async_session(
    ctx: FileContext, expr: cst.BaseExpression, scope: Scope | None = None
) -> bool:
    """A session known to be an ``AsyncSession``: opened with ``async with``, built by
    an async factory, or a parameter annotated ``AsyncSession``."""
    scope = scope or ctx.scope
    if not isinstance(expr, cst.Name):
        return False
    found = session_binding(ctx, expr.value, scope)
    if found is None:
        return False
    # Every binding must be an async session: a name bound from
    # ``async_sessionmaker(...)()`` in one branch and ``sessionmaker(...)()`` in
    # another is not known to be async, and awaiting its calls would break the
    # sync branch.
    return all(_binding_is_async(ctx, b, scope) for b in scope.lookup(expr.value))


def _binding_is_async(ctx: FileContext, binding: Binding, scope: Scope) -> bool:
    if binding.kind is BindingKind.WITH:
        # An AsyncSession cannot be entered with a plain ``with``.
        return binding.is_async_with
    if binding.kind is BindingKind.ASSIGNMENT:
        return binding.value is not None and is_async_session_source(ctx, binding.value, scope)
    if binding.kind is BindingKind.PARAM and binding.annotation is not None:
        return is_session_annotation(ctx, binding.annotation, scope, ASYNC_SESSION_CLASSES)
    return False


def known_async_session(
    ctx: FileContext, expr: cst.BaseExpression, scope: Scope | None = None
) -> bool:
    """An ``AsyncSession`` for certain: :func:`is_async_session`, or a session
    parameter without annotation whose methods the enclosing ``async def`` awaits
    (``await session.execute(...)`` elsewhere in it). What async-only rules act on."""
    scope = scope or ctx.scope
    if is_async_session(ctx, expr, scope):
        return True
    if isinstance(expr, cst.Attribute):
        return _async_attribute(ctx, expr, scope)
    if not isinstance(expr, cst.Name) or expr.value not in ctx.config.session_names:
        return False
    bindings = scope.lookup(expr.value)
    if not bindings or any(
        b.kind is not BindingKind.PARAM or b.annotation is not None for b in bindings
    ):
        return False
    function = scope.enclosing_function()
    node = function.node if function is not None else None
    if not isinstance(node, cst.FunctionDef) or node.asynchronous is None:
        return False
    return _awaits_method_of(node.body, expr.value)


def _awaits_method_of(body: cst.CSTNode, name: str) -> bool:
    stack: list[cst.CSTNode] = [body]
    while stack:
        node = stack.pop()
        if (
            isinstance(node, cst.Await)
            and isinstance(node.expression, cst.Call)
            and isinstance(node.expression.func, cst.Attribute)
            and isinstance(node.expression.func.value, cst.Name)
            and node.expression.func.value.value == name
        ):
            return True
        if isinstance(node, (cst.FunctionDef, cst.Lambda, cst.ClassDef)) and node is not body:
            continue
        stack.extend(children(node))
    return False


def _async_attribute(ctx: FileContext, expr: cst.Attribute, scope: Scope) -> bool:
    """``self.session`` where a method of the enclosing class assigns it an
    ``AsyncSession``: a parameter annotated so (``def __init__(self, session:
    AsyncSession): self.session = session``) or a session an async factory opens."""
    if not (isinstance(expr.value, cst.Name) and expr.value.value in ("self", "cls")):
        return False
    function = scope.enclosing_function()
    owner = function.parent if function is not None else None
    if owner is None or not isinstance(owner.node, cst.ClassDef):
        return False
    attribute = expr.attr.value
    for statement in owner.node.body.body:
        if not isinstance(statement, cst.FunctionDef):
            continue
        params = {
            p.name.value: p.annotation.annotation
            for p in (*statement.params.params, *statement.params.kwonly_params)
            if p.annotation is not None
        }
        stack: list[cst.CSTNode] = [statement.body]
        while stack:
            node = stack.pop()
            if isinstance(node, cst.Assign) and any(
                isinstance(t.target, cst.Attribute)
                and isinstance(t.target.value, cst.Name)
                and t.target.value.value == "self"
                and t.target.attr.value == attribute
                for t in node.targets
            ):
                value = node.value
                if isinstance(value, cst.Name) and value.value in params:
                    if is_session_annotation(
                        ctx, params[value.value], owner, ASYNC_SESSION_CLASSES
                    ):
                        return True
                elif is_async_session_source(ctx, value, owner):
                    return True
            if not isinstance(node, (cst.FunctionDef, cst.Lambda, cst.ClassDef)):
                stack.extend(children(node))
    return False


def scopefunc_of(call: cst.Call) -> cst.BaseExpression | None:
    """What a scoped session's registry is keyed by: ``scopefunc=`` or the second
    positional argument (``async_scoped_session`` and ``scoped_session`` alike)."""
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "scopefunc":
            return arg.value
    positional = [a for a in call.args if a.keyword is None and not a.star]
    return positional[1].value if len(positional) > 1 else None
