"""One parse, one walk, all enabled rules; positions only for what is reported.

The pipeline for a file:
0. the rules for the file: selected, not ignored for its path, meant for its
   role (test, migration, script or app: see ``roles``);
1. prefilter: a file holding none of the enabled rules' tokens is not parsed;
2. ``libcst.parse_module`` once (a parse failure is one SL000 finding);
3. one :class:`~session_lint.core.walker.Dispatcher` walk: the scope tracker, then every rule;
4. only if something was reported: a position pass over the top-level statements
   the reports were made in, or over the whole tree when that cannot be proven
   exact (libcst's ``PositionProvider`` answers either way, computed cheaply: see
   ``positions``), looked up by node identity;
5. ``# noqa`` and per-file-ignores filtering.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import libcst as cst
from libcst.metadata import CodeRange

from session_lint.core import guard
from session_lint.core.context import FileContext, PendingFinding
from session_lint.core.memo import StatementMemo
from session_lint.core.noqa import filter_noqa
from session_lint.core.parsing import parse_module
from session_lint.core.positions import node_positions, statement_positions
from session_lint.core.prefilter import prefilter_for
from session_lint.core.scopes import (
    Scope,
    class_scope,
    function_scope,
    lambda_scope,
    module_scope,
    scope_at,
)
from session_lint.core.walker import Dispatcher, preorder
from session_lint.finding import Finding
from session_lint.project.config import Config
from session_lint.project.evidence import has_evidence, module_of
from session_lint.project.roles import role_of
from session_lint.rules import ALL_RULES, Rule, SyntaxErrorRule
from session_lint.rules.SL001_unused_noqa import UnusedNoqa, unused_noqa
from session_lint.syntax import parsed_digest

_ONLY_AST = 0x400  # ast.PyCF_ONLY_AST, without importing ast


@dataclass
class Analysis:
    path: str
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # internal errors (exit code 2)
    module: cst.Module | None = None
    parsed: bool = False


class ScopeTracker:
    """Keeps ``ctx.scope`` on the innermost scope; runs before rules on the way in
    and after them on the way out."""

    def __init__(self, ctx: FileContext) -> None:
        self.ctx = ctx
        self._entered: list[Scope] = []  # the scope to return to on leaving each scope

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._push(function_scope(node, self._enclosing()))

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._push(class_scope(node, self._enclosing()))

    def visit_Lambda(self, node: cst.Lambda) -> None:
        self._push(lambda_scope(node, self._enclosing()))

    def _enclosing(self) -> Scope:
        # A def inside a decorator or default (``@deco(lambda c: c())``) belongs to
        # the scope that evaluates it, not to the function being entered.
        return scope_at(self.ctx.scope, self.ctx.ancestors[:-1])

    def _push(self, scope: Scope) -> None:
        self._entered.append(self.ctx.scope)
        self.ctx.scope = scope

    def _pop(self, node: cst.CSTNode) -> None:
        assert self._entered and self.ctx.scope.node is node
        self.ctx.scope = self._entered.pop()

    leave_FunctionDef = leave_ClassDef = leave_Lambda = _pop


def enabled_rules(
    config: Config, path: str, rules: Sequence[type[Rule]], source: bytes | None = None
) -> list[type[Rule]]:
    """The rules that run on this file: selected, not ignored for its path, and
    meant for its role (``source``, its bytes, lets a script be told by its
    ``__main__`` block)."""
    ignored = config.ignored_for(path) or ("\0",)
    role = role_of(path, config, source)  # once per file, not once per rule
    return [
        rule
        for rule, roles in _selected(config, tuple(rules))
        if not rule.code.startswith(ignored) and role in roles
    ]


@functools.lru_cache(maxsize=32)
def _selected(
    config: Config, rules: tuple[type[Rule], ...]
) -> tuple[tuple[type[Rule], frozenset[str]], ...]:
    """The selected rules, each with its roles: the same for every file."""
    return tuple(
        (rule, rule.roles_in(config))
        for rule in rules
        if config.is_enabled(rule.code, opt_in=rule.opt_in)
    )


@dataclass(frozen=True)
class Plan:
    """What runs on one file (rule classes pickle by reference: a plan travels to
    the process pool with its file)."""

    active: tuple[type[Rule], ...]  # every rule meant for the file, SL000 and SL001 included
    walkers: tuple[type[Rule], ...]  # the rules that walk the tree: those that may fire
    may_fire: bool  # whether some walker may fire: else the file is not parsed


def plan(
    source: bytes,
    path: str,
    config: Config,
    rules: Sequence[type[Rule]],
    *,
    use_prefilter: bool = True,
) -> Plan:
    """The plan for one file's bytes (``rules``: the candidates, usually all;
    ``use_prefilter=False``: every rule meant for the file walks it)."""
    active = enabled_rules(config, path, rules, source)
    walkers = [r for r in active if r is not SyntaxErrorRule and r is not UnusedNoqa]
    # Without evidence of SQLAlchemy, only rules that need none (``evidence``).
    if any(r.needs_evidence for r in walkers) and not has_evidence(source, path, config):
        walkers = [r for r in walkers if not r.needs_evidence]
    # Only the rules whose own tokens are in the file are walked.
    if not use_prefilter:
        return Plan(tuple(active), tuple(walkers), True)
    if walkers:
        passing = prefilter_for(walkers, config).passing(source)
        walkers = [rule for rule, may in zip(walkers, passing, strict=True) if may]
    return Plan(tuple(active), tuple(walkers), bool(walkers))


def parse(source: bytes) -> cst.Module | Finding:
    """Parse, or an SL000 finding saying why not (path filled in by the caller)."""
    line, column = 1, 1
    # libcst's native parser can crash the process, or take minutes, on
    # pathologically deep expressions: those never reach it.
    too_complex = guard.check(source)
    if too_complex is not None:
        line, column = too_complex.line, too_complex.column
        return Finding.at("", line, column, SyntaxErrorRule, too_complex.message)
    try:
        return parse_module(source)
    except cst.ParserSyntaxError as exc:
        line, column = exc.raw_line, exc.raw_column + 1
        message = f"file does not parse: {exc.message}"
        # Python's own compiler points at the error more precisely than libcst does.
        try:
            compile(source, "<source>", "exec", dont_inherit=True, flags=_ONLY_AST)
        except SyntaxError as py_exc:
            line, column = py_exc.lineno or line, py_exc.offset or column
            message = f"file does not parse: SyntaxError: {py_exc.msg}"
        except ValueError as py_exc:  # NUL bytes before Python 3.11.4 (then a SyntaxError)
            message = f"file is not Python source: {py_exc}"
        except (RecursionError, MemoryError):
            pass
    except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
        # Encoding problems surface as one of these from libcst's decoding step.
        message = f"file cannot be decoded: {exc}"
    except RecursionError:
        message = "file is nested too deeply to analyse"
    except ValueError as exc:  # e.g. NUL bytes
        message = f"file is not Python source: {exc}"
    return Finding.at("", line, column, SyntaxErrorRule, message)


def analyze(
    source: bytes,
    path: str,
    config: Config,
    rules: Sequence[type[Rule]] | None = None,
    *,
    apply_noqa: bool = True,
    use_prefilter: bool = True,
    planned: Plan | None = None,
    parse_with: Callable[[bytes], cst.Module | Finding] | None = None,
    memo: StatementMemo | None = None,
) -> Analysis:
    """Every finding of the enabled rules on one file's bytes.

    ``parse_with``: what parses the bytes, when a rule needs the tree (the language
    server re-parses only what an edit changed: session_lint/editors/reparse.py);
    :func:`parse` by default. ``memo``: what the last analysis of the same buffer
    computed per statement (session_lint/core/memo.py), used and kept up to date.

    ``planned``: the file's :class:`~session_lint.core.prefilter.Plan`, when the caller
    made it already (the runner does, sorting files). ``use_prefilter=False``
    parses every file: the tests use it to prove the prefilter sound."""
    result = Analysis(path)
    if planned is None:
        candidates = ALL_RULES if rules is None else rules
        planned = plan(source, path, config, candidates, use_prefilter=use_prefilter)
    active, walkers = planned.active, planned.walkers
    report_syntax = SyntaxErrorRule in active
    # Without the prefilter every file is parsed, even one no rule walks (a test
    # file without SQLAlchemy evidence): SL000 then also reports what only libcst
    # rejects.
    if use_prefilter and not planned.may_fire:
        if report_syntax and not _compiles_cheaply(source):
            _parse_into(result, source, path, report_syntax, parse)
        if not result.findings:  # SL000 cannot be silenced; SL001 can
            _add_unused_noqa(result, source, active, frozenset(), None)
            if apply_noqa:
                result.findings = filter_noqa(result.findings, source)
        return result
    module = _parse_into(result, source, path, report_syntax, parse_with or parse)
    if module is None:
        return result

    ctx = FileContext(
        path,
        config,
        module,
        module_scope(module),
        [],
        is_engine_module(path, config),
        source=source,
        memo=memo,
    )
    errors: list[str] = []
    crashed: set[str] = set()

    def on_error(owner: object, exc: BaseException) -> None:
        code = getattr(owner, "code", type(owner).__name__)
        crashed.add(code)
        errors.append(f"{path}: internal error in {code}: {type(exc).__name__}: {exc}")

    dispatcher = Dispatcher(on_error)
    ctx.ancestors = dispatcher.ancestors
    tracker = ScopeTracker(ctx)
    dispatcher.add(tracker, leaves=False)
    for rule in walkers:
        dispatcher.add(rule(ctx))
    dispatcher.add(tracker, visits=False)
    try:
        if memo is None:
            dispatcher.walk(module)
        else:
            nodes = memo.nodes
            dispatcher.walk(module, lambda s: nodes.get(s, "", lambda: preorder(s, 1)))
    except RecursionError:
        errors.append(f"{path}: internal error: file is nested too deeply to analyse")
    result.errors.extend(errors)
    if ctx.reports:
        result.findings.extend(_positioned(ctx.reports, module, source, path, result, memo))
    if memo is not None:
        memo.keep_only(module)
    _add_unused_noqa(result, source, active, frozenset(crashed), module)
    if apply_noqa:
        result.findings = filter_noqa(result.findings, source)
    result.findings.sort(key=Finding.sort_key)
    return result


def _add_unused_noqa(
    result: Analysis,
    source: bytes,
    active: Sequence[type[Rule]],
    crashed: frozenset[str],
    module: cst.Module | None,
) -> None:
    """SL001, from the findings before any noqa applies. A rule that crashed lost
    its findings, so its codes are not called unused."""
    if UnusedNoqa not in active or any(f.code == SyntaxErrorRule.code for f in result.findings):
        return
    ran = {r.code for r in active if r is not UnusedNoqa} - crashed
    found = unused_noqa(result.findings, source, result.path, ran, _KNOWN_CODES, module)
    if found and module is None:
        # Skipped by the prefilter: parsed now, only to offer the fixes.
        try:
            module = parse_module(source)
        except Exception:
            module = None
        else:
            found = unused_noqa(result.findings, source, result.path, ran, _KNOWN_CODES, module)
            result.module = module  # the fixes apply to this tree
    result.findings.extend(found)


_KNOWN_CODES = frozenset(rule.code for rule in ALL_RULES)


def is_engine_module(path: str, config: Config) -> bool:
    """Named so in ``engine-modules``, or found by the project index to build the
    app's engine and session factory."""
    if config.is_engine_module(path):
        return True
    modules = config.project.engine_modules
    return bool(modules) and module_of(config.relative(path))[0] in modules


def _compiles_cheaply(source: bytes) -> bool:
    """For prefiltered files: Python's own compiler is ~10x faster than libcst, so
    use it to decide whether SL000 needs the full parse; a file the project index
    parsed with it is not parsed again."""
    if parsed_digest(source) is not None:
        return True
    try:
        compile(source, "<prefilter>", "exec", dont_inherit=True, flags=_ONLY_AST)
    except (SyntaxError, ValueError, UnicodeDecodeError, RecursionError, MemoryError):
        return False
    return True


def _parse_into(
    result: Analysis,
    source: bytes,
    path: str,
    report_syntax: bool,
    parse_with: Callable[[bytes], cst.Module | Finding],
) -> cst.Module | None:
    parsed = parse_with(source)
    if isinstance(parsed, Finding):
        if report_syntax:
            result.findings.append(replace(parsed, path=path))
        return None
    result.module = parsed
    result.parsed = True
    return parsed


def _locate(
    reports: list[PendingFinding],
    module: cst.Module,
    source: bytes,
    memo: StatementMemo | None,
) -> Mapping[cst.CSTNode, CodeRange]:
    """Positions for the reported nodes: from the top-level statements they were
    reported in when that is exact and covers them all, else from the whole module."""
    tops: dict[int, cst.CSTNode] = {}
    for report in reports:
        if report.top is None:
            return node_positions(module)
        tops[id(report.top)] = report.top
    try:
        text = source.decode(module.encoding)  # what libcst parsed
    except (UnicodeDecodeError, LookupError):
        return node_positions(module)
    found = statement_positions(module, text, tops.values(), memo)
    if found is not None and all(report.node in found for report in reports):
        return found
    return node_positions(module)


def _positioned(
    reports: list[PendingFinding],
    module: cst.Module,
    source: bytes,
    path: str,
    result: Analysis,
    memo: StatementMemo | None = None,
) -> list[Finding]:
    try:
        # Deep but valid trees (long implicit string concatenations) need more
        # than the default limit; the CLI has raised it already.
        with guard.recursion_limit():
            positions = _locate(reports, module, source, memo)
    except RecursionError:
        result.errors.append(
            f"{path}: internal error: file is nested too deeply to locate findings"
        )
        return []
    findings: list[Finding] = []
    seen: set[tuple[str, int, int]] = set()
    for report in reports:
        where: CodeRange | None = positions.get(report.node)
        if where is None:  # a rule reported a node that is not in the tree: a rule bug
            result.errors.append(
                f"{path}: internal error in {report.code}: reported a detached node"
            )
            continue
        key = (report.code, where.start.line, where.start.column)
        if key in seen:
            continue
        seen.add(key)
        findings.append(
            Finding(
                path,
                where.start.line,
                where.start.column + 1,
                where.end.line,
                where.end.column + 1,
                report.code,
                report.name,
                report.message,
                report.fix,
            )
        )
    return findings
