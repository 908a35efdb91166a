"""Scopes and bindings: a light, flow-insensitive replacement for libcst's
``ScopeProvider``/``QualifiedNameProvider``.

Each scope (module, class, function, lambda) is scanned once, statement by
statement, when the walk enters it; expressions are not walked. That is enough to
know every name a scope binds and how (import, assignment, parameter, def), which
is what qualified-name resolution needs, at a fraction of libcst's metadata cost
(``QualifiedNameProvider`` costs 8x the parse: docs/architecture.md, "What the
walk costs"). Tests compare the answers with ``QualifiedNameProvider`` for every
import style.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import libcst as cst


class BindingKind(enum.Enum):
    IMPORT = "import"
    ASSIGNMENT = "assignment"  # ``x = value`` / ``x: T = value``
    WITH = "with"  # ``with value as x`` / ``async with value as x``
    FOR = "for"
    PARAM = "param"
    DEF = "def"
    CLASS = "class"
    OTHER = "other"  # except-as, augmented assignment, unpacking, walrus, …


@dataclass(frozen=True, eq=False)
class Binding:
    name: str
    kind: BindingKind
    node: cst.CSTNode  # the statement, parameter or item that binds
    qualified_name: str | None = None  # for imports
    value: cst.BaseExpression | None = None  # assignment value / with-item context
    annotation: cst.BaseExpression | None = None
    is_async_with: bool = False


class ScopeKind(enum.Enum):
    MODULE = "module"
    CLASS = "class"
    FUNCTION = "function"
    LAMBDA = "lambda"


@dataclass(eq=False)
class Scope:
    kind: ScopeKind
    node: cst.CSTNode
    parent: Scope | None
    bindings: dict[str, list[Binding]] = field(default_factory=dict)
    global_names: set[str] = field(default_factory=set)
    nonlocal_names: set[str] = field(default_factory=set)

    def add(self, binding: Binding) -> None:
        self.bindings.setdefault(binding.name, []).append(binding)

    @property
    def module(self) -> Scope:
        scope = self
        while scope.parent is not None:
            scope = scope.parent
        return scope

    def lookup(self, name: str) -> Sequence[Binding]:
        """Every binding ``name`` may refer to here, by Python's scoping rules
        (class bodies are skipped by nested functions)."""
        # Bindings made under ``global``/``nonlocal`` (``global S; from m import S``)
        # belong to the outer name: they count together with the outer bindings.
        carried: list[Binding] = []
        scope: Scope | None = self
        first = True
        while scope is not None:
            if first or scope.kind is not ScopeKind.CLASS:
                if name in scope.global_names and scope.parent is not None:
                    carried.extend(scope.bindings.get(name, ()))
                    return [*self.module.bindings.get(name, ()), *carried]
                if name in scope.bindings:
                    if name not in scope.nonlocal_names:
                        found = scope.bindings[name]
                        return [*found, *carried] if carried else found
                    carried.extend(scope.bindings[name])
            first = False
            scope = scope.parent
        return carried

    def enclosing_function(self) -> Scope | None:
        scope: Scope | None = self
        while scope is not None and scope.kind not in (ScopeKind.FUNCTION, ScopeKind.LAMBDA):
            scope = scope.parent
        return scope


# -- building scopes -----------------------------------------------------------


def dotted_name(node: cst.BaseExpression | None) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    # Exact types (no parsed node is of a subclass of these): ``isinstance`` on a
    # libcst class goes through ``ABCMeta``, and this runs for most calls.
    if type(node) is cst.Name:
        return node.value
    parts: list[str] = []
    while type(node) is cst.Attribute:
        parts.append(node.attr.value)
        node = node.value
    if type(node) is cst.Name:
        parts.append(node.value)
        return ".".join(reversed(parts))
    return None


def strip_await(expr: cst.BaseExpression) -> cst.BaseExpression:
    """``await x`` -> ``x``; anything else as it is."""
    return expr.expression if type(expr) is cst.Await else expr


def _import_module_name(node: cst.ImportFrom) -> str:
    dots = "." * len(node.relative)
    module = dotted_name(node.module) if node.module is not None else ""
    return f"{dots}{module or ''}"


def _bind_target(
    scope: Scope,
    target: cst.BaseExpression,
    kind: BindingKind,
    stmt: cst.CSTNode,
    value: cst.BaseExpression | None = None,
    annotation: cst.BaseExpression | None = None,
    is_async_with: bool = False,
) -> None:
    if isinstance(target, cst.Name):
        scope.add(
            Binding(
                target.value,
                kind,
                stmt,
                value=value,
                annotation=annotation,
                is_async_with=is_async_with,
            )
        )
    elif isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            _bind_target(scope, element.value, BindingKind.OTHER, stmt)
    elif isinstance(target, cst.StarredElement):
        _bind_target(scope, target.value, BindingKind.OTHER, stmt)


def _scan_small(scope: Scope, stmt: cst.BaseSmallStatement) -> None:
    # Exact types: ``isinstance`` on a libcst class goes through ``ABCMeta``.
    if type(stmt) is cst.Import:
        for alias in stmt.names:
            full = dotted_name(alias.name) or ""
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                scope.add(
                    Binding(alias.asname.name.value, BindingKind.IMPORT, stmt, qualified_name=full)
                )
            else:
                top = full.split(".", 1)[0]
                scope.add(Binding(top, BindingKind.IMPORT, stmt, qualified_name=top))
    elif type(stmt) is cst.ImportFrom:
        if isinstance(stmt.names, cst.ImportStar):
            return
        module = _import_module_name(stmt)
        for alias in stmt.names:
            name = dotted_name(alias.name) or ""
            bound = name
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                bound = alias.asname.name.value
            sep = "" if module.endswith(".") else "."
            scope.add(
                Binding(bound, BindingKind.IMPORT, stmt, qualified_name=f"{module}{sep}{name}")
            )
    elif type(stmt) is cst.Assign:
        for target in stmt.targets:
            _bind_target(scope, target.target, BindingKind.ASSIGNMENT, stmt, value=stmt.value)
    elif type(stmt) is cst.AnnAssign:
        _bind_target(
            scope,
            stmt.target,
            BindingKind.ASSIGNMENT,
            stmt,
            value=stmt.value,
            annotation=stmt.annotation.annotation,
        )
    elif type(stmt) is cst.AugAssign:
        _bind_target(scope, stmt.target, BindingKind.OTHER, stmt)
    elif type(stmt) is cst.Global:
        scope.global_names.update(n.name.value for n in stmt.names)
    elif type(stmt) is cst.Nonlocal:
        scope.nonlocal_names.update(n.name.value for n in stmt.names)


def scan_statements(scope: Scope, body: Iterable[cst.CSTNode]) -> None:
    """Record the bindings of a block, descending into compound statements but not
    into nested functions and classes (they only bind their own name here)."""
    for stmt in body:
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                _scan_small(scope, small)
        elif isinstance(stmt, cst.FunctionDef):
            scope.add(Binding(stmt.name.value, BindingKind.DEF, stmt))
        elif isinstance(stmt, cst.ClassDef):
            scope.add(Binding(stmt.name.value, BindingKind.CLASS, stmt))
        elif isinstance(stmt, cst.BaseCompoundStatement):
            if isinstance(stmt, cst.For):
                _bind_target(scope, stmt.target, BindingKind.FOR, stmt)
            elif isinstance(stmt, cst.With):
                for item in stmt.items:
                    if item.asname is not None:
                        _bind_target(
                            scope,
                            item.asname.name,
                            BindingKind.WITH,
                            item,
                            value=item.item,
                            is_async_with=stmt.asynchronous is not None,
                        )
            elif isinstance(stmt, cst.Try | cst.TryStar):
                for handler in stmt.handlers:
                    if handler.name is not None and isinstance(handler.name.name, cst.Name):
                        scope.add(Binding(handler.name.name.value, BindingKind.OTHER, handler))
            scan_statements(scope, _blocks(stmt))


def _blocks(stmt: cst.BaseCompoundStatement) -> Iterator[cst.CSTNode]:
    """The statements of every block a compound statement owns (not nested scopes)."""
    for block in block_suites(stmt):
        yield from block


def block_suites(stmt: cst.BaseCompoundStatement) -> Iterator[Sequence[cst.CSTNode]]:
    """The statement list of each block a compound statement owns, in source order:
    its body (a ``match``'s cases), then ``elif``/``else`` blocks, handlers, a
    ``try``'s ``else`` and its ``finally``."""
    if isinstance(stmt, cst.Match):  # the only compound statement without a body of its own
        for case in stmt.cases:
            yield suite_statements(case.body)
        return
    yield suite_statements(stmt.body)
    if isinstance(stmt, cst.If):
        orelse: cst.If | cst.Else | None = stmt.orelse
        while orelse is not None:
            yield suite_statements(orelse.body)
            orelse = orelse.orelse if isinstance(orelse, cst.If) else None
    elif isinstance(stmt, (cst.For, cst.While)):
        if stmt.orelse is not None:
            yield suite_statements(stmt.orelse.body)
    elif isinstance(stmt, cst.Try | cst.TryStar):
        for handler in stmt.handlers:
            yield suite_statements(handler.body)
        if stmt.orelse is not None:
            yield suite_statements(stmt.orelse.body)
        if stmt.finalbody is not None:
            yield suite_statements(stmt.finalbody.body)


def suite_statements(body: cst.BaseSuite) -> Sequence[cst.CSTNode]:
    """A block's statements; a one-line suite's small statements as one line."""
    if isinstance(body, cst.IndentedBlock):
        return body.body
    if isinstance(body, cst.SimpleStatementSuite):
        # One-line suites hold small statements; wrap them so the scan sees a line.
        return (cst.SimpleStatementLine(body=body.body),)
    return ()


def _bind_params(scope: Scope, params: cst.Parameters) -> None:
    all_params: list[cst.Param] = [*params.posonly_params, *params.params, *params.kwonly_params]
    for extra in (params.star_arg, params.star_kwarg):
        if isinstance(extra, cst.Param):
            all_params.append(extra)
    for param in all_params:
        scope.add(
            Binding(
                param.name.value,
                BindingKind.PARAM,
                param,
                value=param.default,
                annotation=param.annotation.annotation if param.annotation else None,
            )
        )


def module_scope(module: cst.Module) -> Scope:
    scope = Scope(ScopeKind.MODULE, module, None)
    scan_statements(scope, module.body)
    return scope


def function_scope(node: cst.FunctionDef, parent: Scope) -> Scope:
    scope = Scope(ScopeKind.FUNCTION, node, parent)
    _bind_params(scope, node.params)
    scan_statements(scope, suite_statements(node.body))
    return scope


def lambda_scope(node: cst.Lambda, parent: Scope) -> Scope:
    scope = Scope(ScopeKind.LAMBDA, node, parent)
    _bind_params(scope, node.params)
    return scope


def class_scope(node: cst.ClassDef, parent: Scope) -> Scope:
    scope = Scope(ScopeKind.CLASS, node, parent)
    scan_statements(scope, suite_statements(node.body))
    return scope


def qualified_names(scope: Scope, node: cst.BaseExpression) -> frozenset[str]:
    """The import-qualified names ``node`` may stand for, e.g. ``sa.AsyncSession`` after
    ``import sqlalchemy.ext.asyncio as sa`` -> ``{"sqlalchemy.ext.asyncio.AsyncSession"}``.

    Names bound by anything other than an import resolve to nothing: a local class
    called ``AsyncSession`` is not SQLAlchemy's.
    """
    dotted = dotted_name(node)
    if dotted is None:
        return frozenset()
    head, _, rest = dotted.partition(".")
    out: set[str] = set()
    for binding in scope.lookup(head):
        if binding.kind is BindingKind.IMPORT and binding.qualified_name:
            qn = binding.qualified_name
            out.add(f"{qn}.{rest}" if rest else qn)
    return frozenset(out)


# -- where an expression is evaluated ----------------------------------------------
_COMPREHENSIONS = (cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp)


def scope_at(scope: Scope, ancestors: Sequence[cst.CSTNode]) -> Scope:
    """The scope an expression is evaluated in, given the innermost scope entered on
    the way down and the path to the expression (outermost first).

    A function's decorators, parameter defaults and annotations, and a class's
    decorators, bases and keywords, are evaluated in the *enclosing* scope, although
    the walk has already entered the function or class when it visits them.
    """
    while scope.parent is not None:
        owner = scope.node
        index = _index_of(ancestors, owner)
        if index is None or index + 1 >= len(ancestors):
            return scope  # not on the path, or the owner itself: keep the body's scope
        child = ancestors[index + 1]
        if isinstance(owner, (cst.FunctionDef, cst.ClassDef, cst.Lambda)) and child is owner.body:
            if isinstance(owner, cst.ClassDef) and _in_comprehension(ancestors[index + 1 :]):
                # Class-level names are invisible inside a comprehension in the body,
                # and so are those of enclosing classes.
                outer = scope.parent
                while outer.kind is ScopeKind.CLASS and outer.parent is not None:
                    outer = outer.parent
                return outer
            return scope
        scope = scope.parent
    return scope


def _in_comprehension(ancestors: Sequence[cst.CSTNode]) -> bool:
    return any(_inside_comprehension(ancestors, index) for index in range(len(ancestors)))


def _inside_comprehension(ancestors: Sequence[cst.CSTNode], index: int) -> bool:
    """Whether the path enters the comprehension at ``index`` somewhere other than its
    outermost iterable (which is evaluated in the enclosing scope)."""
    node = ancestors[index]
    if not isinstance(node, _COMPREHENSIONS):
        return False
    path = ancestors[index + 1 : index + 3]
    return not (len(path) == 2 and path[0] is node.for_in and path[1] is node.for_in.iter)


def comprehension_names(ancestors: Sequence[cst.CSTNode]) -> frozenset[str]:
    """Names bound by the ``for`` targets of the comprehensions around the end of the
    path (comprehensions are scopes of their own; their outermost iterable is
    evaluated outside)."""
    names: set[str] = set()
    for index, node in enumerate(ancestors):
        if not isinstance(node, _COMPREHENSIONS) or not _inside_comprehension(ancestors, index):
            continue
        comp_for: cst.CompFor | None = node.for_in
        while comp_for is not None:
            names.update(target_names(comp_for.target))
            comp_for = comp_for.inner_for_in
    return frozenset(names)


def target_names(target: cst.BaseExpression) -> Iterator[str]:
    if isinstance(target, cst.Name):
        yield target.value
    elif isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from target_names(element.value)
    elif isinstance(target, cst.StarredElement):
        yield from target_names(target.value)


def _index_of(nodes: Sequence[cst.CSTNode], node: cst.CSTNode) -> int | None:
    for index in range(len(nodes) - 1, -1, -1):
        if nodes[index] is node:
            return index
    return None
