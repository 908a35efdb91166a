"""The rules' docs: what ``--explain`` and ``--list-rules`` print, one Markdown page
per rule (``docs/rules/SLxxx.md``, generated from the rule classes' docstrings),
and the address a report gives for a rule: SARIF ``helpUri``, the language
server's ``codeDescription``.

There is no hosted site: the address is the ``file:`` URI of the page in the
checkout the package runs from (an editable install, a clone on ``PYTHONPATH``),
and None when the pages are not there (a wheel ships no ``docs/``). A report then
carries the rule's text itself (SARIF ``help``, the language server's hover).

    python -m session_lint.rules.docs           # write the pages
    python -m session_lint.rules.docs --check   # exit 1 when a page is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from session_lint.project.roles import ALL_ROLES, DISPLAY_ORDER, display
from session_lint.rules import ALL_RULES, RULES_BY_CODE

PAGES = Path(__file__).resolve().parents[2] / "docs" / "rules"
REGENERATE = "python -m session_lint.rules.docs"


def list_rules(fmt: str = "text") -> str:
    if fmt == "json":
        rows = [
            {
                "code": r.code,
                "name": r.name,
                "fix": r.fix_availability.value,
                "roles": [role for role in DISPLAY_ORDER if role in r.roles],
                "opt_in": r.opt_in,
                "summary": r.summary(),
            }
            for r in ALL_RULES
        ]
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    width = max(len(r.name) for r in ALL_RULES)
    # Every role is the common case: "all" keeps the column narrow.
    roles = {r.code: "all" if r.roles == ALL_ROLES else display(r.roles) for r in ALL_RULES}
    roles_width = max(len(text) for text in roles.values())
    lines = [
        f"{r.code}  {r.name:<{width}}  fix: {r.fix_availability.value:<9}  "
        f"runs in: {roles[r.code]:<{roles_width}}  {'(opt-in) ' if r.opt_in else ''}{r.summary()}"
        for r in ALL_RULES
    ]
    return "\n".join(lines) + "\n"


def explain(code: str) -> str:
    rule = RULES_BY_CODE[code]
    availability = {
        "always": "Fix is always available.",
        "sometimes": "Fix is sometimes available.",
        "none": "Fix is not available.",
    }[rule.fix_availability.value]
    opt_in = (
        f"Opt-in: runs only when selected by its full code (extend-select = [\"{rule.code}\"]).\n\n"
        if rule.opt_in
        else ""
    )
    return (
        f"# {rule.code} {rule.name}\n\n{availability}\n\n{opt_in}{rule.docs()}\n\n"
        f"Runs in: {display(rule.roles)}\n"
    )


def rule_doc_url(code: str) -> str | None:
    """The address of a rule's docs page, when this installation has the pages."""
    page = PAGES / f"{code}.md"
    return page.as_uri() if page.is_file() else None


def page(code: str) -> str:
    return (
        f"<!-- Generated from the rule's docstring by `{REGENERATE}`; do not edit. -->\n\n"
        + explain(code)
    )


def expected_pages() -> dict[str, str]:
    """File name -> content, for every registered rule."""
    return {f"{rule.code}.md": page(rule.code) for rule in ALL_RULES}


def stale(directory: Path = PAGES) -> list[str]:
    """The pages that are missing, differ from their rule, or name no rule."""
    expected = expected_pages()
    present = {p.name for p in directory.glob("SL*.md")} if directory.is_dir() else set()
    out = [
        name
        for name, text in expected.items()
        if name not in present or (directory / name).read_text(encoding="utf-8") != text
    ]
    return sorted([*out, *(present - expected.keys())])


def write(directory: Path = PAGES) -> list[str]:
    """Bring the pages up to date; returns the names written or removed."""
    changed = stale(directory)
    directory.mkdir(parents=True, exist_ok=True)
    expected = expected_pages()
    for name in changed:
        path = directory / name
        if name in expected:
            path.write_text(expected[name], encoding="utf-8")
        else:
            path.unlink()
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=REGENERATE,
        description="Write docs/rules/SLxxx.md from the rules' docstrings.",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a page is stale")
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        for name in names:
            print(f"stale: docs/rules/{name}", file=sys.stderr)
        if names:
            print(f"regenerate with: {REGENERATE}", file=sys.stderr)
        return 1 if names else 0
    for name in write():
        print(f"wrote docs/rules/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
