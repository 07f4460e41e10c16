"""Shared resources: auto-pause for short operations, a lock protocol for long ones.

See :mod:`wakeful.resources.manager` for the rules.
"""

from wakeful.core.resources import Access, Mode, Owner, Resource
from wakeful.errors import (
    DeadlockError,
    PathEscapeError,
    ResourceError,
    StaleTokenError,
    WaitTimeoutError,
)
from wakeful.resources.manager import ResourceManager
from wakeful.resources.views import LockResult, LocksView
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
