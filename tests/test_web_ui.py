"""The web UI as a person uses it, on the example team, in Debian's chromium at a
desktop size (1440x900) and a phone size (390x844): the overview says what happened,
a task opens to its whole conversation and its trace, the phone layout works (the
sidebar is a drawer), and axe-core finds no critical or serious violation on any view.

Screenshots go to artifacts/screenshots/ (git-ignored)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from wakeful.core.states import TaskState
from wakeful.project.loader import load_project
from wakeful.runtime.runtime import Runtime
from wakeful.server import WebServer
from web_support import (
    DESKTOP,
    PHONE,
    TOKEN,
    axe_serious,
    chromium_or_skip,
    open_browser,
    screenshot_path,
    serve,
)

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

    from conftest import WaitUntil

pytestmark = pytest.mark.browser
SIZES = [pytest.param(DESKTOP, id="desktop"), pytest.param(PHONE, id="phone")]


@dataclass
class Example:
    runtime: Runtime
    server: WebServer


@pytest.fixture
async def example(tmp_path: Path) -> AsyncIterator[Example]:
    """The example team after `wakeful demo`'s work is done, served."""
    from wakeful.cli.main import copy_example

    folder = tmp_path / "team"
    copy_example(folder)
    script = folder / "scripts" / "writer.yaml"  # a way to make one task fail, on purpose
    script.write_text(script.read_text().replace("scripts:\n", (
        "scripts:\n  - match: \"always fails\"\n    steps:\n"
        "      - error: \"the provider is down\"\n"), 1))
    runtime = Runtime.from_project(load_project(folder))
    await runtime.start()
    await runtime.wait_idle(60)
    server = await serve(runtime)
    try:
        yield Example(runtime, server)
    finally:
        await server.stop()
        await runtime.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_or_skip()
    async for found in open_browser(executable):
        yield found


async def open_page(browser: Browser, served: WebServer, size: dict[str, int],
                    errors: list[str]) -> Page:
    context = await browser.new_context(viewport=size)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())
    await page.goto(served.url + f"#token={TOKEN}")
    await page.wait_for_selector("#conn.live", state="attached")
    return page


def tag(size: dict[str, int]) -> str:
    return "phone" if size["width"] < 500 else "desktop"


@pytest.mark.parametrize("size", SIZES)
async def test_the_overview_says_what_happened(example: Example, browser: Browser,
                                               size: dict[str, int]) -> None:
    errors: list[str] = []
    page = await open_page(browser, example.server, size, errors)
    summary = page.locator("#overview-summary")
    await summary.filter(has_text="tasks so far").wait_for()
    text = await summary.inner_text()
    tasks = await example.runtime.store.list_tasks()
    assert f"{len(tasks)} tasks so far: {len(tasks)} done, 0 failed" in text, text
    assert "4 agents" in text and "tokens" in text
    # Totals per agent, and an activity feed of task ends with links to their traces.
    for name in ("coordinator", "monitor", "researcher", "writer"):
        assert await page.locator(f"#overview-totals a[href='#/agent/{name}']").count() == 1
    done = page.locator("#overview-activity li[data-type='task.state']")
    assert await done.count() >= len(tasks)
    assert "No task has failed" in await page.inner_text("#overview-failures")
    await page.screenshot(path=screenshot_path(f"overview-{tag(size)}"), full_page=True)
    assert await axe_serious(page) == []
    # An activity row opens the task it is about.
    await done.first.locator("a.task-link").click()
    await page.wait_for_selector(".page.task .turn.assistant")
    assert not errors


async def test_a_failure_shows_on_the_overview_with_its_kind_and_a_link(
        example: Example, browser: Browser, wait_until: WaitUntil) -> None:
    runtime = example.runtime
    errors: list[str] = []
    page = await open_page(browser, example.server, DESKTOP, errors)
    await page.locator("#overview-summary").filter(has_text="0 failed").wait_for()
    record = await runtime.create_task("writer", "This always fails")

    async def failed() -> bool:
        return (await runtime.get_task(record.id)).state is TaskState.FAILED

    await wait_until(failed, within=20, what="the task to fail")
    # The page updates by itself (live), without a reload.
    row = page.locator(f"#overview-failures li[data-task='{record.id}']")
    await row.wait_for()
    text = await row.inner_text()
    stored = await runtime.get_task(record.id)
    assert stored.error_kind and stored.error_kind in text
    assert "the provider is down" in text
    assert "1 failed" in await page.inner_text("#overview-summary")
    await page.screenshot(path=screenshot_path("overview-failure-desktop"), full_page=True)
    await row.locator(f"a[href='#/task/{record.id}']").click()
    await page.wait_for_selector(f".page.task[data-task='{record.id}'][data-state='failed']")
    assert "the provider is down" in await page.inner_text(".task-facts")
    assert not errors


@pytest.mark.parametrize("size", SIZES)
async def test_a_task_opens_to_its_whole_conversation_and_trace(
        example: Example, browser: Browser, size: dict[str, int]) -> None:
    [plan] = [t for t in await example.runtime.store.list_tasks(agent="coordinator")
              if t.instruction.startswith("Plan")]
    [child] = await example.runtime.store.child_tasks([plan.id])
    errors: list[str] = []
    page = await open_page(browser, example.server, size, errors)
    # From the agent page: a task row opens the task.
    await page.goto(example.server.url + "#/agent/coordinator")
    await page.locator(f"#panel-tasks tr[data-task='{plan.id}'] a.task-link").click()
    await page.wait_for_selector(f".page.task[data-task='{plan.id}'] .turn.assistant")
    turns = page.locator("#task-conversation .turn.assistant")
    assert await turns.count() == 5
    # What the model said between tool calls is there, step by step.
    said = await page.inner_text("#task-conversation")
    for words in ("Let me see who is on the team.", "Writing down the plan.",
                  "Asking the writer for a tagline; I will wait for it.",
                  "Checking the workers' progress.", "Plan ready"):
        assert words in said
    cards = page.locator("#task-conversation .tool-card")
    assert [await c.get_attribute("data-tool") for c in await cards.all()] == [
        "list_agents", "note", "delegate_task", "list_tasks"]
    # A card opens to its arguments and result, and says how long the call took.
    note = page.locator(".tool-card[data-tool='note']")
    await note.locator("summary").click()
    body = await note.inner_text()
    assert "Plan: research readers" in body and "noted (1 notes in this task)" in body
    assert " ms" in await note.locator("summary").inner_text()
    # The events of the task, including the wait on the delegated task.
    events = await page.inner_text("#task-events")
    assert "mail.delegated" in events and "running → waiting" in events
    await page.screenshot(path=screenshot_path(f"task-{tag(size)}"), full_page=True)
    assert await axe_serious(page) == []
    # Delegations are linked both ways, and the causal tree holds both tasks.
    assert await page.locator(f"#task-tree a[href='#/task/{child.id}']").count() == 1
    await page.locator(f"#task-links a[href='#/task/{child.id}']").click()
    await page.wait_for_selector(f".page.task[data-task='{child.id}'] .turn.assistant")
    assert "Delegated by" in await page.inner_text("#task-links")
    await page.locator(f"#task-links a[href='#/task/{plan.id}']").click()
    await page.wait_for_selector(f".page.task[data-task='{plan.id}']")
    assert not errors


async def test_the_phone_layout_has_a_drawer_and_a_usable_chat(
        example: Example, browser: Browser) -> None:
    errors: list[str] = []
    page = await open_page(browser, example.server, PHONE, errors)
    sidebar = page.locator("#sidebar")
    assert not await sidebar.is_visible(), "the sidebar must not take the phone's width"
    await page.click("#menu")
    await page.wait_for_selector("#sidebar a[href='#/channel/team']", state="visible")
    assert await page.get_attribute("#menu", "aria-expanded") == "true"
    await page.screenshot(path=screenshot_path("drawer-phone"))
    await page.click("#sidebar a[href='#/channel/team']")
    await page.wait_for_selector(".chat[data-chat='channel:team']")
    await sidebar.wait_for(state="hidden")  # choosing a place closes the drawer
    box = await page.locator("#message").bounding_box()
    assert box is not None and box["width"] > 250, box
    await page.fill("#message", "Hello team, one line each please.")
    await page.click("#send")
    replies = page.locator(".msg.agent:not(.typing)")
    await replies.nth(3).wait_for()
    bubble = await replies.first.bounding_box()
    assert bubble is not None and bubble["width"] > 200, bubble
    # Nothing is wider than the screen.
    overflow = await page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= PHONE["width"], overflow
    await page.screenshot(path=screenshot_path("channel-phone"))
    assert await axe_serious(page) == []
    # The agent page fits too.
    await page.goto(example.server.url + "#/agent/writer")
    await page.wait_for_selector("#panel-tasks tr[data-task]")
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await page.screenshot(path=screenshot_path("agent-phone"))
    assert await axe_serious(page) == []
    assert not errors


async def test_the_example_writer_answers_in_its_own_words(example: Example,
                                                           browser: Browser) -> None:
    errors: list[str] = []
    page = await open_page(browser, example.server, DESKTOP, errors)
    await page.goto(example.server.url + "#/chat/writer")
    await page.wait_for_selector(".chat[data-chat='agent:writer']")
    await page.fill("#message", "Could you draft a tagline?")
    await page.click("#send")
    reply = page.locator(".msg.agent:not(.typing)[data-sender='writer']")
    await reply.wait_for()
    text = await reply.locator(".body").inner_text()
    assert "I write the team's copy" in text
    assert "Answer them" not in text and "wrote to you directly" not in text
    # The reply links to the task that wrote it.
    await reply.locator("a.reply-task").click()
    await page.wait_for_selector(".page.task .turn.assistant")
    assert "Could you draft a tagline?" in await page.inner_text(".page.task")
    assert not errors


@pytest.mark.parametrize("route", ["#/nowhere/at-all", "#/task/t_does_not_exist",
                                   "#/channel/nope"])
async def test_unknown_routes_say_so(example: Example, browser: Browser, route: str) -> None:
    errors: list[str] = []
    page = await open_page(browser, example.server, DESKTOP, errors)
    await page.goto(example.server.url + route)
    alert = page.locator("#main [role=alert]")
    await alert.wait_for()
    assert await alert.inner_text()
    assert await page.locator("#main a[href='#/']").is_visible()
    assert not errors


async def test_dark_mode_follows_the_system_and_stays_readable(example: Example,
                                                               browser: Browser) -> None:
    errors: list[str] = []
    context = await browser.new_context(viewport=DESKTOP, color_scheme="dark")
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(example.server.url + f"#token={TOKEN}")
    await page.locator("#overview-summary").filter(has_text="tasks so far").wait_for()
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(18, 21, 28)", background
    assert await axe_serious(page) == []
    await page.screenshot(path=screenshot_path("overview-dark"))
    # The agent page's timeline: task.* rows are not greyed out like task ids are.
    await page.goto(example.server.url + "#/agent/writer")
    row = page.locator("#timeline li[data-type='task.created']").first
    await row.wait_for()
    colour = await row.locator(".type").evaluate("n => getComputedStyle(n).color")
    muted = await row.locator(".ev-task").evaluate("n => getComputedStyle(n).color")
    assert colour != muted
    assert await axe_serious(page) == []
    await context.close()
    assert not errors
