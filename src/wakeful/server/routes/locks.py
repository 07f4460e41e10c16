"""Shared resources: explicit locks, who waits for them, short operations in progress."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from wakeful.server.paging import After, decode, encode
from wakeful.server.responses import LocksPage
from wakeful.server.routes.deps import Limit, RuntimeDep

router = APIRouter(prefix="/api/locks", tags=["locks"])
LISTS = ("locks", "waiting", "operations")


@router.get("", response_model=LocksPage, summary="Locks held and awaited (optionally one "
            "agent's); each list pages with `after` (the `next` of a page) and `limit`")
async def locks(runtime: RuntimeDep, agent: str | None = None, limit: Limit = 1000,
                after: After = None) -> dict[str, Any]:
    if agent is not None:
        runtime.agent(agent)
    view = (await runtime.resources.view()).to_dict()
    if agent is not None:
        for key in LISTS:
            view[key] = [item for item in view[key] if item.get("agent") == agent]
    # A live view has no stable keys: the cursor holds how far each list was read.
    start = decode(after)
    more = False
    stood: dict[str, int] = {}
    for key in LISTS:
        at = start.get(key, 0)
        at = at if isinstance(at, int) and at >= 0 else 0
        whole = view[key]
        view[key] = whole[at:at + limit]
        stood[key] = at + len(view[key])
        more = more or stood[key] < len(whole)
    view["next"] = encode(stood) if more else None
    return view
