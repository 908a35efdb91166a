"""Effect summaries across modules (docs/project-index.md, "Effect summaries"):
what the index learns that a call does, and the findings SL305, SL306 and SL404
make with it in a project of several modules."""

from __future__ import annotations

from pathlib import Path

from session_lint.analyzer import analyze
from session_lint.project.config import load_config
from session_lint.project.index import scan

from .test_project_index import write

PROJECT = {
    "pyproject.toml": """
        [project]
        name = "shop"
        dependencies = ["sqlalchemy[asyncio]>=2.0", "httpx", "fastapi"]
        [tool.session-lint]
    """,
    "app/__init__.py": "",
    "app/db.py": """
        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

        engine = create_async_engine("postgresql+asyncpg://db/shop")
        async_session = async_sessionmaker(engine, expire_on_commit=False)


        async def execute_sql(sql: str, params: dict | None = None) -> None:
            async with async_session() as session:
                await session.execute(text(sql), params or {})
                await session.commit()
    """,
    # Two helpers deep: refresh_name -> fetch_profile -> httpx.
    "app/clients/__init__.py": "from .profiles import refresh_name\n",
    "app/clients/profiles.py": """
        import httpx


        async def fetch_profile(user_id: int) -> dict:
            async with httpx.AsyncClient() as client:
                response = await client.get(f"https://profiles.example/{user_id}")
            return response.json()


        async def refresh_name(user_id: int) -> str:
            profile = await fetch_profile(user_id)
            return profile["name"]


        async def retry_later(user_id: int) -> None:
            try:
                await fetch_profile(user_id)
            except ValueError:
                await asyncio.sleep(1)
    """,
    # A repository that commits the session it was given, held on ``self``.
    "app/repos.py": """
        from sqlalchemy.ext.asyncio import AsyncSession

        from app.models import User


        class BaseRepository:
            def __init__(self, session: AsyncSession) -> None:
                self.session = session

            async def save(self, row: object) -> object:
                self.session.add(row)
                await self.session.commit()
                return row


        class UserRepository(BaseRepository):
            async def get(self, user_id: int) -> User | None:
                return await self.session.get(User, user_id)

            async def add_roles(self, user: User, roles: list[str]) -> None:
                user.roles = roles
                await self.session.commit()

            async def maybe_commit(self, user: User, commit: bool = False) -> None:
                if commit:
                    await self.session.commit()
    """,
    "app/services.py": """
        from sqlalchemy.ext.asyncio import AsyncSession

        from app.clients import refresh_name
        from app.db import async_session, execute_sql
        from app.models import User
        from app.repos import UserRepository


        class UserService:
            def __init__(self, session: AsyncSession) -> None:
                self.users = UserRepository(session)

            async def register(self, user: User) -> None:
                await self.users.save(user)
                await self.users.add_roles(user, ["member"])

            async def rename(self, user_id: int) -> None:
                user = await self.users.get(user_id)
                user.name = await refresh_name(user_id)


        async def reset(run_id: int) -> None:
            await execute_sql("DELETE FROM steps WHERE run_id = :id", {"id": run_id})
            await execute_sql("UPDATE runs SET state = 'new' WHERE id = :id", {"id": run_id})


        async def order_count(user_id: int) -> int:
            session = async_session()
            return await session.scalar(select(User.orders).where(User.id == user_id))
    """,
}


def test_effects_are_learned_across_modules(tmp_path: Path) -> None:
    write(tmp_path, PROJECT)
    index = scan(tmp_path)
    effects = {e[0]: e[1:5] for e in index.effects}
    opens = {e[0]: e[5:] for e in index.effects}
    assert effects["app.clients.profiles.fetch_profile"][0] == "httpx.AsyncClient.get"
    assert effects["app.clients.profiles.refresh_name"][0] == "fetch_profile → httpx.AsyncClient.get"
    assert effects["app.clients.refresh_name"][0] == "fetch_profile → httpx.AsyncClient.get"  # re-export
    assert "app.clients.profiles.retry_later" not in effects or effects[
        "app.clients.profiles.retry_later"
    ][0] == "fetch_profile → httpx.AsyncClient.get"  # slow through the call, not the backoff
    assert effects["app.repos.BaseRepository.save"][1:] == (True, False, False)
    assert effects["app.repos.UserRepository.save"][1] is True  # inherited
    assert effects["app.repos.UserRepository.get"][3] is True  # reads through self.session
    assert "app.repos.UserRepository.maybe_commit" not in effects  # the caller opts in
    assert effects["app.services.UserService.register"][1] is True  # through self.users
    assert index.held.get(("app.services.UserService", "users")) == "app.repos.UserRepository"
    assert ("app.db.execute_sql", 0, "sql") in index.sql_helpers
    # Opens a session of its own: in a block (closed on every path) or by hand.
    assert opens["app.db.execute_sql"] == (True, True)
    assert opens["app.services.order_count"] == (True, False)
    assert opens["app.repos.UserRepository.get"][0] is False


def test_rules_use_the_effects(tmp_path: Path) -> None:
    write(tmp_path, PROJECT)
    path = tmp_path / "app/services.py"
    result = analyze(path.read_bytes(), str(path), load_config([str(tmp_path)]))
    assert result.errors == []
    found = [(f.line, f.code) for f in result.findings]
    assert found == [
        (14, "SL306"),  # save() then add_roles(): two commits
        (19, "SL305"),  # refresh_name → fetch_profile → httpx while get() holds the transaction
        (23, "SL306"),  # execute_sql() given write SQL, twice
        (28, "SL404"),  # a session that ran a statement and is never ended
    ]
    messages = {f.line: f.message for f in result.findings}
    assert "refresh_name → fetch_profile → httpx.AsyncClient.get" in messages[19]
    assert "`get()`" in messages[19]
