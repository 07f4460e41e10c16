"""The mail tools as models call them: real runtime, real SQLite file, scripted models.

Each test runs agents whose scripted models call the mail tools through tool calling,
exactly as a real model would, and checks what came back and what the store holds.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from wakeful import AgentDefinition, ModelRegistry, Runtime, ScriptedModel, SQLiteStore
from wakeful.core.records import TaskRecord
from wakeful.core.states import TaskState
from wakeful.project.definitions import MailboxConfig, RestartPolicy

MAIL_TOOLS = ["send_mail", "check_mail", "read_mail", "reply", "ack", "post_to_channel",
              "channel_history", "request", "delegate_task", "ask_for_help"]


def call(tool: str, **args: Any) -> dict[str, Any]:
    return {"tool": tool, "args": args}


def step(*calls: dict[str, Any], latency_ms: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"say": "working", "tool_calls": list(calls)}
    if latency_ms is not None:
        out["latency_ms"] = latency_ms
    return out


def done(text: str = "done: {last_tool_result}") -> dict[str, Any]:
    return {"say": text}


def make_runtime(tmp_path: Path, scripts: dict[str, list[dict[str, Any]]],
                 **mailbox: Any) -> Runtime:
    models = ModelRegistry(tmp_path)
    agents = []
    for name, steps in scripts.items():
        models.register(f"scripted:{name}", ScriptedModel.from_steps(steps, name=name))
        agents.append(AgentDefinition(name=name, model=f"scripted:{name}", tools=MAIL_TOOLS,
                                      restart=RestartPolicy(policy="never")))
    return Runtime(store=SQLiteStore(tmp_path / "wakeful.db"), models=models, agents=agents,
                   mailbox_config=MailboxConfig(**mailbox))


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def tool_results(db: Path, task_id: str) -> list[dict[str, Any]]:
    found = []
    for (data,) in rows(db, "SELECT data FROM task_messages WHERE task_id = ? ORDER BY seq",
                        task_id):
        message = json.loads(data)
        if message["role"] == "tool":
            found.append({"name": message["name"], "content": message["content"]})
    return found


async def finish(runtime: Runtime, *tasks: TaskRecord) -> list[TaskRecord]:
    return [await runtime.wait_task(t.id, timeout=30) for t in tasks]


async def test_delegate_task_round_trip_brings_back_results_and_failures(tmp_path: Path
                                                                         ) -> None:
    runtime = make_runtime(tmp_path, {
        "boss": [step(call("delegate_task", agent="worker", instruction="compute the answer")),
                 step(call("delegate_task", agent="flaky", instruction="try something")),
                 done("all delegated: {last_tool_result}")],
        "worker": [done("the answer is 42")],
        "flaky": [{"error": "provider down", "fail_times": 0}],
    })
    async with runtime:
        boss = await runtime.create_task("boss", "run the project")
        [boss] = await finish(runtime, boss)
        assert boss.state is TaskState.DONE
        await runtime.store.flush()
    db = tmp_path / "wakeful.db"
    results = tool_results(db, boss.id)
    answer, failure = (json.loads(r["content"]) for r in results)
    assert answer["state"] == "done" and answer["result"] == "the answer is 42"
    assert failure["state"] == "failed" and "provider down" in failure["error"]
    children = rows(db, "SELECT id, agent, state, parent_id, created_by FROM tasks "
                    "WHERE agent != 'boss' ORDER BY agent DESC")
    assert [(a, s, p, c) for _, a, s, p, c in children] == [
        ("worker", "done", boss.id, f"boss/{boss.id}"),
        ("flaky", "failed", boss.id, f"boss/{boss.id}")]
    # The outcomes travelled as mail, correlated with their delegations.
    mails = rows(db, "SELECT m.sender, m.recipient, m.correlation_id, m.causation_id, "
                 "json_extract(m.payload, '$.state'), d.status FROM mail m JOIN "
                 "mail_deliveries d ON d.mail_id = m.id ORDER BY m.seq")
    delegations = dict(rows(db, "SELECT task_id, correlation_id FROM mail_delegations"))
    for (sender, to, cid, cause, state, status), (task_id, agent, *_) in zip(
            mails, children, strict=True):
        assert sender == f"{agent}/{task_id}" and to == f"boss/{boss.id}"
        assert cid == delegations[task_id] and cause == task_id and status == "acked"
        assert state == ("done" if agent == "worker" else "failed")
    reported = rows(db, "SELECT COUNT(*) FROM mail_delegations WHERE reported_at IS NOT NULL")
    assert reported == [(2,)]


async def test_request_and_reply_between_agents_and_the_waiting_task_shows_why(
        tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, {
        "asker": [step(call("request", to="pricer", subject="price?", body="for 3 units",
                            timeout_s=20)), done()],
        "pricer": [step(call("check_mail", wait_s=20), latency_ms=300),
                   step(call("reply", body="30 EUR", payload={"eur": 30})), done()],
    })
    async with runtime:
        asker = await runtime.create_task("asker", "get a price")
        await asyncio.sleep(0.15)
        loop, _ = runtime.agent("asker").task_loop(asker.id) or (None, None)
        assert loop is not None and loop.record.state is TaskState.WAITING
        assert loop.waiting_on == "reply from pricer to 'price?'"
        pricer = await runtime.create_task("pricer", "answer price questions")
        asker, pricer = await finish(runtime, asker, pricer)
    db = tmp_path / "wakeful.db"
    [got] = tool_results(db, asker.id)
    reply = json.loads(got["content"])["reply"]
    assert reply["body"] == "30 EUR" and reply["payload"] == {"eur": 30}
    assert reply["from"] == f"pricer/{pricer.id}" and reply["to"] == f"asker/{asker.id}"
    checked, replied = (json.loads(r["content"]) for r in tool_results(db, pricer.id))
    assert checked["mail"][0]["subject"] == "price?"
    assert replied["acknowledged"] == checked["mail"][0]["id"]
    assert rows(db, "SELECT DISTINCT status FROM mail_deliveries") == [("acked",)]


async def test_ask_for_help_returns_the_first_useful_answer_skipping_declines(
        tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, {
        "stuck": [step(call("ask_for_help", question="how do I parse this date?",
                            timeout_s=20)), done()],
        "novice": [step(call("check_mail", wait_s=20)),
                   step(call("reply", body="no idea", decline=True)), done()],
        "expert": [step(call("check_mail", wait_s=20)),
                   step(call("reply", body="use datetime.fromisoformat"), latency_ms=600),
                   done()],
    }, channels=[{"name": "helpers", "members": ["stuck", "novice", "expert"]}])
    async with runtime:
        helpers = [await runtime.create_task(a, "help others") for a in ("novice", "expert")]
        stuck = await runtime.create_task("stuck", "parse the dates")
        stuck, *_ = await finish(runtime, stuck, *helpers)
    [result] = tool_results(tmp_path / "wakeful.db", stuck.id)
    answer = json.loads(result["content"])
    assert answer["answer"] == "use datetime.fromisoformat"
    assert answer["from"].startswith("expert/") and answer["declined"] == 1


async def test_refused_and_bad_tool_calls_are_errors_for_the_model_not_crashes(
        tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, {
        "snoop": [step(call("check_mail", wait_s=20)),
                  step(call("read_mail", mail_id="{last_tool_result}")),
                  step(call("channel_history", channel="secret")),
                  step(call("send_mail", to="victim", subject="still works")),
                  step(call("send_mail", to="victim", body="x" * 300)),
                  step(call("send_mail", to="victim", body="hi", payload="not an object")),
                  step(call("send_mail", to="nobody", body="hi")),
                  done()],
        "victim": [done()],
        "admin": [done()],
    }, max_body_chars=200, channels=[{"name": "secret", "members": ["victim", "admin"]}])
    async with runtime:
        private = await runtime.mailbox.send("admin", "victim", "password", "hunter2")
        snoop_box = await runtime.mailbox.send("admin", "snoop", "the id", private.id)
        assert snoop_box.delivered_to == 1
        # The scripted model passes the whole check_mail result as the id: make it exact.
        script = runtime.models.get("scripted:snoop")
        assert isinstance(script, ScriptedModel)
        script.script.scripts[0].steps[1].tool_calls[0].args["mail_id"] = private.id
        snoop = await runtime.create_task("snoop", "look around")
        [snoop] = await finish(runtime, snoop)
        assert snoop.state is TaskState.DONE
        await runtime.store.flush()
    db = tmp_path / "wakeful.db"
    results = [r["content"] for r in tool_results(db, snoop.id)]
    assert "may not read mail" in results[1] and "refused and recorded" in results[1]
    assert "may not read #secret" in results[2]
    assert json.loads(results[3])["delivered_to"] == 1
    assert "the body is 300 characters; the limit is 200" in results[4]
    assert "payload" in results[5] and "valid dictionary" in results[5]
    assert "unknown agent 'nobody'" in results[6]
    denied = rows(db, "SELECT task_id FROM events WHERE type = 'mail.access_denied'")
    assert denied == [(snoop.id,), (snoop.id,)]
    assert rows(db, "SELECT body FROM mail WHERE sender LIKE 'snoop/%'") == [("",)]


async def test_stopping_the_runtime_interrupts_a_task_waiting_for_mail(tmp_path: Path
                                                                       ) -> None:
    runtime = make_runtime(tmp_path, {"waiter": [step(call("check_mail", wait_s=600)),
                                                 done()]})
    before = asyncio.all_tasks()
    await runtime.start()
    try:
        task = await runtime.create_task("waiter", "wait for mail")
        for _ in range(200):
            if runtime.mailbox.stats()["waiters"]:
                break
            await asyncio.sleep(0.02)
        assert runtime.mailbox.stats()["waiters"] == 1
    finally:
        await runtime.stop()
    assert runtime.mailbox.stats()["waiters"] == 0
    assert asyncio.all_tasks() - before == {asyncio.current_task()} - before
    state = rows(tmp_path / "wakeful.db", "SELECT state FROM tasks WHERE id = ?", task.id)
    assert state == [("queued",)]  # resumable: it waits again on the next start
