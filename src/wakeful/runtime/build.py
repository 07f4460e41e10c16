"""The composition root: one function builds a runtime from configuration.

The CLI builds its runtime here from a project folder; Python code builds one from
objects (agent definitions, models, tools) the same way. Everything a runtime is made of
is chosen here and nowhere else: the store backend behind its ports, the model
registry, the tool registry (the built-ins plus yours), the resource manager with its
workspace, the mailbox settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from wakeful.models.base import Model
from wakeful.models.registry import ModelRegistry
from wakeful.project.definitions import AgentDefinition, ProjectConfig
from wakeful.project.loader import Project
from wakeful.resources.manager import ResourceManager
from wakeful.runtime.runtime import Runtime
from wakeful.schedule.clock import Clock
from wakeful.store import Store, open_store
from wakeful.toolkit.registry import Tool, ToolFunction, ToolRegistry
from wakeful.tools.builtin import default_tools


def build_runtime(
    *,
    agents: Iterable[AgentDefinition | Mapping[str, Any]] = (),
    models: Mapping[str, Model] | None = None,
    tools: Iterable[Tool | ToolFunction] = (),
    store: Store | str | Path = "wakeful.db",
    config: ProjectConfig | None = None,
    root: Path | None = None,
    clock: Clock | None = None,
) -> Runtime:
    """Build a runtime (not started) from objects.

    ``agents``: definitions, or plain dicts with the fields of an agent file.
    ``models``: model objects by the spec agents name (``"scripted:writer"``); other
    specs resolve as in a project (``openai:gpt-4o-mini``, the providers of ``config``).
    ``tools``: your tools (``@wakeful.tool`` functions), added to the built-ins.
    ``store``: a :class:`Store`, a ``sqlite:///`` URL or a file path.
    ``config``: the project settings (``wakeful.yaml`` as an object); ``root``: the
    folder relative paths (scripts, workspace) are read from (default: the current one).
    """
    config = config or ProjectConfig()
    base = root or Path.cwd()
    registry = ModelRegistry(base / config.scripts_dir, providers=config.providers)
    for spec, model in (models or {}).items():
        registry.register(spec, model)
    tool_registry = default_tools()
    for extra in tools:
        tool_registry.register(extra)
    definitions = [a if isinstance(a, AgentDefinition) else AgentDefinition.model_validate(a)
                   for a in agents]
    if not isinstance(store, Store):
        store = open_store(store if "://" in str(store) or Path(store).is_absolute()
                           else base / store, config.store.synchronous)
    runtime = Runtime(
        store=store,
        models=registry,
        tools=tool_registry,
        agents=definitions,
        default_model=config.default_model,
        startup_tasks=config.startup_tasks,
        poll_interval_s=config.poll_interval_s,
        resources=ResourceManager(base / config.workspace, config.resources),
        mailbox_config=config.mailbox,
        lease_s=config.worker_lease_s,
        clock=clock,
    )
    runtime.admin.limits = config.agents
    return runtime


def runtime_for_project(project: Project, *, tools: ToolRegistry | None = None,
                        store_url: str | None = None) -> Runtime:
    """The runtime of a project folder (what ``wakeful run`` starts)."""
    config = project.config
    store = open_store(store_url or project.store_url(), config.store.synchronous)
    runtime = build_runtime(agents=project.agents.values(), store=store, config=config,
                            root=project.root)
    if tools is not None:
        runtime.tools = tools
    return runtime
