"""Shared resources: auto-pause for short operations, a lock protocol for long ones.

See :mod:`wakeful.resources.manager` for the rules.
"""

from wakeful.resources.errors import (
    DeadlockError,
    PathEscapeError,
    ResourceError,
    StaleTokenError,
    WaitTimeoutError,
)
from wakeful.resources.gate import Owner
from wakeful.resources.manager import LockResult, LocksView, ResourceManager
from wakeful.resources.names import Access, Mode, Resource
from wakeful.resources.workspace import Workspace

__all__ = [
    "Access",
    "DeadlockError",
    "LockResult",
    "LocksView",
    "Mode",
    "Owner",
    "PathEscapeError",
    "Resource",
    "ResourceError",
    "ResourceManager",
    "StaleTokenError",
    "WaitTimeoutError",
    "Workspace",
]
