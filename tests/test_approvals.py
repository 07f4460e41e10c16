"""Tool approval: a matching call waits for a person, who approves it, approves it with
edited arguments, or denies it with a reason; a timeout decides on its own (fake
clock); a decision is applied once; the rules and who may decide, on their own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from approval_support import Make, call, pending_approval, people_runtime, steps
from wakeful.approvals.rules import may_decide, requirement, summarize
from wakeful.core.approvals import Approval
from wakeful.core.states import TaskState
from wakeful.errors import AccessDeniedError, WakefulError
from wakeful.project.definitions import AgentDefinition
from wakeful.schedule.clock import FakeClock

__all__ = ["people_runtime"]

RULE = {"tools": ["write_file"], "when": {"path": "docs/**"}, "approvers": ["person:ada"]}


def writer(**fields: object) -> dict[str, object]:
    return {"name": "writer", "model": "scripted:writer",
            "tools": ["write_file", "read_file", "note"], "answer_mail": False,
            "approval": [RULE], **fields}


def writes(path: str = "docs/plan.md", content: str = "the plan") -> object:
    return steps(call("write_file", path=path, content=content),
                 {"say": "result: {last_tool_result}"})


async def test_an_approved_call_runs_after_the_task_waited(people_runtime: Make,
                                                           tmp_path: Path) -> None:
    rt = await people_runtime([writer()], {"scripted:writer": writes()})
    task = await rt.create_task("writer", "write the plan")
    approval = await pending_approval(rt, task.id)
    record = await rt.get_task(task.id)
    assert record.state is TaskState.WAITING
    assert approval.summary == "write_file(docs/plan.md)"
    assert approval.approvers == ["person:ada"]
    assert not (tmp_path / "workspace" / "docs" / "plan.md").exists()
    decided = await rt.approvals.decide(approval.id, approve=True, by="person:ada")
    assert decided.state == "approved" and decided.decided_by == "person:ada"
    done = await rt.wait_task(task.id, 10)
    assert done.state is TaskState.DONE
    assert (tmp_path / "workspace" / "docs" / "plan.md").read_text() == "the plan"
    await rt.store.flush()
    types = [e.type for e in await rt.store.query_events(task_id=task.id)]
    assert types.count("approval.requested") == 1 and types.count("approval.decided") == 1
    reasons = [e.data.get("reason") for e in await rt.store.query_events(
        task_id=task.id, types=["task.state"]) if e.data.get("to") == "waiting"]
    assert reasons == ["approval of write_file(docs/plan.md)"]
    with pytest.raises(WakefulError, match="already approved by person:ada"):
        await rt.approvals.decide(approval.id, approve=False, by="person:ada")


async def test_edited_arguments_are_the_ones_that_run(people_runtime: Make,
                                                      tmp_path: Path) -> None:
    rt = await people_runtime([writer()], {"scripted:writer": writes()})
    task = await rt.create_task("writer", "write the plan")
    approval = await pending_approval(rt, task.id)
    with pytest.raises(WakefulError, match="must be a JSON object"):
        await rt.approvals.decide(approval.id, approve=True, by="person:ada",
                                  arguments="[1]")
    await rt.approvals.decide(approval.id, approve=True, by="person:ada", arguments={
        "path": "docs/plan.md", "content": "a better plan"})
    done = await rt.wait_task(task.id, 10)
    assert (tmp_path / "workspace" / "docs" / "plan.md").read_text() == "a better plan"
    assert "edited arguments" in (done.result or "")
    await rt.store.flush()
    [event] = await rt.store.query_events(task_id=task.id, types=["approval.decided"])
    assert event.data["edited"] is True and event.data["decided_by"] == "person:ada"


async def test_a_denial_reaches_the_model_with_its_reason(people_runtime: Make,
                                                         tmp_path: Path) -> None:
    rt = await people_runtime([writer()], {"scripted:writer": writes()})
    task = await rt.create_task("writer", "write the plan")
    approval = await pending_approval(rt, task.id)
    await rt.approvals.decide(approval.id, approve=False, by="person:ada",
                              reason="the plan is not agreed yet")
    done = await rt.wait_task(task.id, 10)
    assert done.state is TaskState.DONE
    assert "person:ada denied write_file(docs/plan.md)" in (done.result or "")
    assert "the plan is not agreed yet" in (done.result or "")
    assert not (tmp_path / "workspace" / "docs" / "plan.md").exists()
    await rt.store.flush()
    denied = await rt.store.query_events(task_id=task.id, types=["tool.denied"])
    assert len(denied) == 1


async def test_calls_no_rule_matches_run_at_once(people_runtime: Make,
                                                 tmp_path: Path) -> None:
    rt = await people_runtime([writer()], {"scripted:writer": writes("notes/a.md")})
    task = await rt.create_task("writer", "write a note")
    done = await rt.wait_task(task.id, 10)
    assert done.state is TaskState.DONE
    assert (tmp_path / "workspace" / "notes" / "a.md").exists()
    assert await rt.approvals.pending() == []


async def test_the_other_tasks_of_the_agent_go_on(people_runtime: Make) -> None:
    model = steps(call("write_file", path="docs/{instruction}.md", content="x"),
                  {"say": "done"})
    rt = await people_runtime([writer()], {"scripted:writer": model})
    blocked = await rt.create_task("writer", "plan")
    await pending_approval(rt, blocked.id)
    free = await rt.create_task("writer", "notes")  # docs/notes.md: also needs approval
    other = await pending_approval(rt, free.id)
    await rt.approvals.decide(other.id, approve=True, by="person:admin")
    assert (await rt.wait_task(free.id, 10)).state is TaskState.DONE
    assert (await rt.get_task(blocked.id)).state is TaskState.WAITING


@pytest.mark.parametrize(("on_timeout", "written"), [("deny", False), ("approve", True)])
async def test_a_timeout_decides_with_on_timeout(people_runtime: Make, tmp_path: Path,
                                                 on_timeout: str, written: bool) -> None:
    clock = FakeClock()
    rule = {**RULE, "timeout": "1h", "on_timeout": on_timeout}
    rt = await people_runtime([writer(approval=[rule])], {"scripted:writer": writes()},
                              clock=clock)
    task = await rt.create_task("writer", "write the plan")
    approval = await pending_approval(rt, task.id)
    assert approval.due_at == pytest.approx(clock.now() + 3600)
    await clock.advance(3599)
    assert (await rt.get_task(task.id)).state is TaskState.WAITING
    await clock.advance(2)
    done = await rt.wait_task(task.id, 10)
    assert (tmp_path / "workspace" / "docs" / "plan.md").exists() is written
    decided = await rt.approvals.get(approval.id)
    assert decided is not None and decided.decided_by == "timeout"
    if not written:
        assert "nobody approved write_file(docs/plan.md) in time" in (done.result or "")


async def test_only_named_approvers_or_the_admin_may_decide(people_runtime: Make) -> None:
    rt = await people_runtime([writer()], {"scripted:writer": writes()})
    task = await rt.create_task("writer", "write the plan")
    approval = await pending_approval(rt, task.id)
    with pytest.raises(AccessDeniedError, match="person:bob may not decide"):
        await rt.approvals.decide(approval.id, approve=True, by="person:bob")
    assert (await rt.approvals.get(approval.id)).pending  # type: ignore[union-attr]


async def test_approval_all_gates_every_call(people_runtime: Make) -> None:
    model = steps(call("note", text="hi"), {"say": "{last_tool_result}"})
    rt = await people_runtime([writer(approval="all")], {"scripted:writer": model})
    task = await rt.create_task("writer", "note it")
    approval = await pending_approval(rt, task.id)
    assert approval.summary == "note(hi)" and approval.approvers == []
    await rt.approvals.decide(approval.id, approve=True, by="person:carol")
    assert (await rt.wait_task(task.id, 10)).state is TaskState.DONE


async def test_a_cancelled_task_withdraws_its_request(people_runtime: Make) -> None:
    rt = await people_runtime([writer()], {"scripted:writer": writes()})
    task = await rt.create_task("writer", "write the plan")
    approval = await pending_approval(rt, task.id)
    await rt.cancel_task(task.id)
    from polling import until

    async def withdrawn() -> bool:
        found = await rt.approvals.get(approval.id)
        return found is not None and found.state == "denied"

    await until(withdrawn, 10, "the approval to be withdrawn")


# the rules, on their own -----------------------------------------------------------

def test_rules_match_tool_patterns_and_argument_globs() -> None:
    agent = AgentDefinition(name="a", approval=[
        {"tools": ["write_file", "github.*"], "when": {"path": "docs/**"},
         "approvers": ["person:ada"], "timeout": "1h", "on_timeout": "approve"},
        {"tools": ["send_mail"]}])
    found = requirement(agent.approval, "write_file", {"path": "docs/a/b.md"})
    assert found is not None and found.approvers == ("person:ada",)
    assert found.timeout_s == 3600 and found.on_timeout == "approve"
    assert requirement(agent.approval, "write_file", {"path": "src/x.py"}) is None
    assert requirement(agent.approval, "github.create_issue", {"path": "docs/x"}) is not None
    assert requirement(agent.approval, "github.create_issue", {}) is None  # no path
    assert requirement(agent.approval, "send_mail", {"to": "x"}) is not None
    assert requirement(agent.approval, "read_file", {"path": "docs/x"}) is None
    assert requirement("all", "note", {}) is not None
    assert requirement("all", "ask_person", {}) is None
    assert requirement([], "write_file", {"path": "docs/x"}) is None


def test_summaries_name_what_the_call_touches() -> None:
    assert summarize("write_file", {"content": "x", "path": "docs/plan.md"}) == \
        "write_file(docs/plan.md)"
    assert summarize("send_mail", {"to": "writer", "body": "hi"}) == "send_mail(writer)"
    assert summarize("current_time", {}) == "current_time()"
    assert summarize("note", {"text": "a" * 200}).endswith("…)")


def test_who_may_decide() -> None:
    named = Approval("ap_1", "k", "t", "a", "write_file", "{}", "s", ["person:ada"])
    anyone = Approval("ap_2", "k2", "t", "a", "write_file", "{}", "s", [])
    assert may_decide("person:ada", named)
    assert may_decide("person:admin", named)
    assert not may_decide("person:bob", named)
    assert may_decide("person:bob", anyone)
    assert not may_decide("writer", anyone)  # an agent is not a person


def test_bad_approval_config_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="'ada' is not a person"):
        AgentDefinition(name="a", approval=[{"approvers": ["ada"]}])
    with pytest.raises(ValueError, match="expected a duration"):
        AgentDefinition(name="a", approval=[{"timeout": "soon"}])
    with pytest.raises(ValueError):
        AgentDefinition(name="a", approval="some")


def test_decided_arguments_dict() -> None:
    approval = Approval("ap_1", "k", "t", "a", "w", json.dumps({"a": 1}), "s")
    assert approval.arguments_dict() == {"a": 1}
    approval.new_arguments = json.dumps({"a": 2})
    assert approval.arguments_dict() == {"a": 2}


async def test_a_replay_does_not_wait_for_approvals_again(tmp_path: Path) -> None:
    from approval_support import pending_approval as asked
    from wakeful.project.loader import load_project
    from wakeful.runtime.replay import replay
    from wakeful.runtime.runtime import Runtime

    (tmp_path / "agents").mkdir()
    (tmp_path / "scripts").mkdir()
    (tmp_path / "wakeful.yaml").write_text("name: replayed\n")
    (tmp_path / "agents" / "writer.yaml").write_text(
        "name: writer\nmodel: scripted:writer\nanswer_mail: false\ntools: [write_file]\n"
        "approval: all\n")
    (tmp_path / "scripts" / "writer.yaml").write_text(
        "scripts:\n  - steps:\n      - tool_calls: [{tool: write_file, args: {path: a.md, "
        "content: x}}]\n      - say: 'result: {last_tool_result}'\n")
    project = load_project(tmp_path)
    runtime = Runtime.from_project(project)
    await runtime.start()
    try:
        task = await runtime.create_task("writer", "write")
        approval = await asked(runtime, task.id)
        await runtime.approvals.decide(approval.id, approve=False, by="person:ada",
                                       reason="not now")
        assert "not now" in ((await runtime.wait_task(task.id, 10)).result or "")
    finally:
        await runtime.stop()
    result = await replay(project)
    assert result.identical, result
