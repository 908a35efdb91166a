"""Edge cases of the SL101, SL102 and SL105 fixes that a fixture cannot show (a fixture of
a fixing rule must apply a fix)."""

from __future__ import annotations

import textwrap

from session_lint.fixes.apply import fix_source
from session_lint.project.config import Config
from session_lint.rules import RULES_BY_CODE


def fixed(source: str, code: str) -> str:
    outcome = fix_source(
        textwrap.dedent(source).encode(),
        "app/service.py",
        Config(extend_select=(code,)),  # opt-in rules (SL102) too
        [RULES_BY_CODE[code]],
        unsafe=True,
    )
    assert outcome.errors == []
    return outcome.source.decode()


def test_sl102_no_fix_when_the_factory_name_is_taken() -> None:
    source = """
    from sqlalchemy.ext.asyncio import create_async_engine

    def make_engine(url):
        return url

    engine = create_async_engine("postgresql+asyncpg://db/app")
    """
    assert fixed(source, "SL102") == textwrap.dedent(source)


def test_sl102_no_fix_when_the_factory_name_is_imported_from_elsewhere() -> None:
    source = """
    from sqlalchemy.ext.asyncio import create_async_engine
    from app.legacy import make_engine

    engine = create_async_engine("postgresql+asyncpg://db/app")
    """
    assert fixed(source, "SL102") == textwrap.dedent(source)


def test_sl102_reuses_an_existing_factory_import() -> None:
    source = """
    from sqlalchemy.ext.asyncio import create_async_engine
    from session_runtime import make_engine

    engine = create_async_engine("postgresql+asyncpg://db/app", pool_size=5)
    other = make_engine()
    """
    assert fixed(source, "SL102") == textwrap.dedent(
        """
        from sqlalchemy.ext.asyncio import create_async_engine
        from session_runtime import make_engine

        engine = make_engine("postgresql+asyncpg://db/app", pool_size=5)
        other = make_engine()
        """
    )


def test_sl102_no_fix_for_keywords_the_factory_does_not_pass_through() -> None:
    for keyword in ("connect_args={}", "poolclass=NullPool", "execution_options={}", "**opts"):
        source = f"""
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(URL, {keyword})
        """
        assert fixed(source, "SL102") == textwrap.dedent(source), keyword


def test_sl105_fix_is_idempotent_and_keeps_comments() -> None:
    source = """
    from sqlalchemy.ext.asyncio import async_sessionmaker

    Factory = async_sessionmaker(  # the one factory
        engine,  # shared
        autoflush=False  # explicit flushes only
    )
    """
    once = fixed(source, "SL105")
    assert once == textwrap.dedent(
        """
        from sqlalchemy.ext.asyncio import async_sessionmaker

        Factory = async_sessionmaker(  # the one factory
            engine,  # shared
            autoflush=False,  # explicit flushes only
            expire_on_commit=False
        )
        """
    )
    assert fixed(once, "SL105") == once


def test_sl101_no_fix_where_a_local_name_shadows_the_factory() -> None:
    source = """
    from sqlalchemy.ext.asyncio import AsyncSession
    from session_runtime import get_session

    async def handler(engine, get_session):
        async with AsyncSession(engine) as session:
            await session.commit()
    """
    assert fixed(source, "SL101") == textwrap.dedent(source)


def test_sl101_reuses_an_existing_factory_import() -> None:
    source = """
    from sqlalchemy.ext.asyncio import AsyncSession
    from session_runtime import get_session

    async def handler(engine):
        async with AsyncSession(engine) as session:
            await session.commit()
    """
    out = fixed(source, "SL101")
    assert "async with get_session() as session:" in out
    assert out.count("from session_runtime import get_session") == 1
