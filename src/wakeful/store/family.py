"""Finding a family that lives beside the core store port (A2A, people, stored agents).

A family is a port of its own with one implementation per backend, reached through a
lookup from the store object, so that the core :class:`~wakeful.store.base.Store` port
needs no change for it and nothing outside a backend's folder imports the backend.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from wakeful.errors import WakefulError
from wakeful.store.base import Store


def find_family(store: Store, backends: Mapping[str, str], what: str) -> Any:
    """The family implementation for ``store``'s backend: ``backends`` maps a backend
    module to ``"module:Class"`` (built with the store); a clear error if none fits."""
    module = type(store).__module__
    for prefix, target in backends.items():
        if module == prefix or module.startswith(prefix + "."):
            name, _, cls = target.partition(":")
            return getattr(importlib.import_module(name), cls)(store)
    raise WakefulError(f"{what} needs a store that keeps them; {type(store).__name__} does "
                       "not (use the SQLite store)")
