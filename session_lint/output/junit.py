"""JUnit XML in ruff's layout: one ``testsuite`` per file, one ``testcase`` per
finding with a ``failure``; a run without findings is one passing testcase, and
each error of the run (a missing path, an unreadable file) a testcase with an
``error``, so that a run that linted nothing does not read as a green one."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from itertools import groupby

from session_lint.finding import Finding

PACKAGE = "org.session-lint"


def render(findings: Sequence[Finding], errors: Sequence[str] = ()) -> str:
    root = ET.Element(
        "testsuites",
        name="session-lint",
        tests=str(max(len(findings), 1) + len(errors)),
        failures=str(len(findings)),
        errors=str(len(errors)),
    )
    for path, group in groupby(findings, key=lambda f: f.path):
        items = list(group)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=path,
            tests=str(len(items)),
            disabled="0",
            errors="0",
            failures=str(len(items)),
            package=PACKAGE,
        )
        for finding in items:
            case = ET.SubElement(
                suite,
                "testcase",
                name=f"{PACKAGE}.{finding.code}",
                classname=path,
                file=path,
                line=str(finding.line),
                column=str(finding.column),
            )
            failure = ET.SubElement(case, "failure", message=finding.message, type=finding.code)
            failure.text = f"line {finding.line}, col {finding.column}, {finding.message}"
    if errors or not findings:
        suite = ET.SubElement(
            root,
            "testsuite",
            name="session-lint",
            tests=str(len(errors) or 1),
            disabled="0",
            errors=str(len(errors)),
            failures="0",
            package=PACKAGE,
        )
        if not errors:
            ET.SubElement(suite, "testcase", name="No errors found", classname="session-lint")
        for message in errors:
            case = ET.SubElement(suite, "testcase", name="error", classname="session-lint")
            ET.SubElement(case, "error", message=message).text = message
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
