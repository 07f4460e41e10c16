"""Shared resources: explicit locks, who waits for them, short operations in progress."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from wakeful.server.routes.deps import RuntimeDep

router = APIRouter(prefix="/api/locks", tags=["locks"])


@router.get("", summary="Locks held and awaited (optionally one agent's)")
async def locks(runtime: RuntimeDep, agent: str | None = None) -> dict[str, Any]:
    if agent is not None:
        runtime.agent(agent)
    view = (await runtime.resources.view()).to_dict()
    if agent is not None:
        for key in ("locks", "waiting", "operations"):
            view[key] = [item for item in view[key] if item.get("agent") == agent]
    return view
