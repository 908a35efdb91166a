"""session-lint against its peers, measured in the same run.

    python bench/lint_bench.py [--runs 5] [--large] [--editor-only | --findings-only]

Corpora (copied into a temporary directory, so caches never touch the sources):
- reference: SQLAlchemy's ``ext/`` package + the standard library's ``asyncio``,
  ``email``, ``json`` and ``logging`` (the corpus of docs/architecture.md, "What the walk costs");
- large (``--large``): the whole standard library without its tests + all of SQLAlchemy.

Peers are installed once into ``bench/.venvs/`` (PyPI): flake8 + flake8-async,
fixit, ruff, and a bare flake8 for the editor case. Commands run interleaved
(A B C … A B C …) and the median of each is reported, with the ratios the targets
are stated in (issue "Speed"): cold ≤ 0.05 x each libcst-based peer, warm ≤ 0.1 x
cold and ≤ 10 x ruff, flake8 plugin overhead ≤ 30 ms on a 500-line file (edited
before each run, with the analysis server of ``session_lint.editors.server``; also shown
without it), and
time per 1 k lines on the large corpus ≤ 1.2 x that on the reference corpus.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sysconfig
import tempfile
import time
import venv
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENVS = HERE / ".venvs"
PEERS = {"peers": ["flake8", "flake8-async", "fixit", "ruff"], "bare": ["flake8"]}


def tool_venv(name: str) -> Path:
    bindir = VENVS / name / "bin"
    if not (bindir / "python").exists():
        venv.create(VENVS / name, with_pip=True, clear=True)
        subprocess.run(
            [str(bindir / "python"), "-m", "pip", "install", "-q", *PEERS[name]], check=True
        )
    return bindir


def plugin_venv(bare: Path) -> Path:
    """flake8 (the bare venv's version) plus this checkout, installed as users
    install it: a built wheel, not an editable install, whose import hook alone
    costs 10-20 ms at every interpreter start. Reinstalled on every run; every
    session-lint figure comes from this install."""
    bindir = VENVS / "plugin" / "bin"
    version = subprocess.run(
        [str(bare / "python"), "-c", "import flake8; print(flake8.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not (bindir / "python").exists():
        venv.create(VENVS / "plugin", with_pip=True, clear=True)
    pip = [str(bindir / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, f"flake8=={version}", str(ROOT)], check=True)
    subprocess.run([*pip, "--no-deps", "--force-reinstall", str(ROOT)], check=True)
    return bindir


def build_corpus(dest: Path, *, large: bool) -> tuple[int, int]:
    import sqlalchemy  # the bench runs in the project's venv, which has it

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sa = Path(sqlalchemy.__file__).parent
    if large:
        sources = [(sa, "sqlalchemy"), (stdlib, "stdlib")]
    else:
        sources = [(sa / "ext", "sa_ext")] + [
            (stdlib / name, name) for name in ("asyncio", "email", "json", "logging")
        ]
    skip = {"test", "tests", "idle_test", "site-packages", "__pycache__"}
    files = lines = 0
    for src, name in sources:
        for path in src.rglob("*.py"):
            rel = path.relative_to(src)
            if skip & set(rel.parts):
                continue
            target = dest / name / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            files += 1
            lines += path.read_bytes().count(b"\n")
    return files, lines


def service_file(dest: Path, size: int = 500) -> Path:
    """A ~500-line service module built from the sample apps' service code."""
    sources = [
        p.read_text(encoding="utf-8")
        for p in sorted((ROOT / "fixtures" / "apps").glob("*/**/services/*.py"))
    ]
    parts: list[str] = []
    while sum(p.count("\n") for p in parts) < size:  # repeat the services until 500 lines
        parts.extend(sources)
    text = "\n\n".join(parts)
    out = dest / "service.py"
    # The last line is the one an edit rewrites (see edited_run).
    out.write_text("\n".join(text.splitlines()[: size - 1]) + "\n# edit\n", encoding="utf-8")
    return out


def many_findings_file(dest: Path, functions: int) -> Path:
    """A generated module of ``functions`` handlers with two findings each (an
    unawaited ``commit()``, a plain SQL string): the shape of generated code that
    once made the time quadratic in the findings."""
    parts = ["from sqlalchemy.ext.asyncio import AsyncSession\n"]
    parts += [
        f"\n\nasync def handler_{i}(s: AsyncSession) -> None:\n"
        f'    await s.execute("SELECT {i}")\n'
        "    s.commit()\n"
        for i in range(functions)
    ]
    # A directory of its own: the project index covers the whole directory linted.
    out = dest / f"many_findings_{functions}" / "handlers.py"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(parts), encoding="utf-8")
    return out


def hand_built_sessions_project(dest: Path, functions: int, *, declares_runtime: bool) -> Path:
    """A project whose one module has ``functions`` handlers that each build two
    sessions by hand (two SL101 findings with a fix each). Whether the project
    declares session-runtime decides where a fix's import is checked: a project
    that does not makes every finding ask what the file itself imports, which once
    scanned every module-level binding per finding."""
    kind = "runtime" if declares_runtime else "plain"
    out = dest / f"hand_built_{kind}_{functions}"
    out.mkdir(parents=True, exist_ok=True)
    dependencies = (
        '["sqlalchemy[asyncio]", "session-runtime"]'
        if declares_runtime
        else ('["sqlalchemy[asyncio]"]')
    )
    (out / "pyproject.toml").write_text(
        f'[project]\nname = "generated"\nversion = "0"\ndependencies = {dependencies}\n',
        encoding="utf-8",
    )
    parts = [
        "from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine\n\n"
        'engine = create_async_engine("postgresql+asyncpg://db/app")\n'
    ]
    parts += [
        f"\n\nasync def handler_{i}() -> None:\n"
        "    first = AsyncSession(engine)\n"
        "    second = AsyncSession(engine)\n"
        "    await first.close()\n"
        "    await second.close()\n"
        for i in range(functions)
    ]
    (out / "handlers.py").write_text("".join(parts), encoding="utf-8")
    return out


def many_findings_case(work: Path, ours: Path, runs: int) -> None:
    """Cold runs on generated files of 1 000 and 4 000 functions, in three shapes:
    the time must grow linearly with the findings (ratio near 4, at most 5)."""
    sizes = (1000, 4000)
    shapes: dict[str, dict[int, tuple[list[str], Path]]] = {
        "unawaited commit + SQL string": {
            n: (
                [
                    str(ours / "session-lint"),
                    "--no-cache",
                    "--exit-zero",
                    ".",
                ],
                many_findings_file(work, n).parent,
            )
            for n in sizes
        },
    }
    for declares in (True, False):
        label = "hand-built sessions, " + ("declares" if declares else "without") + " runtime"
        shapes[label] = {
            n: (
                [str(ours / "session-lint"), "--no-cache", "--exit-zero", "."],
                hand_built_sessions_project(work, n, declares_runtime=declares),
            )
            for n in sizes
        }
    print("many findings in one file (generated):")
    for label, runs_by_size in shapes.items():
        times = {
            n: statistics.median(_timed(command, cwd) for _ in range(max(1, runs // 2)))
            for n, (command, cwd) in runs_by_size.items()
        }
        small, large = times[sizes[0]], times[sizes[1]]
        print(
            f"  {label:44} {small:7.3f} s / {large:7.3f} s"
            f"  ratio for 4x the findings {large / small:.2f}  (linear: ~4, <= 5)"
        )


def _timed(command: Sequence[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, capture_output=True, check=False)
    return time.perf_counter() - started


def median_times(
    commands: dict[str, Sequence[str]],
    runs: int,
    cwd: Path,
    env: dict[str, str] | None = None,
) -> dict[str, float]:
    environment = {**os.environ, **(env or {})}
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():  # warm-up: page cache, pyc files, servers
        subprocess.run(command, cwd=cwd, capture_output=True, env=environment)
    for _ in range(runs):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, cwd=cwd, capture_output=True, env=environment)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def edited_run(flake8: Sequence[str], file: Path) -> list[str]:
    """flake8 on ``file`` after an edit, as on an editor's save: no run sees the
    bytes of an earlier one, so nothing is answered from a memo. The edit (the
    last line, a comment, rewritten by ``sed``) is in both the measured and the
    bare run, and the file keeps its size."""
    script = 'sed -i "\\$ s/^# edit.*/# edit $$/" "$1"; shift; exec "$@"'
    return ["sh", "-c", script, "edit", str(file), *flake8, str(file)]


def server_request_ms(
    python: str, service: Path, cwd: Path, env: dict[str, str], runs: int = 15
) -> float:
    """One request to the (running) server for an edited copy of the file, in ms."""
    probe = (
        "import os, sys, time, statistics\n"
        "from session_lint.editors import client\n"
        "path = sys.argv[1]\n"
        "source = open(path, 'rb').read()\n"
        "times = []\n"
        f"for i in range({runs}):\n"
        "    edited = source + b'# request %d\\n' % i\n"
        "    start = time.perf_counter()\n"
        "    answer = client.analyze_remote(edited, path, os.path.dirname(path), None)\n"
        "    times.append(time.perf_counter() - start)\n"
        "    assert answer is not None, 'no server'\n"
        "print(statistics.median(times) * 1000)\n"
    )
    out = subprocess.run(
        [python, "-c", probe, str(service)],
        cwd=cwd,  # not this checkout: ``-c`` would import its session_lint, not the install
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout)


def editor_case(work: Path, ours: Path, bare: Path, runs: int) -> None:
    """flake8 with our plugin vs bare flake8 on one 500-line service file, each
    command on its own copy (so the server never works for another command)."""
    service = service_file(work)
    copies = {name: work / f"{name}.py" for name in ("no_server", "bare")}
    for copy in copies.values():
        shutil.copyfile(service, copy)
    servers = work / "servers"
    servers.mkdir(mode=0o700)
    server_env = {"SESSION_LINT_SERVER_DIR": str(servers), "SESSION_LINT_SERVER": "on"}
    commands = {
        "flake8 + session-lint": edited_run([str(ours / "flake8")], service),
        "flake8 + session-lint, no server": edited_run(
            [str(ours / "flake8"), "--session-lint-server=off"], copies["no_server"]
        ),
        "bare flake8": edited_run([str(bare / "flake8")], copies["bare"]),
    }
    rounds = max(runs, 10)
    try:
        # Start the server first, so its CPU time can be read around the runs.
        subprocess.run(
            commands["flake8 + session-lint"],
            cwd=work,
            env={**os.environ, **server_env},
            capture_output=True,
        )
        pid = int(next(servers.glob("*.lock")).read_text())
        before = cpu_seconds(pid)
        editor = median_times(commands, rounds, work, env=server_env)
        # One warm-up and ``rounds`` measured edits of the served file.
        server_cpu = (cpu_seconds(pid) - before) / (rounds + 1) * 1000
        in_server = server_request_ms(str(ours / "python"), service, work, server_env)
    finally:
        subprocess.run(
            [str(ours / "python"), "-m", "session_lint.editors.server", "--stop"],
            cwd=work,
            env={**os.environ, **server_env},
            capture_output=True,
        )
    for name, value in editor.items():
        print(f"  {name:34} {value * 1000:6.0f} ms")
    overhead = (editor["flake8 + session-lint"] - editor["bare flake8"]) * 1000
    no_server = (editor["flake8 + session-lint, no server"] - editor["bare flake8"]) * 1000
    print(
        f"editor case ({service.read_text().count(chr(10))}-line file, edited before each "
        f"run): plugin adds {overhead:.0f} ms over bare flake8 (<= 30 ms); "
        f"{no_server:.0f} ms without the server"
    )
    print(
        f"  the server's CPU per edit: {server_cpu:.0f} ms (done while flake8 starts, "
        f"on another core); one request for new bytes: {in_server:.0f} ms"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--large", action="store_true", help="also run the large corpus")
    parser.add_argument("--editor-only", action="store_true", help="only the flake8 editor case")
    parser.add_argument("--findings-only", action="store_true", help="only the many-findings case")
    args = parser.parse_args(argv)

    peers, bare = tool_venv("peers"), tool_venv("bare")
    ours = plugin_venv(bare)  # session-lint as users install it
    with tempfile.TemporaryDirectory(prefix="session-lint-bench-") as tmp:
        work = Path(tmp)
        if args.editor_only:
            editor_case(work, ours, bare, args.runs)
            return 0
        if args.findings_only:
            many_findings_case(work, ours, args.runs)
            return 0
        corpus = work / "corpus"
        files, lines = build_corpus(corpus, large=False)
        print(f"reference corpus: {files} files, {lines} lines")
        cache_dir_run = [str(ours / "session-lint"), "--exit-zero", "corpus"]
        subprocess.run(cache_dir_run, cwd=work, capture_output=True)  # fill the cache
        times = median_times(
            {
                "session-lint cold": [
                    str(ours / "session-lint"),
                    "--no-cache",
                    "--exit-zero",
                    "corpus",
                ],
                "session-lint warm": cache_dir_run,
                "flake8 --select ASYNC": [str(peers / "flake8"), "--select", "ASYNC", "corpus"],
                "fixit lint": [str(peers / "fixit"), "lint", "corpus"],
                "ruff --select ASYNC": [
                    str(peers / "ruff"),
                    "check",
                    "--no-cache",
                    "--select",
                    "ASYNC",
                    "corpus",
                ],
            },
            args.runs,
            work,
        )
        for name, value in times.items():
            print(f"  {name:24} {value:8.3f} s")
        cold, warm = times["session-lint cold"], times["session-lint warm"]
        print("ratios (target):")
        print(f"  cold / flake8-async      {cold / times['flake8 --select ASYNC']:.3f}  (<= 0.05)")
        print(f"  cold / fixit             {cold / times['fixit lint']:.3f}  (<= 0.05)")
        print(f"  warm / cold              {warm / cold:.3f}  (<= 0.1)")
        print(f"  warm / ruff              {warm / times['ruff --select ASYNC']:.1f}  (<= 10)")

        editor_case(work, ours, bare, args.runs)
        many_findings_case(work, ours, args.runs)

        if args.large:
            large = work / "large"
            big_files, big_lines = build_corpus(large, large=True)
            print(f"large corpus: {big_files} files, {big_lines} lines")
            big = median_times(
                {
                    "session-lint cold": [
                        str(ours / "session-lint"),
                        "--no-cache",
                        "--exit-zero",
                        "large",
                    ]
                },
                max(1, args.runs // 2),
                work,
            )["session-lint cold"]
            per_ref, per_big = cold / lines * 1000, big / big_lines * 1000
            print(
                f"  cold {big:.3f} s; per 1k lines {per_big * 1000:.2f} ms vs "
                f"{per_ref * 1000:.2f} ms reference: ratio {per_big / per_ref:.2f} (<= 1.2)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
