"""session-lint: static analysis with autofixes for SQLAlchemy asyncio session hygiene."""

__version__ = "0.1.0"
