"""What a call in the file being linted does, from the project index's effect
summaries (session_lint/project/effects.py).

A call is resolved the way the index resolved calls between project functions:
through imports and this module's names, ``self.method`` (the enclosing class),
``self.<attr>.method`` (what ``__init__`` stored there), a local name bound to a
project class's instance or a parameter annotated with one, and module-level
instances. Anything else has no effect.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from session_lint.core.context import FileContext
from session_lint.core.scopes import BindingKind, Scope, ScopeKind
from session_lint.known import is_slow_call
from session_lint.semantics.index_names import absolute, file_module, project_names


@dataclass(frozen=True)
class CallEffect:
    function: str  # qualified name of the project function called
    slow: str  # the chain of the slow call it makes, "" when none
    commits: bool  # commits a session it receives
    rolls_back: bool  # rolls back a session it receives
    uses_db: bool  # runs a statement on a session it receives

    @property
    def name(self) -> str:
        return self.function.rsplit(".", 1)[-1]


def call_effect(ctx: FileContext, call: cst.Call, scope: Scope) -> CallEffect | None:
    """The effect of calling a project function, if the index knows one."""
    project = ctx.config.project
    if not project.effects:
        return None
    for name in candidates(ctx, call.func, scope):
        found = project.effect_of.get(name)
        if found is not None:
            return CallEffect(name, *found)
    return None


def expression_effect(
    ctx: FileContext, expr: cst.BaseExpression, scope: Scope
) -> CallEffect | None:
    """The effect of the project function ``expr`` names (``Depends(get_user)``'s
    ``get_user``), if the index knows one."""
    effect_of = ctx.config.project.effect_of
    for name in sorted(project_names(ctx, expr, scope)):
        found = effect_of.get(name)
        if found is not None:
            return CallEffect(name, *found)
    return None


def candidates(ctx: FileContext, func: cst.BaseExpression, scope: Scope) -> list[str]:
    """Qualified names ``func`` may call."""
    project = ctx.config.project
    names = sorted(project_names(ctx, func, scope))
    if not isinstance(func, cst.Attribute):
        return names
    method = func.attr.value
    value = func.value
    owner = enclosing_class(ctx, scope)
    if isinstance(value, cst.Name):
        if value.value in ("self", "cls") and owner is not None:
            names.append(f"{owner}.{method}")
        else:
            names += [f"{cls}.{method}" for cls in _classes_of(ctx, value.value, scope)]
    elif (
        isinstance(value, cst.Attribute)
        and isinstance(value.value, cst.Name)
        and value.value.value == "self"
        and owner is not None
    ):
        held = project.held.get((owner, value.attr.value))
        if held is not None:
            names.append(f"{held}.{method}")
    return names


def slow_name(ctx: FileContext, func: cst.BaseExpression, scope: Scope) -> str | None:
    """The slow call ``func`` makes directly, by the name the ``slow-calls`` list
    matches: through imports, the client a local name was built from or a
    parameter is annotated with (``client.get`` of ``httpx.AsyncClient``), and
    what ``__init__`` stored on ``self``."""
    patterns = ctx.config.slow_calls
    if not patterns:
        return None
    names = set(ctx.qualified_names(func, scope))
    parts: list[str] = []
    node: cst.BaseExpression = func
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    parts.reverse()
    if isinstance(node, cst.Name) and parts:
        if node.value == "self" and len(parts) > 1:
            owner = enclosing_class(ctx, scope)
            held = ctx.config.project.held.get((owner or "", parts[0]))
            if held is not None:
                names.add(".".join([held, *parts[1:]]))
        else:
            for origin in _origins(ctx, node.value, scope):
                names.update(".".join([q, *parts]) for q in ctx.qualified_names(origin, scope))
    return next((n for n in sorted(names) if is_slow_call(n, patterns)), None)


def _origins(ctx: FileContext, name: str, scope: Scope) -> list[cst.BaseExpression]:
    """What ``name`` was built from: a constructor it was assigned or entered
    from, or its parameter annotation."""
    out: list[cst.BaseExpression] = []
    for b in scope.lookup(name):
        value = b.value
        if isinstance(value, cst.Await):
            value = value.expression
        if b.kind in (BindingKind.WITH, BindingKind.ASSIGNMENT) and isinstance(value, cst.Call):
            out.append(value.func)
        elif b.kind is BindingKind.PARAM and b.annotation is not None:
            out.append(b.annotation)
    return out


def _classes_of(ctx: FileContext, name: str, scope: Scope) -> list[str]:
    """Project classes ``name`` may be an instance of."""
    project = ctx.config.project
    out: list[str] = []
    if project.instance_of:
        module, _ = file_module(ctx)
        for b in scope.lookup(name):
            if b.kind is BindingKind.IMPORT and b.qualified_name:
                qualified = absolute(ctx, b.qualified_name)
            elif b.kind is BindingKind.ASSIGNMENT:
                qualified = f"{module}.{name}"
            else:
                continue
            if qualified in project.instance_of:
                out.append(project.instance_of[qualified])
    for origin in _origins(ctx, name, scope):
        out += sorted(project_names(ctx, origin, scope))
    return out


def enclosing_class(ctx: FileContext, scope: Scope) -> str | None:
    """``app.repos.UserRepository`` for a method of that class."""
    current: Scope | None = scope
    while current is not None and current.kind is not ScopeKind.CLASS:
        if current.kind is ScopeKind.MODULE:
            return None
        current = current.parent
    if current is None or not isinstance(current.node, cst.ClassDef):
        return None
    module, _ = file_module(ctx)
    name = current.node.name.value
    return f"{module}.{name}" if module else name
