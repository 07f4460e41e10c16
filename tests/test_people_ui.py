"""People in the loop in the browser (Debian's chromium under Playwright): a question
an agent asked with ask_person is answered from the inbox and from the 1-1 chat, and
the task gets the answer; a file write waiting for approval shows its diff and is
approved inline in the chat; axe-core finds no critical or serious violation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from approval_support import Make, call, pending_approval, people_runtime, steps
from polling import until
from wakeful.core.states import TaskState
from wakeful.runtime.runtime import Runtime
from web_support import DESKTOP, TOKEN, axe_serious, chromium_or_skip, open_browser, serve

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = pytest.mark.browser
__all__ = ["people_runtime"]


@pytest.fixture
async def served(people_runtime: Make, tmp_path: Path) -> AsyncIterator[tuple[Runtime, str]]:
    (tmp_path / "workspace" / "docs").mkdir(parents=True)
    (tmp_path / "workspace" / "docs" / "plan.md").write_text("keep\nold line\n")
    asker = {"name": "asker", "model": "scripted:asker", "tools": ["ask_person"],
             "answer_mail": False}
    writer = {"name": "writer", "model": "scripted:writer", "tools": ["write_file"],
              "answer_mail": False, "approval": [{"tools": ["write_file"]}]}
    models = {
        "scripted:asker": steps(call("ask_person", question="Which colour for the logo?"),
                                {"say": "{last_tool_result}"}),
        "scripted:writer": steps(call("write_file", path="docs/plan.md",
                                      content="keep\nnew line\n"), {"say": "written"})}
    runtime = await people_runtime([asker, writer], models)
    server = await serve(runtime)
    try:
        yield runtime, server.url
    finally:
        await server.stop()


@pytest.fixture
async def page(served: tuple[Runtime, str]) -> AsyncIterator[Page]:
    errors: list[str] = []
    async for browser in open_browser(chromium_or_skip()):
        context = await browser.new_context(viewport=DESKTOP)
        page = await context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(served[1] + f"#token={TOKEN}")
        await page.wait_for_selector("#conn.live")
        yield page
    assert not errors, f"JavaScript errors in the page: {errors}"


async def test_ask_person_answered_from_the_inbox(page: Page,
                                                  served: tuple[Runtime, str]) -> None:
    runtime, url = served
    task = await runtime.create_task("asker", "pick a colour", created_by="person:ada")
    await page.goto(url + "#/inbox/")
    card = page.locator(".card.question")
    await card.wait_for()
    assert "Which colour for the logo?" in await card.inner_text()
    # the count reloads on its own pace (slower while the stream is busy): wait for it
    from playwright.async_api import expect

    await expect(page.locator("#inbox-count")).to_have_text("1")
    assert await axe_serious(page) == []
    await card.locator("textarea.answer").fill("Teal, please")
    await card.locator("button.send-answer").click()
    done = await runtime.wait_task(task.id, 15)
    assert json.loads(done.result or "{}") == {"answer": "Teal, please",
                                               "from": "person:ada"}
    await page.locator(".people-panel .empty").wait_for()


async def test_ask_person_answered_inline_in_the_chat(page: Page,
                                                      served: tuple[Runtime, str]) -> None:
    runtime, url = served
    task = await runtime.create_task("asker", "pick a colour", created_by="person:operator")
    await until(lambda: runtime.waits.waiting(task.id) is not None, 10, "the question")
    await page.goto(url + "#/chat/asker")
    card = page.locator(".chat .people-panel .card.question")
    await card.wait_for()
    await card.locator("textarea.answer").fill("Orange")
    await card.locator("button.send-answer").click()
    done = await runtime.wait_task(task.id, 15)
    assert json.loads(done.result or "{}")["answer"] == "Orange"
    await page.locator(".msg", has_text="Which colour for the logo?").wait_for()


async def test_a_file_write_is_approved_inline_with_its_diff(
        page: Page, served: tuple[Runtime, str], tmp_path: Path) -> None:
    runtime, url = served
    task = await runtime.create_task("writer", "update the plan")
    await pending_approval(runtime, task.id)
    await page.goto(url + "#/chat/writer")
    card = page.locator(".chat .people-panel .card.approval")
    await card.wait_for()
    assert await card.locator(".diff .del").inner_text() == "-old line\n"
    assert await card.locator(".diff .add").inner_text() == "+new line\n"
    assert await axe_serious(page) == []
    await card.locator("button.deny").click()  # no reason yet: refused in the page
    assert "say why" in await card.locator(".error").inner_text()
    await card.locator("button.approve").click()
    assert (await runtime.wait_task(task.id, 15)).state is TaskState.DONE
    assert (tmp_path / "workspace" / "docs" / "plan.md").read_text() == "keep\nnew line\n"
    await card.wait_for(state="detached")
