"""Persistence behind ports: :class:`Store` (runs, tasks, events, agents, leases) and
the mail, locks and timers families it hands out. Backends live in their own folders
(``sqlite/`` now) and are reached only through :func:`open_store`."""

from __future__ import annotations

import importlib
from pathlib import Path

from wakeful.errors import ConfigError
from wakeful.store.base import Store

# scheme -> "module:class"; a backend is imported only when a URL names it.
_BACKENDS = {"sqlite": "wakeful.store.sqlite:SQLiteStore",
             "postgresql": "wakeful.store.postgres:PostgresStore",
             "postgres": "wakeful.store.postgres:PostgresStore"}


def open_store(url: str | Path, synchronous: str = "normal") -> Store:
    """The store a URL names (not opened yet): ``sqlite:///path/to/file.db``, a plain
    file path (SQLite), or ``postgresql://USER@HOST:PORT/DB``."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "sqlite", "/" + text
    target = _BACKENDS.get(scheme)
    if target is None:
        known = ", ".join(f"{s}://" for s in sorted(_BACKENDS))
        raise ConfigError(f"store {text!r}: unknown scheme {scheme!r} (supported: {known}, "
                          "or a file path)")
    module, _, name = target.partition(":")
    backend = getattr(importlib.import_module(module), name)
    store: Store = backend(Path(rest.removeprefix("/")) if scheme == "sqlite" else text,
                           synchronous)
    return store


__all__ = ["Store", "open_store"]
