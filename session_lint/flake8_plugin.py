"""flake8 entry point (``SL = "session_lint.flake8_plugin:Plugin"``).

The very same :func:`~session_lint.analyzer.analyze` as the CLI, on the lines
flake8 already read; flake8's ``tree`` is ignored (libcst parses once). flake8
applies ``# noqa`` itself and never fixes, so neither happens here. The config
is found from each file's location, like the CLI's, unless
``--session-lint-config`` names one; a configuration error stops flake8 with its
message, as it stops the CLI.
"""

from __future__ import annotations

import argparse
import ast
import io
import sys
import tokenize
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from session_lint import __version__
from session_lint.analyzer import analyze
from session_lint.config import Config, load_config

Result = tuple[int, int, str, type[Any]]


class Plugin:
    name = "session-lint"
    version = __version__
    config_file: str | None = None

    def __init__(self, tree: ast.AST | None, lines: Sequence[str], filename: str) -> None:
        del tree  # flake8's ast is not ours: libcst parses the source once
        self.filename = filename
        self.source = _encode("".join(lines))

    @classmethod
    def add_options(cls, manager: Any) -> None:
        manager.add_option(
            "--session-lint-config",
            default=None,
            parse_from_config=True,
            help="pyproject.toml (or TOML file) with [tool.session-lint]; default: the "
            "nearest pyproject.toml with that table above each file",
        )

    @classmethod
    def parse_options(cls, options: argparse.Namespace) -> None:
        cls.config_file = getattr(options, "session_lint_config", None) or None

    def run(self) -> Iterator[Result]:
        config = _config(self.config_file, _config_dir(self.filename))
        analysis = analyze(self.source, self.filename, config, apply_noqa=False)
        # A rule's internal error must not abort the user's whole flake8 run (the
        # CLI goes on too); say so on stderr and report what the other rules found.
        for error in analysis.errors:
            print(f"session-lint: error: {error}", file=sys.stderr)
        for finding in analysis.findings:
            yield (
                finding.line,
                finding.column - 1,
                f"{finding.code} {finding.message}",
                type(self),
            )


def _config_dir(filename: str) -> str:
    if filename in ("-", "stdin"):
        return str(Path.cwd())
    return str(Path(filename).resolve().parent)


@lru_cache(maxsize=256)
def _config(explicit: str | None, directory: str) -> Config:
    # Walking up for pyproject.toml once per directory, not once per file.
    return load_config([directory], explicit)


def _encode(text: str) -> bytes:
    """flake8 hands over decoded lines; give the analyzer the bytes in the file's
    declared encoding so a ``# -*- coding: latin-1 -*-`` cookie still holds."""
    head = "".join(text.splitlines(keepends=True)[:2]).encode("utf-8", "replace")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(head).readline)
        return text.encode(encoding)
    except (SyntaxError, LookupError, UnicodeEncodeError):
        return text.encode("utf-8", "surrogateescape")
