"""The web UI for intervention and people, in Debian's chromium: a person logged in
with their own link sees who they are, sees on an agent's page who paused it and why,
and undoes it with one button; an admin makes an agent with the form."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from conftest import AgentFactory, RuntimeFactory
from polling import until
from schedule_support import steps
from wakeful.core.people import Person, hash_token
from wakeful.core.states import AgentState
from wakeful.runtime.runtime import Runtime
from wakeful.store.people import people_store
from web_support import DESKTOP, TOKEN, axe_serious, chromium_or_skip, open_browser, serve

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Route

    from wakeful.server import WebServer

pytestmark = pytest.mark.browser
ADA = "ada-own-token-0123456789"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async for found in open_browser(chromium_or_skip()):
        yield found


@pytest.fixture
async def served(make_runtime: RuntimeFactory, agent_def: AgentFactory
                 ) -> AsyncIterator[tuple[Runtime, WebServer]]:
    rt = await make_runtime([agent_def("looper", model="m"), agent_def("coordinator",
                                                                        model="m")],
                            {"m": steps({"say": "ok"})})
    await people_store(rt.store).add(Person("ada", "operator"), hash_token(ADA))
    server = await serve(rt)
    try:
        yield rt, server
    finally:
        await server.stop()


async def open_page(browser: Browser, server: WebServer, token: str, errors: list[str],
                    where: str = "") -> Page:
    page = await (await browser.new_context(viewport=DESKTOP)).new_page()
    page.set_default_timeout(15_000)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())
    await page.goto(server.url + f"#token={token}")
    await page.wait_for_selector("#conn.live", state="attached")
    if where:
        await page.evaluate(f"location.hash = {where!r}")
    return page


async def test_a_person_sees_who_paused_an_agent_and_undoes_it(
        served: tuple[Runtime, WebServer], browser: Browser) -> None:
    rt, server = served
    await rt.control("pause", "looper", by="monitor/t_1",
                     reason="looping in 2 checks in a row: note(again) 5 times")
    errors: list[str] = []
    page = await open_page(browser, server, ADA, errors, "#/agent/looper")
    me = page.locator("#me")
    await me.filter(has_text="ada (operator)").wait_for()
    row = page.locator("#interventions li[data-action='pause']")
    await row.wait_for()
    text = await row.inner_text()
    assert "by monitor/t_1" in text and "looping in 2 checks in a row" in text
    assert await axe_serious(page) == []
    await row.locator("button.undo").click()
    await page.locator("#interventions li[data-action='resume']").wait_for()
    await row.locator(".undone").filter(has_text="undone by person:ada").wait_for()
    assert rt.agent("looper").state is AgentState.RUNNING
    await rt.store.flush()
    [resume] = await rt.store.query_events(types=["control.resume"])
    assert resume.data["by"] == "person:ada" and resume.data["undoes"]
    assert not errors


async def test_an_admin_makes_an_agent_with_the_form(
        served: tuple[Runtime, WebServer], browser: Browser) -> None:
    rt, server = served
    errors: list[str] = []
    page = await open_page(browser, server, TOKEN, errors)
    await page.click("#new-agent")
    form = page.locator("#agent-form")
    await form.locator("input[name=name]").fill("helper")
    await form.locator("input[name=role]").fill("a helper")
    await form.locator("input[name=model]").fill("m")
    await form.locator("input[name=tools]").fill("note, word_count")
    assert await axe_serious(page) == []
    await form.locator("button[type=submit]").click()
    await page.wait_for_selector(".page.agent[data-agent='helper']")
    await until(lambda: "helper" in rt.agents, 10, "the agent")
    assert rt.agent("helper").definition.tools == ["note", "word_count"]
    # A bad name is refused with the field named, on the form.
    await page.click("#new-agent")
    await page.locator("#agent-form input[name=name]").fill("helper")
    await page.locator("#agent-form input[name=model]").fill("m")
    await page.locator("#agent-form button[type=submit]").click()
    await page.locator("#agent-form .error").filter(has_text="already exists").wait_for()
    assert not errors


async def test_a_form_opened_while_the_page_loads_keeps_what_was_typed(
        served: tuple[Runtime, WebServer], browser: Browser) -> None:
    """A person who clicks "New agent" before the agent list has loaded keeps the form
    they typed into (the first load showed its page again over it, so a slow server
    made the form lose its fields: failed once in CI)."""
    _, server = served
    page = await (await browser.new_context(viewport=DESKTOP)).new_page()
    page.set_default_timeout(15_000)
    held = asyncio.Event()
    release = asyncio.Event()

    async def hold(route: Route) -> None:
        held.set()
        await release.wait()
        await route.continue_()

    await page.route("**/api/agents?limit=1000*", hold)
    await page.goto(server.url + f"#token={TOKEN}")
    await held.wait()
    await page.wait_for_selector("#new-agent")
    await page.click("#new-agent")
    await page.locator("#agent-form input[name=name]").fill("typed-early")
    release.set()
    await page.locator("#agent-list li[data-agent='looper']").wait_for()
    assert await page.locator("#agent-form input[name=name]").input_value() == "typed-early"
