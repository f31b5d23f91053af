"""Versioned SQL migrations per service schema, applied at start.

Each service owns its schema and keeps its migrations in its own package, as
`NNNN_name.sql` files (e.g. `tradepulse.ingest.migrations` for `market`), read with
importlib.resources so that they ship inside the service's wheel. Each is applied once, in its
own transaction, and recorded in `<schema>.schema_migrations` with its checksum. A PostgreSQL
advisory lock per schema makes two replicas starting at once apply them one after the other.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources

import asyncpg

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def _migrations(package: str) -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files(package).iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text()))
    if not found:
        raise FileNotFoundError(f"no NNNN_name.sql migrations in package {package!r}")
    return sorted(found)


def _lock_key(schema: str) -> int:
    return int.from_bytes(
        hashlib.sha256(f"tradepulse:{schema}".encode()).digest()[:8], "big", signed=True
    )


async def apply_migrations(pool: asyncpg.Pool, schema: str, package: str) -> list[str]:
    """Apply the pending migrations of `schema` found in `package` (a dotted package name);
    returns the names applied now, [] when the schema is up to date."""
    if not re.fullmatch(r"[a-z_]+", schema):
        raise ValueError(f"bad schema name {schema!r}")
    migrations = _migrations(package)
    applied: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _lock_key(schema))
        try:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {
                r["version"]: r["checksum"]
                for r in await conn.fetch(
                    f"SELECT version, checksum FROM {schema}.schema_migrations"
                )
            }
            for version, name, sql in migrations:
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                if version in done:
                    if done[version] != checksum:
                        raise RuntimeError(
                            f"migration {schema}/{name} changed after it was applied; "
                            "add a new migration instead of editing an applied one"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        f"INSERT INTO {schema}.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        version,
                        name,
                        checksum,
                    )
                applied.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _lock_key(schema))
    return applied
