"""Agent files edited while the team runs are reloaded.

:class:`AgentFileWatcher` is a service: every ``agents.reload_interval_s`` it looks at
the project's agents folder (names, sizes and modification times: no extra
dependency, and it works on every file system). A changed file is loaded and checked
on its own; if it is good, the agent runs with its new definition from then on
(``agent.reloaded``); if not, the old definition is kept and the problem is reported
in one line naming the file and the field (``agent.reload_failed``, and the
``report`` callback the CLI prints). A new file adds an agent; a deleted one removes
it (its running tasks finish first).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from wakeful.core.scope import TaskScope
from wakeful.errors import ConfigError, WakefulError
from wakeful.project.loader import AGENT_SUFFIXES, load_agent_file

if TYPE_CHECKING:
    from wakeful.runtime.runtime import Runtime

log = structlog.get_logger("wakeful.reload")

Stamp = tuple[int, int]  # (mtime_ns, size)


def _scan(folder: Path) -> dict[Path, Stamp]:
    found: dict[Path, Stamp] = {}
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            if path.suffix in AGENT_SUFFIXES and not path.name.startswith("."):
                with contextlib.suppress(OSError):
                    info = path.stat()
                    found[path] = (info.st_mtime_ns, info.st_size)
    return found


class AgentFileWatcher:
    """Reloads the agent files of one project folder into a running runtime."""

    name = "agent-files"

    def __init__(self, folder: Path, interval_s: float = 1.0,
                 report: Callable[[str], None] | None = None) -> None:
        self.folder = folder
        self.interval_s = interval_s
        self.report = report or (lambda line: None)
        self._runtime: Runtime | None = None
        self._seen: dict[Path, Stamp] = {}
        self._names: dict[Path, str] = {}  # file -> the agent it defines now
        self._scope = TaskScope("agent-files")

    async def start(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._seen = _scan(self.folder)
        for path in self._seen:
            with contextlib.suppress(ConfigError):
                self._names[path] = load_agent_file(path).name
        self._scope.spawn(self._watch(), name="agent-files:watch")

    async def stop(self) -> None:
        await self._scope.aclose()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except WakefulError as exc:  # e.g. an agent the runtime refuses: said once
                self.report(str(exc))

    async def check(self) -> None:
        """Look at the folder once and apply what changed."""
        now = _scan(self.folder)
        changed = [p for p, stamp in now.items() if self._seen.get(p) != stamp]
        gone = [p for p in self._seen if p not in now]
        self._seen = now
        for path in sorted(changed):
            await self._load(path)
        for path in gone:
            await self._gone(path)

    async def _load(self, path: Path) -> None:
        runtime = self._runtime
        assert runtime is not None
        try:
            definition = load_agent_file(path)
        except ConfigError as exc:
            line = f"{exc} (the old definition is kept)"
            self.report(line)
            runtime.events.emit("agent.reload_failed", agent=self._names.get(path),
                                data={"file": str(path), "error": str(exc)})
            return
        before = self._names.get(path)
        if before is not None and before != definition.name and before in runtime.agents:
            await runtime.admin.remove_file_agent(before)
        self._names[path] = definition.name
        current = runtime.agents.get(definition.name)
        if current is None:
            await runtime.add_agent(definition)
            what = "added"
        elif current.definition == definition:
            return
        elif definition.name in runtime.admin.stored_names():
            self.report(f"{path}: agent {definition.name!r} was made at run time; a file of "
                        "the same name is ignored")
            return
        else:
            await runtime.admin.replace_agent(definition)
            what = "reloaded"
        self.report(f"{path}: agent {definition.name!r} {what}")
        runtime.events.emit("agent.reloaded", agent=definition.name,
                            data={"file": str(path), "what": what})

    async def _gone(self, path: Path) -> None:
        runtime = self._runtime
        assert runtime is not None
        name = self._names.pop(path, None)
        if name is None or name not in runtime.agents or name in runtime.admin.stored_names():
            return
        await runtime.admin.remove_file_agent(name)
        self.report(f"{path}: deleted; agent {name!r} is removed once its running tasks end")
        runtime.events.emit("agent.reloaded", agent=name, data={"file": str(path),
                                                                "what": "removed"})
