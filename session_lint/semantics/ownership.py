"""Who owns a session: the function that opened it, a route handler that had it
injected, or nobody here (a borrowed session, received from a caller).

- A function *owns* a session it opens: ``async with get_session() as s``,
  ``async with factory() as s``, ``s = AsyncSession(...)``, ``s = factory()``.
- A *route handler* (a function decorated ``@router.get(...)``, ``@app.post(...)``,
  ``@router.api_route(...)`` … on a FastAPI/Starlette app or router) owns the
  session injected with ``Depends(...)`` (also ``Annotated[AsyncSession,
  Depends(get_db)]`` and aliases of it).
- Any other function *borrows* the sessions it receives: parameters annotated
  ``AsyncSession``/``Session`` or named as configured in ``session-names``, and
  ``self.<session-name>`` attributes. The caller owns the transaction.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import libcst as cst

from session_lint.core.context import FileContext
from session_lint.core.scopes import BindingKind, Scope
from session_lint.core.walker import children, subtree
from session_lint.project.facts import NO_COMMIT
from session_lint.semantics.index_names import project_names
from session_lint.semantics.sessions import (
    Origin,
    is_session,
    is_session_annotation,
    is_session_source,
    session_binding,
)

ROUTE_METHODS = frozenset(
    {
        "get",
        "post",
        "put",
        "patch",
        "delete",
        "head",
        "options",
        "trace",
        "api_route",
        "route",
        "websocket",
        "websocket_route",
    }
)
APP_CLASSES = frozenset(
    {
        "fastapi.FastAPI",
        "fastapi.APIRouter",
        "fastapi.applications.FastAPI",
        "fastapi.routing.APIRouter",
        "starlette.applications.Starlette",
        "starlette.routing.Router",
    }
)
DEPENDS = frozenset(
    {"fastapi.Depends", "fastapi.params.Depends", "fastapi.param_functions.Depends"}
)
FIXTURE_DECORATORS = frozenset({"pytest.fixture", "pytest_asyncio.fixture", "pytest.yield_fixture"})


class Ownership(enum.Enum):
    OWNED = "owned"  # opened by this function
    INJECTED = "injected"  # a route handler's Depends(...) session
    BORROWED = "borrowed"  # received from a caller


def _decorator_call(decorator: cst.Decorator) -> cst.Call | None:
    expr = decorator.decorator
    return expr if isinstance(expr, cst.Call) else None


def _is_app_object(ctx: FileContext, expr: cst.BaseExpression, scope: Scope) -> bool:
    """A FastAPI/Starlette app or router, or a name imported from elsewhere (the
    app module we cannot see; route decorators on imports are routers in practice)."""
    if isinstance(expr, cst.Call):
        return ctx.resolves_to(expr.func, APP_CLASSES, scope)
    if not isinstance(expr, cst.Name):
        return False
    bindings = scope.lookup(expr.value)
    if not bindings:
        return False
    for b in bindings:
        if b.kind is BindingKind.IMPORT:
            if b.qualified_name and b.qualified_name.split(".", 1)[0] in ("fastapi", "starlette"):
                return b.qualified_name in APP_CLASSES
            continue
        if b.kind is BindingKind.ASSIGNMENT and isinstance(b.value, cst.Call):
            if not ctx.resolves_to(b.value.func, APP_CLASSES, scope):
                return False
            continue
        return False
    return True


def is_route_handler(ctx: FileContext, function: cst.FunctionDef, scope: Scope) -> bool:
    """``scope`` is where the function is defined (where its decorators resolve)."""
    for decorator in function.decorators:
        call = _decorator_call(decorator)
        if (
            call is not None
            and isinstance(call.func, cst.Attribute)
            and call.func.attr.value in ROUTE_METHODS
            and _is_app_object(ctx, call.func.value, scope)
        ):
            return True
    return False


def is_test_code(ctx: FileContext, function: cst.FunctionDef, scope: Scope) -> bool:
    """pytest tests and fixtures own whatever transaction they set up."""
    return function.name.value.startswith("test_") or decorated_with(
        ctx, function, FIXTURE_DECORATORS, scope
    )


def decorated_with(
    ctx: FileContext, function: cst.FunctionDef, names: frozenset[str], scope: Scope
) -> bool:
    """A decorator of ``function``, called or not (``@cache``, ``@lru_cache(...)``),
    resolves to one of ``names``; ``scope`` is where the function is defined, where
    decorators are evaluated."""
    for decorator in function.decorators:
        expr = decorator.decorator
        target = expr.func if isinstance(expr, cst.Call) else expr
        if ctx.resolves_to(target, names, scope):
            return True
    return False


def _depends_call(ctx: FileContext, param: cst.Param, scope: Scope) -> cst.Call | None:
    """The ``Depends(...)`` a parameter is injected with: its default, or the
    metadata of its ``Annotated[...]`` annotation (followed through one alias)."""
    candidates: list[cst.BaseExpression] = []
    if param.default is not None:
        candidates.append(param.default)
    annotation = param.annotation.annotation if param.annotation else None
    if isinstance(annotation, cst.Name):
        for b in scope.lookup(annotation.value):
            if b.kind is BindingKind.ASSIGNMENT and b.value is not None:
                annotation = b.value
                break
    if isinstance(annotation, cst.Subscript):
        candidates.extend(
            e.slice.value for e in annotation.slice[1:] if isinstance(e.slice, cst.Index)
        )
    for candidate in candidates:
        if isinstance(candidate, cst.Call) and ctx.resolves_to(candidate.func, DEPENDS, scope):
            return candidate
    return None


def dependencies(ctx: FileContext, function: cst.FunctionDef, scope: Scope) -> dict[str, cst.Call]:
    """Every parameter injected with ``Depends(...)``: name -> the Depends call."""
    params = function.params
    return {
        param.name.value: depends
        for param in (*params.posonly_params, *params.params, *params.kwonly_params)
        if (depends := _depends_call(ctx, param, scope)) is not None
    }


def injected_sessions(
    ctx: FileContext, function: cst.FunctionDef, scope: Scope
) -> dict[str, cst.Call]:
    """Parameters that are sessions injected with ``Depends(...)``: name -> the Depends call.
    ``scope`` is the function's own scope."""
    out: dict[str, cst.Call] = {}
    params = function.params
    for param in (*params.posonly_params, *params.params, *params.kwonly_params):
        depends = _depends_call(ctx, param, scope)
        if depends is None:
            continue
        annotation = param.annotation.annotation if param.annotation else None
        if annotation is not None:
            if is_session_annotation(ctx, annotation, scope):
                out[param.name.value] = depends
        elif param.name.value in ctx.config.session_names:
            out[param.name.value] = depends
    return out


def dependency_manages_transaction(ctx: FileContext, depends: cst.Call) -> bool | None:
    """Whether the dependency behind ``Depends(get_db)`` begins or commits itself
    (then the handler's writes are committed for it): a function of this module
    that calls ``begin()`` or ``commit()``, or a project factory the index saw
    commit or begin on exit, or whose exit it could not see (a dependency that
    yields inside ``session.begin()`` raises ``A transaction is already begun``
    when the handler begins again). None when the dependency is not known."""
    if not depends.args:
        return None
    target = depends.args[0].value
    if isinstance(target, cst.Name):
        for b in ctx.scope.module.bindings.get(target.value, ()):
            if b.kind is BindingKind.DEF and isinstance(b.node, cst.FunctionDef):
                for sub in subtree(b.node.body):
                    if (
                        isinstance(sub, cst.Call)
                        and isinstance(sub.func, cst.Attribute)
                        and sub.func.attr.value in ("begin", "commit")
                    ):
                        return True
                return False
    factories = ctx.config.project.factories
    for name in project_names(ctx, target, ctx.scope.module):
        found = factories.get(name)
        if found is not None:
            return found[1] != NO_COMMIT
    return None


def ownership(
    ctx: FileContext, expr: cst.BaseExpression, function: cst.FunctionDef | None = None
) -> Ownership | None:
    """How the current function holds the session ``expr`` (None: not a session).
    ``ctx.scope`` must be the function's scope."""
    if not is_session(ctx, expr):
        return None
    if not isinstance(expr, cst.Name):
        # self.session: given to the object, unless the object opens it itself.
        return Ownership.OWNED if _opened_by_own_class(ctx, expr) else Ownership.BORROWED
    found = session_binding(ctx, expr.value)
    if found is None:
        return None
    _, origin = found
    if expr.value not in ctx.scope.bindings:
        return Ownership.BORROWED  # a closure over an outer function's session
    if origin is Origin.OPENED:
        return Ownership.OWNED
    function = function or ctx.function
    if function is not None and ctx.scope.parent is not None:
        if expr.value in injected_sessions(ctx, function, ctx.scope) and is_route_handler(
            ctx, function, ctx.scope.parent
        ):
            return Ownership.INJECTED
    return Ownership.BORROWED


def _opened_by_own_class(ctx: FileContext, expr: cst.BaseExpression) -> bool:
    """``self.session`` assigned a new session (``self.session = factory()``) in a
    method of the class that uses it."""
    if not isinstance(expr, cst.Attribute):
        return False
    function_scope = ctx.scope.enclosing_function()
    class_scope = function_scope.parent if function_scope is not None else None
    if class_scope is None or not isinstance(class_scope.node, cst.ClassDef):
        return False
    for node in subtree(class_scope.node.body):
        if isinstance(node, cst.Assign) and isinstance(node.value, cst.Call):
            if any(
                isinstance(t.target, cst.Attribute)
                and isinstance(t.target.value, cst.Name)
                and t.target.value.value == "self"
                and t.target.attr.value == expr.attr.value
                for t in node.targets
            ) and is_session_source(ctx, node.value, ctx.scope.module):
                return True
    return False


# -- how a name is used in a function ----------------------------------------------


class NameUse(enum.Enum):
    CLOSED = "closed"  # ``with name``, or ``name.close()`` in a ``finally``
    CLOSE_CALLED = "close-called"  # ``name.close()`` on the normal path only
    ESCAPES = "escapes"  # returned, passed on, stored, captured by a nested function
    YIELDED = "yielded"


_ESCAPE_PARENTS = (
    cst.Arg,
    cst.Return,
    cst.Element,
    cst.DictElement,
    cst.StarredElement,
    cst.StarredDictElement,
    cst.Assign,
    cst.AnnAssign,
    cst.AugAssign,
    cst.NamedExpr,
)


def name_uses(function: cst.FunctionDef, name: str) -> set[NameUse]:
    """How the body of ``function`` uses the local ``name`` (lexically)."""
    uses: set[NameUse] = set()
    stack: list[tuple[cst.CSTNode, int, bool]] = [(function.body, 0, False)]
    path: list[cst.CSTNode] = []
    while stack:
        current, depth, inner = stack.pop()
        del path[depth:]
        path.append(current)
        if isinstance(current, cst.Name) and current.value == name:
            _classify(path, uses, inner)
            continue
        inner_now = inner or isinstance(current, (cst.FunctionDef, cst.Lambda, cst.ClassDef))
        if isinstance(current, cst.Arg):
            kids: Sequence[cst.CSTNode] = [current.value]
        else:
            kids = children(current)
        stack.extend((kid, depth + 1, inner_now) for kid in reversed(kids))
    return uses


def _classify(path: Sequence[cst.CSTNode], uses: set[NameUse], nested: bool) -> None:
    node = path[-1]
    parent = path[-2] if len(path) > 1 else None
    if nested:
        uses.add(NameUse.ESCAPES)
        return
    if isinstance(parent, cst.WithItem) and parent.item is node:
        uses.add(NameUse.CLOSED)
    elif isinstance(parent, cst.Attribute) and parent.value is node:
        grand = path[-3] if len(path) > 2 else None
        if parent.attr.value == "close" and isinstance(grand, cst.Call):
            in_finally = any(isinstance(p, cst.Finally) for p in path)
            uses.add(NameUse.CLOSED if in_finally else NameUse.CLOSE_CALLED)
    elif isinstance(parent, cst.Yield):
        uses.add(NameUse.YIELDED)
    elif isinstance(parent, cst.AssignTarget) or (
        isinstance(parent, (cst.AnnAssign, cst.AugAssign)) and parent.target is node
    ):
        return  # (re)binding the name
    elif isinstance(parent, _ESCAPE_PARENTS):
        uses.add(NameUse.ESCAPES)
