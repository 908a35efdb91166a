"""Which files to lint, from the paths on the command line.

- A directory is walked for ``*.py`` and ``*.pyi`` files, in sorted order, skipping
  what the config's ``exclude``/``extend-exclude`` globs match and the directories
  no project wants linted (``.git``, ``.venv``, ``__pycache__`` …, see
  :data:`ALWAYS_SKIPPED`).
- With ``respect-gitignore`` (the default), what git ignores is skipped too (see
  :mod:`session_lint.project.gitignore`).
- A file or directory named explicitly is linted even when an exclude glob
  matches it, a file whatever its extension (ruff's behaviour without
  ``--force-exclude``): the user asked for it. With ``force_exclude`` (the CLI's
  ``--force-exclude``, which the pre-commit hooks pass: pre-commit names every
  file) a named path is skipped as a walked one would be. Below a named directory, a glob
  without ``/`` is matched against each entry's own name and a glob with ``/``
  against its path from the config file, so ``session-lint fixtures/`` lints the
  fixtures that ``exclude = ["fixtures"]`` keeps out of ``session-lint .``.
- Symlinked directories are followed, but each real directory is walked once, so
  a symlink loop ends; a file reached twice (two paths, or a symlink) is linted once.
- ``-`` stands for standard input and is passed through as is.
- A path that does not exist or cannot be read, and a named path that is not a
  regular file (a FIFO, socket or device), gives one message each; the other
  files are still linted (the caller exits 2 at the end). While walking, only
  regular files are taken: a broken symlink there is passed over in silence
  (editors leave them as lock files, e.g. Emacs's ``.#name.py``).
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from session_lint.project.config import Config, glob_match
from session_lint.project.gitignore import GitIgnores

STDIN = "-"

PYTHON_SUFFIXES = (".py", ".pyi")

# Directories that are never project source: tool caches, virtual environments,
# build output and VCS metadata. Skipped by name when walking a directory.
ALWAYS_SKIPPED = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".bzr",
        ".venv",
        "venv",
        ".direnv",
        "__pycache__",
        "__pypackages__",
        "build",
        "dist",
        "_build",
        "buck-out",
        ".eggs",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".hypothesis",
        "node_modules",
        "site-packages",
        ".session_lint_cache",
    }
)


@dataclass
class Discovery:
    files: list[str] = field(default_factory=list)  # display paths, in lint order
    errors: list[str] = field(default_factory=list)


def discover(paths: Sequence[str], config: Config, *, force_exclude: bool = False) -> Discovery:
    """The files to lint for ``paths`` (``["."]`` when empty), deduplicated, in order."""
    result = Discovery()
    seen_files: set[tuple[int, int]] = set()
    seen_dirs: set[tuple[int, int]] = set()
    ignores = GitIgnores(config.root) if config.respect_gitignore else None
    for given in paths or ["."]:
        if given == STDIN:
            result.files.append(STDIN)
            continue
        try:
            info = os.stat(given)
        except FileNotFoundError:
            result.errors.append(f"{given}: No such file or directory")
            continue
        except OSError as exc:
            result.errors.append(f"{given}: cannot access: {exc.strerror or exc}")
            continue
        if force_exclude and is_excluded(given, config, ignores, is_dir=stat.S_ISDIR(info.st_mode)):
            continue
        if stat.S_ISDIR(info.st_mode):
            # A named directory that git ignores is what the user asked for: linted
            # whole, as ruff does (its .gitignore patterns would match every file).
            inside = None if ignores is None or ignores.ignored(given, is_dir=True) else ignores
            for path in _walk(given, config, seen_dirs, result.errors, inside):
                _add(result, path, seen_files)
        elif stat.S_ISREG(info.st_mode):
            _add(result, given, seen_files, info)
        else:
            # Reading a FIFO blocks until a writer comes, a device may never end.
            result.errors.append(f"{given}: not a regular file; not linted")
    return result


def _add(
    result: Discovery,
    path: str,
    seen: set[tuple[int, int]],
    info: os.stat_result | None = None,
) -> None:
    try:
        info = info or os.stat(path)
    except OSError as exc:
        result.errors.append(f"{path}: cannot access: {exc.strerror or exc}")
        return
    key = (info.st_dev, info.st_ino)
    if key in seen:
        return
    seen.add(key)
    result.files.append(path)


def is_excluded(
    path: str, config: Config, ignores: GitIgnores | None = None, *, is_dir: bool = False
) -> bool:
    """Whether ``path`` is left out wherever it is named: a directory no project
    lints (:data:`ALWAYS_SKIPPED`) or an ``exclude``/``extend-exclude`` glob on its
    path from the project root, or what git ignores (with ``ignores``). For paths
    named on the command line under ``--force-exclude``, and for the files flake8
    hands the plugin (flake8 names every file it checks)."""
    relative = config.relative(path)
    if not os.path.isabs(relative) and not relative.startswith("../"):
        if any(part in ALWAYS_SKIPPED for part in relative.split("/")):
            return True
    if config.is_excluded(path):
        return True
    return ignores is not None and ignores.ignored(path, is_dir=is_dir)


def _walk(
    root: str,
    config: Config,
    seen_dirs: set[tuple[int, int]],
    errors: list[str],
    ignores: GitIgnores | None = None,
) -> Iterator[str]:
    try:
        info = os.stat(root)
    except OSError as exc:
        errors.append(f"{root}: cannot access: {exc.strerror or exc}")
        return
    key = (info.st_dev, info.st_ino)
    if key in seen_dirs:  # a symlink loop, or the same directory named twice
        return
    seen_dirs.add(key)
    try:
        with os.scandir(root) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        errors.append(f"{root}: cannot read directory: {exc.strerror or exc}")
        return
    for entry in entries:
        path = _join(root, entry.name)
        try:
            is_dir = entry.is_dir()  # follows symlinks
            is_file = not is_dir and entry.is_file()
        except OSError:
            continue
        if is_dir:
            if entry.name in ALWAYS_SKIPPED or _excluded(config, path, entry.name):
                continue
            if ignores is not None and ignores.ignored(path, is_dir=True):
                continue
            yield from _walk(path, config, seen_dirs, errors, ignores)
        elif (
            is_file
            and entry.name.endswith(PYTHON_SUFFIXES)
            and not _excluded(config, path, entry.name)
            and not (ignores is not None and ignores.ignored(path, is_dir=False))
        ):
            yield path


def _excluded(config: Config, path: str, name: str) -> bool:
    """Whether a walked entry is excluded. Its ancestors were checked as they were
    walked, so a name glob looks at the entry's own name only (not at the
    directories the user named on the command line)."""
    for pattern in (*config.exclude, *config.extend_exclude):
        bare = pattern.rstrip("/")
        if "/" in bare:
            if glob_match(config.relative(path), bare):
                return True
        elif fnmatch.fnmatchcase(name, bare):
            return True
    return False


def _join(root: str, name: str) -> str:
    # Paths stay as the user gave them (relative stays relative), without "./".
    return name if root in (".", "./") else os.path.join(root, name)
