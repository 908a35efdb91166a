"""Fetch the pinned real-code corpus (``packages.toml``) and unpack its Python files.

    python bench/corpus/fetch.py [--dir DIR] [NAME ...]

Each artefact is downloaded with pip, as users get it (``python -m pip download
--no-deps --only-binary :all:`` for a wheel, ``--no-binary :all:`` for an sdist; pip
prepares an sdist's metadata, which may install its build backend into a temporary
environment), checked against the pinned sha256, and its ``.py`` files unpacked
into ``DIR/site-packages/<name>-<version>/`` (an sdist's top directory is dropped, so
the tree is the project as its authors check it out). ``DIR`` is ``.corpus/`` at the
repository root unless ``--dir`` or ``$SESSION_LINT_CORPUS_DIR`` says otherwise.

Idempotent: a downloaded file with the right hash is not downloaded again, and a
tree whose marker records the artefact's hash and whose files still hash to what the
marker says is reused as it is (a tree edited by hand, or by ``--fix``, is unpacked
again). Unpacking is safe: members are read and written by this module, never by
``tarfile``/``zipfile`` extraction; only regular ``.py`` files are taken; a name that
is absolute or climbs out of the tree stops the fetch.

Besides the ``.py`` files, a tree holds what session-lint reads of a project: the
files that declare its dependencies (an sdist's ``pyproject.toml``, ``setup.cfg``,
``Pipfile``, ``requirements*.txt``, ``requirements/*.txt``, ``uv.lock``,
``poetry.lock`` at its top), and for a wheel a ``pyproject.toml`` whose ``[project]``
table is made from the wheel's ``METADATA`` (name, version, ``Requires-Dist``): what
a checkout of the package declares. Its ``pyproject.toml`` also gets an empty
``[tool.session-lint]`` table (unless it has one): every rule on, the defaults, the
tree itself as the project root, as when a user runs session-lint in a checkout of
the package. Without it, a corpus directory inside a project would be linted with
that project's configuration (session-lint looks for its table walking up from the
linted path; this repository has one).
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project's venv is 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGES_FILE = Path(__file__).resolve().parent / "packages.toml"
ENV_DIR = "SESSION_LINT_CORPUS_DIR"
# A name session-lint never walks into (``discovery.ALWAYS_SKIPPED``): linting this
# repository (``session-lint .``, tests/lint/test_self_lint.py) passes the corpus by.
TREES = "site-packages"
MARKER = ".session-lint-corpus.json"  # in each tree, written last
TREE_CONFIG = "pyproject.toml"
TREE_CONFIG_NOTE = (
    "# bench/corpus/fetch.py added the [tool.session-lint] table at the end: session-lint's\n"
    "# defaults, with this tree as the project root (no configuration from above it).\n"
)
WHEEL_CONFIG_NOTE = (
    "# Written by bench/corpus/fetch.py: the wheel's METADATA as a [project] table (what a\n"
    "# checkout of the package declares), and session-lint's defaults, with this tree as\n"
    "# the project root (no configuration from above it).\n"
)
SESSION_LINT_TABLE = "[tool.session-lint]\n"
# What session-lint reads of a project besides its Python files (see
# ``session_lint.project.dependencies``), relative to the tree's top.
DECLARATIONS = re.compile(
    r"pyproject\.toml|setup\.cfg|Pipfile|requirements[^/]*\.txt|requirements/[^/]+\.txt"
    r"|uv\.lock|poetry\.lock",
    re.I,
)
EXTRA = re.compile(r"""\bextra\s*==\s*['"]([^'"]+)['"]""")  # in a Requires-Dist marker
MAX_UNPACKED = 512 * 1024 * 1024  # bytes unpacked per artefact; more is not a package
FORMAT = 3  # of the marker; a change unpacks every tree again


class FetchError(Exception):
    """The corpus cannot be fetched as pinned (download, hash or archive problem)."""


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    file: str
    sha256: str
    why: str = ""

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"

    @property
    def is_sdist(self) -> bool:
        return self.file.endswith((".tar.gz", ".tgz"))


@dataclass(frozen=True)
class Tree:
    package: Package
    root: Path  # the unpacked project: lint with this as the working directory
    files: int  # .py files in it
    reused: bool  # True when an earlier fetch's tree was verified and kept


def load_packages(path: Path = PACKAGES_FILE) -> list[Package]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    packages = [Package(**entry) for entry in data.get("package", [])]
    names = [p.name for p in packages]
    if len(set(names)) != len(names):
        raise FetchError(f"{path}: a package is listed twice")
    for package in packages:
        if not package.file.endswith((".whl", ".tar.gz", ".tgz")):
            raise FetchError(f"{path}: {package.name}: not a wheel or an sdist: {package.file}")
    return packages


def corpus_dir(given: str | os.PathLike[str] | None = None) -> Path:
    """``given``, else ``$SESSION_LINT_CORPUS_DIR``, else ``.corpus/`` at the repo root."""
    chosen = given or os.environ.get(ENV_DIR) or ROOT / ".corpus"
    return Path(chosen).resolve()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- download -----------------------------------------------------------------


def download(package: Package, downloads: Path) -> Path:
    """The verified artefact in ``downloads``, fetched with pip when missing or wrong."""
    downloads.mkdir(parents=True, exist_ok=True)
    target = downloads / package.file
    if target.is_file() and sha256_file(target) == package.sha256:
        return target
    with tempfile.TemporaryDirectory(prefix="download-", dir=downloads) as tmp:
        binary = ["--no-binary", ":all:"] if package.is_sdist else ["--only-binary", ":all:"]
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            *binary,
            f"{package.name}=={package.version}",
            "-d",
            tmp,
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        got = Path(tmp) / package.file
        if done.returncode != 0 or not got.is_file():
            found = sorted(p.name for p in Path(tmp).iterdir())
            raise FetchError(
                f"{package.key}: pip download did not give {package.file} "
                f"(exit {done.returncode}, got {found}):\n{done.stderr.strip()[-2000:]}"
            )
        actual = sha256_file(got)
        if actual != package.sha256:
            raise FetchError(
                f"{package.key}: {package.file} has sha256 {actual}, pinned {package.sha256}"
            )
        os.replace(got, target)
    return target


# -- safe unpacking -------------------------------------------------------------


def safe_relative(name: str) -> PurePosixPath:
    """An archive member's name as a relative path that stays in the tree; raises
    :class:`FetchError` for absolute names, drive letters, ``..`` and backslashes."""
    if "\\" in name or "\0" in name:
        raise FetchError(f"unsafe member name {name!r}")
    path = PurePosixPath(name)
    if path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise FetchError(f"unsafe member name {name!r} (absolute)")
    parts = [p for p in path.parts if p != "."]
    if not parts or ".." in parts:
        raise FetchError(f"unsafe member name {name!r} (leaves the tree)")
    return PurePosixPath(*parts)


def _zip_members(archive: Path) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            mode = info.external_attr >> 16
            if info.is_dir() or (mode and not stat.S_ISREG(mode)):
                continue  # directories, symlinks and other special entries
            yield info.filename, zf.read(info)


def _tar_members(archive: Path) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(archive, "r:*") as tf:
        for member in tf:
            if not member.isfile():
                continue  # directories, links, devices, FIFOs
            handle = tf.extractfile(member)
            if handle is None:
                continue
            with handle:
                yield member.name, handle.read()


def wanted_files(package: Package, archive: Path) -> Iterator[tuple[PurePosixPath, bytes]]:
    """``(relative path, bytes)`` of the artefact's regular ``.py`` files, its
    dependency declarations (an sdist's) and its ``METADATA`` (a wheel's), in archive
    order; an sdist's single top directory is dropped."""
    members = _tar_members(archive) if package.is_sdist else _zip_members(archive)
    total = 0
    top: str | None = None
    for name, data in members:
        relative = safe_relative(name)
        if package.is_sdist:
            if top is None:
                top = relative.parts[0]
            if relative.parts[0] != top or len(relative.parts) < 2:
                raise FetchError(f"{package.file}: member {name!r} is outside {top}/")
            relative = PurePosixPath(*relative.parts[1:])
        keep = (
            relative.suffix == ".py"
            or (package.is_sdist and DECLARATIONS.fullmatch(relative.as_posix()) is not None)
            or (not package.is_sdist and is_wheel_metadata(relative))
        )
        if not keep:
            continue
        total += len(data)
        if total > MAX_UNPACKED:
            raise FetchError(f"{package.file}: more than {MAX_UNPACKED} bytes to unpack")
        yield relative, data


def is_wheel_metadata(relative: PurePosixPath) -> bool:
    return (
        len(relative.parts) == 2
        and relative.parts[0].endswith(".dist-info")
        and relative.name == "METADATA"
    )


def toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def project_table(metadata: bytes) -> str:
    """A ``[project]`` table from a wheel's ``METADATA``: name, version and its
    ``Requires-Dist`` lines, those under ``extra == "x"`` as optional dependencies."""
    message = email.parser.BytesHeaderParser().parsebytes(metadata)
    required: list[str] = []
    extras: dict[str, list[str]] = {}
    for requirement in message.get_all("Requires-Dist") or []:
        extra = EXTRA.search(requirement)
        if extra is None:
            required.append(requirement)
            continue
        # As the extra's own list states it: without the ``extra == "x"`` clause.
        name, _, marker = requirement.partition(";")
        marker = re.sub(r"^\s*and\s+|\s+and\s*$", "", EXTRA.sub("", marker).strip())
        marker = re.sub(r"\s+and\s+and\s+", " and ", marker).strip()
        line = f"{name.strip()}; {marker}" if marker else name.strip()
        extras.setdefault(extra.group(1), []).append(line)

    def array(items: list[str]) -> str:
        return "[\n" + "".join(f"    {toml_string(i)},\n" for i in items) + "]"

    lines = [
        "[project]",
        f"name = {toml_string(str(message.get('Name', '')))}",
        f"version = {toml_string(str(message.get('Version', '')))}",
        f"dependencies = {array(required)}",
    ]
    if extras:
        lines.append("\n[project.optional-dependencies]")
        lines += [f"{toml_string(name)} = {array(items)}" for name, items in extras.items()]
    return "\n".join(lines) + "\n"


def tree_pyproject(package: Package, own: bytes | None, metadata: bytes | None) -> str:
    """The tree's ``pyproject.toml``: the sdist's own (or one made from the wheel's
    METADATA) with an empty ``[tool.session-lint]`` table, unless it has one."""
    if own is not None:
        try:
            text = own.decode("utf-8")
            has_table = "session-lint" in tomllib.loads(text).get("tool", {})
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise FetchError(f"{package.file}: pyproject.toml: {exc}") from exc
        if has_table:
            return text
        text = TREE_CONFIG_NOTE + text.rstrip("\n") + "\n\n" + SESSION_LINT_TABLE
    else:
        project = project_table(metadata) + "\n" if metadata else ""
        text = WHEEL_CONFIG_NOTE + project + SESSION_LINT_TABLE
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FetchError(
            f"{package.file}: pyproject.toml with session-lint's table: {exc}"
        ) from exc
    return text


def tree_digest(root: Path) -> str:
    """One hash over every file of a tree (paths and bytes), the marker and
    session-lint's own cache (which a lint run writes) excepted."""
    digest = hashlib.sha256()
    files = (
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.name != MARKER
        and ".session_lint_cache" not in p.relative_to(root).parts
    )
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _read_marker(root: Path) -> dict[str, object] | None:
    try:
        data = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def verified_tree(package: Package, root: Path) -> int | None:
    """The number of .py files of an earlier fetch's tree, None when it cannot be reused."""
    marker = _read_marker(root)
    if (
        marker is None
        or marker.get("format") != FORMAT
        or marker.get("sha256") != package.sha256
        or marker.get("file") != package.file
    ):
        return None
    if tree_digest(root) != marker.get("tree"):
        return None
    files = marker.get("files")
    return files if isinstance(files, int) else None


def unpack(package: Package, archive: Path, root: Path) -> int:
    """Unpack into a fresh directory beside ``root`` and swap it in; the number of
    .py files written."""
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{package.key}-", dir=root.parent))
    try:
        count = 0
        seen: set[PurePosixPath] = set()
        own_pyproject: bytes | None = None
        metadata: bytes | None = None
        for relative, data in wanted_files(package, archive):
            if relative in seen:
                raise FetchError(f"{package.file}: {relative} appears twice")
            seen.add(relative)
            if is_wheel_metadata(relative):
                metadata = data
                continue
            if relative == PurePosixPath(TREE_CONFIG):
                own_pyproject = data
                continue
            target = staging.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            # Created here and never through a link: the parents are directories
            # this function made (no member can be a symlink or a directory name).
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with io.FileIO(fd, "wb") as out:
                out.write(data)
            if relative.suffix == ".py":
                count += 1
        pyproject = tree_pyproject(package, own_pyproject, metadata)
        (staging / TREE_CONFIG).write_text(pyproject, encoding="utf-8")
        marker = {
            "format": FORMAT,
            "file": package.file,
            "sha256": package.sha256,
            "files": count,
            "tree": tree_digest(staging),
        }
        (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if root.exists():
            shutil.rmtree(root)
        os.replace(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return count


def fetch_package(package: Package, directory: Path) -> Tree:
    root = directory / TREES / package.key
    files = verified_tree(package, root)
    if files is not None:
        return Tree(package, root, files, reused=True)
    archive = download(package, directory / "downloads")
    return Tree(package, root, unpack(package, archive, root), reused=False)


def fetch(
    directory: str | os.PathLike[str] | None = None, names: Sequence[str] | None = None
) -> list[Tree]:
    """Fetch (or reuse) every pinned package, or those named; raises :class:`FetchError`."""
    packages = load_packages()
    if names:
        unknown = sorted(set(names) - {p.name for p in packages})
        if unknown:
            raise FetchError(f"not in {PACKAGES_FILE.name}: {', '.join(unknown)}")
        packages = [p for p in packages if p.name in names]
    where = corpus_dir(directory)
    return [fetch_package(package, where) for package in packages]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="only these packages")
    parser.add_argument("--dir", help=f"corpus directory (default: ${ENV_DIR} or .corpus/)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        trees = fetch(args.dir, args.names)
    except FetchError as exc:
        print(f"fetch failed: {exc}", file=sys.stderr)
        return 1
    for tree in trees:
        state = "reused" if tree.reused else "unpacked"
        print(f"{tree.package.key:36} {tree.files:5} .py files  {state:8}  {tree.root}")
    print(f"{len(trees)} packages in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
