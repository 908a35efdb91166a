"""The messages between the flake8 plugin's client (:mod:`session_lint.editors.client`)
and the analysis server (:mod:`session_lint.editors.server`), written once for both.

A request is one JSON header line, then ``size`` bytes of source; an answer is
one JSON line. Stdlib only and cheap to import: the client imports it in every
flake8 process.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, BinaryIO

PROTOCOL = 2  # 2: findings as Finding.to_dict encodes them
MAX_HEADER = 64 * 1024
MAX_SOURCE = 64 * 1024 * 1024

Answer = dict[str, Any]


@dataclass
class Request:
    """What a file's answer depends on: the client's working directory, the
    file's name as flake8 gave it, the directory its config is looked up from,
    and an explicit config file."""

    cwd: str
    filename: str
    config_dir: str
    config: str | None

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> Request:
        config = header.get("config")
        return cls(
            str(header["cwd"]),
            str(header["filename"]),
            str(header["config_dir"]),
            None if config is None else str(config),
        )

    @property
    def path(self) -> str:
        return os.path.join(self.cwd, self.filename)


def request(
    filename: str,
    config_dir: str,
    config_file: str | None,
    source: bytes = b"",
    *,
    command: str = "",
) -> bytes:
    """An analysis request from this process's working directory: ``command``
    ``analyze-path`` asks for the file on disk, and its source follows later
    (:func:`follow_up`)."""
    header: dict[str, Any] = {
        "protocol": PROTOCOL,
        "cwd": os.getcwd(),
        "filename": filename,
        "config_dir": config_dir,
        "config": config_file,
        "size": len(source),
    }
    if command:
        header["command"] = command
    return json.dumps(header).encode() + b"\n" + source


def follow_up(source: bytes) -> bytes:
    """The bytes flake8 checks, after an ``analyze-path`` request."""
    return json.dumps({"protocol": PROTOCOL, "size": len(source)}).encode() + b"\n" + source


def stop() -> bytes:
    return json.dumps({"protocol": PROTOCOL, "command": "stop", "size": 0}).encode() + b"\n"


def read_message(reader: BinaryIO) -> tuple[dict[str, Any], bytes]:
    """One request's header and source (raises ``ValueError`` on a bad one)."""
    line = reader.readline(MAX_HEADER)
    if not line.endswith(b"\n"):
        raise ValueError("no header line")
    header = json.loads(line)
    if not isinstance(header, dict) or header.get("protocol") != PROTOCOL:
        raise ValueError("unknown protocol")
    size = int(header.get("size", 0))
    if not 0 <= size <= MAX_SOURCE:
        raise ValueError("source too large")
    source = reader.read(size)
    if len(source) != size:
        raise ValueError("short source")
    return header, source


def answer(value: Answer) -> bytes:
    return json.dumps(value).encode() + b"\n"


def read_answer(data: bytes) -> Answer | None:
    """The answer in one received line, or None if it is not one."""
    if not data.endswith(b"\n"):
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
