"""Replay a recorded run offline, deterministically, without a model.

A run is already recorded: each task's conversation (every model reply and every tool
result) is committed step by step, and failed model calls are events. Replay re-runs
the run's root tasks in a fresh store with the project's agents, where

* a :class:`ReplayModel` answers each task with its recorded replies, step by step, and
  raises the recorded model errors at the steps where they happened (so a failure that
  was seen once happens again, with the same retries);
* tools that touch the world (files, clocks, other agents' status...) return their
  recorded results instead of running; tools that shape the run itself (delegation,
  mail), listed in :data:`RERUN_TOOLS`, run again so that the same tasks and mail
  come about;
* new tasks reuse the recorded task ids (matched by parent, agent and instruction, in
  order), so the replayed store can be compared with the original task by task and
  inspected with the same ids.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from wakeful.core.context import CURRENT_TASK
from wakeful.core.records import TaskRecord
from wakeful.errors import ModelError, WakefulError
from wakeful.models.base import (
    Completed,
    Message,
    Model,
    ModelResponse,
    StreamEvent,
    ToolCall,
    ToolSpec,
)
from wakeful.models.registry import ModelRegistry
from wakeful.project.loader import Project
from wakeful.runtime.runtime import Runtime
from wakeful.schedule.timers import Scheduler
from wakeful.store import Store, open_store
from wakeful.toolkit.context import ToolContext
from wakeful.toolkit.registry import ToolOutcome, ToolRegistry
from wakeful.tools.builtin import default_tools

RERUN_TOOLS: set[str] = {"delegate_task", "send_mail", "reply", "post_to_channel", "request",
                         "ask_for_help", "ack"}
"""Tools whose effect is the run's own structure: replay runs them again."""

COMPARED = ("agent", "instruction", "state", "result", "step", "error_kind", "attempt",
            "parent_id")


@dataclass
class Recording:
    """What a run left in the store, indexed for replay."""

    tasks: dict[str, TaskRecord]
    conversations: dict[str, list[Message]]
    model_errors: dict[tuple[str, int], list[str]]
    roots: list[TaskRecord]
    run_id: str


async def load_recording(store: Store, run_id: str | None = None) -> Recording:
    """Read run ``run_id`` (default: the latest) from ``store``."""
    if run_id is None:
        latest = await store.latest_run()
        if latest is None:
            raise WakefulError("nothing to replay: this project has never run")
        run_id = latest.id
    if run_id not in {r.id for r in await store.list_runs()}:
        raise WakefulError(f"unknown run {run_id!r} (runs are listed by "
                           "'wakeful trace --type run.started')")
    created = await store.query_events(types=["task.created", "task.recovered"],
                                       limit=1_000_000)
    in_run = {e.task_id for e in created if e.run_id == run_id and e.task_id}
    tasks = {t.id: t for t in await store.list_tasks()}
    roots = [t for t in tasks.values()
             if t.id in in_run and (t.parent_id is None or t.parent_id not in tasks)]
    conversations = {
        task_id: [Message.from_dict(m) for m in await store.load_messages(task_id)]
        for task_id in tasks}
    errors: dict[tuple[str, int], list[str]] = defaultdict(list)
    for event in await store.query_events(types=["model.error"], limit=1_000_000):
        if event.task_id:
            errors[(event.task_id, int(event.data.get("step", 0)))].append(
                str(event.data.get("error", "")))
    return Recording(tasks, conversations, dict(errors), roots, run_id)


class ReplayModel(Model):
    """Answers each task from its recorded conversation."""

    name = "replay"

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self._raised: defaultdict[tuple[str, int], int] = defaultdict(int)

    async def complete(self, messages: list[Message], tools: list[ToolSpec]) -> ModelResponse:
        task_id = CURRENT_TASK.get()
        if task_id is None or task_id not in self.recording.conversations:
            raise ModelError(f"replay: task {task_id!r} has no recording")
        step = sum(1 for m in messages if m.role == "assistant")
        errors = self.recording.model_errors.get((task_id, step), [])
        if self._raised[(task_id, step)] < len(errors):
            self._raised[(task_id, step)] += 1
            raise ModelError(errors[self._raised[(task_id, step)] - 1])
        replies = [m for m in self.recording.conversations[task_id] if m.role == "assistant"]
        if step >= len(replies):
            raise ModelError(f"replay diverged: task {task_id} asked for model reply "
                             f"{step + 1}, but only {len(replies)} were recorded")
        return ModelResponse(message=replies[step], model="replay")

    async def stream(
        self, messages: list[Message], tools: list[ToolSpec]
    ) -> AsyncIterator[StreamEvent]:
        yield Completed(await self.complete(messages, tools))


class ReplayModels(ModelRegistry):
    """Every model spec is answered by the one replay model."""

    def __init__(self, model: ReplayModel) -> None:
        super().__init__(Path("."))
        self.model = model

    def get(self, spec: str) -> Model:
        return self.model


class ReplayTools(ToolRegistry):
    """Recorded results for tools that touch the world; real runs for the rest."""

    approvals_apply = False  # the recording holds what people's decisions led to

    def __init__(self, live: ToolRegistry, recording: Recording) -> None:
        super().__init__()
        self._tools = dict(live._tools)
        self.recording = recording

    async def call(self, ctx: ToolContext, allowed: frozenset[str], call: ToolCall
                   ) -> ToolOutcome:
        if call.name in RERUN_TOOLS:
            return await super().call(ctx, allowed, call)
        recorded = next((m for m in self.recording.conversations.get(ctx.task_id, [])
                         if m.role == "tool" and m.tool_call_id == call.id), None)
        if recorded is None:
            raise ModelError(f"replay diverged: task {ctx.task_id} called {call.name!r} "
                             f"({call.id}), which the recording does not have")
        content = recorded.content or ""
        return ToolOutcome(not content.startswith("error:"), content)


@dataclass
class Difference:
    task_id: str
    field: str
    recorded: object
    replayed: object


@dataclass
class ReplayResult:
    run_id: str
    recorded: dict[str, TaskRecord]
    replayed: dict[str, TaskRecord]
    store_path: Path | None  # the replayed store, when kept
    differences: list[Difference] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences


def _recorded_ids(recording: Recording) -> dict[tuple[str | None, str, str], deque[str]]:
    """Recorded task ids by (parent, agent, instruction), oldest first."""
    wanted: dict[tuple[str | None, str, str], deque[str]] = defaultdict(deque)
    for task in sorted(recording.tasks.values(), key=lambda t: (t.created_at, t.id)):
        wanted[(task.parent_id, task.agent, task.instruction)].append(task.id)
    return wanted


def _fresh_store(keep: Path | None) -> tuple[Path, Path]:
    folder = keep or Path(tempfile.mkdtemp(prefix="wakeful-replay-"))
    folder.mkdir(parents=True, exist_ok=True)
    store_path = folder / "replay.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store_path}{suffix}").unlink(missing_ok=True)
    return folder, store_path


async def replay(project: Project, run_id: str | None = None, keep: Path | None = None,
                 tools: ToolRegistry | None = None) -> ReplayResult:
    """Replay ``run_id`` of ``project`` into a fresh store (kept at ``keep`` if given).

    ``tools`` must hold the tools the run used (default: the built-in ones).
    """
    source = open_store(project.store_url())
    await source.open()
    try:
        recording = await load_recording(source, run_id)
    finally:
        await source.close()
    folder, store_path = _fresh_store(keep)
    # The agents' schedules are not registered: the tasks they started in the run are
    # roots of the recording, replayed like the others.
    runtime = Runtime(store=open_store(store_path),
                      models=ReplayModels(ReplayModel(recording)),
                      tools=ReplayTools(tools or default_tools(), recording),
                      agents=project.agents.values(),
                      scheduler=Scheduler(agent_schedules=False))
    wanted = _recorded_ids(recording)

    def task_id(record: TaskRecord) -> str:
        queue = wanted.get((record.parent_id, record.agent, record.instruction))
        return queue.popleft() if queue else record.id

    runtime.task_ids = task_id
    await runtime.start()
    try:
        for root in sorted(recording.roots, key=lambda t: (t.created_at, t.id)):
            await runtime.create_task(root.agent, root.instruction, created_by=root.created_by)
        await runtime.wait_idle()
        replayed = {t.id: t for t in await runtime.store.list_tasks()}
    finally:
        await runtime.stop()
    involved = _descendants(recording, {r.id for r in recording.roots})
    recorded = {i: recording.tasks[i] for i in involved}
    result = ReplayResult(recording.run_id, recorded, replayed,
                          store_path if keep is not None else None)
    for task_id_, original in recorded.items():
        again = replayed.get(task_id_)
        if again is None:
            result.differences.append(Difference(task_id_, "exists", True, False))
            continue
        for name in COMPARED:
            if getattr(original, name) != getattr(again, name):
                result.differences.append(Difference(
                    task_id_, name, getattr(original, name), getattr(again, name)))
    for extra in set(replayed) - set(recorded):
        result.differences.append(Difference(extra, "exists", False, True))
    if keep is None:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def _descendants(recording: Recording, roots: set[str]) -> set[str]:
    children: dict[str, list[str]] = defaultdict(list)
    for task in recording.tasks.values():
        if task.parent_id:
            children[task.parent_id].append(task.id)
    found, frontier = set(roots), list(roots)
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found
