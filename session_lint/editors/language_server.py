"""``session-lint server``: a Language Server Protocol server over stdio (pygls).

The same analyzer, configuration, rules and project index as the CLI, kept warm in
one process (:mod:`session_lint.editors.resident`), for any editor with an LSP client:

- diagnostics for the editor's buffer on open, change and save; after a change
  only the newest version is analysed, and a result for a version that is no
  longer the newest is dropped, never published;
- code actions: each finding's fix as a ``quickfix`` (unsafe ones labelled and
  never preferred), "Disable SLxxx for this line" (``# noqa``), and
  ``source.fixAll.session-lint`` (every safe fix, as ``session-lint --fix``);
  an edit is computed on the exact version the client has and names that version,
  so a client refuses it for any other; a client that resolves actions
  (``codeAction/resolve``, as VS Code and Neovim do) gets the list at once and
  each edit when it asks, refused with ``ContentModified`` once the text changed;
- hover on a finding shows its rule's documentation;
- a change to a ``pyproject.toml`` or a Python file (``didChangeWatchedFiles``)
  drops the kept configs and project indexes and analyses every open document
  again;
- ``initializationOptions`` and ``workspace/configuration`` (section
  ``session-lint``) may set ``select``, ``ignore``, ``unsafeFixes`` and
  ``severity``;
- the server logs to the client (``window/logMessage``), never to stdout, which
  carries the protocol.

Documents are synchronised in full (the client sends the whole text on each
change): positions are then this module's business alone, counted as the
tokenizer counts lines (``\\n``, ``\\r\\n``, ``\\r``), which pygls's incremental
updates do not (they split lines at form feeds and U+2028 too).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcContentModified
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from session_lint import __version__
from session_lint.analyzer import Analysis
from session_lint.core.noqa import LINE_BREAK, with_codes
from session_lint.editors.resident import Selection, WarmAnalysis
from session_lint.finding import Applicability, Finding
from session_lint.project.config import Config, ConfigError, rule_codes
from session_lint.rules.docs import rule_doc_url
from session_lint.syntax import parses

SOURCE = "session-lint"
FIX_ALL = "source.fixAll.session-lint"
_SEVERITIES = {
    "error": lsp.DiagnosticSeverity.Error,
    "warning": lsp.DiagnosticSeverity.Warning,
    "information": lsp.DiagnosticSeverity.Information,
    "hint": lsp.DiagnosticSeverity.Hint,
}
T = TypeVar("T")


@dataclass
class Settings:
    """What the client may set (``initializationOptions`` or ``workspace/configuration``)."""

    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] | None = None
    unsafe_fixes: bool = False
    severity: lsp.DiagnosticSeverity = lsp.DiagnosticSeverity.Warning

    @property
    def selection(self) -> Selection:
        return Selection(self.select, self.ignore)


@dataclass
class Analysed:
    """One version of one document and what the analysis found in it."""

    version: int | None
    text: str
    source: bytes
    path: str
    config: Config
    analysis: Analysis
    # The bytes after every fix that ``source.fixAll`` applies, once computed.
    fixed: bytes | None = None


@dataclass
class Document:
    uri: str
    path: str
    version: int | None
    text: str
    analysed: Analysed | None = None
    # Set while a newer version waits for analysis: the running one is then stale.
    dirty: bool = False
    running: bool = False


class SessionLintServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(SOURCE, __version__, text_document_sync_kind=lsp.TextDocumentSyncKind.Full)
        self.warm = WarmAnalysis()
        self.settings = Settings()
        self.documents: dict[str, Document] = {}
        # One worker: analyses run one at a time anyway (``WarmAnalysis``), and the
        # event loop stays free to take the next change while one runs.
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analysis")
        self._shown: set[str] = set()
        # Set once the client's settings are in (``initialized``): nothing is
        # analysed under settings the client is about to replace.
        self.ready = asyncio.Event()

    # -- logging -------------------------------------------------------------------
    def log(self, message: str, kind: lsp.MessageType = lsp.MessageType.Info) -> None:
        self.window_log_message(lsp.LogMessageParams(type=kind, message=message))

    def show_once(self, message: str) -> None:
        """A problem the user must fix (a broken config): shown once, then logged."""
        self.log(message, lsp.MessageType.Error)
        if message not in self._shown:
            self._shown.add(message)
            self.window_show_message(
                lsp.ShowMessageParams(
                    type=lsp.MessageType.Error, message=f"session-lint: {message}"
                )
            )

    # -- settings ------------------------------------------------------------------
    def apply_settings(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            return
        if isinstance(raw.get("session-lint"), dict):  # a client that sends the whole tree
            raw = raw["session-lint"]
        settings = Settings(
            select=self.settings.select,
            ignore=self.settings.ignore,
            unsafe_fixes=self.settings.unsafe_fixes,
            severity=self.settings.severity,
        )
        known = rule_codes()
        for key in ("select", "ignore"):
            if key in raw:
                codes = _codes(raw[key], key, known)
                if isinstance(codes, str):
                    self.show_once(codes)
                else:
                    setattr(settings, key, codes)
        for key in ("unsafeFixes", "unsafe-fixes", "unsafe_fixes"):
            if key in raw:
                settings.unsafe_fixes = bool(raw[key])
        if "severity" in raw:
            severity = _SEVERITIES.get(str(raw["severity"]).lower())
            if severity is None:
                self.show_once(
                    f"severity: {raw['severity']!r} is not one of {', '.join(_SEVERITIES)}"
                )
            else:
                settings.severity = severity
        self.settings = settings

    async def pull_configuration(self) -> None:
        """Ask the client for the ``session-lint`` section, when it can answer."""
        capabilities = self.client_capabilities.workspace
        if capabilities is None or not capabilities.configuration:
            return
        try:
            answer = await self.workspace_configuration_async(
                lsp.ConfigurationParams(items=[lsp.ConfigurationItem(section=SOURCE)])
            )
        except Exception as exc:  # a client that says it can but cannot
            self.log(f"workspace/configuration failed: {exc}", lsp.MessageType.Warning)
            return
        if answer:
            self.apply_settings(answer[0])

    async def watch_files(self) -> None:
        """Have the client tell us of changes to config files and Python modules,
        when it can register watchers."""
        capabilities = self.client_capabilities.workspace
        watched = None if capabilities is None else capabilities.did_change_watched_files
        if watched is None or not watched.dynamic_registration:
            return
        options = lsp.DidChangeWatchedFilesRegistrationOptions(
            watchers=[
                lsp.FileSystemWatcher(glob_pattern="**/pyproject.toml"),
                lsp.FileSystemWatcher(glob_pattern="**/*.py"),
            ]
        )
        try:
            await self.client_register_capability_async(
                lsp.RegistrationParams(
                    registrations=[
                        lsp.Registration(
                            id="session-lint-watched-files",
                            method=lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                            register_options=options,
                        )
                    ]
                )
            )
        except Exception as exc:
            self.log(f"could not watch files: {exc}", lsp.MessageType.Warning)

    def reanalyse_all(self) -> None:
        for uri in list(self.documents):
            self.schedule(uri)

    # -- analysis ------------------------------------------------------------------
    def schedule(self, uri: str) -> None:
        document = self.documents.get(uri)
        if document is None:
            return
        document.dirty = True
        if not document.running:
            asyncio.get_running_loop().create_task(self._analyse_newest(document))

    async def _analyse_newest(self, document: Document) -> None:
        """Analyse the newest version until no newer one is waiting; publish only a
        result whose version is still the newest."""
        document.running = True
        try:
            await self.ready.wait()
            while document.dirty:
                document.dirty = False
                version, text = document.version, document.text
                analysed = await self.in_worker(
                    lambda v=version, t=text: self.analyse(document, v, t)  # type: ignore[misc]
                )
                if document.dirty or self.documents.get(document.uri) is not document:
                    continue  # a newer version came in, or the document was closed
                document.analysed = analysed
                self.publish(document, analysed)
        finally:
            document.running = False

    async def in_worker(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.worker, work)

    def analyse(self, document: Document, version: int | None, text: str) -> Analysed | None:
        source = text.encode("utf-8", "surrogatepass")
        try:
            config = self.warm.config_for(document.path, selection=self.settings.selection)
        except ConfigError as exc:
            self.show_once(str(exc))
            return None
        try:
            analysis = self.warm.analyze(source, document.path, config, incremental=True)
        except Exception as exc:  # the server outlives any analysis
            self.log(
                f"{document.path}: internal error: {type(exc).__name__}: {exc}",
                lsp.MessageType.Error,
            )
            return None
        for error in analysis.errors:
            self.log(error, lsp.MessageType.Warning)
        return Analysed(version, text, source, document.path, config, analysis)

    def publish(self, document: Document, analysed: Analysed | None) -> None:
        diagnostics = [] if analysed is None else self.diagnostics(analysed)
        self.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(
                uri=document.uri, diagnostics=diagnostics, version=document.version
            )
        )

    def diagnostics(self, analysed: Analysed) -> list[lsp.Diagnostic]:
        lines = Lines(analysed.text, self.encoding)
        out = []
        for finding in analysed.analysis.findings:
            href = rule_doc_url(finding.code)
            out.append(
                lsp.Diagnostic(
                    range=lines.range(finding),
                    message=finding.message,
                    severity=self.settings.severity,
                    code=finding.code,
                    code_description=None if href is None else lsp.CodeDescription(href=href),
                    source=SOURCE,
                    data={"fix": None if finding.fix is None else finding.fix.applicability.value},
                )
            )
        return out

    @property
    def encoding(self) -> str:
        return str(self.workspace.position_encoding or lsp.PositionEncodingKind.Utf16)

    async def current(self, uri: str) -> Analysed | None:
        """The analysis of exactly the document's current version (made now if the
        kept one is of another version)."""
        document = self.documents.get(uri)
        if document is None:
            return None
        analysed = document.analysed
        if (
            analysed is not None
            and analysed.version == document.version
            and analysed.text == document.text
        ):
            return analysed
        version, text = document.version, document.text
        analysed = await self.in_worker(lambda: self.analyse(document, version, text))
        if analysed is not None and document.version == version:
            document.analysed = analysed
        return analysed

    # -- code actions ----------------------------------------------------------------
    @property
    def lazy_edits(self) -> bool:
        """Whether the client resolves an action's edit when it is chosen
        (``codeAction/resolve``): the list is then answered without computing any."""
        action = self.client_capabilities.text_document and (
            self.client_capabilities.text_document.code_action
        )
        support = action.resolve_support if action else None
        return support is not None and "edit" in support.properties

    def actions(
        self, document: Document, analysed: Analysed, params: lsp.CodeActionParams
    ) -> list[lsp.CodeAction]:
        only = params.context.only
        lines = Lines(analysed.text, self.encoding)
        out: list[lsp.CodeAction] = []
        wants_quickfix = only is None or any(
            lsp.CodeActionKind.QuickFix.value.startswith(kind) or kind == "" for kind in only
        )
        if wants_quickfix:
            for index, finding in enumerate(analysed.analysis.findings):
                if not lines.overlaps(finding, params.range):
                    continue
                diagnostic = _matching(params.context.diagnostics, finding, lines)
                for kind in ("fix", "noqa"):
                    action = self.action(document, analysed, kind, index, diagnostic)
                    if action is not None:
                        out.append(action)
        if only is None or any(FIX_ALL.startswith(kind) for kind in only):
            # Asked for by kind (an editor's fix-on-save): always answered, an empty
            # edit when nothing applies. In a plain list, only when there is a fix.
            if only is not None or any(f.fix is not None for f in analysed.analysis.findings):
                action = self.action(document, analysed, "fixAll", None, None)
                nothing = action is not None and action.edit == _no_edit(document, analysed)
                if action is not None and not (only is None and nothing):
                    out.append(action)
        return out

    def action(
        self,
        document: Document,
        analysed: Analysed,
        kind: str,
        index: int | None,
        diagnostic: lsp.Diagnostic | None,
    ) -> lsp.CodeAction | None:
        """The action, with its edit, or with what resolves it (``data``) when the
        client resolves edits; None when it has nothing to offer."""
        if kind == "fixAll":
            action = lsp.CodeAction(title="session-lint: fix all", kind=FIX_ALL)
        else:
            assert index is not None
            finding = analysed.analysis.findings[index]
            if kind == "fix":
                fix = finding.fix
                if fix is None or analysed.analysis.module is None:
                    return None
                unsafe = fix.applicability is Applicability.UNSAFE
                title = f"{finding.code}: {fix.description or 'apply the fix'}"
                action = lsp.CodeAction(
                    title=f"{title} (unsafe)" if unsafe else title,
                    kind=lsp.CodeActionKind.QuickFix,
                    is_preferred=not unsafe,
                )
            else:
                action = lsp.CodeAction(
                    title=f"Disable {finding.code} for this line", kind=lsp.CodeActionKind.QuickFix
                )
            action.diagnostics = None if diagnostic is None else [diagnostic]
        if self.lazy_edits:
            action.data = {
                "uri": document.uri,
                "version": analysed.version,
                "kind": kind,
                "index": index,
            }
            return action
        action.edit = self.action_edit(document, analysed, kind, index)
        return action if action.edit is not None else None

    def action_edit(
        self, document: Document, analysed: Analysed, kind: str, index: int | None
    ) -> lsp.WorkspaceEdit | None:
        """The edit of an action on this analysed version (None: nothing to offer)."""
        if kind == "fixAll":
            return self.fix_all_edit(document, analysed)
        assert index is not None
        finding = analysed.analysis.findings[index]
        if kind == "noqa":
            new_text = with_noqa(analysed.text, finding.line, finding.code)
            return None if new_text is None else self.edit(document, analysed, new_text)
        from session_lint.fixes.apply import apply_fixes  # libcst.codemod: only when fixing

        module = analysed.analysis.module
        if finding.fix is None or module is None:
            return None
        new_module, applied = apply_fixes(module, [finding.fix])
        if not applied:
            return None
        new_text = new_module.code
        if not parses(new_text):
            return None  # never offer an edit that does not parse
        return self.edit(document, analysed, new_text)

    def fix_all_edit(self, document: Document, analysed: Analysed) -> lsp.WorkspaceEdit | None:
        if analysed.fixed is None:  # once per version: fix-on-save asks on every save
            outcome = self.warm.fix(
                analysed.source, analysed.path, analysed.config, unsafe=self.settings.unsafe_fixes
            )
            for error in outcome.errors:
                self.log(error, lsp.MessageType.Warning)
            analysed.fixed = None if outcome.errors else outcome.source
        if analysed.fixed is None:
            return None
        if analysed.fixed == analysed.source:
            return _no_edit(document, analysed)
        return self.edit(document, analysed, analysed.fixed.decode("utf-8", "surrogatepass"))

    async def resolve(self, action: lsp.CodeAction) -> lsp.CodeAction:
        data = action.data if isinstance(action.data, dict) else {}
        document = self.documents.get(str(data.get("uri")))
        analysed = None if document is None else await self.current(document.uri)
        if document is None or analysed is None or analysed.version != data.get("version"):
            # The edit would be for a text the client no longer has.
            raise JsonRpcContentModified("the document changed since the action was offered")
        kind, index = str(data.get("kind")), data.get("index")
        if kind not in ("fix", "noqa", "fixAll") or not (
            index is None
            or (isinstance(index, int) and 0 <= index < len(analysed.analysis.findings))
        ):
            return action
        action.edit = await self.in_worker(
            lambda: self.action_edit(document, analysed, kind, index)
        )
        return action

    def edit(self, document: Document, analysed: Analysed, new_text: str) -> lsp.WorkspaceEdit:
        """The change from the analysed text to ``new_text``, for that version only."""
        edit = Lines(analysed.text, self.encoding).text_edit(new_text)
        return lsp.WorkspaceEdit(
            document_changes=[
                lsp.TextDocumentEdit(
                    text_document=lsp.OptionalVersionedTextDocumentIdentifier(
                        uri=document.uri, version=analysed.version
                    ),
                    edits=[edit],
                )
            ]
        )


def _no_edit(document: Document, analysed: Analysed) -> lsp.WorkspaceEdit:
    return lsp.WorkspaceEdit(
        document_changes=[
            lsp.TextDocumentEdit(
                text_document=lsp.OptionalVersionedTextDocumentIdentifier(
                    uri=document.uri, version=analysed.version
                ),
                edits=[],
            )
        ]
    )


def _codes(value: Any, key: str, known: frozenset[str]) -> tuple[str, ...] | str:
    """The codes of a ``select``/``ignore`` setting, or the message saying why not."""
    if isinstance(value, str):
        value = [part for part in re.split(r"[,\s]+", value) if part]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return f"{key}: expected a list of rule codes, got {value!r}"
    codes = tuple(v.strip().upper() for v in value)
    for code in codes:
        if code != "ALL" and not any(k.startswith(code) for k in known):
            return f"{key}: unknown rule code or prefix {code!r}"
    return codes


def _matching(
    diagnostics: Iterable[lsp.Diagnostic], finding: Finding, lines: Lines
) -> lsp.Diagnostic | None:
    wanted = lines.range(finding)
    for diagnostic in diagnostics:
        if diagnostic.code == finding.code and diagnostic.range == wanted:
            return diagnostic
    return None


class Lines:
    """A text's lines as the tokenizer counts them, and positions in the client's
    encoding (LSP counts UTF-16 code units unless the client chose otherwise)."""

    def __init__(self, text: str, encoding: str) -> None:
        self.text = text
        self.encoding = encoding
        self.starts = [0] + [m.end() for m in LINE_BREAK.finditer(text)]

    def _line(self, index: int) -> str:
        start = self.starts[index]
        end = self.starts[index + 1] if index + 1 < len(self.starts) else len(self.text)
        return self.text[start:end]

    def units(self, line: str, characters: int) -> int:
        head = line[:characters]
        if self.encoding == lsp.PositionEncodingKind.Utf8:
            return len(head.encode("utf-8", "surrogatepass"))
        if self.encoding == lsp.PositionEncodingKind.Utf32:
            return len(head)
        return len(head.encode("utf-16-le", "surrogatepass")) // 2

    def position(self, line: int, column: int) -> lsp.Position:
        """1-based line, 1-based character column -> an LSP position."""
        index = min(max(line - 1, 0), len(self.starts) - 1)
        return lsp.Position(line=index, character=self.units(self._line(index), column - 1))

    def at_offset(self, offset: int) -> lsp.Position:
        index = max(i for i, start in enumerate(self.starts) if start <= offset) if offset else 0
        return lsp.Position(
            line=index,
            character=self.units(self.text[self.starts[index] :], offset - self.starts[index]),
        )

    def range(self, finding: Finding) -> lsp.Range:
        return lsp.Range(
            start=self.position(finding.line, finding.column),
            end=self.position(finding.end_line, finding.end_column),
        )

    def overlaps(self, finding: Finding, wanted: lsp.Range) -> bool:
        span = self.range(finding)
        start = (span.start.line, span.start.character)
        end = (span.end.line, span.end.character)
        return not (
            end < (wanted.start.line, wanted.start.character)
            or start > (wanted.end.line, wanted.end.character)
        )

    def contains(self, finding: Finding, position: lsp.Position) -> bool:
        span = self.range(finding)
        point = (position.line, position.character)
        return (
            (span.start.line, span.start.character) <= point <= (span.end.line, span.end.character)
        )

    def text_edit(self, new_text: str) -> lsp.TextEdit:
        """One edit replacing the changed middle of the text (common head and tail kept)."""
        old = self.text
        head = 0
        limit = min(len(old), len(new_text))
        while head < limit and old[head] == new_text[head]:
            head += 1
        tail = 0
        while (
            tail < limit - head and old[len(old) - 1 - tail] == new_text[len(new_text) - 1 - tail]
        ):
            tail += 1
        # Never split a "\r\n" pair: widen the edit to whole line breaks.
        while head > 0 and old[head - 1] == "\r" and head < len(old) and old[head] == "\n":
            head -= 1
        return lsp.TextEdit(
            range=lsp.Range(start=self.at_offset(head), end=self.at_offset(len(old) - tail)),
            new_text=new_text[head : len(new_text) - tail],
        )


def with_noqa(text: str, line: int, code: str) -> str | None:
    """``text`` with ``code`` in the ``# noqa`` of ``line``; None where nothing is
    to be done (a comment cannot go there, or the line already silences it)."""
    new = with_codes(text, line, [code])
    return None if new is None or new == text else new


def build_server() -> SessionLintServer:
    server = SessionLintServer()

    @server.feature(lsp.INITIALIZE)
    def initialize(ls: SessionLintServer, params: lsp.InitializeParams) -> None:
        ls.apply_settings(params.initialization_options)

    @server.feature(lsp.INITIALIZED)
    async def initialized(ls: SessionLintServer, params: lsp.InitializedParams) -> None:
        try:
            await ls.pull_configuration()
            await ls.watch_files()
        finally:
            ls.ready.set()

    @server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(
        ls: SessionLintServer, params: lsp.DidChangeConfigurationParams
    ) -> None:
        ls.apply_settings(params.settings)
        await ls.pull_configuration()
        ls.reanalyse_all()

    @server.feature(lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(
        ls: SessionLintServer, params: lsp.DidChangeWatchedFilesParams
    ) -> None:
        ls.log(f"{len(params.changes)} watched file(s) changed: reloading config and index")
        ls.warm.forget()
        ls.reanalyse_all()

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: SessionLintServer, params: lsp.DidOpenTextDocumentParams) -> None:
        item = params.text_document
        ls.documents[item.uri] = Document(item.uri, _path(item.uri), item.version, item.text)
        ls.schedule(item.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: SessionLintServer, params: lsp.DidChangeTextDocumentParams) -> None:
        document = ls.documents.get(params.text_document.uri)
        if document is None:
            return
        for change in params.content_changes:
            if isinstance(change, lsp.TextDocumentContentChangeWholeDocument):
                document.text = change.text
        document.version = params.text_document.version
        ls.schedule(document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE, lsp.SaveOptions(include_text=False))
    def did_save(ls: SessionLintServer, params: lsp.DidSaveTextDocumentParams) -> None:
        # The saved file may be one the project index reads (a session factory's
        # module): the index is rebuilt from the changed files only.
        ls.warm.forget()
        ls.reanalyse_all()

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: SessionLintServer, params: lsp.DidCloseTextDocumentParams) -> None:
        if ls.documents.pop(params.text_document.uri, None) is not None:
            ls.text_document_publish_diagnostics(
                lsp.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[])
            )

    @server.feature(
        lsp.TEXT_DOCUMENT_CODE_ACTION,
        lsp.CodeActionOptions(
            code_action_kinds=[lsp.CodeActionKind.QuickFix, FIX_ALL],
            resolve_provider=True,
        ),
    )
    async def code_action(
        ls: SessionLintServer, params: lsp.CodeActionParams
    ) -> list[lsp.CodeAction] | None:
        document = ls.documents.get(params.text_document.uri)
        analysed = await ls.current(params.text_document.uri)
        if document is None or analysed is None:
            return None
        return await ls.in_worker(lambda: ls.actions(document, analysed, params))

    @server.feature(lsp.CODE_ACTION_RESOLVE)
    async def code_action_resolve(ls: SessionLintServer, params: lsp.CodeAction) -> lsp.CodeAction:
        return await ls.resolve(params)

    @server.feature(lsp.TEXT_DOCUMENT_HOVER)
    async def hover(ls: SessionLintServer, params: lsp.HoverParams) -> lsp.Hover | None:
        from session_lint.rules import RULES_BY_CODE

        analysed = await ls.current(params.text_document.uri)
        if analysed is None:
            return None
        lines = Lines(analysed.text, ls.encoding)
        codes = dict.fromkeys(
            f.code for f in analysed.analysis.findings if lines.contains(f, params.position)
        )
        if not codes:
            return None
        parts = []
        for code in codes:
            rule = RULES_BY_CODE[code]
            parts.append(f"# {code} `{rule.name}`\n\n{rule.docs()}")
        return lsp.Hover(
            contents=lsp.MarkupContent(
                kind=lsp.MarkupKind.Markdown, value="\n\n---\n\n".join(parts)
            )
        )

    return server


def _path(uri: str) -> str:
    return to_fs_path(uri) or uri


def main() -> int:
    build_server().start_io()
    return 0
