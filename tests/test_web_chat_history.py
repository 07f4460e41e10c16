"""A 1-1 chat's history in the browser, at desktop and phone sizes: the newest page
first, "load older" pages back (the API's `before` and `older`) until nothing is left,
in the store's order; scrolled up, a new reply is marked, not scrolled to; an agent
asleep says so and its answer waits, shown as held, until it wakes; a search pages on
to more results. axe-core finds no critical or serious violation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from web_support import (
    DESKTOP,
    PHONE,
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

    from conftest import AgentFactory, RuntimeFactory

pytestmark = pytest.mark.browser
SIZES = {"desktop": DESKTOP, "phone": PHONE}


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


@pytest.fixture(params=sorted(SIZES))
async def page(request: Any, served: Served) -> AsyncIterator[tuple[Page, str]]:
    errors: list[str] = []
    async for browser in open_browser(chromium_or_skip()):
        context = await browser.new_context(viewport=SIZES[request.param])
        page = await context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(served.url + f"#token={TOKEN}")
        await page.wait_for_selector("#conn.live", state="attached")  # phone: in the drawer
        yield page, request.param
    assert not errors, f"JavaScript errors in the page: {errors}"


async def test_a_long_1_1_chat_loads_older_history_and_marks_new_replies(
        page: tuple[Page, str], served: Served) -> None:
    from playwright.async_api import TimeoutError as PlaywrightTimeout
    from playwright.async_api import expect

    browser_page, size = page
    mailbox = served.runtime.mailbox
    for n in range(230):  # the agent wrote these: nobody answers them
        await mailbox.send("writer", "person:operator", "", f"Note number {n:03d}")
    await browser_page.goto(served.url + "#/chat/writer")
    messages = browser_page.locator(".msg[data-mail]")
    await expect(messages).to_have_count(100)  # the newest page
    assert await messages.first.locator(".body").text_content() == "Note number 130"
    older = browser_page.locator("button.older")
    for _ in range(8):  # a page per click (reaching the top may load the next one too)
        shown = await messages.count()
        if shown >= 230:
            break
        if await older.is_visible():
            try:
                await older.click(timeout=5000)
            except PlaywrightTimeout:  # it hid as reaching the top loaded the rest
                continue
        await expect(messages).not_to_have_count(shown)
    await expect(messages).to_have_count(230)
    await older.wait_for(state="hidden")  # nothing older is left
    texts = [await m.locator(".body").text_content() for m in await messages.all()]
    assert texts == [f"Note number {n:03d}" for n in range(230)]
    # Scrolled up, the agent's next mail is marked rather than scrolled to.
    await browser_page.evaluate("document.querySelector('.messages').scrollTop = 0")
    await mailbox.send("writer", "person:operator", "", "One more thing")
    jump = browser_page.locator("button.jump")
    await jump.wait_for()
    assert "1 new message" in await jump.inner_text()
    assert await browser_page.locator(".new-marker").count() == 1
    await browser_page.screenshot(path=screenshot_path(f"chat-history-{size}"))
    assert await axe_serious(browser_page) == []
    await jump.click()
    await jump.wait_for(state="hidden")
    assert await messages.last.locator(".body").text_content() == "One more thing"


async def test_an_agent_asleep_says_so_and_answers_once_woken(
        page: tuple[Page, str], served: Served) -> None:
    browser_page, size = page
    runtime = served.runtime
    await runtime.sleep_agent("critic", "resting until the review")
    await browser_page.goto(served.url + "#/chat/critic")
    note = browser_page.locator(".agent-state-note")
    await note.filter(has_text="critic is sleeping: it answers when it wakes").wait_for()
    await browser_page.fill("#message", "Are you awake?")
    await browser_page.click("#send")
    held = browser_page.locator(".msg.typing.held[data-sender='critic']")
    await held.wait_for()
    assert "sleeping, will answer later" in await held.inner_text()
    await browser_page.screenshot(path=screenshot_path(f"chat-sleeping-{size}"))
    assert await axe_serious(browser_page) == []
    await runtime.wake_agent("critic")
    await note.wait_for(state="hidden")
    reply = browser_page.locator(".msg.agent:not(.typing)[data-sender='critic']")
    await reply.wait_for()
    assert "Critic here" in await reply.inner_text()


async def test_search_pages_on_to_more_results(page: tuple[Page, str], served: Served) -> None:
    from playwright.async_api import expect

    browser_page, size = page
    for n in range(105):
        await served.runtime.create_task("researcher", f"Count zebras in field {n}")
    await browser_page.goto(served.url + "#/search/q=zebras&kind=tasks")
    hits = browser_page.locator("#search-results li.hit")
    await expect(hits).to_have_count(100)
    status = browser_page.locator(".search [role=status]")
    await expect(status).to_have_text("100+ found.")
    more = browser_page.locator("button.more-results")
    await browser_page.screenshot(path=screenshot_path(f"search-more-{size}"))
    assert await axe_serious(browser_page) == []
    await more.click()
    await expect(hits).to_have_count(105)
    await expect(status).to_have_text("105 found.")
    await more.wait_for(state="detached")
    ids = [await h.get_attribute("data-id") for h in await hits.all()]
    assert len(set(ids)) == 105  # each once
