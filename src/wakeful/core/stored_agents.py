"""An agent made at run time, as the store keeps it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

Removal = Literal["finish", "cancel"]
"""What happens to a removed agent's running tasks: they finish, or are cancelled."""


@dataclass(slots=True)
class StoredAgent:
    name: str
    definition: dict[str, Any]  # the fields of an agent file
    created_by: str  # "person:ada", or the spawning task's address ("lead/t_1")
    parent: str | None = None  # the agent that spawned it
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    version: int = 1  # raised by every change: workers compare it with what they run
    removed_at: float | None = None  # a tombstone, kept so every worker sees the removal
    removal: Removal | None = None
