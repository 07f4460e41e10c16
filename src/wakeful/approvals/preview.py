"""What a person sees before approving a file write: a unified diff of the file as it
is against the file as the call would leave it (with the edited arguments, if any).

Read-only and best effort: a file that cannot be read (too large, not text, outside
the workspace) gives no diff, and the person still sees the call's arguments.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from wakeful.core.approvals import Approval
from wakeful.errors import WakefulError

if TYPE_CHECKING:
    from wakeful.resources.manager import ResourceManager

FILE_TOOLS = ("write_file", "append_file", "edit_file")
MAX_PREVIEW_BYTES = 1_000_000


def _current(resources: ResourceManager, path: str) -> str | None:
    """The file's text now ('' when it does not exist yet); None when unreadable."""
    try:
        real = resources.path(path)
    except WakefulError:
        return None
    if not real.exists():
        return ""
    if not real.is_file() or real.stat().st_size > MAX_PREVIEW_BYTES:
        return None
    try:
        return real.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def file_diff(resources: ResourceManager, approval: Approval) -> str | None:
    """The diff the approved call would make, or None (not a file write, unreadable)."""
    if approval.tool not in FILE_TOOLS or resources.workspace is None:
        return None
    args = approval.arguments_dict()
    path = args.get("path")
    if not isinstance(path, str):
        return None
    before = _current(resources, path)
    if before is None:
        return None
    if approval.tool == "write_file":
        after = str(args.get("content", ""))
    elif approval.tool == "append_file":
        after = before + str(args.get("text", ""))
    else:
        old, new = str(args.get("old", "")), str(args.get("new", ""))
        if not old or before.count(old) != 1:
            return None
        after = before.replace(old, new, 1)
    lines = difflib.unified_diff(before.splitlines(keepends=True),
                                 after.splitlines(keepends=True),
                                 fromfile=f"a/{path}", tofile=f"b/{path}")
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
