"""``path:line:col: CODE message`` lines (flake8/ruff shape), then a summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from session_lint.finding import Finding
from session_lint.output import count_fixable, fixable_now


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def render_line(finding: Finding) -> str:
    return f"{finding.path}:{finding.line}:{finding.column}: {finding.code} {finding.message}"


def summary(findings: Sequence[Finding], *, unsafe_fixes: bool, errors: int = 0) -> str:
    """``Found 12 problems (7 fixable with --fix, 3 more with --unsafe-fixes)``; with
    errors (printed before the report), never "All checks passed!"."""
    if errors:
        found = summary(findings, unsafe_fixes=unsafe_fixes) if findings else ""
        tail = f"{plural(errors, 'error')}: not every file was linted"
        return f"{found}; {tail}" if found else f"Found {tail}"
    if not findings:
        return "All checks passed!"
    safe, unsafe = count_fixable(findings)
    if unsafe_fixes:  # already asked for: --fix alone would apply them
        hint = f"{safe + unsafe} fixable with --fix" if safe + unsafe else ""
    elif safe and unsafe:
        hint = f"{safe} fixable with --fix, {unsafe} more with --unsafe-fixes"
    elif safe:
        hint = f"{safe} fixable with --fix"
    elif unsafe:
        hint = f"{unsafe} fixable with --fix --unsafe-fixes"
    else:
        hint = ""
    found = f"Found {plural(len(findings), 'problem')}"
    return f"{found} ({hint})" if hint else found


def statistics(findings: Sequence[Finding], *, unsafe_fixes: bool) -> list[str]:
    """One line per code: count, code, ``[*]`` when --fix would fix some, rule name."""
    counts = Counter(f.code for f in findings)
    names = {f.code: f.name for f in findings}
    fixable = {f.code for f in findings if fixable_now(f, unsafe_fixes=unsafe_fixes)}
    width = max((len(str(n)) for n in counts.values()), default=1)
    return [
        f"{counts[code]:>{width}}\t{code}\t{'[*] ' if code in fixable else ''}{names[code]}"
        for code in sorted(counts)
    ]


def render(
    findings: Sequence[Finding],
    *,
    unsafe_fixes: bool = False,
    fixed: int | None = None,
    show_statistics: bool = False,
    errors: int = 0,
) -> str:
    """The whole text report; ``fixed`` is the number of fixes applied under --fix."""
    if show_statistics:
        lines = statistics(findings, unsafe_fixes=unsafe_fixes)
    else:
        lines = [render_line(f) for f in findings]
    if fixed:
        lines.append(f"Fixed {plural(fixed, 'problem')}")
    lines.append(summary(findings, unsafe_fixes=unsafe_fixes, errors=errors))
    return "\n".join(lines) + "\n"


def fix_summary(
    per_file: dict[str, dict[str, int]], names: dict[str, str], *, applied: bool
) -> str:
    """``--show-fixes``, as ruff lists them: ``Fixed 3 problems:``, then per file
    ``- app/db.py:`` and one line per code with its count and rule name."""
    total = sum(sum(codes.values()) for codes in per_file.values())
    if not total:
        return "No fixes applied\n" if applied else "No fixes available\n"
    head = "Fixed" if applied else "Would fix"
    lines = [f"{head} {plural(total, 'problem')}:"]
    for path in sorted(per_file):
        codes = per_file[path]
        if not codes:
            continue
        lines.append(f"- {path}:")
        width = max(len(str(n)) for n in codes.values())
        lines += [
            f"    {codes[code]:>{width}} \N{MULTIPLICATION SIGN} {code} ({names.get(code, '?')})"
            for code in sorted(codes)
        ]
    return "\n".join(lines) + "\n"
