"""Analysis in a long-lived process: what the flake8 analysis server
(:mod:`session_lint.editors.server`) and the language server
(:mod:`session_lint.editors.language_server`) share.

Both analyse bytes that are not (or not yet) on disk, for a path, under the config
that path would get from the CLI. A long-lived process keeps each directory's
config, with its project index, until told that a config file or a project module
changed; one analysis runs at a time (the GIL allows no more, and a deep file may
raise the process-wide recursion limit).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from session_lint.analyzer import Analysis, analyze, parse
from session_lint.cli.runner import ensure_recursion_limit
from session_lint.core.memo import StatementMemo
from session_lint.editors.reparse import Parsed, parsed, reparse
from session_lint.finding import Finding
from session_lint.project.config import Config, load_config, with_selection

if TYPE_CHECKING:
    from session_lint.fixes.apply import FixOutcome


@dataclass(frozen=True)
class Selection:
    """Overrides of the configured rule selection, as the CLI's ``--select`` and
    ``--ignore`` give them (``None``: as configured)."""

    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] | None = None


_KEPT_PARSES = 16


class WarmAnalysis:
    """Configs by directory, kept until :meth:`forget`; analyses one at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._analysis = threading.Lock()
        self._configs: dict[tuple[str, str | None, str | None], Config] = {}
        # The last parse of each buffer, to re-parse only what an edit changed
        # (session_lint/editors/reparse.py); a few buffers are edited at a time.
        self._parses: dict[str, Parsed] = {}
        # What the last analysis of each buffer computed per statement, for the
        # statements an edit keeps (session_lint/core/memo.py).
        self._memos: dict[str, StatementMemo] = {}

    def config_for(
        self,
        path: str,
        explicit: str | None = None,
        *,
        cwd: str | None = None,
        selection: Selection = Selection(),
    ) -> Config:
        """The config the CLI would use for ``path`` (raises ``ConfigError``)."""
        key = (os.path.dirname(os.path.abspath(os.path.join(cwd or "", path))), explicit, cwd)
        with self._lock:
            config = self._configs.get(key)
        if config is None:
            config = load_config([key[0]], explicit, cwd=cwd)
            with self._lock:
                self._configs[key] = config
        return with_selection(config, selection.select, selection.ignore)

    def forget(self) -> None:
        """Drop every kept config: a config file or a project module changed, so
        the next analysis reads the config and rebuilds the index (which re-reads
        only the changed files, see ``project_index``)."""
        with self._lock:
            self._configs.clear()

    def analyze(
        self,
        source: bytes,
        path: str,
        config: Config,
        *,
        apply_noqa: bool = True,
        incremental: bool = False,
    ) -> Analysis:
        """``incremental``: the bytes are an edited buffer; parse only the statements
        the edit changed since the last analysis of ``path`` (the language server)."""
        with self._analysis:
            ensure_recursion_limit()
            if not incremental:
                return analyze(source, path, config, apply_noqa=apply_noqa)
            memo = self._memos.pop(path, None) or StatementMemo()
            if len(self._memos) >= _KEPT_PARSES:
                self._memos.pop(next(iter(self._memos)))
            self._memos[path] = memo  # the most recent last
            return analyze(
                source,
                path,
                config,
                apply_noqa=apply_noqa,
                parse_with=lambda data: self._parse_edited(data, path),
                memo=memo,
            )

    def _parse_edited(self, source: bytes, path: str) -> cst.Module | Finding:
        try:
            text = source.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        previous = self._parses.get(path)
        spliced = reparse(previous, text) if previous is not None and text is not None else None
        if spliced is not None:
            self._parses[path] = spliced
            return spliced.module
        module = parse(source)
        self._parses.pop(path, None)
        if isinstance(module, cst.Module) and text is not None:
            known = parsed(text, module)
            if known is not None:
                if len(self._parses) >= _KEPT_PARSES:
                    self._parses.pop(next(iter(self._parses)))
                self._parses[path] = known
        return module

    def fix(self, source: bytes, path: str, config: Config, *, unsafe: bool) -> FixOutcome:
        # The fix layer pulls in libcst.codemod (a third of a cold start): only
        # when something is fixed.
        from session_lint.fixes.apply import fix_source

        with self._analysis:
            ensure_recursion_limit()
            return fix_source(source, path, config, unsafe=unsafe)
