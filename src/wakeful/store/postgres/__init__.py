"""The PostgreSQL backend: many workers on many machines sharing one database."""

from wakeful.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
