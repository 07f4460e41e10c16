"""Applying the PostgreSQL schema's versions, once, whoever starts first."""

from __future__ import annotations

import asyncpg

from wakeful.errors import StoreError
from wakeful.store.postgres.connect import Target
from wakeful.store.postgres.schema import MIGRATIONS

_LOCK_KEY = 0x5741_4B45  # "WAKE": one advisory lock for every migration of this database


async def schema_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('wakeful_schema') IS NOT NULL")
    if not exists:
        return 0
    version: int = await conn.fetchval("SELECT version FROM wakeful_schema")
    return version


async def migrate(conn: asyncpg.Connection, target: Target) -> int:
    """Bring the schema up to date (each version in its own transaction, all under one
    advisory lock); return the version. A schema newer than this code is refused."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        while True:
            async with conn.transaction():
                version = await schema_version(conn)
                if version > len(MIGRATIONS):
                    raise StoreError(
                        f"{target.where}: schema version {version} is newer than this "
                        f"Wakeful understands ({len(MIGRATIONS)}); upgrade wakeful")
                if version == len(MIGRATIONS):
                    return version
                if version == 0:
                    await conn.execute("CREATE TABLE wakeful_schema (version integer NOT NULL)"
                                       "; INSERT INTO wakeful_schema VALUES (0)")
                await conn.execute(MIGRATIONS[version])
                await conn.execute("UPDATE wakeful_schema SET version = $1", version + 1)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
