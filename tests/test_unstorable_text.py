"""Text the store cannot hold (a lone surrogate, NUL) is refused at the edge, alone.

A lone surrogate is valid JSON (``"\\ud800"``) that a model or an injected document can
emit, but it has no UTF-8 encoding: written in a group commit with others' mail, it
failed all of them. Refused where it enters (a mail draft, an API body, a tool call),
it fails only its own sender, with the field that was wrong.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx
import pytest

from mail_fixtures import OpenMailbox
from wakeful.core.mail import MailDraft
from wakeful.errors import MailError
from wakeful.models.base import ToolCall
from wakeful.runtime.runtime import Runtime
from wakeful.server import create_app
from wakeful.text import unstorable
from wakeful.toolkit.context import ToolContext
from web_support import TOKEN, team

if TYPE_CHECKING:
    from conftest import AgentFactory, RuntimeFactory

SURROGATE = "\ud800"


@pytest.mark.parametrize("fields, where", [
    ({"body": "hello " + SURROGATE}, "body"),
    ({"subject": "a\x00b"}, "subject"),
    ({"payload": {"items": ["ok", "\udfff"]}}, "payload"),
    ({"payload": {SURROGATE: 1}}, "payload"),
    ({"thread_id": "t" + SURROGATE}, "thread_id"),
])
def test_a_draft_with_unstorable_text_is_refused_naming_the_field(
        fields: dict[str, object], where: str) -> None:
    with pytest.raises(ValueError) as caught:
        MailDraft(to="bob", **fields)  # type: ignore[arg-type]
    message = str(caught.value)
    assert where in message and "cannot be stored" in message


def test_unstorable_names_the_path_inside_nested_values() -> None:
    assert unstorable({"a": [{"b": "fine"}, {"c": "x\ud800"}]}) == (
        "a[1].c: contains a lone surrogate '\\ud800' (not valid Unicode text) at "
        "character 1; it cannot be stored, send UTF-8 text")
    assert unstorable({"a": ["ünïcode ok", 1, None, 2.5]}) is None
    deep: object = "x"
    for _ in range(100):
        deep = [deep]
    assert "nested more than" in (unstorable(deep) or "")


async def test_one_bad_mail_among_many_fails_alone(open_mailbox: OpenMailbox) -> None:
    mailbox = await open_mailbox()
    sends = [mailbox.send("alice", "bob", f"ok {i}", body="fine") for i in range(40)]
    sends.insert(20, mailbox.send("carol", "bob", "bad", body="x" + SURROGATE))
    results = await asyncio.gather(*sends, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and isinstance(failed[0], MailError)
    assert "body" in str(failed[0]) and "lone surrogate" in str(failed[0])
    got = mailbox.claim("bob", limit=100)
    assert sorted(d.mail.subject for d in got) == sorted(f"ok {i}" for i in range(40))


@pytest.fixture
async def client(make_runtime: RuntimeFactory, agent_def: AgentFactory
                 ) -> AsyncIterator[httpx.AsyncClient]:
    built = team(agent_def, token_delay_ms=1, latency_ms=5)
    runtime = await make_runtime(built.agents, built.models)
    app = create_app(runtime, TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1",
                                 headers={"Authorization": f"Bearer {TOKEN}",
                                          "Content-Type": "application/json"}) as client:
        yield client


@pytest.mark.parametrize("path, body, field", [
    ("/api/mail", '{"to": "writer", "body": "hi \\ud800"}', "body.body"),
    ("/api/mail", '{"to": "writer", "payload": {"k": ["\\udc00"]}}', "body.payload"),
    ("/api/tasks", '{"agent": "writer", "instruction": "do \\ud800"}', "body.instruction"),
    ("/api/channels", '{"name": "team", "topic": "\\u0000"}', "body.topic"),
])
async def test_the_api_answers_422_naming_the_field(
        client: httpx.AsyncClient, path: str, body: str, field: str) -> None:
    response = await client.post(path, content=body.encode())
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["status"] == 422
    assert [f["field"] for f in answer["fields"]] == [field]
    assert "cannot be stored" in answer["error"]
    # The server is fine: a good mail still goes through.
    ok = await client.post("/api/mail", json={"to": "writer", "body": "hello"})
    assert ok.status_code < 300, ok.text


async def test_a_tool_call_with_unstorable_arguments_is_a_tool_error(
        make_runtime: RuntimeFactory, agent_def: AgentFactory) -> None:
    runtime: Runtime = await make_runtime([agent_def("a", tools=["word_count"])])
    registry = runtime.tools
    ctx = ToolContext(agent="a", task_id="t_1", runtime=runtime)
    call = ToolCall("c1", "word_count", json.dumps({"text": "x" + SURROGATE}))
    outcome = await registry.call(ctx, frozenset({"word_count"}), call)
    assert not outcome.ok and outcome.error_kind == "invalid_args"
    assert "text: contains a lone surrogate" in outcome.content


async def test_oversized_and_deeply_nested_arguments_are_refused_clearly(
        make_runtime: RuntimeFactory, agent_def: AgentFactory) -> None:
    runtime: Runtime = await make_runtime([agent_def("a", tools=["word_count"])])
    ctx = ToolContext(agent="a", task_id="t_1", runtime=runtime)
    allowed = frozenset({"word_count"})
    huge = ToolCall("c1", "word_count", json.dumps({"text": "word " * 2_000_000}))
    outcome = await runtime.tools.call(ctx, allowed, huge)
    assert not outcome.ok and outcome.error_kind == "too_large"
    assert "10,000,012 characters; the limit is 2,000,000" in outcome.content
    assert len(outcome.content) < 300
    deep = ToolCall("c2", "word_count", '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}")
    outcome = await runtime.tools.call(ctx, allowed, deep)
    assert not outcome.ok and outcome.error_kind in ("invalid_json", "invalid_args")
    assert "nested" in outcome.content
    fine = ToolCall("c3", "word_count", json.dumps({"text": "two words"}))
    assert (await runtime.tools.call(ctx, allowed, fine)).ok
