"""SARIF 2.1.0: one run, one ``tool.driver.rules`` entry per registered rule
(help text from the rule's docs), one result per finding."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from session_lint import __version__
from session_lint.finding import Finding
from session_lint.output.source import Sources, fingerprints
from session_lint.rules import Rule
from session_lint.rules.docs import rule_doc_url

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def rule_descriptor(rule: type[Rule]) -> dict[str, Any]:
    docs = rule.docs()
    what = rule.doc_section("What it does") or rule.message
    out: dict[str, Any] = {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary() or rule.message},
        "fullDescription": {"text": what},
        "help": {"text": docs, "markdown": docs},
        "defaultConfiguration": {"level": "error"},
        "properties": {"fixAvailability": rule.fix_availability.value},
    }
    url = rule_doc_url(rule.code)
    if url is not None:  # the page exists only in a checkout (session_lint/rules/docs.py)
        out["helpUri"] = url
    return out


def artifact_uri(path: str) -> str:
    """A URI reference for a display path: relative stays relative (resolved by
    the consumer against the checkout), absolute becomes ``file://``."""
    pure = PurePath(path)
    if pure.is_absolute():
        return "file://" + quote(pure.as_posix())
    return quote(pure.as_posix())


def result(finding: Finding, index: dict[str, int], fingerprint: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ruleId": finding.code,
        "level": "error",
        "message": {"text": finding.message},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": artifact_uri(finding.path)},
                    "region": {
                        "startLine": finding.line,
                        "startColumn": finding.column,
                        "endLine": finding.end_line,
                        "endColumn": finding.end_column,
                    },
                }
            }
        ],
        # Stable when lines move (session_lint/output/source.py): code scanning
        # matches results across commits by it.
        "partialFingerprints": {"sessionLint/v1": fingerprint},
    }
    if finding.code in index:
        out["ruleIndex"] = index[finding.code]
    if finding.fix_applicability is not None:
        out["properties"] = {"fixApplicability": finding.fix_applicability.value}
    return out


def invocation(errors: Sequence[str]) -> dict[str, Any]:
    """Whether the run linted everything it was asked to: an error (a missing
    path, an unreadable file) makes it unsuccessful, with one notification each,
    so that code scanning does not take the run for a clean one."""
    return {
        "executionSuccessful": not errors,
        "toolExecutionNotifications": [
            {"level": "error", "message": {"text": message}} for message in errors
        ],
    }


def document(
    findings: Sequence[Finding],
    rules: Sequence[type[Rule]],
    errors: Sequence[str] = (),
    sources: Sources | None = None,
) -> dict[str, Any]:
    ordered = sorted(rules, key=lambda r: r.code)
    index = {rule.code: i for i, rule in enumerate(ordered)}
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "session-lint",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": [rule_descriptor(r) for r in ordered],
                    }
                },
                # Our columns count characters (code points), not UTF-16 units.
                "columnKind": "unicodeCodePoints",
                "results": [
                    result(f, index, fingerprint)
                    for f, fingerprint in zip(
                        findings, fingerprints(findings, sources or Sources()), strict=True
                    )
                ],
                "invocations": [invocation(errors)],
            }
        ],
    }


def render(
    findings: Sequence[Finding],
    rules: Sequence[type[Rule]],
    errors: Sequence[str] = (),
    sources: Sources | None = None,
) -> str:
    doc = document(findings, rules, errors, sources)
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
