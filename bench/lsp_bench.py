"""``session-lint server`` against ``ruff server``, measured in the same run.

    python bench/lsp_bench.py [--edits 60] [--starts 5]

On one ~500-line service file (``lint_bench.service_file``), each server driven by
the same bare JSON-RPC client over stdio, with the same edits:

- cold start: from starting the process to the first diagnostics of the opened file;
- ``didChange`` -> ``publishDiagnostics``: an edit (the whole text, a different
  last line each time), the time until that version's diagnostics arrive; median
  and p95;
- code action: a request on the first finding's range, until the answer.

Targets (issue "language server"): median edit-to-diagnostics <= 100 ms, p95 <=
200 ms, a code action <= 50 ms, a cold start <= 1 s. ``ruff server`` comes from
the peers' venv of ``lint_bench.py`` (``bench/.venvs/``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lint_bench import service_file, tool_venv

TIMEOUT = 120.0
# What VS Code and Neovim announce for code actions: an action's edit is resolved
# (``codeAction/resolve``) when the user picks it, not computed for the list.
CAPABILITIES = {
    "textDocument": {
        "codeAction": {
            "codeActionLiteralSupport": {
                "codeActionKind": {"valueSet": ["quickfix", "source", "source.fixAll"]}
            },
            "dataSupport": True,
            "resolveSupport": {"properties": ["edit"]},
        }
    }
}


class Connection:
    """A bare JSON-RPC client over a server's stdio: the same code drives both
    servers, and it structures nothing, so no server's extra fields can trip it
    (pygls's client cannot read ``ruff server``'s initialize answer)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.next_id = 0
        self.answers: dict[int, asyncio.Future[Any]] = {}
        # (arrival time, version or None, diagnostics) of each publishDiagnostics
        self.published: list[tuple[float, int | None, list[Any]]] = []
        self.arrived = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def notify(self, method: str, params: Any) -> None:
        self._send({"method": method, "params": params})

    async def request(self, method: str, params: Any) -> Any:
        self.next_id += 1
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.answers[self.next_id] = answer
        self._send({"id": self.next_id, "method": method, "params": params})
        return await asyncio.wait_for(answer, TIMEOUT)

    async def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            length = 0
            while (line := await stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("ascii").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if not line:
                return
            message = json.loads(await stream.readexactly(length))
            if "method" in message and "id" in message:  # a request of the server's
                result = None
                if message["method"] == "workspace/configuration":
                    result = [None for _ in message["params"]["items"]]
                self._send({"id": message["id"], "result": result})
            elif "id" in message:
                future = self.answers.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message.get("result"))
            elif message.get("method") == "textDocument/publishDiagnostics":
                params = message["params"]
                self.published.append(
                    (time.perf_counter(), params.get("version"), params["diagnostics"])
                )
                self.arrived.set()

    async def diagnostics_after(self, count: int, version: int) -> tuple[float, list[Any]]:
        """The first publication after the first ``count`` that is for ``version``
        (or carries no version: some servers leave it out)."""
        while True:
            for arrived, published, diagnostics in self.published[count:]:
                if published in (version, None):
                    return arrived, diagnostics
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), TIMEOUT)


async def measure(command: list[str], path: Path, edits: int, line: int) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    uri = path.as_uri()
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=str(path.parent),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    server = Connection(process)
    await server.request(
        "initialize",
        {"processId": None, "rootUri": path.parent.as_uri(), "capabilities": CAPABILITIES},
    )
    server.notify("initialized", {})
    server.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}},
    )
    arrived, first = await server.diagnostics_after(0, 1)
    cold = arrived - start
    lines = text.splitlines()
    latencies = []
    for version in range(2, edits + 2):
        edited = "\n".join([*lines[:-1], f"# edit {version}"]) + "\n"
        count = len(server.published)
        sent = time.perf_counter()
        server.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [{"text": edited}],
            },
        )
        arrived, _ = await server.diagnostics_after(count, version)
        latencies.append(arrived - sent)
    # A code action on the same line for both servers: session-lint's first finding.
    where = {"start": {"line": line, "character": 0}, "end": {"line": line + 1, "character": 0}}
    actions, resolves = [], []
    for _ in range(max(5, edits // 4)):
        sent = time.perf_counter()
        offered = await server.request(
            "textDocument/codeAction",
            {
                "textDocument": {"uri": uri},
                "range": where,
                "context": {
                    "diagnostics": [d for d in first if d["range"]["start"]["line"] == line]
                },
            },
        )
        actions.append(time.perf_counter() - sent)
        lazy = [a for a in offered or [] if "edit" not in a and a.get("kind") == "quickfix"]
        if lazy:  # the edit of the first quick fix, as when the user picks it
            sent = time.perf_counter()
            await server.request("codeAction/resolve", lazy[0])
            resolves.append(time.perf_counter() - sent)
    await server.request("shutdown", None)
    server.notify("exit", None)
    assert process.stdin is not None
    process.stdin.close()
    await asyncio.wait_for(process.wait(), TIMEOUT)
    server.reader.cancel()
    return {
        "cold": cold,
        "edits": latencies,
        "actions": actions,
        "resolves": resolves,
        "findings": len(first),
    }


def first_finding_line(path: Path) -> int:
    """The 0-based line of session-lint's first finding in the file."""
    from session_lint.analyzer import analyze
    from session_lint.project.config import load_config

    config = load_config([str(path.parent)])
    findings = analyze(path.read_bytes(), str(path), config).findings
    assert findings, "the service file should have findings"
    return findings[0].line - 1


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def ms(value: float) -> str:
    return "-" if value != value else f"{value * 1000:.1f} ms"  # NaN: not measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=60)
    parser.add_argument("--starts", type=int, default=5, help="runs (cold starts) per server")
    args = parser.parse_args()
    ours = [str(Path(sys.executable).parent / "session-lint"), "server"]
    ruff = [str(tool_venv("peers") / "ruff"), "server"]
    with tempfile.TemporaryDirectory() as work:
        service = service_file(Path(work))
        (Path(work) / "pyproject.toml").write_text("[tool.session-lint]\n", encoding="utf-8")
        line = first_finding_line(service)
        results: dict[str, list[dict[str, Any]]] = {"session-lint server": [], "ruff server": []}
        for _ in range(args.starts):  # interleaved: A B A B ...
            for name, command in (("session-lint server", ours), ("ruff server", ruff)):
                results[name].append(asyncio.run(measure(command, service, args.edits, line)))
        size = service.read_text(encoding="utf-8").count("\n")
    print(f"{size}-line service file, {args.starts} runs x {args.edits} edits per server")
    header = ("cold start", "edit median", "edit p95", "action median", "resolve median")
    print(f"{'server':20}" + "".join(f"{h:>16}" for h in header) + "  findings")
    figures: dict[str, tuple[float, ...]] = {}
    for name, runs in results.items():
        edits = [x for run in runs for x in run["edits"]]
        actions = [x for run in runs for x in run["actions"]]
        resolves = [x for run in runs for x in run["resolves"]]
        figures[name] = (
            statistics.median(run["cold"] for run in runs),
            statistics.median(edits),
            p95(edits),
            statistics.median(actions),
            statistics.median(resolves) if resolves else float("nan"),
        )
        print(
            f"{name:20}"
            + "".join(f"{ms(x):>16}" for x in figures[name])
            + f"  {runs[0]['findings']}"
        )
    ratios = [
        a / b for a, b in zip(figures["session-lint server"], figures["ruff server"], strict=True)
    ]
    print(f"{'ratio to ruff':20}" + "".join(f"{r:>15.1f}x" for r in ratios))
    print(
        "targets: cold start <= 1 s, edit median <= 100 ms, edit p95 <= 200 ms, "
        "a code action <= 50 ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
