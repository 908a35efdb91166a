"""flake8 entry point (``SL = "session_lint.editors.flake8_plugin:Plugin"``).

The very same :func:`~session_lint.analyzer.analyze` as the CLI, on the lines
flake8 already read; flake8's ``tree`` is ignored (libcst parses once). flake8
applies ``# noqa`` itself and never fixes, so neither happens here. The config
is found from each file's location, like the CLI's, unless
``--session-lint-config`` names one. A file the config excludes (``exclude``,
``extend-exclude``, or a directory no project lints, such as ``.venv`` or
``build``) gets no findings: flake8 names every file it checks, so this is the
CLI's ``--force-exclude``. A configuration error is one line on stderr, once per
process, and this plugin then reports nothing; it does not raise, since flake8
would then drop every other plugin's results of the run with it.

flake8 starts a new process for every run, and in an editor that is every save:
importing libcst and the rules would cost more than the analysis. So this module
imports neither; the analysis runs in the resident server
(:mod:`session_lint.editors.server`, started on first use, see :mod:`session_lint.editors.client`
for when it is used) and in-process only when the server cannot answer.
"""

from __future__ import annotations

import argparse
import ast
import io
import os
import sys
import tokenize
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from session_lint import __version__
from session_lint.editors import client
from session_lint.finding import Finding

if TYPE_CHECKING:
    from session_lint.project.config import Config

Result = tuple[int, int, str, type[Any]]
_Findings = tuple[list[tuple[int, int, str, str]], list[str]]

# The configuration errors already said, so that each is said once per process.
_said: set[str] = set()


class Plugin:
    name = "session-lint"
    version = __version__
    config_file: str | None = None
    use_server = False

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

        manager.add_option(
            "--session-lint-server",
            default="auto",
            choices=("auto", "on", "off"),
            parse_from_config=True,
            help="when flake8 checks one file, analyse it in the resident server: auto "
            "(default) = yes unless the CI environment variable is set; the "
            "SESSION_LINT_SERVER environment variable overrides auto",
        )

    @classmethod
    def parse_options(cls, options: argparse.Namespace) -> None:
        cls.config_file = getattr(options, "session_lint_config", None) or None
        server = getattr(options, "session_lint_server", None) or "auto"
        # The server is for the editor's case, flake8 on one file (or stdin). A run
        # on many files analyses in flake8's own processes, in parallel, where
        # the start-up cost is shared by the files.
        names = list(getattr(options, "filenames", None) or ())
        one_file = len(names) == 1 and (names[0] == "-" or os.path.isfile(names[0]))
        cls.use_server = one_file and client.wanted(None if server == "auto" else server)
        if cls.use_server and names[0] != "-":
            # Have the server analyse it while flake8 sets up and runs its own checks.
            client.prefetch(names[0], _config_dir(names[0]), cls.config_file)

    def run(self) -> Iterator[Result]:
        findings, errors = self._analyze()
        # A rule's internal error must not abort the user's whole flake8 run (the
        # CLI goes on too); say so on stderr and report what the other rules found.
        for error in errors:
            print(f"session-lint: error: {error}", file=sys.stderr)
        for line, column, code, message in findings:
            yield (line, column - 1, f"{code} {message}", type(self))

    def _analyze(self) -> _Findings:
        directory = _config_dir(self.filename)
        if self.use_server:
            try:
                answer = client.analyze_remote(
                    self.source, self.filename, directory, self.config_file
                )
            except client.ServerConfigError as exc:
                return _config_error(str(exc))
            if answer is not None:
                remote = [Finding.from_dict(self.filename, f) for f in answer["findings"]]
                return _rows(remote), [str(e) for e in answer["errors"]]
        from session_lint.analyzer import analyze
        from session_lint.project.config import ConfigError
        from session_lint.project.discovery import is_excluded

        try:
            config = _config(self.config_file, directory)
        except ConfigError as exc:
            return _config_error(str(exc))
        if self.filename not in ("-", "stdin") and is_excluded(self.filename, config):
            return [], []
        analysis = analyze(self.source, self.filename, config, apply_noqa=False)
        return _rows(analysis.findings), analysis.errors


def _rows(findings: Iterable[Finding]) -> list[tuple[int, int, str, str]]:
    """What flake8 takes of a finding: line, column, code and message."""
    return [(f.line, f.column, f.code, f.message) for f in findings]


def _config_error(message: str) -> _Findings:
    if message not in _said:
        _said.add(message)
        print(f"session-lint: error: {message} (session-lint checks skipped)", file=sys.stderr)
    return [], []


def _config_dir(filename: str) -> str:
    if filename in ("-", "stdin"):
        return str(Path.cwd())
    return str(Path(filename).resolve().parent)


@lru_cache(maxsize=256)
def _config(explicit: str | None, directory: str) -> Config:
    from session_lint.project.config import load_config

    # Walking up for pyproject.toml once per directory, not once per file.
    return _indexed(load_config([directory], explicit, index=False))


@lru_cache(maxsize=16)
def _indexed(config: Config) -> Config:
    """The project index once per project and flake8 process, not once per
    directory (each build walks the whole project)."""
    from session_lint.project.config import with_project_index

    return with_project_index(config)


def _encode(text: str) -> bytes:
    """flake8 hands over decoded lines; give the analyzer the bytes in the file's
    declared encoding so a ``# -*- coding: latin-1 -*-`` cookie still holds."""
    head = "".join(text.splitlines(keepends=True)[:2]).encode("utf-8", "replace")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(head).readline)
        return text.encode(encoding)
    except (SyntaxError, LookupError, UnicodeEncodeError):
        return text.encode("utf-8", "surrogateescape")
