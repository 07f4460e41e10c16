"""Property-based: addresses, mail drafts and tool-call arguments from a model.

Whatever a model or a person writes, an address parses or gives ValueError; a draft
validates or gives ValidationError, and a draft that validates can be stored; a tool
call's arguments (malformed, huge, deeply nested, unusual Unicode) become a ToolOutcome
whose message the store can hold, never an exception out of the registry.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any, cast

from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from fuzz_support import FUZZ, any_text, fields_of, json_like
from wakeful.core.mail import AddressKind, MailDraft, MailFilter, parse_address
from wakeful.models.base import ToolCall
from wakeful.runtime.runtime import Runtime
from wakeful.text import unstorable
from wakeful.toolkit.context import ToolContext
from wakeful.tools.builtin import default_tools

address_like = any_text | st.from_regex(
    r"(#|person:|\*)?[a-z0-9][a-z0-9_.@-]{0,70}(/[A-Za-z0-9_-]{0,70})?", fullmatch=True)


@FUZZ
@given(address_like)
@example("writer/t_1")
@example("#team")
@example("*")
@example("person:ada@x.org")
@example("writer/")
@example("#")
@example("person:")
@example("Writer")
def test_addresses_parse_or_say_what_addresses_look_like(text: str) -> None:
    try:
        address = parse_address(text)
    except ValueError as exc:
        assert repr(text)[:20] in str(exc) or "address" in str(exc)
        return
    assert str(address) == text  # one spelling per address
    assert unstorable(text) is None
    if address.kind in (AddressKind.AGENT, AddressKind.TASK):
        assert address.agent == text.partition("/")[0]


def _storable_in_sqlite(draft: MailDraft) -> None:
    with sqlite3.connect(":memory:") as db:
        db.execute("CREATE TABLE mail (subject TEXT, body TEXT, payload TEXT)")
        payload = None if draft.payload is None else json.dumps(draft.payload,
                                                                ensure_ascii=False)
        db.execute("INSERT INTO mail VALUES (?, ?, ?)", (draft.subject, draft.body, payload))


@FUZZ
@given(fields_of(list(MailDraft.model_fields), json_like(10) | address_like))
@example({"to": "bob", "body": "\ud800"})
@example({"to": "bob", "payload": {"\udfff": ["\x00"]}})
def test_drafts_validate_or_refuse_and_what_validates_is_storable(data: dict[str, Any]
                                                                 ) -> None:
    data.setdefault("to", "bob")
    try:
        draft = MailDraft(**data)
    except ValidationError as exc:
        assert exc.errors()
        return
    _storable_in_sqlite(draft)
    MailFilter.of(sender=draft.reply_to, subject=draft.subject or None)


_REGISTRY = default_tools()
_CTX = ToolContext(agent="fuzzer", task_id="t_fuzz", runtime=cast(Runtime, None))
_ALLOWED = frozenset({"word_count", "current_time", "note", "read_notes", "get_task"})
_tool_names = st.sampled_from([*sorted(_ALLOWED), "nope", "list_agents", ""])


def _nested(depth: int) -> str:
    return '{"text": ' + "[" * depth + "]" * depth + "}"


raw_arguments = (
    st.text(max_size=200)
    | json_like(20).map(lambda v: json.dumps(v, ensure_ascii=False, default=str))
    | fields_of(["text"], json_like(8)).map(lambda v: json.dumps(v))
    | st.integers(0, 200_000).map(_nested)
    | st.integers(1, 3_000_000).map(lambda n: json.dumps({"text": "w " * (n // 2)}))
    | st.sampled_from(['{"text": "\\ud800"}', '{"text": "\\u0000"}', "null", "[]", "{",
                       '{"text": 1e999}', '{"text": "x", "text": "y"}', "\ufeff{}", " "]))


@FUZZ
@given(_tool_names, raw_arguments)
def test_any_arguments_become_an_outcome(name: str, arguments: str) -> None:
    async def run() -> Any:
        return await _REGISTRY.call(_CTX, _ALLOWED, ToolCall("c", name, arguments))

    try:
        outcome = asyncio.run(run())
    except AttributeError as exc:  # a tool reached for the (absent) runtime: it ran
        assert "NoneType" in str(exc)
        return
    assert outcome.ok or outcome.error_kind is not None
    assert outcome.content.startswith("error: ") or outcome.ok
    assert len(outcome.content) < 100_000
    assert unstorable(outcome.content) is None, outcome.content[:200]
