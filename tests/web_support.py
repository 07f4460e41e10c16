"""Shared pieces of the web tests: a small team on scripted models that stream their
answers, a real server on 127.0.0.1 (port 0), and Debian's chromium under Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from wakeful.models.scripted import ScriptedModel, ScriptFile
from wakeful.project.definitions import AgentDefinition
from wakeful.runtime.runtime import Runtime
from wakeful.server import WebServer

TOKEN = "test-token-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
ONE_TO_ONE_REPLY = ("Thanks for writing. I am the writer, and this answer reaches you one "
                    "word at a time, as my model produces it.")
SLOW_JOB = "slow job"


def answering_model(name: str, reply: str, token_delay_ms: float = 20,
                    latency_ms: float = 50) -> ScriptedModel:
    """Answers people with ``reply``, word by word; a 'slow job' takes 60 s a step."""
    script = ScriptFile.model_validate({
        "latency_ms": latency_ms, "token_delay_ms": token_delay_ms,
        "scripts": [
            {"match": SLOW_JOB, "steps": [{"say": "Working on it.", "latency_ms": 60_000}]},
            {"steps": [{"say": reply}]},
        ]})
    return ScriptedModel(script, name=name)


TEAM = {
    "writer": ONE_TO_ONE_REPLY,
    "researcher": "Researcher here: three sources agree, and I noted them.",
    "critic": "Critic here: the plan is sound; watch the deadline.",
}


@dataclass
class Team:
    agents: list[AgentDefinition]
    models: dict[str, Any] = field(default_factory=dict)


def team(agent_def: Any, names: dict[str, str] | None = None, **model_args: Any) -> Team:
    built = Team([])
    for name, reply in (names or TEAM).items():
        built.agents.append(agent_def(name, model=f"scripted:{name}", role=f"the {name}",
                                      max_concurrent_tasks=3))
        built.models[f"scripted:{name}"] = answering_model(name, reply, **model_args)
    return built


@dataclass
class Served:
    runtime: Runtime
    server: WebServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}


def token_interests(served: Served) -> list[tuple[bool, frozenset[str], frozenset[str]]]:
    """What each live stream of the server wants of the streamed tokens: (all, agents,
    tasks) per stream."""
    from wakeful.server.stream import EventStream

    streams = [getattr(s._predicate, "__self__", None)
               for s in served.runtime.events._subscribers]
    return [(e.tokens.all, e.tokens.agents, e.tokens.tasks)
            for e in streams if isinstance(e, EventStream)]


async def serve(runtime: Runtime, stream_interval_s: float = 0.05) -> WebServer:
    server = WebServer(runtime, TOKEN, host="127.0.0.1", port=0,
                       stream_interval_s=stream_interval_s)
    await server.start()
    return server


def chromium_or_skip() -> str:
    """Debian's chromium (``.ci/run`` installs it); a run without it skips these tests
    locally, and fails in CI, where it must be there."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it (apt-get install chromium)")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")


async def open_browser(executable: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable,
                                                   args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}


def axe_script() -> Path:
    """axe-core as the axe-playwright-python package ships it (no CDN, no npm)."""
    import axe_playwright_python

    return Path(axe_playwright_python.__file__).parent / "axe.min.js"


async def axe_serious(page: Any) -> list[str]:
    """Run axe-core on the page; the critical and serious violations, one line each."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        # Evaluated through the devtools protocol: the page's CSP (no inline script, no
        # eval) rightly refuses a <script> tag, and stays on for the UI under test.
        await page.evaluate("() => {\n" + axe_script().read_text() + "\n}")
    found = await page.evaluate("""async () => {
      const r = await axe.run(document, {resultTypes: ["violations"]});
      return r.violations.filter((v) => v.impact === "critical" || v.impact === "serious")
        .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.slice(0, 3)
          .map((n) => n.target.join(" ")).join(" | ")})`);
    }""")
    return list(found)


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"
