"""Tools agents call to share things: workspace files, the scratchpad, and locks.

File and scratchpad tools declare the resource they touch, so the runtime auto-pauses
them while another task uses it; the agent's model never has to think about it. For
work spanning several calls, the lock tools take a lease on a resource; writes then
carry the lock's fencing token (the runtime adds it; ``fencing_token`` passes one
explicitly) and are refused if the lease has lapsed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from wakeful.core.files import Confined
from wakeful.core.resources import Access, Mode, Resource
from wakeful.errors import ResourceError
from wakeful.toolkit.context import ToolContext
from wakeful.toolkit.registry import Tool, tool

MAX_FILE_CHARS = 1_000_000
MAX_READ_BYTES = 2_000_000
MAX_LIST_ENTRIES = 500
MAX_KV_VALUE_CHARS = 100_000

PathArg = Annotated[str, Field(description="a path relative to the workspace folder, "
                                           "e.g. 'notes.md' or 'docs/plan.md'",
                               min_length=1, max_length=1024)]
TokenArg = Annotated[int | None, Field(
    description="the fencing token of your lock on this resource, if you hold one; a "
                "stale token makes the write fail instead of overwriting newer work",
    ge=1)]
ResourceArg = Annotated[str, Field(
    description="kind:name, e.g. 'file:report.md' (a workspace file), 'file:docs' (a "
                "folder and everything in it), 'kv:plan' (a scratchpad key) or "
                "'custom:printer'", min_length=3, max_length=1100)]


def _file(mode: Mode) -> Any:
    def accesses(args: BaseModel) -> list[Access]:
        return [Access(f"file:{getattr(args, 'path', '.')}", mode,
                       getattr(args, "fencing_token", None))]
    return accesses


def _kv(mode: Mode) -> Any:
    def accesses(args: BaseModel) -> list[Access]:
        return [Access(f"kv:{getattr(args, 'key', '')}", mode,
                       getattr(args, "fencing_token", None))]
    return accesses


def _confined(ctx: ToolContext, path: str) -> Confined:
    """The checked path, as operations that walk it without following symlinks."""
    workspace = ctx.resources.workspace
    real = ctx.resources.path(path)  # refuses '..', absolute paths, escapes
    assert workspace is not None
    return workspace.confined(real)


# the workspace --------------------------------------------------------
def _read(file: Confined) -> str:
    data = file.read_bytes(MAX_READ_BYTES)
    if len(data) > MAX_READ_BYTES:
        raise ResourceError(f"{file.shown} is larger than {MAX_READ_BYTES} bytes; too large "
                            "to read in one call")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ResourceError(f"{file.shown} is not UTF-8 text") from None


@tool(resources=_file(Mode.READ))
async def read_file(ctx: ToolContext, path: PathArg, fencing_token: TokenArg = None) -> str:
    """Read a text file of the shared workspace."""
    return await asyncio.to_thread(_read, _confined(ctx, path))


@tool(resources=_file(Mode.WRITE))
async def write_file(
    ctx: ToolContext, path: PathArg,
    content: Annotated[str, Field(max_length=MAX_FILE_CHARS)],
    fencing_token: TokenArg = None,
) -> str:
    """Create or replace a text file of the shared workspace (folders are created)."""
    file = _confined(ctx, path)
    await ctx.resources.write_fenced(
        ctx, f"file:{path}", fencing_token,
        lambda: file.write_atomically(content.encode("utf-8")))
    return f"wrote {len(content)} characters to {file.shown}"


@tool(resources=_file(Mode.WRITE))
async def append_file(
    ctx: ToolContext, path: PathArg,
    text: Annotated[str, Field(max_length=MAX_FILE_CHARS)],
    fencing_token: TokenArg = None,
) -> str:
    """Append text to a file of the shared workspace, as its own line (a newline is
    added if the text does not end with one; the file is created if missing)."""
    file = _confined(ctx, path)
    line = text if text.endswith("\n") else text + "\n"
    await ctx.resources.write_fenced(ctx, f"file:{path}", fencing_token,
                                             lambda: file.append(line.encode("utf-8")))
    return f"appended {len(line)} characters to {file.shown}"


@tool(resources=_file(Mode.WRITE))
async def edit_file(
    ctx: ToolContext, path: PathArg,
    old: Annotated[str, Field(min_length=1, description="text that appears exactly once")],
    new: Annotated[str, Field(max_length=MAX_FILE_CHARS, description="its replacement")],
    fencing_token: TokenArg = None,
) -> str:
    """Replace one exact piece of text in a file of the shared workspace."""
    file = _confined(ctx, path)

    def edit() -> str:
        text = _read(file)
        count = text.count(old)
        if count != 1:
            where = "does not appear" if count == 0 else f"appears {count} times"
            raise ResourceError(f"the text to replace {where} in {file.shown}; it must "
                                "appear exactly once (include more of the surrounding text)")
        file.write_atomically(text.replace(old, new, 1).encode("utf-8"))
        return f"edited {file.shown}"

    return await ctx.resources.write_fenced(ctx, f"file:{path}", fencing_token, edit)


@tool(resources=_file(Mode.READ))
async def list_files(
    ctx: ToolContext,
    path: Annotated[str, Field(description="a folder relative to the workspace; '.' is the "
                                           "workspace itself", min_length=1)] = ".",
) -> list[str]:
    """List a folder of the shared workspace (sub-folders end with '/')."""
    folder = _confined(ctx, path)

    def listing() -> list[str]:
        entries = sorted(folder.listing())
        names = [name + ("/" if is_dir else "") for name, is_dir in entries
                 if not (name.startswith(".") and name.endswith(".tmp"))]
        if len(names) > MAX_LIST_ENTRIES:
            return [*names[:MAX_LIST_ENTRIES], f"... and {len(names) - MAX_LIST_ENTRIES} more"]
        return names

    return await asyncio.to_thread(listing)


# the shared scratchpad -------------------------------------------------
KeyArg = Annotated[str, Field(description="the key, e.g. 'plan' or 'draft/status'",
                              min_length=1, max_length=200)]


@tool(resources=_kv(Mode.READ))
async def kv_get(ctx: ToolContext, key: KeyArg) -> dict[str, Any]:
    """Read a value of the scratchpad shared by all agents."""
    entry = await ctx.resources.store.kv_get(key)
    if entry is None:
        return {"key": key, "found": False, "value": None}
    return {"key": key, "found": True, "value": entry.value, "version": entry.version,
            "updated_by": entry.updated_by}


@tool(resources=_kv(Mode.WRITE))
async def kv_set(
    ctx: ToolContext, key: KeyArg,
    value: Annotated[Any, Field(description="any JSON value")],
    fencing_token: TokenArg = None,
) -> dict[str, Any]:
    """Set a value of the scratchpad shared by all agents."""
    size = len(json.dumps(value))
    if size > MAX_KV_VALUE_CHARS:
        raise ResourceError(f"the value for key {key!r} is {size} characters of JSON; the "
                            f"limit is {MAX_KV_VALUE_CHARS}")
    entry = await ctx.resources.kv_set(ctx, key, value, fencing_token)
    return {"key": key, "version": entry.version}


# locks ----------------------------------------------------------------
@tool
async def acquire_lock(
    ctx: ToolContext, resource: ResourceArg,
    mode: Annotated[Literal["read", "write"], Field(
        description="read: shared with other readers; write: yours alone")] = "write",
    lease_s: Annotated[float | None, Field(
        gt=0, description="how long the lock lasts unless renewed (default 60)")] = None,
    wait_s: Annotated[float, Field(
        ge=0, description="0: try once; otherwise wait in line up to this many seconds")
    ] = 0.0,
) -> dict[str, Any]:
    """Lock a shared resource for a long piece of work; returns a fencing token.

    Others' conflicting operations on it wait until you release it or the lease lapses.
    """
    result = await ctx.resources.acquire(ctx, resource, mode, lease_s, wait_s)
    return result.to_dict()


@tool
async def renew_lock(
    ctx: ToolContext, resource: ResourceArg,
    lease_s: Annotated[float | None, Field(gt=0, description="the new lease from now")] = None,
) -> dict[str, Any]:
    """Extend the lease of a lock you hold (before it lapses)."""
    lock = await ctx.resources.renew(ctx, resource, lease_s)
    return {"resource": lock.resource, "token": lock.token, "renewed": True,
            "lease_s": round(lock.expires_at - lock.renewed_at, 3)}


@tool
async def release_lock(ctx: ToolContext, resource: ResourceArg) -> dict[str, Any]:
    """Release a lock you hold, so that others can go on."""
    return await ctx.resources.release(ctx, resource)


@tool
async def list_locks(
    ctx: ToolContext,
    resource: Annotated[str | None, Field(
        description="only what overlaps this resource")] = None,
) -> dict[str, Any]:
    """Show who holds and who waits for shared resources, and recent deadlocks."""
    manager = ctx.resources
    view = await manager.view()
    shown = view.to_dict(await manager.store.recent_deadlocks(5))
    if resource is not None:
        wanted: Resource = manager.parse(resource)

        def keep(item: dict[str, Any]) -> bool:
            return manager.kinds.canonical(item["resource"]).overlaps(wanted)

        for part in ("locks", "waiting", "operations"):
            shown[part] = [item for item in shown[part] if keep(item)]
    return shown


FILE_TOOLS: tuple[Tool, ...] = (read_file, write_file, append_file, edit_file, list_files)
KV_TOOLS: tuple[Tool, ...] = (kv_get, kv_set)
LOCK_TOOLS: tuple[Tool, ...] = (acquire_lock, renew_lock, release_lock, list_locks)
RESOURCE_TOOLS: tuple[Tool, ...] = FILE_TOOLS + KV_TOOLS + LOCK_TOOLS
