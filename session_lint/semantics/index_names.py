"""What the project index says about the names of one file.

The index (``project_index``) knows qualified names across the project
(``app.db.get_session``); a file names them through its imports, relative ones
included, or defines them itself. This module turns a file's expressions into
those names, and answers the two questions rules ask: is this one of the
project's session types, and is this call one of its session factories.
"""

from __future__ import annotations

from collections.abc import Collection

import libcst as cst

from session_lint.core.context import FileContext
from session_lint.core.scopes import BindingKind, Scope, dotted_name
from session_lint.project.evidence import module_of
from session_lint.project.facts import ASYNC, COMMITS, NO_COMMIT, UNKNOWN

__all__ = ["ASYNC", "COMMITS", "NO_COMMIT", "UNKNOWN", "project_factory"]


def file_module(ctx: FileContext) -> tuple[str, bool]:
    """The dotted module name of the file being linted, and whether it is a package."""
    return module_of(ctx.relative_path)


def absolute(ctx: FileContext, qualified: str) -> str:
    """A qualified name with a relative import (``..db.get_session``) made absolute."""
    if not qualified.startswith("."):
        return qualified
    from session_lint.project.modules import absolute_import

    current, is_package = file_module(ctx)
    module, _, name = qualified.rpartition(".")
    return f"{absolute_import(module or '.', current, is_package)}.{name}"


def project_names(ctx: FileContext, expr: cst.BaseExpression, scope: Scope) -> frozenset[str]:
    """Absolute qualified names ``expr`` may stand for: through imports, or a
    module-level definition of this file (``this.module.name``)."""
    names = {absolute(ctx, q) for q in ctx.qualified_names(expr, scope)}
    dotted = dotted_name(expr)
    if dotted is not None:
        head = dotted.partition(".")[0]
        bindings = scope.lookup(head)
        module_bindings = scope.module.bindings.get(head, [])
        if bindings and bindings is module_bindings:
            if any(b.kind is not BindingKind.IMPORT for b in bindings):
                current, _ = file_module(ctx)
                names.add(f"{current}.{dotted}" if current else dotted)
    return frozenset(names)


def project_function(
    ctx: FileContext, func: cst.BaseExpression, names: Collection[str], scope: Scope
) -> str | None:
    """Which of ``names`` (qualified names of project functions, from the project
    index) ``func`` calls, if any."""
    if not names:
        return None
    found = sorted(project_names(ctx, func, scope).intersection(names))
    return found[0] if found else None


def project_session_type(
    ctx: FileContext, annotation: cst.BaseExpression, scope: Scope
) -> str | None:
    """``async``/``sync`` when ``annotation`` names one of the project's session
    types (a NewType, alias or re-export of SQLAlchemy's class)."""
    types = ctx.config.project.types
    if not types:
        return None
    for name in project_names(ctx, annotation, scope):
        kind = types.get(name)
        if kind is not None:
            return kind
    return None


def project_factory(ctx: FileContext, call: cst.Call, scope: Scope) -> tuple[str, str] | None:
    """(kind, transaction) when ``call`` opens a session through one of the
    project's factories: ``get_db()``, ``session_scope()``, ``self.async_session()``,
    ``self.async_session.begin()`` (kind: async/sync/unknown; transaction:
    commits/none/unknown, what the block does on exit)."""
    project = ctx.config.project
    func = call.func
    begins = isinstance(func, cst.Attribute) and func.attr.value == "begin" and not call.args
    target = func.value if begins and isinstance(func, cst.Attribute) else func
    if isinstance(target, cst.Attribute) and target.attr.value in project.attributes:
        kind, transaction = project.attributes[target.attr.value]
        return kind, COMMITS if begins else transaction
    for name in project_names(ctx, target, scope):
        found = project.factories.get(name)
        if found is not None:
            return (found[0], COMMITS) if begins else found
    if project.classes and isinstance(target, cst.Name):
        found = _factory_parameter(ctx, target.value, scope)
        if found is not None:
            return (found[0], COMMITS) if begins else found
    return None


def _factory_parameter(ctx: FileContext, name: str, scope: Scope) -> tuple[str, str] | None:
    """A parameter annotated with one of the project's factory classes
    (``db: DbSessionFactory``): calling it opens a session."""
    classes = ctx.config.project.classes
    for binding in scope.lookup(name):
        annotation = binding.annotation if binding.kind is BindingKind.PARAM else None
        while isinstance(annotation, cst.Subscript) and annotation.slice:
            element = annotation.slice[0].slice  # ``Optional[C]``
            annotation = element.value if isinstance(element, cst.Index) else None
        if isinstance(annotation, cst.BinaryOperation):  # ``C | None``
            annotation = annotation.left
        if annotation is None:
            continue
        for qualified in project_names(ctx, annotation, scope):
            if qualified in classes:
                return classes[qualified]
    return None
