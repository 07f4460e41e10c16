"""``wakeful agent create|update|remove|export``: agents made at run time, and
``wakeful control``: act on an agent or task with a reason, recorded as yours.

They write to the store; every running worker picks the change up within
``poll_interval_s`` (the one that owns the agent carries out a removal or a control
action). Agents defined by files are changed by editing the file instead.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from wakeful.cli.common import (
    ProjectOption,
    fail,
    open_project,
    out,
    run_async,
    store_where,
    with_store,
)
from wakeful.cli.faults import session
from wakeful.core.stored_agents import StoredAgent
from wakeful.core.team import ACTIONS
from wakeful.errors import ConfigError, WakefulError
from wakeful.project.loader import load_agent_file
from wakeful.runtime.agent_admin import REMOVALS, export_yaml, parse_definition
from wakeful.runtime.intervention import TASK_ACTIONS
from wakeful.store import Store
from wakeful.store.agent_definitions import stored_agents
from wakeful.tools.builtin import default_tools

agent_app = typer.Typer(help="Agents made at run time: create, update, remove, export.",
                        no_args_is_help=True)

FileOption = Annotated[Path | None, typer.Option(
    "--file", "-f", help="An agent file (YAML or Markdown) with the fields.")]
RoleOption = Annotated[str | None, typer.Option(help="Its role.")]
ModelOption = Annotated[str | None, typer.Option(help="Its model (provider[:name]).")]
ToolsOption = Annotated[list[str] | None, typer.Option("--tool", help="A tool (repeat).")]
InstructionsOption = Annotated[str | None, typer.Option(help="Its instructions.")]


def who() -> str:
    """Who acts from the command line: the user at the keyboard."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _fields(base: dict[str, Any], file: Path | None, role: str | None, model: str | None,
            tools: list[str] | None, instructions: str | None) -> dict[str, Any]:
    fields = dict(base)
    if file is not None:
        try:
            fields.update(load_agent_file(file).model_dump(mode="json",
                                                           exclude_defaults=True))
        except ConfigError as exc:
            raise fail(str(exc)) from None
    for key, value in (("role", role), ("model", model), ("tools", tools),
                       ("instructions", instructions)):
        if value is not None:
            fields[key] = value
    unknown = sorted(set(fields.get("tools", [])) - set(default_tools().names()))
    if unknown:
        raise fail(f"unknown tools {unknown} (known: {', '.join(sorted(default_tools().names()))})")
    return fields


@agent_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The new agent's name.")],
    file: FileOption = None, role: RoleOption = None, model: ModelOption = None,
    tools: ToolsOption = None, instructions: InstructionsOption = None,
    project: ProjectOption = Path("."),
) -> None:
    """Create an agent (stored; running workers start it)."""
    loaded = open_project(project)
    if name in loaded.agents:
        raise fail(f"agent {name!r} is defined by a file in {loaded.config.agents_dir}/")
    fields = {**_fields({}, file, role, model, tools, instructions), "name": name}
    try:
        parse_definition(fields, f"agent {name}")
    except ConfigError as exc:
        raise fail(str(exc)) from None

    async def save(s: Store) -> StoredAgent:
        return await stored_agents(s).save(StoredAgent(name, fields, who()), create=True)

    saved = run_async(lambda: with_store(loaded, save))
    out.print(f"Created agent [bold]{escape(name)}[/] (version {saved.version}).",
              highlight=False)


@agent_app.command("update")
def update(
    name: Annotated[str, typer.Argument(help="The agent (made at run time).")],
    file: FileOption = None, role: RoleOption = None, model: ModelOption = None,
    tools: ToolsOption = None, instructions: InstructionsOption = None,
    project: ProjectOption = Path("."),
) -> None:
    """Change an agent made at run time (the fields given; the rest stay)."""
    loaded = open_project(project)

    async def save(s: Store) -> StoredAgent:
        family = stored_agents(s)
        found = await family.get(name)
        if found is None or found.removed_at is not None:
            raise WakefulError(f"there is no agent named {name!r} made at run time"
                               + (" (it is defined by a file: edit the file)"
                                  if name in loaded.agents else ""))
        fields = {**_fields(found.definition, file, role, model, tools, instructions),
                  "name": name}
        parse_definition(fields, f"agent {name}")
        return await family.save(StoredAgent(name, fields, who()), create=False)

    saved = run_async(lambda: with_store(loaded, save))
    out.print(f"Updated agent [bold]{escape(name)}[/] (version {saved.version}).",
              highlight=False)


@agent_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="The agent (made at run time).")],
    running: Annotated[str, typer.Option(help="Its running tasks: finish or cancel.")
                       ] = "finish",
    project: ProjectOption = Path("."),
) -> None:
    """Remove an agent made at run time; its running tasks finish or are cancelled."""
    if running not in REMOVALS:
        raise fail(f"--running {running!r}: expected finish or cancel")
    loaded = open_project(project)

    async def drop(s: Store) -> StoredAgent | None:
        return await stored_agents(s).remove(name, running)

    if run_async(lambda: with_store(loaded, drop)) is None:
        raise fail(f"there is no agent named {name!r} made at run time"
                   + (" (it is defined by a file: delete the file)"
                      if name in loaded.agents else ""))
    out.print(f"Removed agent [bold]{escape(name)}[/]; its running tasks will "
              f"{'finish' if running == 'finish' else 'be cancelled'}.", highlight=False)


@agent_app.command("export")
def export(
    name: Annotated[str, typer.Argument(help="Any agent.")],
    project: ProjectOption = Path("."),
) -> None:
    """Print an agent as an agent file (YAML)."""
    loaded = open_project(project)
    if name in loaded.agents:
        print(export_yaml(loaded.agents[name]), end="")
        return
    found = run_async(lambda: with_store(loaded, lambda s: stored_agents(s).get(name)))
    if found is None or found.removed_at is not None:
        raise fail(f"unknown agent {name!r}")
    print(export_yaml(parse_definition(found.definition, f"agent {name}")), end="")


def control(
    action: Annotated[str, typer.Argument(help=", ".join(ACTIONS))],
    target: Annotated[str, typer.Argument(help="The agent (a task id for cancel and "
                                          "restart_task).")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (recorded).")] = "",
    instruction: Annotated[str | None, typer.Option(help="For start_task.")] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Act on an agent or a task, with a reason, recorded as yours: the worker that runs
    it carries it out within poll_interval_s."""
    from wakeful.runtime.runtime import Runtime

    if action not in ACTIONS:
        raise fail(f"unknown action {action!r} (actions: {', '.join(ACTIONS)})")
    loaded = open_project(project)

    async def act() -> str:
        runtime = Runtime.from_project(loaded)

        async def record() -> str:
            done = await runtime.control(action, target, by=who(), reason=reason,
                                         instruction=instruction)
            return done.id

        # open_without_running: it asks the owning worker, through the store
        return await session(runtime.store, store_where(loaded), record,
                             opened=runtime.open_without_running)

    control_id = run_async(act)
    what = "task" if action in TASK_ACTIONS else "agent"
    out.print(f"{escape(action)} {what} {escape(target)}: recorded as {escape(who())} "
              f"({control_id}); the worker that runs it carries it out.", highlight=False)


def register(app: typer.Typer) -> None:
    from wakeful.cli.people import people_app

    app.add_typer(agent_app, name="agent")
    app.add_typer(people_app, name="people")
    app.command("control")(control)
