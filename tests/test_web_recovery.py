"""Losing the server and getting it back: the stream resumes after the last event a
client saw (no gap, no repeat), the page shows a banner while it is away, every open
view reloads after, and the token never shows in the browser's console."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from wakeful.server import WebServer
from wakeful.server.stream import SKIPPED
from web_support import (
    TOKEN,
    Served,
    chromium_or_skip,
    open_browser,
    screenshot_path,
    serve,
    team,
)

if TYPE_CHECKING:
    from conftest import AgentFactory, RuntimeFactory, WaitUntil


@pytest.fixture
async def served(make_runtime: RuntimeFactory, agent_def: AgentFactory
                 ) -> AsyncIterator[Served]:
    built = team(agent_def, token_delay_ms=5, latency_ms=20)
    runtime = await make_runtime(built.agents, built.models)
    server = await serve(runtime)
    try:
        yield Served(runtime, server)
    finally:
        await server.stop()


def stream_url(served: Served, after_id: int = 0) -> str:
    base = served.url.replace("http://", "ws://") + "api/stream"
    return f"{base}?after_id={after_id}" if after_id else base


PROTOCOLS: Any = ["wakeful", f"bearer.{TOKEN}"]
WRONG: Any = ["wakeful", "bearer.wrong-token-wrong-token"]


async def _answered(served: Served, person: str, count: int) -> bool:
    found = await served.runtime.mailbox.conversation(person, "writer")
    return sum(1 for m in found if m.sender == "writer") >= count


async def test_a_resumed_stream_replays_what_was_missed_without_repeats(
        served: Served, wait_until: WaitUntil) -> None:
    runtime = served.runtime
    async with websockets.connect(stream_url(served), subprotocols=PROTOCOLS) as client:
        assert client.subprotocol == "wakeful"  # the token went as a protocol, not in the URL
        assert json.loads(await client.recv())["type"] == "hello"
        await runtime.mailbox.send("person:ada", "writer", body="First")
        await wait_until(lambda: _answered(served, "person:ada", 1), within=10,
                         what="the first answer")
        await runtime.wait_idle(10)
        seen: list[int] = []
        last_stored = (await runtime.store.query_events(newest=True, limit=1))[0].id
        async with asyncio.timeout(10):
            while not seen or max(seen) < (last_stored or 0):
                message = json.loads(await client.recv())
                seen += [e["id"] for e in message["events"] if e["id"] is not None]
    last = max(seen)
    # While away: another mail, answered, with every event that goes with it.
    await runtime.mailbox.send("person:ada", "writer", body="Second")
    await wait_until(lambda: _answered(served, "person:ada", 2), within=10,
                     what="the second answer")
    await runtime.wait_idle(10)
    await runtime.store.flush()
    missed = [e.id for e in await runtime.store.query_events(after_id=last, limit=10_000)
              if e.type not in SKIPPED and e.type != "model.token"]
    assert missed, "nothing happened while the client was away"
    async with websockets.connect(stream_url(served, last), subprotocols=PROTOCOLS) as client:
        assert json.loads(await client.recv())["type"] == "hello"
        replay = json.loads(await client.recv())
        assert replay["replayed"] is True and replay["dropped"] == 0
        got = [e["id"] for e in replay["events"]]
        await runtime.mailbox.send("person:ada", "writer", body="Third")  # live again
        live: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while not any(e["type"] == "mail.sent" and e["data"].get("from") == "writer"
                          for e in live):
                live += json.loads(await client.recv())["events"]
    assert got == missed, "the replay has a gap or an extra event"
    live_ids = [e["id"] for e in live if e["id"] is not None]
    assert not set(live_ids) & set(got), "an event came twice"
    assert all(i > max(got) for i in live_ids)


async def test_a_wrong_token_offered_as_a_protocol_is_refused(served: Served) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(stream_url(served), subprotocols=WRONG):
            pass
    assert refused.value.response.status_code == 401


@pytest.mark.browser
async def test_a_lost_server_shows_a_banner_and_every_view_reloads_after(
        served: Served, wait_until: WaitUntil) -> None:
    runtime = served.runtime
    console: list[str] = []
    errors: list[str] = []
    async for browser in open_browser(chromium_or_skip()):
        page = await browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(15_000)
        page.on("console", lambda m: console.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(served.url + f"#token={TOKEN}")
        await page.wait_for_selector("#conn.live")
        assert await page.is_hidden("#banner")
        port = served.server.port
        await served.server.stop()
        banner = page.locator("#banner")
        await banner.wait_for()
        assert "Lost the connection" in await banner.inner_text()
        assert await page.get_attribute("body", "data-conn") == "lost"
        # A view opened during the outage cannot load yet ...
        await page.goto(served.url + "#/agent/critic")
        # ... and work goes on meanwhile.
        record = await runtime.create_task("critic", "Made while the server was away")
        await wait_until(lambda task=record.id: _done(served, task), within=10, what="the task")
        served.server = WebServer(runtime, TOKEN, host="127.0.0.1", port=port,
                                  stream_interval_s=0.05)
        await served.server.start()
        await banner.wait_for(state="hidden", timeout=20_000)
        # The view reloaded: the task made during the outage is there, done.
        await page.wait_for_selector(f"#panel-tasks tr[data-task='{record.id}'][data-state='done']")
        await page.wait_for_selector(f"#timeline a[href='#/task/{record.id}']")
        await page.screenshot(path=screenshot_path("reconnected"))
    assert not errors
    assert console, "expected the browser to report the lost connection"
    assert not [line for line in console if TOKEN in line], "the token leaked to the console"


async def _done(served: Served, task_id: str) -> bool:
    return (await served.runtime.get_task(task_id)).state.value == "done"
