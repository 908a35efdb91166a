"""What git ignores, so a walk skips it as ruff does (``respect-gitignore``).

The ``.gitignore`` files that apply to a path are those of its directory and of
every parent up to the repository root (the directory holding ``.git``), the
deeper one deciding first, then the repository's ``.git/info/exclude``. Outside a
repository, the ``.gitignore`` files from the project root down apply. The
patterns are matched by ``pathspec`` (git's own wildmatch rules: negation,
anchoring, ``**``, directory-only patterns); the user's global excludes file
(``core.excludesFile``) is not read: it is a per-machine setting, and a lint run
must not depend on the machine it runs on.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pathspec


class GitIgnores:
    """Answers "does git ignore this path?" for the paths of one run, reading
    each directory's ``.gitignore`` once."""

    def __init__(self, project_root: str) -> None:
        self._project_root = os.path.abspath(project_root)
        self._specs: dict[str, pathspec.GitIgnoreSpec | None] = {}
        self._repos: dict[str, str | None] = {}

    def ignored(self, path: str, *, is_dir: bool) -> bool:
        path = os.path.abspath(path)
        parent = os.path.dirname(path)
        repo = self._repository(parent)
        top = repo if repo is not None else self._project_root
        if parent != top and not parent.startswith(top.rstrip(os.sep) + os.sep):
            return False  # outside the repository (or the project): nothing applies
        directory = parent
        while True:
            decided = self._check(self._spec(directory, ".gitignore"), directory, path, is_dir)
            if decided is not None:
                return decided
            if directory == top:
                break
            directory = os.path.dirname(directory)
        if repo is not None:
            exclude = self._spec(os.path.join(repo, ".git", "info"), "exclude")
            return self._check(exclude, repo, path, is_dir) is True
        return False

    @staticmethod
    def _check(
        spec: pathspec.GitIgnoreSpec | None, base: str, path: str, is_dir: bool
    ) -> bool | None:
        if spec is None:
            return None
        relative = os.path.relpath(path, base).replace(os.sep, "/")
        result = spec.check_file(relative + "/" if is_dir else relative)
        return result.include

    def _spec(self, directory: str, name: str) -> pathspec.GitIgnoreSpec | None:
        key = os.path.join(directory, name)
        if key not in self._specs:
            try:
                with open(key, encoding="utf-8", errors="surrogateescape") as file:
                    lines = file.read().splitlines()
            except OSError:  # none there (the common case), or unreadable
                self._specs[key] = None
            else:
                import pathspec

                # A pattern such as ``[[:space:]]`` compiles to a regex that ``re``
                # warns about (``FutureWarning: Possible nested set``); git's meaning
                # is unchanged, and a user's run shows no warnings of ours.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    self._specs[key] = pathspec.GitIgnoreSpec.from_lines(lines)
        return self._specs[key]

    def _repository(self, directory: str) -> str | None:
        """The nearest directory at or above ``directory`` holding ``.git``."""
        if directory in self._repos:
            return self._repos[directory]
        if os.path.exists(os.path.join(directory, ".git")):
            found: str | None = directory
        else:
            parent = os.path.dirname(directory)
            found = None if parent == directory else self._repository(parent)
        self._repos[directory] = found
        return found
