"""What a rule can ask about the file it is looking at, computed once per file."""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass, field

import libcst as cst

from session_lint.core.memo import StatementMemo
from session_lint.core.scopes import (
    BindingKind,
    Scope,
    comprehension_names,
    dotted_name,
    qualified_names,
    scope_at,
)
from session_lint.finding import Fix, Import
from session_lint.project.config import Config
from session_lint.project.dependencies import can_import_module, implied_by_import

_COMPREHENSION_TYPES = frozenset({cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp})
# Encodings in which a byte below 0x80 is always that ASCII character and an ASCII
# character is always that byte: an ASCII word is in the text iff it is in the bytes.
_ASCII_EXACT = frozenset({"utf-8", "utf-8-sig", "ascii", "iso8859-1"})


@dataclass(frozen=True, eq=False)
class PendingFinding:
    """A finding before positions are known: rules report nodes, positions are
    computed afterwards for the reported nodes only."""

    code: str  # the rule's
    name: str
    node: cst.CSTNode
    message: str
    fix: Fix | None
    # The top-level statement the walk was in: positions are computed for those only.
    top: cst.CSTNode | None = None


@dataclass(eq=False)
class FileContext:
    path: str
    config: Config
    module: cst.Module
    scope: Scope
    ancestors: list[cst.CSTNode]
    is_engine_module: bool
    reports: list[PendingFinding] = field(default_factory=list)
    source: bytes | None = None  # the bytes the module was parsed from, when known
    # Whether a URL literal of the file points at a transaction pooler; computed on
    # the first ask (``semantics.pooler.file_has_pooler_url``).
    pooler_url_in_file: bool | None = None
    # Per-statement results kept from the last analysis of this buffer (the language
    # server's; session_lint/core/memo.py), or None.
    memo: StatementMemo | None = None
    # The transactions each ``with`` block begins (``semantics.transactions``), by the
    # block's identity, the block kept alive.
    block_keys: dict[int, tuple[cst.With, list[str]]] = field(default_factory=dict, repr=False)
    _where_cache: tuple[cst.CSTNode | None, Scope, Scope, frozenset[str]] | None = field(
        default=None, repr=False
    )
    # Most rules resolve the same ``node.func`` in the same scope (~7 asks per
    # distinct pair on a service file). Keyed by identities; the entry keeps both
    # objects alive so an id cannot be reused while cached. Scopes are not changed
    # after they are built, so an answer never goes stale.
    _names_cache: dict[tuple[int, int], tuple[Scope, cst.BaseExpression, frozenset[str]]] = field(
        default_factory=dict, repr=False
    )
    # The module scope's bindings are complete before the walk (session_lint/core/scopes.py),
    # so what the file imports, and so what a fix may import, is known once per file.
    _imports_cache: tuple[str, ...] | None = field(default=None, repr=False)
    _importable: dict[str, bool] = field(default_factory=dict, repr=False)
    _relative: str | None = field(default=None, repr=False)

    @property
    def relative_path(self) -> str:
        """The file's path relative to the project root (``Config.relative``, which
        resolves symlinks: asked once per file, not once per name resolved)."""
        if self._relative is None:
            self._relative = self.config.relative(self.path)
        return self._relative

    # -- text ----------------------------------------------------------------
    def may_mention(self, word: str) -> bool:
        """Whether the ASCII ``word`` may occur in the file's text: False only when it
        certainly does not. Names are spelled verbatim in the source, so a file
        without ``word`` has no node named ``word``: a search of the tree can be
        skipped."""
        if self.source is None or codecs.lookup(self.module.encoding).name not in _ASCII_EXACT:
            return True
        return word.encode("ascii") in self.source

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
        """Import-qualified names of ``node``. Without ``scope``, ``node`` is taken to
        sit at (or below) the node being visited: decorators, defaults and bases
        resolve in the enclosing scope, comprehension variables shadow imports."""
        if scope is None:
            scope, shadowed = self._where()
            if shadowed and (dotted_name(node) or "").partition(".")[0] in shadowed:
                return frozenset()
        key = (id(scope), id(node))
        cached = self._names_cache.get(key)
        if cached is not None:
            return cached[2]
        names = qualified_names(scope, node)
        self._names_cache[key] = (scope, node, names)
        return names

    def _where(self) -> tuple[Scope, frozenset[str]]:
        """The scope the visited node is evaluated in, and the comprehension variables
        around it; computed once per visited node, however many rules ask."""
        current = self.ancestors[-1] if self.ancestors else None
        cached = self._where_cache
        if cached is not None and cached[0] is current and cached[1] is self.scope:
            return cached[2], cached[3]
        if self._in_plain_body():
            where, shadowed = self.scope, frozenset[str]()
        else:
            where = scope_at(self.scope, self.ancestors)
            shadowed = comprehension_names(self.ancestors)
        self._where_cache = (current, self.scope, where, shadowed)
        return where, shadowed

    def _in_plain_body(self) -> bool:
        """The usual case: the visited node sits in the body of the innermost
        function/class/module, outside any comprehension."""
        owner = self.scope.node
        if isinstance(owner, cst.Lambda):
            return False
        ancestors = self.ancestors
        index = len(ancestors) - 1
        while index >= 0:
            node = ancestors[index]
            if node is owner:
                break
            if type(node) in _COMPREHENSION_TYPES:
                return False
            index -= 1
        else:
            return True  # not under the scope's node: nothing to adjust
        if isinstance(owner, cst.Module) or index + 1 >= len(ancestors):
            return True
        return ancestors[index + 1] is getattr(owner, "body", None)

    def resolves_to(
        self, node: cst.BaseExpression, names: frozenset[str], scope: Scope | None = None
    ) -> bool:
        return not self.qualified_names(node, scope).isdisjoint(names)

    def project_can_import(self, module: str) -> bool:
        """Whether a fix may import ``module`` at all: the project can import it
        (one of its own modules, the standard library, a declared dependency), or
        this file already imports from the same top-level package (or from one
        whose distribution installs it: ``session_runtime`` brings ``sqlalchemy``)."""
        known = self._importable.get(module)
        if known is None:
            known = can_import_module(self.config.project, module) or any(
                implied_by_import(module, imported) for imported in self._module_imports()
            )
            self._importable[module] = known
        return known

    def _module_imports(self) -> tuple[str, ...]:
        """The qualified names the module scope imports, once per file: a file of
        thousands of functions has as many module bindings, and a fix asks for every
        finding (docs/architecture.md, "Time linear in the findings")."""
        if self._imports_cache is None:
            self._imports_cache = tuple(
                dict.fromkeys(
                    binding.qualified_name
                    for bindings in self.scope.module.bindings.values()
                    for binding in bindings
                    if binding.kind is BindingKind.IMPORT and binding.qualified_name is not None
                )
            )
        return self._imports_cache

    def can_import(self, imp: Import) -> bool:
        """Whether a fix may add ``from module import name`` and use ``name`` at the
        node being visited: the project can import the module
        (:meth:`project_can_import`), no module-level binding of that name other
        than this very import, and no inner binding shadowing it there."""
        assert imp.name is not None
        if not self.project_can_import(imp.module):
            return False
        target = f"{imp.module}.{imp.name}"
        at_module = self.scope.module.bindings.get(imp.name, [])
        if any(b.kind is not BindingKind.IMPORT or b.qualified_name != target for b in at_module):
            return False
        visible = self.scope.lookup(imp.name)
        return not visible or visible is at_module
