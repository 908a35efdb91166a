"""The base class every rule derives from.

A rule is one class in one module: its code, name, message, docs (the class
docstring, in ruff's section order), fix availability, the tokens it can never
fire without (for the prefilter), and ``visit_<Node>``/``leave_<Node>`` methods
that only look and ``report``. Fixes are built from the original nodes and
applied by the fix layer after the walk.
"""

from __future__ import annotations

import inspect
import re
from typing import ClassVar

import libcst as cst

from session_lint.core.context import FileContext, PendingFinding
from session_lint.core.prefilter import Clause, Declared, clauses
from session_lint.finding import Fix, FixAvailability
from session_lint.project.config import Config
from session_lint.project.roles import ALL_ROLES, rule_roles


class Rule:
    code: ClassVar[str]
    name: ClassVar[str]  # kebab-case, names the bad pattern
    message: ClassVar[str]  # default message; a report may pass a more specific one
    fix_availability: ClassVar[FixAvailability] = FixAvailability.NONE
    # The prefilter: the rule cannot fire on a file that contains none of these
    # strings, nor on one that misses every string of any group in ``requires``.
    tokens: ClassVar[Declared] = ()
    requires: ClassVar[tuple[Declared, ...]] = ()
    # Whether the rule needs evidence of SQLAlchemy in the file (``evidence``): true
    # for every rule that reasons about sessions, engines or connections, whose
    # names alone prove nothing.
    needs_evidence: ClassVar[bool] = True
    # An opt-in rule runs only when selected by its full code (``Config.is_enabled``):
    # on the real-code corpus most of its findings are deliberate designs.
    opt_in: ClassVar[bool] = False
    # The file roles the rule runs in (``session_lint.project.roles``) unless ``rule-roles``
    # says otherwise; each rule module states its own and says why under
    # ``## Where it runs``.
    roles: ClassVar[frozenset[str]] = ALL_ROLES

    def __init__(self, ctx: FileContext) -> None:
        self.ctx = ctx

    @classmethod
    def roles_in(cls, config: Config) -> frozenset[str]:
        """The roles the rule runs in under this config."""
        return rule_roles(cls.code, cls.roles, config)

    @classmethod
    def prefilter(cls, config: Config) -> tuple[Clause, ...]:
        """When the rule may fire: on a file where, for some clause, every group has
        one of its strings. Must be sound: a file failing it has no finding."""
        return clauses(config, cls.tokens, *cls.requires)

    def report(
        self, node: cst.CSTNode, message: str | None = None, *, fix: Fix | None = None
    ) -> None:
        ancestors = self.ctx.ancestors
        top = ancestors[1] if len(ancestors) > 1 else None
        self.ctx.reports.append(
            PendingFinding(self.code, self.name, node, message or self.message, fix, top)
        )

    # -- docs --------------------------------------------------------------------
    @classmethod
    def docs(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or "")

    @classmethod
    def doc_section(cls, title: str) -> str:
        """The text under ``## title`` in the docs, without the heading."""
        match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", cls.docs(), re.M | re.S)
        return match.group(1).strip() if match else ""

    @classmethod
    def summary(cls) -> str:
        return cls.doc_section("What it does").split("\n\n")[0].replace("\n", " ")
