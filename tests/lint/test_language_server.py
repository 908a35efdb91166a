"""``session-lint server`` driven by a real LSP client (pygls's) over stdio.

Each fixture is put in a project on disk whose config is its headers'; the
server's diagnostics must equal the CLI's findings there, its quick fixes must
turn the fixture into its ``.fixed.py``, and its fix-all must equal
``session-lint --fix``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as lsp

from tests.lint.fixture_files import all_fixtures, load
from tests.lint.lsp_client import Client, apply_edit, cli_fix, cli_json, fixture_project

FIXTURES = all_fixtures()
FIXABLE = [f for f in FIXTURES if load(f).fixed_file.exists()]
FIX_ALL = "source.fixAll.session-lint"

SERVICE = """\
from sqlalchemy.ext.asyncio import AsyncSession


async def rename(session: AsyncSession, user, name):
    user.name = name
    session.commit()
"""


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def spans(diagnostics: list[lsp.Diagnostic]) -> list[tuple[str, int, int, int, int]]:
    return sorted(
        (
            str(d.code),
            d.range.start.line + 1,
            d.range.start.character + 1,
            d.range.end.line + 1,
            d.range.end.character + 1,
        )
        for d in diagnostics
    )


def cli_spans(findings: list[dict[str, Any]]) -> list[tuple[str, int, int, int, int]]:
    # The fixtures are ASCII but for a few strings: a character is a UTF-16 unit
    # there, and a line with anything wider is checked by the position test below.
    return sorted(
        (f["code"], f["line"], f["column"], f["end_line"], f["end_column"]) for f in findings
    )


def test_diagnostics_equal_the_cli_findings_on_every_fixture(tmp_path: Path) -> None:
    projects = {}
    for file in FIXTURES:
        fixture = load(file)
        root = tmp_path / file.stem
        projects[file.stem] = (root, fixture_project(fixture, root), fixture)

    async def scenario() -> dict[str, list[tuple[str, int, int, int, int]]]:
        client = await Client.start(tmp_path)
        try:
            uris = {stem: client.open(path) for stem, (_, path, _) in projects.items()}
            return {stem: spans(await client.wait_for(uri)) for stem, uri in uris.items()}
        finally:
            await client.stop()

    from_server = run(scenario())
    differ = []
    for stem, (root, path, fixture) in projects.items():
        expected = cli_spans(cli_json(root, str(path.relative_to(root))))
        assert from_server[stem] == expected, stem
        # The project on disk is the harness's: the marked lines are found.
        if {(line, code) for code, line, *_ in expected} != set(fixture.expected):
            differ.append(stem)
    assert differ == []


@pytest.mark.parametrize("file", FIXABLE, ids=[f.stem for f in FIXABLE])
def test_quick_fixes_turn_the_fixture_into_its_fixed_file(file: Path, tmp_path: Path) -> None:
    fixture = load(file)
    path = fixture_project(fixture, tmp_path)

    async def scenario() -> str:
        client = await Client.start(tmp_path, options={"unsafeFixes": True})
        try:
            uri = client.open(path)
            text = path.read_text(encoding="utf-8")
            for _ in range(200):
                diagnostics = await client.wait_for(uri)
                fixable = [d for d in diagnostics if d.data and d.data.get("fix")]
                if not fixable:
                    return text
                first = fixable[0]
                actions = await client.actions(uri, first.range, [first])
                (fix,) = [a for a in actions if a.title.startswith(str(first.code)) and a.edit]
                assert fix.is_preferred == (first.data["fix"] == "safe")
                assert fix.title.endswith("(unsafe)") == (first.data["fix"] == "unsafe")
                assert fix.edit is not None
                text = apply_edit(text, fix.edit, client.versions[uri])
                client.change(uri, text)
            raise AssertionError("quick fixes did not settle")
        finally:
            await client.stop()

    assert run(scenario()) == fixture.fixed_file.read_text(encoding="utf-8")


@pytest.mark.parametrize("file", FIXABLE, ids=[f.stem for f in FIXABLE])
def test_fix_all_equals_the_cli_fix(file: Path, tmp_path: Path) -> None:
    fixture = load(file)
    root = tmp_path / "project"
    path = fixture_project(fixture, root)

    async def scenario() -> str:
        client = await Client.start(root)
        try:
            uri = client.open(path)
            await client.wait_for(uri)
            whole = lsp.Range(
                start=lsp.Position(line=0, character=0), end=lsp.Position(line=0, character=0)
            )
            (action,) = await client.actions(uri, whole, only=[FIX_ALL])
            assert action.kind == FIX_ALL
            assert action.edit is not None
            return apply_edit(path.read_text(encoding="utf-8"), action.edit, 1)
        finally:
            await client.stop()

    assert run(scenario()) == cli_fix(root, path, unsafe=False)


def test_an_edit_gets_diagnostics_for_the_new_text_only(tmp_path: Path) -> None:
    path = tmp_path / "app" / "service.py"
    path.parent.mkdir()
    path.write_text(SERVICE, encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text("[tool.session-lint]\n", encoding="utf-8")

    async def scenario() -> Client:
        client = await Client.start(tmp_path)
        try:
            uri = client.open(path)
            assert [d.code for d in await client.wait_for(uri)] == ["SL403"]
            # A burst of edits, as typing sends them: the last one is clean.
            text = SERVICE
            for n in range(8):
                text = SERVICE.replace("session.commit()", f"session.commit()  # {n}")
                client.change(uri, text)
            clean = SERVICE.replace("session.commit()", "await session.commit()")
            last = client.change(uri, clean)
            assert await client.wait_for(uri, last) == []
            await asyncio.sleep(0.5)  # anything stale would have arrived by now
            return client
        finally:
            await client.stop()

    client = run(scenario())
    published = client.diagnostics[path.as_uri()]
    versions = [p.version for p in published]
    assert versions == sorted(versions), "a stale result was published after a newer one"
    assert published[-1].version == 10 and list(published[-1].diagnostics) == []


def test_positions_count_utf16_units(tmp_path: Path) -> None:
    source = SERVICE.replace("user.name = name", 'user.name = "\U0001f600é" + name').replace(
        "    session.commit()", '    x = "\U0001f600"; session.commit()'
    )
    path = tmp_path / "app.py"
    path.write_text(source, encoding="utf-8")

    async def scenario() -> list[lsp.Diagnostic]:
        client = await Client.start(tmp_path)
        try:
            return await client.wait_for(client.open(path))
        finally:
            await client.stop()

    (diagnostic,) = run(scenario())
    line = source.splitlines()[diagnostic.range.start.line]
    head = line.encode("utf-16-le")[: diagnostic.range.start.character * 2].decode("utf-16-le")
    assert line[len(head) :].startswith("session.commit()")


def test_unsafe_fix_is_labelled_and_not_preferred(tmp_path: Path) -> None:
    unsafe = [
        f
        for f in FIXABLE
        if any(
            x.fix is not None
            and x.fix_applicability is not None
            and x.fix_applicability.value == "unsafe"
            for x in _findings(f)
        )
    ]
    assert unsafe, "some fixture has an unsafe fix"
    fixture = load(unsafe[0])
    path = fixture_project(fixture, tmp_path)

    async def scenario() -> list[lsp.CodeAction]:
        client = await Client.start(tmp_path)
        try:
            uri = client.open(path)
            diagnostics = await client.wait_for(uri)
            target = next(d for d in diagnostics if d.data and d.data.get("fix") == "unsafe")
            return await client.actions(uri, target.range, [target])
        finally:
            await client.stop()

    actions = run(scenario())
    fixes = [a for a in actions if a.title.endswith("(unsafe)")]
    assert fixes and all(not a.is_preferred for a in fixes)
    assert any(a.title.startswith("Disable SL") for a in actions)


def test_a_client_that_resolves_gets_the_same_edits_when_it_asks(tmp_path: Path) -> None:
    """With ``codeAction/resolve`` the list carries no edit; resolving gives the
    edit the list would have carried, and nothing for a version the client no
    longer has."""
    path = tmp_path / "app.py"
    path.write_text(SERVICE, encoding="utf-8")
    whole = lsp.Range(
        start=lsp.Position(line=0, character=0), end=lsp.Position(line=9, character=0)
    )

    async def offered(resolve: bool) -> tuple[list[lsp.CodeAction], str | None]:
        client = await Client.start(tmp_path, resolve=resolve)
        try:
            uri = client.open(path)
            diagnostics = await client.wait_for(uri)
            actions = await client.actions(uri, whole, diagnostics)
            if not resolve:
                return actions, None
            resolved = [await client.resolve(a) for a in actions]
            client.change(uri, SERVICE + "\n")
            await client.wait_for(uri)
            try:
                await client.resolve(actions[0])
            except Exception as exc:  # the answer is an error: the text changed
                stale = str(exc)
            else:
                stale = None
            assert all(a.edit is None and a.data for a in actions)
            return resolved, stale
        finally:
            await client.stop()

    eager, _ = run(offered(resolve=False))
    resolved, stale = run(offered(resolve=True))
    titles = [a.title for a in eager]
    assert any(t.startswith("SL403") for t in titles)
    assert any(a.kind == FIX_ALL for a in eager)
    assert [(a.title, a.kind, a.edit) for a in resolved] == [
        (a.title, a.kind, a.edit) for a in eager
    ]
    assert stale is not None and "changed" in stale


def _findings(file: Path) -> list[Any]:
    from session_lint.analyzer import analyze
    from session_lint.rules import RULES_BY_CODE

    fixture = load(file)
    return analyze(
        fixture.source, fixture.path, fixture.config, [RULES_BY_CODE[fixture.code]]
    ).findings


def test_disable_for_this_line_adds_a_noqa_that_silences_it(tmp_path: Path) -> None:
    path = tmp_path / "app.py"
    path.write_text(SERVICE, encoding="utf-8")

    async def scenario() -> tuple[str, list[lsp.Diagnostic]]:
        client = await Client.start(tmp_path)
        try:
            uri = client.open(path)
            (diagnostic,) = await client.wait_for(uri)
            actions = await client.actions(uri, diagnostic.range, [diagnostic])
            (noqa,) = [a for a in actions if a.title == "Disable SL403 for this line"]
            assert noqa.edit is not None
            text = apply_edit(SERVICE, noqa.edit, 1)
            client.change(uri, text)
            return text, await client.wait_for(uri)
        finally:
            await client.stop()

    text, diagnostics = run(scenario())
    assert "    session.commit()  # noqa: SL403\n" in text
    assert diagnostics == []


def test_hover_shows_the_rule_docs(tmp_path: Path) -> None:
    path = tmp_path / "app.py"
    path.write_text(SERVICE, encoding="utf-8")

    async def scenario() -> lsp.Hover | None:
        client = await Client.start(tmp_path)
        try:
            uri = client.open(path)
            (diagnostic,) = await client.wait_for(uri)
            return await client.hover(uri, diagnostic.range.start)
        finally:
            await client.stop()

    hover = run(scenario())
    assert hover is not None and isinstance(hover.contents, lsp.MarkupContent)
    assert "SL403" in hover.contents.value and "## Why is this bad?" in hover.contents.value


def test_settings_from_initialization_options_and_workspace_configuration(tmp_path: Path) -> None:
    path = tmp_path / "app.py"
    path.write_text(SERVICE, encoding="utf-8")

    async def scenario(options: Any, configuration: Any) -> list[lsp.Diagnostic]:
        client = await Client.start(tmp_path, options=options, configuration=configuration)
        try:
            return await client.wait_for(client.open(path))
        finally:
            await client.stop()

    assert [d.code for d in run(scenario(None, None))] == ["SL403"]
    assert run(scenario({"ignore": ["SL403"]}, None)) == []
    assert run(scenario(None, {"ignore": ["SL4"]})) == []
    (error,) = run(scenario({"severity": "error"}, None))
    assert error.severity == lsp.DiagnosticSeverity.Error


def test_a_config_change_is_picked_up_and_a_broken_one_is_one_message(tmp_path: Path) -> None:
    path = tmp_path / "app.py"
    path.write_text(SERVICE, encoding="utf-8")
    config = tmp_path / "pyproject.toml"
    config.write_text("[tool.session-lint]\n", encoding="utf-8")

    async def scenario() -> tuple[
        list[lsp.Diagnostic], lsp.ShowMessageParams, list[lsp.Diagnostic]
    ]:
        client = await Client.start(tmp_path, watch=True)
        try:
            uri = client.open(path)
            assert [d.code for d in await client.wait_for(uri)] == ["SL403"]
            assert any(
                r.method == lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES for r in client.registrations
            )
            count = len(client.diagnostics[uri])
            config.write_text('[tool.session-lint]\nignore = ["SL403"]\n', encoding="utf-8")
            client.client.workspace_did_change_watched_files(
                lsp.DidChangeWatchedFilesParams(
                    changes=[lsp.FileEvent(uri=config.as_uri(), type=lsp.FileChangeType.Changed)]
                )
            )
            ignored = await _next_publication(client, uri, count)
            config.write_text("[tool.session-lint\n", encoding="utf-8")
            client.client.workspace_did_change_watched_files(
                lsp.DidChangeWatchedFilesParams(
                    changes=[lsp.FileEvent(uri=config.as_uri(), type=lsp.FileChangeType.Changed)]
                )
            )
            message = await client.wait_for_message()
            # The broken config's publication: no diagnostics, not a crash.
            assert await _next_publication(client, uri, count + 1) == []
            # The server is still there: a fixed config brings the finding back.
            count = len(client.diagnostics[uri])
            config.write_text("[tool.session-lint]\n", encoding="utf-8")
            client.client.workspace_did_change_watched_files(
                lsp.DidChangeWatchedFilesParams(
                    changes=[lsp.FileEvent(uri=config.as_uri(), type=lsp.FileChangeType.Changed)]
                )
            )
            back = await _next_publication(client, uri, count)
            assert len(client.messages) == 1
            return ignored, message, back
        finally:
            await client.stop()

    ignored, message, back = run(scenario())
    assert ignored == []
    assert message.type == lsp.MessageType.Error and "pyproject.toml" in message.message
    assert "\n" not in message.message
    assert [d.code for d in back] == ["SL403"]


async def _next_publication(client: Client, uri: str, count: int) -> list[lsp.Diagnostic]:
    """The diagnostics of the first publication after the first ``count``."""

    async def published() -> list[lsp.Diagnostic]:
        while len(client.diagnostics.get(uri, [])) <= count:
            client.arrived.clear()
            await client.arrived.wait()
        return list(client.diagnostics[uri][count].diagnostics)

    return await asyncio.wait_for(published(), 60)


def test_a_file_that_does_not_parse_is_one_diagnostic_and_the_server_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "app.py"
    path.write_text(SERVICE, encoding="utf-8")

    async def scenario() -> tuple[list[lsp.Diagnostic], list[lsp.Diagnostic]]:
        client = await Client.start(tmp_path)
        try:
            uri = client.open(path, "def broken(:\n")
            broken = await client.wait_for(uri)
            client.change(uri, SERVICE)
            return broken, await client.wait_for(uri)
        finally:
            await client.stop()

    broken, fine = run(scenario())
    assert [d.code for d in broken] == ["SL000"]
    assert [d.code for d in fine] == ["SL403"]


def test_a_rule_that_crashes_costs_that_rule_not_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the server's own process: the broken rule's findings are gone, the other
    rules' are there, and the client is told why."""
    from session_lint.editors.language_server import Document, SessionLintServer
    from session_lint.rules import RULES_BY_CODE

    path = tmp_path / "app.py"
    text = SERVICE + (
        "\n\nasync def make(engine):\n"
        "    async with AsyncSession(engine) as session:\n"
        "        await session.commit()\n"
    )
    path.write_text(text, encoding="utf-8")
    server = SessionLintServer()
    logged: list[str] = []
    monkeypatch.setattr(server, "log", lambda message, kind=None: logged.append(message))
    document = Document(path.as_uri(), str(path), 1, text)

    def codes() -> set[str]:
        analysed = server.analyse(document, 1, text)
        assert analysed is not None
        return {f.code for f in analysed.analysis.findings}

    assert {"SL101", "SL403"} <= codes()
    assert logged == []

    def broken(self: object, node: object) -> None:
        raise RuntimeError("a bug in the rule")

    monkeypatch.setattr(RULES_BY_CODE["SL403"], "visit_Expr", broken)
    found = codes()
    assert "SL101" in found and "SL403" not in found
    assert any("internal error in SL403" in m and "a bug in the rule" in m for m in logged)
