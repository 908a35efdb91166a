"""A real LSP client (pygls's own) driving ``session-lint server`` over stdio, and
fixture projects on disk for it and the CLI to agree on."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient

from session_lint.project.config import Config
from session_lint.rules import ALL_RULES
from tests.lint.fixture_files import DEFAULT_REQUIREMENTS, NO_DEPENDENCY_FILE, RuleFixture

BIN = Path(sys.executable).parent
SESSION_LINT = str(BIN / "session-lint")
# Generous: a busy machine may be slow, and every wait ends as soon as the answer
# is there.
WAIT = 60.0


@dataclass
class Client:
    """One server process and what it sent."""

    client: LanguageClient
    diagnostics: dict[str, list[lsp.PublishDiagnosticsParams]] = field(default_factory=dict)
    messages: list[lsp.ShowMessageParams] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    versions: dict[str, int] = field(default_factory=dict)
    registrations: list[lsp.Registration] = field(default_factory=list)

    @classmethod
    async def start(
        cls,
        root: Path,
        *,
        options: Any = None,
        configuration: Any = None,
        watch: bool = False,
        resolve: bool = False,
    ) -> Client:
        client = LanguageClient("session-lint-tests", "1")
        self = cls(client)

        @client.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def published(params: lsp.PublishDiagnosticsParams) -> None:
            self.diagnostics.setdefault(params.uri, []).append(params)
            self.arrived.set()

        @client.feature(lsp.WINDOW_SHOW_MESSAGE)
        def shown(params: lsp.ShowMessageParams) -> None:
            self.messages.append(params)
            self.arrived.set()

        @client.feature(lsp.WINDOW_LOG_MESSAGE)
        def logged(params: lsp.LogMessageParams) -> None:
            self.logs.append(params.message)

        @client.feature(lsp.WORKSPACE_CONFIGURATION)
        def configuration_asked(params: lsp.ConfigurationParams) -> list[Any]:
            return [configuration for _ in params.items]

        @client.feature(lsp.CLIENT_REGISTER_CAPABILITY)
        def register(params: lsp.RegistrationParams) -> None:
            self.registrations.extend(params.registrations)

        await client.start_io(SESSION_LINT, "server", cwd=str(root))
        workspace = lsp.WorkspaceClientCapabilities(
            configuration=configuration is not None,
            did_change_watched_files=lsp.DidChangeWatchedFilesClientCapabilities(
                dynamic_registration=watch
            ),
        )
        await asyncio.wait_for(
            client.initialize_async(
                lsp.InitializeParams(
                    capabilities=lsp.ClientCapabilities(
                        workspace=workspace,
                        # As VS Code and Neovim do: an action's edit is asked for
                        # (codeAction/resolve) when the user picks the action.
                        text_document=lsp.TextDocumentClientCapabilities(
                            code_action=lsp.CodeActionClientCapabilities(
                                data_support=True,
                                resolve_support=lsp.ClientCodeActionResolveOptions(
                                    properties=["edit"]
                                ),
                            )
                        )
                        if resolve
                        else None,
                    ),
                    root_uri=root.as_uri(),
                    initialization_options=options,
                )
            ),
            WAIT,
        )
        client.initialized(lsp.InitializedParams())
        return self

    async def stop(self) -> None:
        await asyncio.wait_for(self.client.shutdown_async(None), WAIT)
        self.client.exit(None)
        await self.client.stop()

    # -- documents -----------------------------------------------------------------
    def open(self, path: Path, text: str | None = None) -> str:
        uri = path.as_uri()
        self.versions[uri] = 1
        self.client.text_document_did_open(
            lsp.DidOpenTextDocumentParams(
                text_document=lsp.TextDocumentItem(
                    uri=uri,
                    language_id="python",
                    version=1,
                    text=path.read_text(encoding="utf-8") if text is None else text,
                )
            )
        )
        return uri

    def change(self, uri: str, text: str) -> int:
        self.versions[uri] += 1
        self.client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                text_document=lsp.VersionedTextDocumentIdentifier(
                    uri=uri, version=self.versions[uri]
                ),
                content_changes=[lsp.TextDocumentContentChangeWholeDocument(text=text)],
            )
        )
        return self.versions[uri]

    async def wait_for(self, uri: str, version: int | None = None) -> list[lsp.Diagnostic]:
        """The diagnostics published for ``version`` (the newest sent by default)."""
        wanted = self.versions[uri] if version is None else version

        async def published() -> list[lsp.Diagnostic]:
            while True:
                for params in self.diagnostics.get(uri, []):
                    if params.version == wanted:
                        return list(params.diagnostics)
                self.arrived.clear()
                await self.arrived.wait()

        return await asyncio.wait_for(published(), WAIT)

    async def wait_for_message(self) -> lsp.ShowMessageParams:
        async def shown() -> lsp.ShowMessageParams:
            while not self.messages:
                self.arrived.clear()
                await self.arrived.wait()
            return self.messages[0]

        return await asyncio.wait_for(shown(), WAIT)

    async def actions(
        self,
        uri: str,
        range_: lsp.Range,
        diagnostics: Sequence[lsp.Diagnostic] = (),
        only: Sequence[str] | None = None,
    ) -> list[lsp.CodeAction]:
        answer = await asyncio.wait_for(
            self.client.text_document_code_action_async(
                lsp.CodeActionParams(
                    text_document=lsp.TextDocumentIdentifier(uri=uri),
                    range=range_,
                    context=lsp.CodeActionContext(
                        diagnostics=list(diagnostics),
                        only=None
                        if only is None
                        else [lsp.CodeActionKind(k) if k in _KINDS else k for k in only],  # type: ignore[misc]
                    ),
                )
            ),
            WAIT,
        )
        return [a for a in answer or [] if isinstance(a, lsp.CodeAction)]

    async def resolve(self, action: lsp.CodeAction) -> lsp.CodeAction:
        return await asyncio.wait_for(self.client.code_action_resolve_async(action), WAIT)

    async def hover(self, uri: str, position: lsp.Position) -> lsp.Hover | None:
        return await asyncio.wait_for(
            self.client.text_document_hover_async(
                lsp.HoverParams(
                    text_document=lsp.TextDocumentIdentifier(uri=uri), position=position
                )
            ),
            WAIT,
        )


_KINDS = {kind.value for kind in lsp.CodeActionKind}


# -- edits ------------------------------------------------------------------------


def apply_edit(text: str, edit: lsp.WorkspaceEdit, version: int) -> str:
    """Apply a WorkspaceEdit as an editor would, refusing one for another version."""
    assert edit.document_changes, "the server sends versioned document changes"
    (change,) = edit.document_changes
    assert isinstance(change, lsp.TextDocumentEdit)
    assert change.text_document.version == version, "an edit for another version"
    starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]
    edits = sorted(
        (e for e in change.edits if isinstance(e, lsp.TextEdit)),
        key=lambda e: (e.range.start.line, e.range.start.character),
        reverse=True,
    )
    for e in edits:
        start = _offset(text, starts, e.range.start)
        end = _offset(text, starts, e.range.end)
        text = text[:start] + e.new_text + text[end:]
        starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]
    return text


def _offset(text: str, starts: list[int], position: lsp.Position) -> int:
    """An LSP position (UTF-16 units) -> an offset in ``text``."""
    base = starts[position.line] if position.line < len(starts) else len(text)
    units = 0
    offset = base
    while units < position.character and offset < len(text):
        units += 2 if ord(text[offset]) > 0xFFFF else 1
        offset += 1
    return offset


# -- fixture projects -------------------------------------------------------------

APP_DB = """\
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

engine = create_async_engine("postgresql+asyncpg://app@db/app")
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
async_session = async_sessionmaker(engine, expire_on_commit=False)


async def get_db():
    async with SessionLocal() as session:
        yield session
"""


def fixture_project(fixture: RuleFixture, root: Path) -> Path:
    """The fixture as a file of a project on disk whose config and declared
    dependencies are its headers': what the fixture harness analyses in memory.
    Returns the file's path."""
    text = fixture.source.decode("utf-8")
    headers = _headers(text, "config")
    requires = _headers(text, "requires")
    # Only the fixture's rule, as the harness runs it (opt-in rules included); a
    # ``# selection: default`` fixture selects it by its prefix, as a default run
    # does, with the prefix's other rules ignored.
    if _headers(text, "selection") == ["default"]:
        prefix = fixture.code[:4]
        others = sorted(r.code for r in ALL_RULES if r.code.startswith(prefix) and r.code != fixture.code)
        lines = ["[tool.session-lint]", *headers, f'select = ["{prefix}"]', f"ignore = {json.dumps(others)}"]
    else:
        lines = ["[tool.session-lint]", *headers, f'select = ["{fixture.code}"]']
    if requires != [NO_DEPENDENCY_FILE]:
        deps = requires or list(DEFAULT_REQUIREMENTS)
        lines = [
            "[project]",
            'name = "fixture-app"',
            f"dependencies = {json.dumps(deps)}",
            "",
            *lines,
        ]
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    target = root / fixture.path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(fixture.source)
    # The fixtures' project keeps its engine and session factories in ``app.db``
    # (``EVIDENCE_MODULES``), or in the configured engine modules, where the project
    # index finds them.
    config = fixture.config
    modules = ["app/db.py"] if not (root / "app" / "db").exists() else []
    if config.engine_modules != Config().engine_modules:
        modules = [pattern.replace("*", "db") for pattern in config.engine_modules]
    for module in modules:
        (root / module).parent.mkdir(parents=True, exist_ok=True)
        (root / module).write_text(APP_DB, encoding="utf-8")
    return target


def _headers(text: str, name: str) -> list[str]:
    prefix = f"# {name}:"
    return [
        line.strip()[len(prefix) :].strip()
        for line in text.splitlines()
        if line.strip().startswith(prefix)
    ]


def cli_json(root: Path, *args: str) -> list[dict[str, Any]]:
    """The CLI's findings (``--format json``) on files of the project at ``root``."""
    out = subprocess.run(
        [SESSION_LINT, "--format", "json", "--no-cache", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=WAIT * 5,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert out.returncode in (0, 1), out.stderr
    data = json.loads(out.stdout)
    findings = data["findings"] if isinstance(data, dict) else data
    assert isinstance(findings, list)
    return findings


def cli_fix(root: Path, path: Path, *, unsafe: bool) -> str:
    """What ``session-lint --fix`` makes of the file, fixed in a copy of its project
    (same relative path, so the same config, role and engine-module decisions)."""
    copy = root.with_name(root.name + "-cli-fix")
    shutil.copytree(root, copy)
    try:
        relative = path.relative_to(root)
        flags = ["--fix", "--no-cache", "--exit-zero", *(["--unsafe-fixes"] if unsafe else [])]
        out = subprocess.run(
            [SESSION_LINT, *flags, str(relative)],
            cwd=copy,
            capture_output=True,
            text=True,
            timeout=WAIT * 5,
        )
        assert out.returncode == 0, out.stderr
        return (copy / relative).read_text(encoding="utf-8")
    finally:
        shutil.rmtree(copy)
