"""Terminal views: the live status of ``wakeful run`` and the tables of the CLI.

The live view redraws from the runtime's in-memory state at a bounded rate (a burst
of events costs one redraw, not one per event), so watching a busy team does not slow
it down. Without a terminal, ``wakeful run`` prints one line per event instead.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from wakeful.core.records import Event, TaskRecord
from wakeful.core.states import AgentState, TaskState
from wakeful.core.team import AgentStatus
from wakeful.observe.describe import clip, describe_event
from wakeful.runtime.runtime import Runtime

STATE_STYLES = {
    AgentState.RUNNING: "green", AgentState.SLEEPING: "blue", AgentState.PAUSED: "yellow",
    AgentState.STOPPED: "dim", AgentState.FAILED: "bold red", AgentState.CREATED: "dim",
    TaskState.QUEUED: "dim", TaskState.RUNNING: "green", TaskState.WAITING: "yellow",
    TaskState.DONE: "cyan", TaskState.FAILED: "bold red", TaskState.CANCELLED: "dim",
}
QUIET_EVENTS = frozenset({"model.token"})


def cell(value: object) -> Text:
    """A table cell shown as it is: rich reads a plain ``str`` cell as markup, so a
    mail body like ``[/b] hello`` would crash the table (MarkupError) and ``[a-z]`` in a
    regex would vanish. Every user-supplied string goes into a table through here."""
    return Text("" if value is None else str(value))


def styled(state: AgentState | TaskState) -> Text:
    return Text(state.value, style=STATE_STYLES.get(state, ""))


def event_line(event: Event, position: bool = False) -> Text:
    """One event as a line; with ``position``, led by its position in the log (``#N``,
    what ``wakeful trace --after N`` resumes from)."""
    stamp = time.strftime("%H:%M:%S", time.localtime(event.ts))
    line = Text(f"#{event.id} {stamp} " if position else f"{stamp} ")
    line.append(f"{event.agent or '-':<12} ", style="bold")
    line.append(f"{event.task_id or '':<22} ", style="dim")
    style = "red" if any(word in event.type for word in (
        "fail", "error", "crash", "refused", "deadlock", "timeout", "stale")) else "magenta"
    line.append(f"{event.type:<18} ", style=style)
    line.append(describe_event(event))
    return line


def agents_table(statuses: Iterable[AgentStatus], title: str = "Agents") -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("agent", no_wrap=True)
    for column in ("state", "running", "queued", "restarts", "reason"):
        table.add_column(column)
    for s in statuses:
        table.add_row(cell(s.name), styled(s.state), f"{s.running}/{s.max_concurrent_tasks}",
                      str(s.queued), str(s.restarts), cell(clip(s.reason, 40)))
    return table


def tasks_table(tasks: Iterable[TaskRecord], title: str = "Tasks",
                live_text: dict[str, str] | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("task", no_wrap=True, min_width=len("t_") + 17)
    table.add_column("agent", no_wrap=True)
    for column in ("state", "step", "tokens", "progress", "instruction", "result / error"):
        table.add_column(column, overflow="ellipsis")
    for t in tasks:
        outcome = (f"[{t.error_kind}] {t.error}" if t.state is TaskState.FAILED and t.error_kind
                   else t.error if t.state is TaskState.FAILED else t.result)
        if live_text and t.id in live_text:
            outcome = "… " + live_text[t.id][-50:]
        table.add_row(cell(t.id), cell(t.agent), styled(t.state), str(t.step),
                      str(t.input_tokens + t.output_tokens), cell(progress_text(t)),
                      cell(clip(t.instruction, 40)), cell(clip(outcome, 50)))
    return table


def progress_text(task: TaskRecord) -> str:
    """What a task last reported with report_progress: '40% drafting section 2'."""
    if task.progress is None:
        return "-"
    note = f" {clip(task.progress_note, 30)}" if task.progress_note else ""
    return f"{task.progress:g}%{note}"


class LiveStatus:
    """Redraw agents, active tasks and recent events while the runtime runs."""

    def __init__(self, runtime: Runtime, console: Console, max_fps: float = 8.0) -> None:
        self.runtime = runtime
        self.console = console
        self.interval = 1.0 / max_fps
        self.recent: deque[Event] = deque(maxlen=10)
        self.finished = 0
        self.streaming: dict[str, str] = {}  # task id -> the reply streaming in now

    def render(self) -> Group:
        active = [r for a in self.runtime.agents.values() for r in a.running_tasks]
        return Group(
            agents_table(self.runtime.statuses()),
            tasks_table(active, title=f"Running tasks ({len(active)}; {self.finished} finished)",
                        live_text=self.streaming),
            *self._timers(),
            Text("Recent events", style="bold"),
            *[event_line(e) for e in self.recent],
        )

    def _timers(self, shown: int = 3) -> list[Text]:
        """The next few schedules and wake-ups (sleeping tasks show in their rows)."""
        upcoming = [t for t in self.runtime.scheduler.active()
                    if t.action != "wake_task" and t.next_due is not None][:shown]
        if not upcoming:
            return []
        now = self.runtime.clock.now()
        lines = [Text("Next timers", style="bold")]
        for t in upcoming:
            left = max(0.0, (t.next_due or now) - now)
            lines.append(Text(f"  in {left:.0f}s  {t.agent}: {clip(t.describe_action(), 70)} "
                              f"({t.describe_when()}, {t.id})"))
        return lines

    async def run(self) -> None:
        with self.runtime.events.subscribe() as feed, \
                Live(self.render(), console=self.console, auto_refresh=False) as live:
            while True:
                event = await feed.get()
                self._take(event)
                await asyncio.sleep(self.interval)
                while (more := feed.get_nowait()) is not None:
                    self._take(more)
                live.update(self.render(), refresh=True)

    def _take(self, event: Event) -> None:
        if event.type == "model.token" and event.task_id:
            self.streaming[event.task_id] = (self.streaming.get(event.task_id, "")
                                             + event.data.get("text", ""))[-200:]
            return
        if event.type == "model.call" and event.task_id:
            self.streaming.pop(event.task_id, None)
        self.recent.append(event)
        if event.type == "task.state" and event.data.get("to") in ("done", "failed",
                                                                  "cancelled"):
            self.finished += 1


async def print_events(runtime: Runtime, console: Console) -> None:
    """The plain view: one line per event, for logs and pipes."""
    with runtime.events.subscribe(lambda e: e.type not in QUIET_EVENTS) as feed:
        async for event in feed:
            console.print(event_line(event), soft_wrap=True)
