"""What a rule can ask about the file it is looking at, computed once per file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import libcst as cst

from session_lint.config import Config
from session_lint.finding import Fix
from session_lint.semantics.scopes import Scope, qualified_names

if TYPE_CHECKING:
    from session_lint.rules.base import Rule


@dataclass(frozen=True, eq=False)
class Report:
    """A finding before positions are known: rules report nodes, positions are
    computed afterwards for the reported nodes only."""

    rule: type[Rule]
    node: cst.CSTNode
    message: str
    fix: Fix | None


@dataclass(eq=False)
class FileContext:
    path: str
    config: Config
    module: cst.Module
    scope: Scope
    ancestors: list[cst.CSTNode]
    is_engine_module: bool
    reports: list[Report] = field(default_factory=list)

    # -- tree position -----------------------------------------------------
    @property
    def parent(self) -> cst.CSTNode | None:
        """The parent of the node being visited (valid inside ``visit_*``)."""
        return self.ancestors[-2] if len(self.ancestors) > 1 else None

    def ancestor_chain(self) -> Sequence[cst.CSTNode]:
        """Ancestors of the node being visited, innermost last, excluding the node."""
        return self.ancestors[:-1]

    @property
    def function(self) -> cst.FunctionDef | None:
        scope = self.scope.enclosing_function()
        return scope.node if scope is not None and isinstance(scope.node, cst.FunctionDef) else None

    @property
    def in_async_function(self) -> bool:
        function = self.function
        return function is not None and function.asynchronous is not None

    # -- names ---------------------------------------------------------------
    def qualified_names(
        self, node: cst.BaseExpression, scope: Scope | None = None
    ) -> frozenset[str]:
        return qualified_names(scope or self.scope, node)

    def resolves_to(
        self, node: cst.BaseExpression, names: frozenset[str], scope: Scope | None = None
    ) -> bool:
        return not qualified_names(scope or self.scope, node).isdisjoint(names)

    def is_bound_locally(self, name: str) -> bool:
        """Whether ``name`` is bound in the module scope by something other than an import."""
        return any(b.qualified_name is None for b in self.scope.module.bindings.get(name, ()))
