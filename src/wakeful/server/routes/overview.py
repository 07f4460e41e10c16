"""The overview: the home page's one call, saying what runs now and what happened."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from wakeful.server import summary, views
from wakeful.server.responses import AgentSummary, EventView, TaskView
from wakeful.server.routes.deps import RuntimeDep

router = APIRouter(prefix="/api", tags=["overview"])


class Totals(BaseModel):
    tasks: int
    by_state: dict[str, int] = Field(description="task counts by state")
    input_tokens: int
    output_tokens: int
    tokens: int
    cost: float
    tool_calls: int


class Failure(BaseModel):
    id: str
    agent: str
    instruction: str
    error: str | None
    error_kind: str | None
    finished_at: float | None
    trace_id: str | None
    attempt: int


class Overview(BaseModel):
    run_id: str | None
    idle: bool
    agents: list[AgentSummary] = Field(description="every agent's live summary")
    agent_states: dict[str, int]
    running: list[TaskView] = Field(description="tasks running or waiting now")
    queued: int = Field(description="tasks waiting for a free slot")
    totals: Totals = Field(description="over every task the store holds")
    per_agent: dict[str, Totals]
    this_run: dict[str, Any] = Field(description="usage in this run (from memory)")
    failures: list[Failure] = Field(description="failed tasks, newest first")
    activity: list[EventView] = Field(description="notable events, oldest first")


@router.get("/overview", response_model=Overview,
            summary="What runs now, what happened, totals and failures")
async def overview(runtime: RuntimeDep,
                   activity: Annotated[int, Query(ge=1, le=500)] = 80,
                   failures: Annotated[int, Query(ge=1, le=200)] = 20) -> Overview:
    states: dict[str, int] = {}
    agents = []
    for runner in runtime.agents.values():
        states[runner.state.value] = states.get(runner.state.value, 0) + 1
        agents.append(views.agent_summary(runtime, runner))
    overall, per_agent = await summary.totals(runtime)
    running, queued = await summary.running_now(runtime, 50)
    return Overview.model_validate({
        "run_id": runtime.run_id, "idle": runtime.idle(), "agents": agents,
        "agent_states": states, "running": running, "queued": queued, "totals": overall,
        "per_agent": dict(sorted(per_agent.items())), "this_run": runtime.usage.as_dict(),
        "failures": await summary.failures(runtime, failures),
        "activity": await summary.activity(runtime, activity)})
