"""SL503 in Alembic env.py files (docs/rules/SL503.md, "Where it runs"): a SET is
reported only where the migration runs on the application's own connection."""

from __future__ import annotations

from pathlib import Path

from session_lint.analyzer import analyze
from session_lint.project.config import Config

OWN_CONNECTION = b'''from alembic import context
from sqlalchemy import engine_from_config, pool, text


def run_migrations_online() -> None:
    connectable = engine_from_config(context.config.get_section("alembic"), poolclass=pool.NullPool)
    with connectable.connect() as connection:
        connection.execute(text("SET lock_timeout = '15s'"))
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()
'''

SHARED_CONNECTION = OWN_CONNECTION.replace(
    b"    connectable = engine_from_config(",
    b'    shared = context.config.attributes["connection"]\n    connectable = engine_from_config(',
)


def codes(source: bytes) -> list[tuple[int, str]]:
    path = str(Path("migrations") / "env.py")
    result = analyze(source, path, Config())
    assert result.errors == []
    return [(f.line, f.code) for f in result.findings if f.code == "SL503"]


def test_env_with_its_own_connection_is_silent() -> None:
    assert codes(OWN_CONNECTION) == []


def test_env_on_the_apps_connection_is_reported() -> None:
    assert codes(SHARED_CONNECTION) == [(9, "SL503")]
