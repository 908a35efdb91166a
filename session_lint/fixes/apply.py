"""Applying fixes to a file's text: by safety level, conflict-free, re-parsed,
repeated until stable. Nothing here touches the disk (``fixes.write`` does)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import libcst as cst
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import AddImportsVisitor

from session_lint.analyzer import Analysis, Plan, analyze
from session_lint.core.walker import children, subtree
from session_lint.finding import Finding, Fix, Import, Replacement
from session_lint.project.config import Config
from session_lint.rules import Rule

MAX_PASSES = 10


@dataclass
class FixOutcome:
    original: bytes
    source: bytes  # the fixed bytes; equal to ``original`` when nothing applied
    applied: int = 0
    applied_codes: Counter[str] = field(default_factory=Counter)  # for --show-fixes
    analysis: Analysis | None = None  # findings that remain, on ``source``
    errors: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.source != self.original


def fixable(findings: Sequence[Finding], *, unsafe: bool) -> list[Finding]:
    return [
        f
        for f in findings
        if f.fix is not None and f.fix.applicability.allowed(unsafe_fixes=unsafe)
    ]


def fix_source(
    source: bytes,
    path: str,
    config: Config,
    rules: Sequence[type[Rule]] | None = None,
    *,
    unsafe: bool = False,
    planned: Plan | None = None,
) -> FixOutcome:
    """Apply every allowed fix, re-analysing after each pass, until none applies
    (``planned``: the plan of ``source``, when the caller made it)."""
    outcome = FixOutcome(source, source)
    current = source
    analysis = analyze(current, path, config, rules, planned=planned)
    for _ in range(MAX_PASSES):
        todo = fixable(analysis.findings, unsafe=unsafe)
        if not todo or analysis.module is None:
            break
        chosen: list[Fix] = []
        module, applied = apply_fixes(
            analysis.module, [f.fix for f in todo if f.fix is not None], chosen
        )
        new = module.bytes
        if applied == 0 or new == current:
            break
        # The re-lint's parse is the syntax check; the text is parsed on its own
        # only when the re-lint did not parse it (no rule's prefilter matched).
        relinted = analyze(new, path, config, rules)
        problem = None if relinted.module is not None else _parse_problem(new)
        if problem is not None:
            codes = ", ".join(sorted({f.code for f in todo}))
            outcome.errors.append(
                f"{path}: fix for {codes} produced code that does not parse ({problem}); "
                "file left unchanged"
            )
            outcome.analysis = analyze(source, path, config, rules)
            return outcome
        outcome.applied += applied
        taken = {id(fix) for fix in chosen}
        outcome.applied_codes.update(f.code for f in todo if id(f.fix) in taken)
        current = new
        analysis = relinted
    else:
        if fixable(analysis.findings, unsafe=unsafe):
            outcome.errors.append(f"{path}: fixes did not settle after {MAX_PASSES} passes")
    outcome.source = current
    outcome.analysis = analysis
    return outcome


def _parse_problem(source: bytes) -> str | None:
    """Why libcst cannot parse ``source`` (the exception's name), or None."""
    try:
        cst.parse_module(source)
    except Exception as exc:
        return type(exc).__name__
    return None


class _Replacer(cst.CSTTransformer):
    def __init__(self, edits: dict[int, Replacement], paths: set[int] | None) -> None:
        super().__init__()
        self.edits = edits
        self.paths = paths

    def on_visit(self, node: cst.CSTNode) -> bool:
        # Only the paths down to the edited nodes can change: a walk of the whole
        # tree cost more than the rest of a one-finding quick fix together.
        return self.paths is None or id(node) in self.paths

    def on_leave(self, original_node: cst.CSTNode, updated_node: cst.CSTNode) -> Replacement:  # type: ignore[override]
        replacement = self.edits.get(id(original_node))
        return updated_node if replacement is None else replacement


def apply_fixes(
    module: cst.Module, fixes: Sequence[Fix], chosen: list[Fix] | None = None
) -> tuple[cst.Module, int]:
    """Apply the fixes whose edits do not overlap an earlier fix's; the rest wait
    for the next pass (they are found again on the fixed tree). ``chosen``, when
    given, receives the fixes applied."""
    if chosen is None:
        chosen = []
    taken: set[int] = set()  # ids of edited nodes and everything below them
    for fix in fixes:
        covered: set[int] = set()
        for node, _ in fix.edits:
            covered.update(_ids_under(node))
        # Overlap either way (an edit inside or above a taken edit) shows here,
        # since ``covered`` and ``taken`` both hold whole subtrees.
        if covered & taken:
            continue
        chosen.append(fix)
        taken |= covered
    if not chosen:
        return module, 0
    edits = {id(node): new for fix in chosen for node, new in fix.edits}
    new_module = module.visit(_Replacer(edits, _paths_to(module, set(edits))))
    assert isinstance(new_module, cst.Module)
    imports = list(dict.fromkeys(imp for fix in chosen for imp in fix.imports))
    if imports:
        new_module = add_imports(new_module, imports)
    return new_module, len(chosen)


def _paths_to(module: cst.Module, targets: set[int]) -> set[int] | None:
    """The ids of the nodes from the module down to each target, or None when a
    target is not among the nodes ``children`` reaches (then every node is visited)."""
    parents: dict[int, cst.CSTNode] = {}
    found: dict[int, cst.CSTNode] = {}
    stack: list[cst.CSTNode] = [module]
    while stack and len(found) < len(targets):
        node = stack.pop()
        if id(node) in targets:
            found[id(node)] = node
            continue  # chosen edits never nest: nothing to find below a target
        for child in children(node):
            parents[id(child)] = node
            stack.append(child)
    if len(found) < len(targets):
        return None
    paths: set[int] = set()
    for target in found:
        current: int | None = target
        while current is not None and current not in paths:
            paths.add(current)
            parent = parents.get(current)
            current = None if parent is None else id(parent)
    return paths


def _ids_under(node: cst.CSTNode) -> set[int]:
    return {id(n) for n in subtree(node)}


def add_imports(module: cst.Module, imports: Sequence[Import]) -> cst.Module:
    """Add each import once, merged into an existing ``from x import …`` when there is one."""
    context = CodemodContext()
    for imp in imports:
        AddImportsVisitor.add_needed_import(context, imp.module, imp.name)
    return _pep8_after_imports(module, AddImportsVisitor(context).transform_module(module))


def _pep8_after_imports(before: cst.Module, after: cst.Module) -> cst.Module:
    """Two blank lines between an added (or merged) import and a ``def`` or
    ``class`` right below it, as PEP 8 has it: libcst leaves one, or none."""
    old = {before.code_for_node(s) for s in before.body if _is_import_line(s)}
    body = list(after.body)
    changed = False
    for index in range(1, len(body)):
        statement, previous = body[index], body[index - 1]
        if not isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
            continue
        if not _is_import_line(previous) or after.code_for_node(previous) in old:
            continue
        lines = list(statement.leading_lines)
        blank = 0
        while blank < len(lines) and lines[blank].comment is None:
            blank += 1
        if blank < 2:
            lines[:blank] = [cst.EmptyLine(), cst.EmptyLine()]
            body[index] = statement.with_changes(leading_lines=lines)
            changed = True
    return after.with_changes(body=body) if changed else after


def _is_import_line(statement: cst.CSTNode) -> bool:
    return isinstance(statement, cst.SimpleStatementLine) and any(
        isinstance(small, (cst.Import, cst.ImportFrom)) for small in statement.body
    )
