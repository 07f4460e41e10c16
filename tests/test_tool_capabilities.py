"""Tools reach the rest of the system only through the capabilities their context hands
out (``ctx.mail``, ``ctx.resources``, ``ctx.team``...), never through the whole runtime:
the rule is checked on the source, and the capabilities are checked to work."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TYPE_CHECKING

from wakeful.core.states import TaskState
from wakeful.runtime.runtime import Runtime
from wakeful.toolkit.context import ToolContext

if TYPE_CHECKING:
    from conftest import AgentFactory, RuntimeFactory, ScriptFactory

SRC = Path(__file__).resolve().parent.parent / "src" / "wakeful"
# The context itself, and the loop that makes it, may use the runtime it is made from.
ALLOWED = {SRC / "toolkit" / "context.py", SRC / "runtime" / "task_loop.py"}


def _reaches_runtime(tree: ast.AST) -> list[int]:
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr == "runtime"
            and isinstance(node.value, ast.Name) and node.value.id == "ctx"]


def test_no_tool_reaches_through_its_context_to_the_runtime() -> None:
    found = {str(path.relative_to(SRC)): lines for path in sorted(SRC.rglob("*.py"))
             if path not in ALLOWED
             and (lines := _reaches_runtime(ast.parse(path.read_text(), str(path))))}
    assert found == {}, f"ctx.runtime used outside the context (file: lines): {found}"


def test_the_rule_would_see_a_tool_that_breaks_it() -> None:
    assert _reaches_runtime(ast.parse("async def t(ctx):\n    return ctx.runtime.store\n"))


async def test_a_context_hands_out_working_capabilities(
        make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory) -> None:
    runtime: Runtime = await make_runtime([agent_def("ada"), agent_def("bob")],
                                          {"m": script([{"say": "done"}])})
    ctx = ToolContext(agent="ada", task_id="t_none", runtime=runtime)
    assert ctx.mail is runtime.mailbox and ctx.resources is runtime.resources
    assert ctx.timers is runtime.scheduler and ctx.waits is runtime.waits
    assert sorted(ctx.team.names()) == ["ada", "bob"]
    assert ctx.team.definition("bob").name == "bob"
    made = await ctx.team.create_task("bob", "say done", created_by="person:cy")
    done = await runtime.wait_task(made.id, 30)
    assert done.state is TaskState.DONE
    assert await ctx.team.person_of(made.id) == "person:cy"
    assert [t.id for t in await ctx.team.list_tasks(agent="bob")] == [made.id]
    created = await ctx.team.events(task_id=made.id, types=["task.created"])
    assert [e.task_id for e in created] == [made.id]
