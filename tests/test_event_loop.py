"""The commands' event loop: uvloop by default (a dependency where it builds),
asyncio's own on request, and a clear line for a bad choice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wakeful.cli import app
from wakeful.core.loop import LOOP_ENV, loop_name, run
from wakeful.errors import ConfigError


async def running_loop() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_commands_run_on_uvloop_unless_asked_for_asyncio(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.delenv(LOOP_ENV, raising=False)
    assert loop_name() == "uvloop"
    assert run(running_loop()) == "uvloop"
    monkeypatch.setenv(LOOP_ENV, "asyncio")
    assert loop_name() == "asyncio"
    assert run(running_loop()) == "asyncio"
    assert run(running_loop(), "uvloop") == "uvloop"  # an explicit choice wins


def test_a_bad_choice_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    monkeypatch.setenv(LOOP_ENV, "tokio")
    with pytest.raises(ConfigError, match="WAKEFUL_EVENT_LOOP='tokio': expected one of"):
        run(running_loop())
    runner = CliRunner()
    assert runner.invoke(app, ["init", str(tmp_path / "team")]).exit_code == 0
    result = runner.invoke(app, ["run", "-p", str(tmp_path / "team"), "--until-idle",
                                 "--plain"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: WAKEFUL_EVENT_LOOP='tokio': expected one of auto, uvloop, asyncio"]


def test_the_example_team_runs_on_uvloop(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    monkeypatch.delenv(LOOP_ENV, raising=False)
    runner = CliRunner()
    assert runner.invoke(app, ["init", str(tmp_path / "team")]).exit_code == 0
    result = runner.invoke(app, ["run", "-p", str(tmp_path / "team"), "--until-idle",
                                 "--plain"])
    assert result.exit_code == 0, result.stderr
    assert "Tasks: 10 done." in result.stdout
