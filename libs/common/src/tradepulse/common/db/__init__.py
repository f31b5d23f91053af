"""PostgreSQL helpers: an asyncpg pool that waits for the server, and per-schema migrations."""

from tradepulse.common.db.migrate import apply_migrations
from tradepulse.common.db.pool import create_pool

__all__ = ["apply_migrations", "create_pool"]
