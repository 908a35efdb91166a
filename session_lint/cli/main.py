"""``session-lint``: argument parsing, output selection, exit codes (README, "Usage").

Exit codes: 0 nothing left to report, 1 findings remain (or, with ``--diff``, there
is a diff), 2 usage, configuration or internal error. Internal errors of single
files are printed to stderr and the run goes on; the exit code is 2 at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from dataclasses import fields
from typing import NoReturn, TextIO

from session_lint import __version__
from session_lint.cli.collection import batch_collection, settle
from session_lint.cli.runner import (
    FileResult,
    Options,
    default_jobs,
    ensure_recursion_limit,
    process_source,
    run,
)
from session_lint.finding import Finding
from session_lint.output import FORMATS, TEXT_FORMATS, fixable_now
from session_lint.output import github as github_report
from session_lint.output import json as json_report
from session_lint.output import text as text_report
from session_lint.output.source import Sources
from session_lint.project.config import ROLES, Config, ConfigError, load_config, with_selection
from session_lint.project.discovery import STDIN, discover
from session_lint.project.facts import COMMITS, NO_COMMIT, ProjectIndex
from session_lint.project.roles import role_of

USAGE_ERROR = 2


class UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="session-lint",
        description="Lint SQLAlchemy asyncio session hygiene behind transaction-mode poolers.",
        epilog="session-lint server: the language server for editors (LSP over stdio).",
    )
    parser.add_argument(
        "paths", nargs="*", metavar="PATHS", help="files or directories (default: .; - = stdin)"
    )
    parser.add_argument("--fix", action="store_true", help="apply safe fixes and write files")
    parser.add_argument(
        "--unsafe-fixes", action="store_true", help="also apply (or count) unsafe fixes"
    )
    parser.add_argument(
        "--diff", action="store_true", help="print the diff --fix would make; write nothing"
    )
    parser.add_argument("--select", metavar="CODES", help="comma-separated codes or prefixes")
    parser.add_argument("--ignore", metavar="CODES", help="comma-separated codes or prefixes")
    parser.add_argument(
        "--format",
        "--output-format",
        dest="format",
        choices=FORMATS,
        help="output format (default: full on a terminal, in colour unless NO_COLOR is set; "
        "concise when piped; text = concise)",
    )
    parser.add_argument(
        "--output-file",
        metavar="FILE",
        help="write the report to FILE (atomically); the summary stays on stdout, errors on stderr",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print the findings only (no summary line)"
    )
    parser.add_argument(
        "--add-noqa",
        action="store_true",
        help="add a `# noqa: SLxxx` comment on every line with a finding (existing noqa "
        "codes are kept), then exit; to adopt the linter on an existing code base",
    )
    parser.add_argument(
        "--show-fixes",
        action="store_true",
        help="list the fixes applied (with --fix) or that --fix would apply, per file and code",
    )
    parser.add_argument("--statistics", action="store_true", help="print counts per code")
    parser.add_argument("--exit-zero", action="store_true", help="exit 0 even when findings remain")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    parser.add_argument(
        "--jobs", type=_positive_int, metavar="N", help="worker processes (default: CPU count)"
    )
    parser.add_argument("--config", metavar="FILE", help="pyproject.toml (or TOML file) to use")
    parser.add_argument(
        "--force-exclude",
        action="store_true",
        help="apply exclude, extend-exclude and .gitignore to paths named on the command "
        "line too (for pre-commit, which names every file)",
    )
    parser.add_argument(
        "--no-respect-gitignore",
        action="store_true",
        help="lint files that .gitignore lists (config: respect-gitignore = false)",
    )
    parser.add_argument(
        "--stdin-filename",
        metavar="PATH",
        help="the path of the source read from stdin (for config and per-file decisions)",
    )
    parser.add_argument("--list-rules", action="store_true", help="list every rule")
    parser.add_argument("--explain", metavar="CODE", help="print a rule's documentation")
    parser.add_argument(
        "--show-settings",
        nargs="?",
        const=".",
        metavar="PATH",
        help="print the resolved settings for PATH (default: .) and, for a file, its role and "
        "the rules that run on it; then exit",
    )
    parser.add_argument(
        "--show-files",
        action="store_true",
        help="list the files that would be linted (after exclude and .gitignore); then exit",
    )
    parser.add_argument("--version", action="version", version=f"session-lint {__version__}")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def entry() -> NoReturn:
    """The ``session-lint`` command (and ``python -m session_lint``): :func:`main`,
    then the process ends without tearing the interpreter down. Freeing the
    project index, the rules' caches and every module one object at a time took
    about 0.3 s, a tenth of a cold run on a large tree (docs/architecture.md,
    "Large trees"); nothing is left to do by then: every file written was written
    atomically and closed, the worker pools are shut down, and the output is
    flushed here. Tests call :func:`main`, which returns."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, OSError, ValueError):  # closed, or a closed pipe
            pass
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    ensure_recursion_limit()
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["server"]:
        # `session-lint server`: the language server (a path named "server" is
        # linted as ./server). Its own parser: it takes no lint options.
        return language_server(arguments[1:])
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse printed it)
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    try:
        with batch_collection():
            return _main(args)
    except (UsageError, ConfigError) as exc:
        _error(str(exc))
        return USAGE_ERROR
    except BrokenPipeError:  # e.g. `session-lint … | head`
        return 0
    except Exception:
        _error("internal error:\n" + traceback.format_exc().rstrip())
        return USAGE_ERROR


def language_server(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="session-lint server",
        description="Run the language server over stdio (Language Server Protocol), for "
        "editors: diagnostics as you type, quick fixes, fix all, hover docs.",
    )
    parser.add_argument("--version", action="version", version=f"session-lint {__version__}")
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    try:
        from session_lint.editors import language_server as server
    except ImportError as exc:
        _error(
            f"the language server needs pygls ({exc.name or exc}): "
            "pip install 'session-lint[lsp]'"
        )
        return USAGE_ERROR
    return server.main()


def _main(args: argparse.Namespace) -> int:
    if args.list_rules:
        from session_lint.rules.docs import list_rules

        _emit(sys.stdout, list_rules(args.format))
        return 0
    if args.explain is not None:
        from session_lint.rules import RULES_BY_CODE
        from session_lint.rules.docs import explain

        rule = RULES_BY_CODE.get(args.explain.strip().upper())
        if rule is None:
            raise UsageError(f"unknown rule code {args.explain!r} (see --list-rules)")
        _emit(sys.stdout, explain(rule.code))
        return 0
    select = _codes(args.select, "--select")
    ignore = _codes(args.ignore, "--ignore")
    if args.show_settings is not None:
        _emit(sys.stdout, show_settings(args.show_settings, args.config, select, ignore))
        return 0
    paths: list[str] = list(args.paths) or ["."]
    if STDIN in paths and len(paths) > 1:
        raise UsageError("'-' (standard input) cannot be combined with other paths")
    if args.stdin_filename and paths != [STDIN]:
        raise UsageError("--stdin-filename is only used with '-' (standard input)")
    if args.statistics and args.format not in (*TEXT_FORMATS, "json", None):
        raise UsageError("--statistics works with --format concise, full or json")
    jobs = args.jobs or default_jobs()
    config = load_config(
        [args.stdin_filename or p for p in paths],
        args.config,
        use_cache=not args.no_cache,
        jobs=jobs,
    )
    config = with_selection(config, select, ignore)
    if args.no_respect_gitignore:
        config = config.with_overrides(respect_gitignore=False)
    if args.show_files:
        return show_files(paths, config, force_exclude=args.force_exclude)
    options = Options(
        fix=args.fix and not args.diff,
        diff=args.diff,
        unsafe_fixes=args.unsafe_fixes,
        use_cache=not args.no_cache,
        jobs=jobs,
        write_roots=(*paths, config.root),
    )
    if paths == [STDIN]:
        if args.add_noqa:
            raise UsageError("--add-noqa writes files: name paths, not '-'")
        return _lint_stdin(args, config, options)
    if args.add_noqa and (args.fix or args.diff):
        raise UsageError("--add-noqa cannot be combined with --fix or --diff")
    discovery = discover(paths, config, force_exclude=args.force_exclude)
    settle()  # the config and the index live until the end of the run
    result = run(discovery.files, config, options)
    errors = [*discovery.errors, *result.errors]
    if args.add_noqa:
        return add_noqa(result.findings, errors, within=options.write_roots)
    fixed_codes = {r.path: r.fixed_codes for r in result.files}
    return _finish(
        args,
        options,
        result.findings,
        result.fixed,
        result.diffs,
        errors,
        fixed_codes=fixed_codes,
    )


def add_noqa(findings: Sequence[Finding], errors: list[str], *, within: Sequence[str]) -> int:
    """``--add-noqa``: every current finding silenced where it is, so that the
    linter can run in CI on an existing code base from today on."""
    from session_lint.fixes.write import add_noqa_to_files

    added, messages = add_noqa_to_files(findings, within)
    for message in [*errors, *messages]:
        _error(message)
    _emit(sys.stderr, f"Added {added} noqa comment{'' if added == 1 else 's'}.\n")
    return USAGE_ERROR if errors else 0


def show_files(paths: Sequence[str], config: Config, *, force_exclude: bool) -> int:
    """``--show-files``: the files a run would lint, one a line, sorted."""
    if paths == [STDIN]:
        raise UsageError("--show-files lists files: name paths, not '-'")
    discovery = discover(paths, config, force_exclude=force_exclude)
    for message in discovery.errors:
        _error(message)
    _emit(sys.stdout, "".join(f"{path}\n" for path in sorted(discovery.files)))
    return USAGE_ERROR if discovery.errors else 0


def _lint_stdin(args: argparse.Namespace, config: Config, options: Options) -> int:
    source = sys.stdin.buffer.read()
    result: FileResult = process_source(source, args.stdin_filename or STDIN, config, options)
    if options.fix:
        # The fixed source is the output; what remains is reported on stderr.
        sys.stdout.buffer.write(result.fixed_source if result.fixed_source is not None else source)
        sys.stdout.flush()
    diffs = [result.diff] if result.diff else []
    out = sys.stderr if options.fix else sys.stdout
    # The report quotes the lines the findings point into: the fixed text under --fix.
    shown = result.fixed_source if options.fix and result.fixed_source is not None else source
    return _finish(
        args,
        options,
        result.findings,
        result.fixed,
        diffs,
        result.errors,
        out,
        fixed_codes={result.path: result.fixed_codes},
        sources=Sources({result.path: shown}),
    )


def _finish(
    args: argparse.Namespace,
    options: Options,
    findings: list[Finding],
    fixed: int,
    diffs: list[str],
    errors: list[str],
    out: TextIO | None = None,
    *,
    fixed_codes: dict[str, dict[str, int]] | None = None,
    sources: Sources | None = None,
) -> int:
    out = out or sys.stdout
    findings = sorted(findings, key=Finding.sort_key)
    if args.format is None:  # ruff's choice: full for a person at a terminal
        args.format = "full" if out.isatty() and not args.output_file else "concise"
    # Errors first, so that in a terminal the report's last line sums them up.
    for message in errors:
        _error(message)
    if options.diff:
        _emit(out, "".join(diffs))
        if args.show_fixes:
            print(_fix_summary(fixed_codes or {}, applied=False), end="", file=sys.stderr)
        elif args.quiet:
            pass
        elif fixed:
            print(f"Would fix {text_report.plural(fixed, 'problem')}", file=sys.stderr)
        else:
            print("No fixes available", file=sys.stderr)
    else:
        report, tail = render_parts(
            args,
            findings,
            fixed if options.fix else None,
            errors,
            sources=sources or Sources(),
            fixed_codes=fixed_codes or {},
            colour=_colour(out) and not args.output_file,
        )
        if args.output_file:
            _write_file(args.output_file, report)
            _emit(out, tail)
        else:
            _emit(out, report + tail)
    if errors:
        return USAGE_ERROR
    if options.diff:
        return 1 if diffs else 0
    return 1 if findings and not args.exit_zero else 0


def render_parts(
    args: argparse.Namespace,
    findings: list[Finding],
    fixed: int | None,
    errors: Sequence[str] = (),
    *,
    sources: Sources,
    fixed_codes: dict[str, dict[str, int]],
    colour: bool = False,
) -> tuple[str, str]:
    """(the report, what follows it: the fix list and the summary line). The tail
    is empty for the formats tools read, and under ``--quiet``.

    ``errors`` (a missing path, an unreadable file, a rule's crash) are in the
    report in every format that has a place for them (all but gitlab, where the
    exit code 2 and stderr carry them): a run that did not lint everything must
    not read as a clean one (an empty SARIF log is a clean scan to code scanning)."""
    if args.format == "json":
        if args.statistics:
            return json_report.render_statistics(findings, unsafe_fixes=args.unsafe_fixes), ""
        return json_report.render(findings, errors), ""
    if args.format == "github":
        return github_report.render(findings, errors), ""
    if args.format == "sarif":
        from session_lint.output import sarif as sarif_report
        from session_lint.rules import ALL_RULES

        return sarif_report.render(findings, ALL_RULES, errors, sources), ""
    if args.format == "gitlab":
        from session_lint.output import gitlab as gitlab_report

        return gitlab_report.render(findings, sources), ""
    if args.format == "junit":
        from session_lint.output import junit as junit_report

        return junit_report.render(findings, errors), ""
    if args.statistics:
        lines = text_report.statistics(findings, unsafe_fixes=args.unsafe_fixes)
    elif args.format == "full":
        from session_lint.output import full as full_report

        lines = full_report.render_lines(
            findings, sources, colour=colour, unsafe_fixes=args.unsafe_fixes
        )
    else:
        lines = [text_report.render_line(f) for f in findings]
    report = "".join(line + "\n" for line in lines)
    tail = ""
    if args.show_fixes:
        if fixed is not None:
            tail += _fix_summary(fixed_codes, applied=True)
        else:
            would: dict[str, dict[str, int]] = {}
            for f in findings:
                if fixable_now(f, unsafe_fixes=args.unsafe_fixes):
                    codes = would.setdefault(f.path, {})
                    codes[f.code] = codes.get(f.code, 0) + 1
            tail += _fix_summary(would, applied=False)
    elif fixed:
        tail += f"Fixed {text_report.plural(fixed, 'problem')}\n"
    if args.quiet:
        return report, tail if args.show_fixes else ""
    summary = text_report.summary(findings, unsafe_fixes=args.unsafe_fixes, errors=len(errors))
    return report, tail + summary + "\n"


def _fix_summary(fixed_codes: dict[str, dict[str, int]], *, applied: bool) -> str:
    from session_lint.rules import RULES_BY_CODE

    names = {code: rule.name for code, rule in RULES_BY_CODE.items()}
    return text_report.fix_summary(fixed_codes, names, applied=applied)


def _colour(stream: TextIO) -> bool:
    """ANSI colour for a terminal; NO_COLOR (no-color.org) turns it off and
    FORCE_COLOR on, as in ruff."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return stream.isatty()


def _write_file(path: str, text: str) -> None:
    """``--output-file``: a reader never sees a half-written report."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".session-lint-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            # mkstemp's file is private (0600); a report is an ordinary file.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise UsageError(f"--output-file {path}: {exc.strerror or exc}") from exc


def _codes(value: str | None, option: str) -> tuple[str, ...] | None:
    """``"SL101, sl2"`` -> ``("SL101", "SL2")``; every entry must match a rule."""
    if value is None:
        return None
    from session_lint.rules import ALL_RULES

    codes = tuple(c.strip().upper() for c in value.split(",") if c.strip())
    if not codes:
        raise UsageError(f"{option} expects comma-separated rule codes or prefixes")
    for code in codes:
        if code != "ALL" and not any(rule.code.startswith(code) for rule in ALL_RULES):
            raise UsageError(f"{option}: unknown rule code or prefix {code!r} (see --list-rules)")
    return codes


def show_settings(
    path: str,
    explicit_config: str | None = None,
    select: tuple[str, ...] | None = None,
    ignore: tuple[str, ...] | None = None,
) -> str:
    """What session-lint decides for one file: its role, whether it is an engine
    module, the rules that run on it, and every resolved setting; for a directory,
    the settings that apply under it (roles and rules are decided per file)."""
    from session_lint.analyzer import enabled_rules, is_engine_module
    from session_lint.project.evidence import has_evidence
    from session_lint.rules import ALL_RULES

    if os.path.isdir(path):
        config = with_selection(load_config([path], explicit_config), select, ignore)
        lines = [
            f"path: {config.relative(path) or '.'}",
            "role: (a directory: each file has its own; name a file to see it)",
        ]
        return "\n".join([*lines, *_settings_section(config)]) + "\n"
    if not os.path.isfile(path):
        what = "is not a file" if os.path.exists(path) else "no such file"
        raise UsageError(f"--show-settings {path}: {what}")
    try:
        with open(path, "rb") as handle:
            source = handle.read()
    except OSError as exc:
        raise UsageError(f"--show-settings {path}: cannot read: {exc.strerror or exc}") from exc
    config = with_selection(load_config([path], explicit_config), select, ignore)
    rules = enabled_rules(config, path, ALL_RULES, source)
    evidence = has_evidence(source, path, config)
    lines = [
        f"path: {config.relative(path)}",
        f"role: {role_of(path, config, source)}",
        f"engine module: {'yes' if is_engine_module(path, config) else 'no'}",
        f"rules: {', '.join(r.code for r in rules) or '(none)'}",
    ]
    if not evidence:
        # Those rules are enabled but cannot fire here: worth saying, it is the
        # usual answer to "why no finding in this file?".
        needing = [r.code for r in rules if r.needs_evidence and r.code != "SL000"]
        if needing:
            lines.append(f"no SQLAlchemy evidence: {', '.join(needing)} cannot fire here")
    return "\n".join([*lines, *_settings_section(config)]) + "\n"


def _settings_section(config: Config) -> list[str]:
    lines = ["", "# settings", f"config-file = {json.dumps(config.source)}"]
    lines.append(f"root = {json.dumps(config.root)}")
    lines += _settings_lines(config)
    return lines + _index_lines(config.project)


def _index_lines(project: ProjectIndex) -> list[str]:
    """What the project index learned: why a name is, or is not, a session."""
    if not project.scanned:
        return []
    exits = {COMMITS: "commits or begins on exit", NO_COMMIT: "no commit on exit"}

    def factory(name: str, kind: str, transaction: str) -> str:
        return f"  {name}  ({kind}, {exits.get(transaction, 'exit unknown')})"

    sections: list[tuple[str, list[str]]] = [
        ("session types", [f"  {n}  ({k})" for n, k in project.session_types]),
        ("session factories", [factory(*f) for f in project.session_factories]),
        ("factory classes (instances are called for a session)",
         [factory(*f) for f in project.factory_classes]),
        ("attributes that are session factories", [factory(*f) for f in project.attribute_factories]),
        ("engine modules", [f"  {m}" for m in project.engine_modules]),
        ("engine factories (each call builds a pool)", [f"  {m}" for m in project.engine_factories]),
        ("committing helpers (each call is a transaction)",
         [f"  {m}" for m in project.committing_helpers]),
        ("names through which a scoped session is removed (SL407)",
         [f"  {m}" for m in project.scoped_removals]),
        ("files neither parser reads (only their imports were learned)",
         [f"  {m}" for m in project.unparsed]),
    ]  # fmt: skip
    lines = ["", "# the project index (docs/project-index.md)"]
    for title, entries in sections:
        lines.append(f"# {title}: {len(entries)}" + (":" if entries else ""))
        lines += [f"#{entry}" for entry in entries]
    effects = project.effects
    counts = {
        "slow": sum(1 for e in effects if e[1]),
        "commit": sum(1 for e in effects if e[2]),
        "roll back": sum(1 for e in effects if e[3]),
        "use the database": sum(1 for e in effects if e[4]),
        "open a session of their own": sum(1 for e in effects if e[5]),
        "leave one open on some path": sum(1 for e in effects if e[5] and not e[6]),
    }
    lines.append(
        f"# effect summaries: {len(effects)} functions and methods ("
        + ", ".join(f"{n} {what}" for what, n in counts.items())
        + ")"
    )
    return lines


def _settings_lines(config: Config) -> list[str]:
    """The config as ``[tool.session-lint]`` TOML lines, every key resolved."""
    lines: list[str] = []
    for f in fields(config):
        if not f.compare or f.name == "project":
            continue
        key = f.name.replace("_", "-")
        value = getattr(config, f.name)
        if f.name == "roles":
            roles = dict(value)
            lines += [
                f"roles.{role} = {json.dumps(list(roles.get(role, ())))}" for role in ROLES[:-1]
            ]
        elif f.name in ("per_file_ignores", "rule_roles"):
            entries = ", ".join(f"{json.dumps(k)} = {json.dumps(list(v))}" for k, v in value)
            lines.append(f"{key} = {{{' ' + entries + ' ' if entries else ''}}}")
        else:
            lines.append(
                f"{key} = {json.dumps(list(value) if isinstance(value, tuple) else value)}"
            )
    return lines


def _emit(stream: TextIO, text: str) -> None:
    if text:
        stream.write(text)
        stream.flush()


def _error(message: str) -> None:
    print(f"session-lint: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    entry()
