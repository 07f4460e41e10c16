"""What the A2A server keeps about a task beyond the Wakeful task itself."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class A2ATaskRow:
    """An A2A task *is* a Wakeful task (same id); this is what A2A adds: its context,
    the id and metadata of the message that started it, and the caller's messages (its
    A2A history, as JSON)."""

    task_id: str
    agent: str
    context_id: str
    message_id: str
    metadata: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
