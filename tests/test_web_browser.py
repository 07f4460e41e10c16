"""The web UI in a real browser (Debian's chromium driven by Playwright) against a real
server and runtime: log in, 1-1 chat with a streamed reply, a group chat answered by
several agents, an agent going to sleep and waking, the controls, and bad input.

Screenshots go to artifacts/screenshots/ (git-ignored)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from wakeful.core.states import AgentState, TaskState
from web_support import (
    ONE_TO_ONE_REPLY,
    SLOW_JOB,
    TEAM,
    TOKEN,
    Served,
    chromium_or_skip,
    open_browser,
    screenshot_path,
    serve,
    team,
    token_interests,
)

if TYPE_CHECKING:
    from playwright.async_api import Page

    from conftest import AgentFactory, RuntimeFactory, WaitUntil

pytestmark = pytest.mark.browser


@pytest.fixture
async def served(make_runtime: RuntimeFactory, agent_def: AgentFactory
                 ) -> AsyncIterator[Served]:
    built = team(agent_def)
    runtime = await make_runtime(built.agents, built.models)
    server = await serve(runtime)
    try:
        yield Served(runtime, server)
    finally:
        await server.stop()


@pytest.fixture
async def page(served: Served) -> AsyncIterator[Page]:
    executable = chromium_or_skip()
    errors: list[str] = []
    async for browser in open_browser(executable):
        context = await browser.new_context(viewport={"width": 1280, "height": 820})
        page = await context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("dialog", lambda dialog: dialog.accept())  # Stop, Restart, Cancel ask first
        yield page
    assert not errors, f"JavaScript errors in the page: {errors}"


async def log_in(page: Page, served: Served, name: str = "ada") -> None:
    await page.goto(served.url)
    await page.fill("#login-token", TOKEN)
    await page.fill("#login-name", name)
    await page.click("#login-submit")
    await page.wait_for_selector("#agent-list li[data-agent='writer']")
    await page.wait_for_selector("#conn.live")


async def test_login_refuses_a_wrong_token_then_a_1_1_chat_streams_the_reply(
    page: Page, served: Served
) -> None:
    await page.goto(served.url)
    await page.fill("#login-token", "not-the-token-at-all")
    await page.click("#login-submit")
    await page.wait_for_selector("#login-error:not([hidden])")
    assert "token is not right" in await page.inner_text("#login-error")
    assert await page.is_hidden("#app")

    await log_in(page, served)
    await page.click("#agent-list li[data-agent='writer'] .chat-link")
    await page.wait_for_selector(".chat[data-chat='agent:writer']")
    # Record every text the typing bubble shows, to prove the reply streams in.
    await page.evaluate("""() => {
        window.__seen = [];
        new MutationObserver(() => {
            for (const b of document.querySelectorAll('.msg.typing .body'))
                window.__seen.push(b.textContent);
        }).observe(document.querySelector('.messages'),
                   {childList: true, subtree: true, characterData: true});
    }""")
    await page.fill("#message", "Hello writer, what do you do?")
    await page.press("#message", "Enter")
    await page.wait_for_selector(".msg.mine >> text=Hello writer, what do you do?")
    await page.wait_for_selector(".msg.typing .body:not(:empty)")
    await page.screenshot(path=screenshot_path("chat-1-1-streaming"))
    reply = page.locator(".msg.agent:not(.typing)[data-sender='writer'] .body")
    await reply.wait_for()
    assert await reply.inner_text() == ONE_TO_ONE_REPLY
    assert await page.locator(".msg.typing").count() == 0
    seen: list[str] = await page.evaluate("window.__seen")
    partial = {text for text in seen if text and text != ONE_TO_ONE_REPLY}
    assert len(partial) >= 3, f"the reply did not stream in pieces: {seen}"
    assert all(ONE_TO_ONE_REPLY.startswith(text) for text in partial)
    first_token_ms = (await page.evaluate("window.wakefulMetrics.firstToken"))[0]
    print(f"\n1-1 message sent -> first streamed token shown: {first_token_ms:.0f} ms "
          "(scripted model: 50 ms latency, 20 ms per token)")
    await page.screenshot(path=screenshot_path("chat-1-1"))

    # The conversation is real mail, in the store: a reload shows it again.
    conversation = await served.runtime.mailbox.conversation("person:ada", "writer")
    assert [m.body for m in conversation] == ["Hello writer, what do you do?",
                                              ONE_TO_ONE_REPLY]
    await page.reload()
    await page.wait_for_selector(f".msg.agent >> text={ONE_TO_ONE_REPLY[:30]}")


async def test_only_the_open_view_s_streamed_tokens_come_down_the_stream(
    page: Page, served: Served, wait_until: WaitUntil
) -> None:
    """The agent page shows no streamed tokens, so the server sends it none (with many
    agents streaming they are most of the events); a 1-1 chat gets its agent's."""
    await log_in(page, served)
    await page.evaluate("""() => {
        window.__tokens = {}; window.__replied = [];
        window.wakeful.stream.onEvents((events) => { for (const e of events) {
            const t = window.__tokens;
            if (e.type === 'model.token') t[e.agent] = (t[e.agent] || 0) + 1;
            if (e.type === 'mail.sent') window.__replied.push(e.data.in_reply_to);
        } });
    }""")
    mine = (False, frozenset[str](), frozenset[str]())
    await page.click("#agent-list li[data-agent='writer'] a.name")
    await page.wait_for_selector(".page.agent[data-agent='writer']")
    await wait_until(lambda: token_interests(served) == [mine], what="no tokens wanted")
    sent = await served.runtime.mailbox.send("person:bob", "writer", body="Hi!")
    await page.wait_for_function("(id) => window.__replied.includes(id)", arg=sent.id)
    assert await page.evaluate("window.__tokens") == {}

    await page.click("#agent-list li[data-agent='critic'] .chat-link")
    await page.wait_for_selector(".chat[data-chat='agent:critic']")
    mine = (False, frozenset({"critic"}), frozenset[str]())
    await wait_until(lambda: token_interests(served) == [mine], what="the critic's tokens")
    for name in ("writer", "critic"):
        sent = await served.runtime.mailbox.send("person:bob", name, body="Hi!")
        await page.wait_for_function("(id) => window.__replied.includes(id)", arg=sent.id)
    tokens = await page.evaluate("window.__tokens")
    assert list(tokens) == ["critic"] and tokens["critic"] > 0


async def test_a_group_chat_gets_answers_from_several_agents(
    page: Page, served: Served
) -> None:
    await log_in(page, served)
    await page.click("#new-channel")
    await page.fill("#channel-form input[name=name]", "launch")
    await page.fill("#channel-form input[name=topic]", "the launch plan")
    for agent in TEAM:
        await page.check(f"#channel-form input[value='{agent}']")
    await page.click("#channel-form button[type=submit]")
    await page.wait_for_selector(".chat[data-chat='channel:launch']")
    assert "launch" in [c.name for c in served.runtime.mailbox.channels("person:ada")]

    await page.fill("#message", "Team, is the launch plan ready?")
    await page.click("#send")
    for agent, reply in TEAM.items():
        answer = page.locator(f".msg.agent:not(.typing)[data-sender='{agent}'] .body")
        await answer.wait_for()
        assert await answer.inner_text() == reply
    names = await page.locator(".msg .from").all_inner_texts()
    assert names[0] == "ada" and sorted(names[1:]) == sorted(TEAM)
    await page.screenshot(path=screenshot_path("chat-group"))

    # Each agent answered in a task of its own, and they ran at the same time.
    tasks = [t for t in await served.runtime.store.list_tasks() if t.created_by == "person:ada"]
    assert sorted(t.agent for t in tasks) == sorted(TEAM)
    starts = [t.started_at or 0 for t in tasks]
    ends = [t.finished_at or 0 for t in tasks]
    assert max(starts) < min(ends), "the agents' answers did not overlap in time"


async def test_an_agent_goes_to_sleep_and_wakes_and_the_controls_work(
    page: Page, served: Served, wait_until: WaitUntil
) -> None:
    runtime = served.runtime
    await log_in(page, served)
    await page.click("#agent-list li[data-agent='researcher'] a.name")
    await page.wait_for_selector(".page.agent[data-agent='researcher'][data-state='running']")
    row = page.locator("#agent-list li[data-agent='researcher']")

    # Put to sleep by the runtime (as a timer would): the page follows live.
    await runtime.sleep_agent("researcher", "until the morning report")
    await page.wait_for_selector("#agent-list li[data-agent='researcher'][data-state='sleeping']")
    assert "sleeping" in await row.locator(".status").inner_text()
    await page.wait_for_selector(".page.agent[data-state='sleeping']")
    await page.screenshot(path=screenshot_path("agent-sleeping"))
    await page.click("button[data-action=wake]")
    await page.wait_for_selector("#agent-list li[data-agent='researcher'][data-state='running']")
    assert runtime.agent("researcher").state is AgentState.RUNNING
    await page.wait_for_selector("#timeline li[data-type='agent.state']")

    # Start a task from the page, then cancel it.
    await page.fill("#task-instruction", f"A {SLOW_JOB} for the archive")
    await page.click("#start-task")
    task_row = page.locator("#panel-tasks tr[data-state='running']")
    await task_row.wait_for()
    task_id = await task_row.get_attribute("data-task")
    assert task_id is not None
    await task_row.locator("button.cancel").click()
    await page.wait_for_selector(f"#panel-tasks tr[data-task='{task_id}'][data-state='cancelled']")
    assert (await runtime.get_task(task_id)).state is TaskState.CANCELLED

    # Pause / resume, stop / start, restart.
    for action, state in (("pause", "paused"), ("resume", "running"), ("stop", "stopped"),
                          ("start", "running"), ("restart", "running")):
        await page.click(f"button[data-action={action}]")
        await page.wait_for_selector(f".page.agent[data-state='{state}']")
        await wait_until(lambda s=state: runtime.agent("researcher").state.value == s,
                         what=f"researcher {state} after {action}")
    await page.click("button[data-action=pause]")
    await page.wait_for_selector("#agent-list li[data-agent='researcher'][data-state='paused']")
    await page.screenshot(path=screenshot_path("agent-page"))


async def test_bad_input_shows_a_clear_error_and_the_page_stays_usable(
    page: Page, served: Served
) -> None:
    await log_in(page, served)
    await page.click("#agent-list li[data-agent='critic'] .chat-link")
    await page.wait_for_selector(".chat[data-chat='agent:critic']")
    limit = served.runtime.mailbox.config.max_body_chars
    await page.fill("#message", "x" * (limit + 1))
    await page.click("#send")
    error = page.locator(".chat .error[role=alert]")
    await error.wait_for()
    text = await error.inner_text()
    assert "the body is" in text and f"{limit:,}" in text, text
    assert await page.input_value("#message") == "x" * (limit + 1), "the text was lost"
    await page.screenshot(path=screenshot_path("bad-input"))
    # Still usable: a normal message goes through and is answered.
    await page.fill("#message", "A normal question")
    await page.click("#send")
    await page.locator(".msg.agent:not(.typing)[data-sender='critic']").wait_for()
    assert await error.is_hidden()

    # An unknown agent's page says so instead of rendering empty panels.
    await page.goto(served.url + "#/agent/nobody")
    await page.wait_for_selector(".page.not-found [role=alert]")
    assert "no agent named 'nobody'" in await page.inner_text(".page.not-found")
    assert await page.locator(".panel").count() == 0
    # A task with an empty instruction is refused with the field.
    await page.goto(served.url + "#/agent/critic")
    await page.fill("#task-instruction", "   ")
    await page.click("#start-task")
    await page.wait_for_selector("#panel-tasks .error:not([hidden])")
    assert "instruction" in await page.inner_text("#panel-tasks .error")



async def test_a_hundred_agents_answering_at_once_all_show_and_the_page_stays_usable(
    make_runtime: RuntimeFactory, agent_def: AgentFactory
) -> None:
    """Responsiveness is measured by benchmarks/web.py; this proves the behaviour:
    every reply arrives, attributed, and the page still takes input during the flood."""
    names = {f"agent-{n:03d}": f"Reply from agent {n:03d}, streamed one word at a time."
             for n in range(100)}
    built = team(agent_def, names)
    runtime = await make_runtime(built.agents, built.models)
    await runtime.mailbox.create_channel("all", [*names, "person:ada"])
    server = await serve(runtime)
    try:
        executable = chromium_or_skip()
        async for browser in open_browser(executable):
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            await page.goto(f"{server.url}#token={TOKEN}")
            await page.wait_for_selector("#conn.live")
            await page.goto(f"{server.url}#/channel/all")
            await page.wait_for_selector(".chat[data-chat='channel:all']")
            await page.fill("#message", "Everyone: status?")
            await page.click("#send")
            await page.wait_for_selector(".msg.typing")
            # During the flood the page takes typing and navigation.
            await page.fill("#message", "typed while 100 agents answer")
            assert await page.input_value("#message") == "typed while 100 agents answer"
            # (a locator, not wait_for_function: the page's CSP forbids eval)
            await page.locator(".msg.agent:not(.typing)").nth(99).wait_for()
            # (text_content: off-screen messages skip rendering, so they have no inner text)
            bodies = await page.locator(".msg.agent .body").all_text_contents()
            assert sorted(bodies) == sorted(names.values())
            senders = await page.locator(".msg.agent").evaluate_all(
                "nodes => nodes.map(n => n.dataset.sender)")
            assert sorted(senders) == sorted(names)
            assert await page.locator("#agent-list li").count() == 100
            await page.screenshot(path=screenshot_path("chat-100-agents"))
            await page.click("#agent-list li[data-agent='agent-042'] a.name")
            await page.wait_for_selector(".page.agent[data-agent='agent-042']")
    finally:
        await server.stop()
