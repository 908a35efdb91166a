"""Writing to the user's files: a fixed file (its bytes come from ``fixes.apply``
already in the file's encoding, BOM and line endings) and ``--add-noqa``'s
comments; atomically, only over the bytes that were read, and only inside the
tree the user asked to fix."""

from __future__ import annotations

import io
import os
import stat
import tempfile
import tokenize
from collections.abc import Sequence
from pathlib import Path

from session_lint.core.noqa import add_noqa
from session_lint.finding import Finding
from session_lint.syntax import parses


class WriteError(Exception):
    pass


def write_atomically(
    path: str, data: bytes, expected_old: bytes, *, within: Sequence[str] = ()
) -> None:
    """Replace ``path``'s bytes with ``data`` via a temp file and rename.

    Refuses when the file changed since it was read, or is not writable; writes
    through a symlink to its target (replacing the link itself would break it),
    but only when the target is inside one of ``within`` (directories, or files
    standing for their directory; empty: anywhere).
    """
    target = Path(os.path.realpath(path))
    if within and not any(target.is_relative_to(root) for root in _real_roots(within)):
        # A symlink (of the file or a directory on its way) leads out of the tree
        # the user asked to fix: someone else's file, maybe shared by projects.
        raise WriteError(f"{path}: resolves to {target}, outside the linted tree; not fixed")
    try:
        current = target.read_bytes()
    except OSError as exc:
        raise WriteError(f"{path}: cannot re-read before writing: {exc.strerror}") from exc
    if current != expected_old:
        raise WriteError(f"{path}: changed on disk during the run; not fixed")
    mode = stat.S_IMODE(target.stat().st_mode)
    # root passes os.access on any file, but a file without a write bit is still
    # meant to be read-only (and rename would replace it regardless).
    if not os.access(target, os.W_OK) or not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise WriteError(f"{path}: not writable; not fixed")
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".session-lint", dir=target.parent
        )
    except OSError as exc:
        raise WriteError(
            f"{path}: cannot write next to the file: {exc.strerror}; not fixed"
        ) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _real_roots(paths: Sequence[str]) -> list[Path]:
    roots = []
    for path in paths:
        absolute = os.path.abspath(path)
        # A named file stands for its directory; the file itself is not resolved,
        # so a named symlink to another directory's file is still outside.
        directory = absolute if os.path.isdir(absolute) else os.path.dirname(absolute)
        roots.append(Path(os.path.realpath(directory)))
    return roots


def add_noqa_to_files(findings: Sequence[Finding], within: Sequence[str]) -> tuple[int, list[str]]:
    """``--add-noqa``: a ``# noqa`` for every finding, written to its file. Returns
    the number of comments added or extended, and the messages about what was
    left alone (a line that cannot take a comment, a file that changed or would
    no longer parse). A file that does not parse (SL000) is never touched."""
    by_path: dict[str, list[Finding]] = {}
    for finding in findings:
        by_path.setdefault(finding.path, []).append(finding)
    added = 0
    messages: list[str] = []
    for path, found in sorted(by_path.items()):
        if any(f.code == "SL000" for f in found):
            continue
        try:
            with open(path, "rb") as file:
                original = file.read()
            encoding = tokenize.detect_encoding(io.BytesIO(original).readline)[0]
            text = original.decode(encoding)
        except (OSError, SyntaxError, LookupError, UnicodeDecodeError) as exc:
            messages.append(f"{path}: cannot read it to add noqa comments: {exc}")
            continue
        new_text, changed, skipped = add_noqa(text, found)
        for line in skipped:
            messages.append(f"{path}:{line}: no noqa comment added: the file does not tokenize")
        if not changed:
            continue
        new = new_text.encode(encoding)
        if not parses(new):
            messages.append(f"{path}: noqa comments would break the file; left unchanged")
            continue
        try:
            write_atomically(path, new, original, within=within)
        except (WriteError, OSError) as exc:
            messages.append(str(exc) if isinstance(exc, WriteError) else f"{path}: {exc}")
            continue
        added += changed
    return added, messages
