"""Chat in the browser: safe markdown (no XSS from an agent or a person), a reply's
tool calls folded under it, a paused agent shown as paused (not "typing" forever),
Stop on an answer in progress, confirmations and feedback on the agent page, and the
search page; axe-core finds no critical or serious violation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from wakeful.core.states import AgentState, TaskState
from wakeful.models.scripted import ScriptedModel, ScriptFile
from web_support import (
    DESKTOP,
    PHONE,
    SLOW_JOB,
    TOKEN,
    Served,
    axe_serious,
    chromium_or_skip,
    open_browser,
    screenshot_path,
    serve,
    team,
)

if TYPE_CHECKING:
    from playwright.async_api import Page

    from conftest import AgentFactory, RuntimeFactory, WaitUntil

pytestmark = pytest.mark.browser
SIZES = {"desktop": DESKTOP, "phone": PHONE}

MARKDOWN_REPLY = (
    "Here is **the plan**, with `code` and a list:\n\n"
    "- first <img src=x onerror=\"window.__xss=1\">\n- second\n\n"
    "```python\nprint('<script>window.__xss=2</script>')\n```\n\n"
    "[click](javascript:window.__xss=3) and [docs](https://example.org/docs)")
TOOL_SCRIPT = {"latency_ms": 10, "token_delay_ms": 2, "scripts": [{"steps": [
    {"say": "Let me note that first.", "tool_calls": [
        {"tool": "note", "args": {"text": "remember the plan"}}]},
    {"say": MARKDOWN_REPLY}]}]}


@pytest.fixture
async def served(make_runtime: RuntimeFactory, agent_def: AgentFactory
                 ) -> AsyncIterator[Served]:
    built = team(agent_def, token_delay_ms=5, latency_ms=20)
    built.agents.append(agent_def("planner", model="scripted:planner", tools=["note"]))
    built.models["scripted:planner"] = ScriptedModel(ScriptFile.model_validate(TOOL_SCRIPT),
                                                     name="planner")
    runtime = await make_runtime(built.agents, built.models)
    server = await serve(runtime)
    try:
        yield Served(runtime, server)
    finally:
        await server.stop()


@pytest.fixture(params=["desktop", "phone"])
async def page(request: Any, served: Served) -> AsyncIterator[Page]:
    """The page at 1440x900 and at 390x844 (where the sidebar is a drawer)."""
    errors: list[str] = []
    async for browser in open_browser(chromium_or_skip()):
        context = await browser.new_context(viewport=SIZES[request.param])
        page = await context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(served.url + f"#token={TOKEN}")
        await page.wait_for_selector("#conn.live", state="attached")  # phone: in the drawer
        page.size = request.param  # type: ignore[attr-defined]
        yield page
    assert not errors, f"JavaScript errors in the page: {errors}"


def shot(page: Page, name: str) -> Path:
    return screenshot_path(f"{name}-{page.size}")  # type: ignore[attr-defined]


async def test_markdown_is_rendered_safely_and_tool_calls_fold_under_the_reply(
        page: Page, served: Served) -> None:
    await page.goto(served.url + "#/chat/planner")
    await page.wait_for_selector(".chat[data-chat='agent:planner']")
    await page.fill("#message", "A <b>bold</b> <img src=y onerror=\"window.__xss=4\"> **plan**?")
    await page.click("#send")
    reply = page.locator(".msg.agent:not(.typing)[data-sender='planner']")
    await reply.wait_for()
    body = reply.locator(".body")
    assert await body.locator("strong").inner_text() == "the plan"
    assert await body.locator("li").count() == 2
    assert "print('<script>" in await body.locator("pre code").inner_text()
    # Markup arrives as text, never as elements; a javascript: link is not a link.
    assert await page.locator(".messages img, .messages script, .messages b").count() == 0
    assert "<img src=x" in await body.inner_text()
    assert await body.locator("a[href^='javascript']").count() == 0
    assert await body.locator("a[href='https://example.org/docs']").count() == 1
    assert await page.evaluate("window.__xss") is None
    # The person's own message is rendered the same safe way.
    mine = page.locator(".msg.mine .body")
    assert await mine.locator("strong").inner_text() == "plan"
    assert "<b>bold</b>" in await mine.inner_text()
    # The reply's steps and tool calls, folded under it.
    await reply.locator("details.work summary").click()
    card = reply.locator(".tool-card[data-tool='note']")
    await card.wait_for()
    assert "Let me note that first." in await reply.locator("details.work").inner_text()
    await page.screenshot(path=shot(page, "chat-markdown"))
    assert await axe_serious(page) == []


async def test_a_paused_agent_is_shown_paused_and_an_answer_can_be_stopped(
        page: Page, served: Served, wait_until: WaitUntil) -> None:
    runtime = served.runtime
    await page.goto(served.url + "#/chat/critic")
    await page.wait_for_selector(".chat[data-chat='agent:critic']")
    # An answer that takes a minute: Stop cancels its task, and the agent says so.
    await page.fill("#message", f"Please do a {SLOW_JOB}")
    await page.click("#send")
    bubble = page.locator(".msg.typing[data-sender='critic']")
    await bubble.wait_for()
    await bubble.locator("button.stop-answer").click()
    stopped = page.locator(".msg.agent:not(.typing)[data-sender='critic']")
    await stopped.wait_for()
    assert "stopped before answering" in await stopped.inner_text()
    [task] = await runtime.store.list_tasks(agent="critic")
    assert task.state is TaskState.CANCELLED
    # Paused: the page says so, and a new message's bubble is held, not "typing".
    await runtime.pause_agent("critic")
    note = page.locator(".agent-state-note")
    await note.filter(has_text="critic is paused").wait_for()
    await page.fill("#message", "Are you there?")
    await page.click("#send")
    held = page.locator(".msg.typing.held[data-sender='critic']")
    await held.wait_for()
    assert "paused" in await held.inner_text() and "typing" not in await held.inner_text()
    await page.screenshot(path=shot(page, "chat-paused"))
    assert await axe_serious(page) == []
    await runtime.resume_agent("critic")
    await note.wait_for(state="hidden")
    await page.locator(".msg.agent:not(.typing)[data-sender='critic']").nth(1).wait_for()
    assert runtime.agent("critic").state is AgentState.RUNNING


async def test_destructive_controls_ask_first_and_every_control_says_what_it_did(
        page: Page, served: Served) -> None:
    runtime = served.runtime
    await page.goto(served.url + "#/agent/writer")
    await page.wait_for_selector(".page.agent[data-agent='writer'][data-state='running']")
    answers: list[str] = []

    async def dismiss(dialog: object) -> None:
        answers.append(dialog.message)  # type: ignore[attr-defined]
        await dialog.dismiss()  # type: ignore[attr-defined]

    page.once("dialog", dismiss)
    await page.click("button[data-action='stop']")
    assert runtime.agent("writer").state is AgentState.RUNNING  # dismissed: nothing done
    assert answers and "Stop writer?" in answers[0]
    page.once("dialog", lambda dialog: dialog.accept())
    await page.click("button[data-action='restart']")
    toast = page.locator(".toast.info").filter(has_text="writer restarted")
    await toast.wait_for()
    await page.click("button[data-action='pause']")  # not destructive: no question
    await page.locator(".toast.info").filter(has_text="writer paused").wait_for()
    await page.wait_for_selector(".page.agent[data-state='paused']")
    assert runtime.agent("writer").state is AgentState.PAUSED
    # The definition is on the page.
    definition = await page.inner_text("#panel-definition")
    assert "scripted:writer" in definition and "restart" in definition
    # the sidebar says so too (phone: in the drawer)
    await page.wait_for_selector("#agent-list li[data-agent='writer'][data-state='paused']",
                                 state="attached")
    await page.screenshot(path=shot(page, "agent-controls"))
    assert await axe_serious(page) == []


async def test_search_filters_by_kind_and_agent(page: Page, served: Served) -> None:
    await served.runtime.create_task("writer", "Draft the zebra announcement")
    await served.runtime.create_task("critic", "Review the zebra announcement")
    await served.runtime.wait_idle(10)
    if page.size == "phone":  # type: ignore[attr-defined]
        await page.click("#menu")  # the sidebar is a drawer
    await page.click("#sidebar a[href='#/search/']")
    await page.fill("input[name=q]", "zebra")
    await page.select_option("select[name=kind]", "tasks")
    await page.select_option("select[name=agent]", "critic")
    await page.click(".search-form button[type=submit]")
    hits = page.locator("#search-results li.hit")
    await hits.first.wait_for()
    assert await hits.count() == 1
    assert "Review the zebra announcement" in await hits.first.inner_text()
    assert "kind=tasks" in page.url and "agent=critic" in page.url
    await page.screenshot(path=shot(page, "search"))
    assert await axe_serious(page) == []
    await hits.first.locator("a.task-link").click()
    await page.wait_for_selector(".page.task .turn.assistant")


async def test_a_long_channel_loads_older_posts_marks_new_ones_and_keeps_its_order(
        page: Page, served: Served) -> None:
    mailbox = served.runtime.mailbox
    await mailbox.create_channel("quiet", ["person:bob", "person:operator"])
    for n in range(130):
        await mailbox.post("person:bob", "quiet", f"Message number {n:03d}")
    await page.goto(served.url + "#/channel/quiet")
    messages = page.locator(".msg[data-mail]")
    from playwright.async_api import expect

    # (expect retries: a throttled reload may redraw the list between two reads)
    await expect(messages).to_have_count(100)  # the latest page
    older = page.locator("button.older")
    await older.click()
    await messages.nth(129).wait_for(state="attached")
    await older.wait_for(state="hidden")  # nothing older is left
    texts = [await m.locator(".body").text_content() for m in await messages.all()]
    assert texts == [f"Message number {n:03d}" for n in range(130)]
    # Scrolled up, a new post is marked rather than scrolled to.
    await page.evaluate("document.querySelector('.messages').scrollTop = 0")
    await mailbox.post("person:bob", "quiet", "Are you still there?")
    jump = page.locator("button.jump")
    await jump.wait_for()
    assert "1 new message" in await jump.inner_text()
    assert await page.locator(".new-marker").count() == 1
    await page.screenshot(path=shot(page, "channel-history"))
    assert await axe_serious(page) == []
    await jump.click()
    await jump.wait_for(state="hidden")
    # The same order after a reload as live.
    live = [await m.get_attribute("data-mail") for m in await messages.all()]
    await page.reload()
    await page.locator(".msg[data-mail]").nth(99).wait_for(state="attached")
    await page.locator("button.older").click()
    await messages.nth(130).wait_for(state="attached")
    assert [await m.get_attribute("data-mail") for m in await messages.all()] == live
    # Export: the conversation as shown, in order, as Markdown.
    async with page.expect_download() as download:
        await page.click("button.export")
    saved = await (await download.value).path()
    text = await asyncio.to_thread(Path(saved).read_text, encoding="utf-8")
    assert text.startswith("# #quiet")
    assert text.index("Message number 000") < text.index("Message number 129") < text.index(
        "Are you still there?")


async def test_a_token_link_pasted_into_the_login_tab_logs_in(page: Page,
                                                              served: Served) -> None:
    if page.size == "phone":  # type: ignore[attr-defined]
        await page.click("#menu")  # the sidebar is a drawer
    await page.click("#logout")
    await page.wait_for_selector("#login-form", state="visible")
    assert await axe_serious(page) == []
    await page.evaluate(f"location.hash = '#token={TOKEN}'")
    await page.wait_for_selector("#app", state="visible")
    await page.wait_for_selector("#overview-summary:not(:empty)")
    assert "token" not in page.url  # taken out of the address at once
