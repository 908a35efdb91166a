"""The endpoint under test: its URL, normalised as make_engine does, and bounded connects."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ..urls import ResolvedURL, resolve_url
from .model import first_line

__all__ = ["DoctorError", "Target", "describe_error"]

# SQLAlchemy's dialect takes these from the URL itself; asyncpg.connect() does not know them.
_DIALECT_ONLY = ("prepared_statement_cache_size", "prepared_statement_name_func")


class DoctorError(Exception):
    """The doctor cannot do its job (bad URL, cannot connect): exit code 2, one line."""


def _innermost(exc: BaseException) -> BaseException:
    # SQLAlchemy wraps driver errors twice (DBAPIError.orig -> dialect adapter
    # -> __cause__ asyncpg error); the asyncpg one carries the exact message.
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "orig", None)
        if isinstance(inner, BaseException):
            exc = inner
            continue
        module = type(exc).__module__
        if module.startswith("sqlalchemy") and exc.__cause__ is not None:
            exc = exc.__cause__
            continue
        break
    return exc


def describe_error(exc: BaseException, timeout: float | None = None) -> str:
    """``TypeName: first line of the message`` of the error that actually happened."""
    inner = _innermost(exc)
    if isinstance(inner, (TimeoutError, asyncio.TimeoutError)) and not str(inner):
        after = f" within {timeout:g} s" if timeout is not None else ""
        return f"TimeoutError: no answer{after}"
    return f"{type(inner).__name__}: {first_line(str(inner))}"


def _connect_failure(exc: BaseException, timeout: float) -> str:
    inner = _innermost(exc)
    text = describe_error(inner, timeout)
    if isinstance(inner, ConnectionRefusedError):
        return f"connection refused ({text})"
    if isinstance(inner, socket.gaierror):
        return f"host name not found ({text})"
    if isinstance(inner, (TimeoutError, asyncio.TimeoutError)):
        return f"no answer within {timeout:g} s ({text})"
    if isinstance(
        inner, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError
    ):
        return f"authentication failed ({text})"
    if isinstance(inner, asyncpg.PostgresError):
        return f"the server refused the connection ({text})"
    if isinstance(inner, ConnectionError | asyncpg.ProtocolViolationError):
        return f"the endpoint does not answer like PostgreSQL ({text})"
    return text


@dataclass
class Target:
    """One database endpoint, reached with asyncpg exactly as ``make_engine``'s engine would."""

    url: URL
    resolved: ResolvedURL
    connect_kwargs: dict[str, Any]
    timeout: float
    #: The URL as given (make_engine normalises it itself), and whether it came from $DATABASE_URL.
    original: URL
    from_env: bool = False

    @classmethod
    def from_url(cls, url: str | URL | None, timeout: float) -> Target:
        """Normalise ``url`` (default ``$DATABASE_URL``) with :func:`session_runtime.urls.resolve_url`.

        Raises:
            DoctorError: no URL, or one that is not a PostgreSQL URL. The
                message never contains the URL's text: a URL that does not
                parse cannot have its password masked.
        """
        from_env = url is None
        if url is None:
            url = os.environ.get("DATABASE_URL") or None
            if url is None:
                raise DoctorError("no database URL: pass one or set $DATABASE_URL")
        try:
            original = make_url(url) if isinstance(url, str) else url
        except ArgumentError:
            raise DoctorError(
                "not a database URL (expected postgresql://user:password@host:port/dbname)"
            ) from None
        except ValueError:
            # SQLAlchemy's int() of the port: "invalid literal for int()" says nothing.
            raise DoctorError(
                "the port in the database URL is not a number "
                "(expected postgresql://user:password@host:port/dbname, e.g. port 5432)"
            ) from None
        try:
            resolved = resolve_url(original)
        except ArgumentError:
            raise DoctorError(
                "not a database URL (expected postgresql://user:password@host:port/dbname)"
            ) from None
        except ValueError as exc:
            raise DoctorError(str(exc)) from None
        probe = resolved
        if resolved.driver != "asyncpg":
            # The probes speak asyncpg; the endpoint is the same.
            probe = resolve_url(resolved.url.set(drivername="postgresql+asyncpg"))
        # SQLAlchemy's own translation, so the probes connect exactly as an engine would.
        dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
        _, params = dialect.create_connect_args(probe.url)  # type: ignore[no-untyped-call]
        for key in _DIALECT_ONLY:
            params.pop(key, None)
        kwargs = {**params, **probe.connect_args}
        return cls(resolved.url, resolved, kwargs, timeout, original, from_env)

    @property
    def masked(self) -> str:
        """The normalised URL with the password replaced by ``***``."""
        return self.url.render_as_string(hide_password=True)

    def scrub(self, text: str) -> str:
        """Remove the password from text that came from elsewhere (driver errors)."""
        password = self.url.password
        if not password or len(password) < 4:
            # Short ones cannot be told from ordinary text; the doctor's own
            # output never contains them (URLs are rendered masked).
            return text
        for form in {password, quote(password, safe="")}:
            text = text.replace(form, "***")
        return text

    async def connect(self, **overrides: Any) -> Any:
        """asyncpg connection, statement cache off unless overridden, bounded by the timeout.

        Raises:
            DoctorError: with what went wrong, in one line.
        """
        kwargs = {**self.connect_kwargs, "statement_cache_size": 0, **overrides}
        kwargs["timeout"] = self.timeout
        try:
            # The doctor probes the endpoint itself, beneath any engine.
            return await asyncpg.connect(**kwargs)
        except Exception as exc:
            raise DoctorError(
                self.scrub(
                    f"cannot connect to {self.masked}: {_connect_failure(exc, self.timeout)}"
                )
            ) from exc
