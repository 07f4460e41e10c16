"""What people and models write is shown as written, never read as Rich markup.

A mail body ``[/b] hello`` used to make ``wakeful tasks`` and ``wakeful task ID`` fail
for the whole project (MarkupError); a config value ``"[/oops]"`` turned a clear
validation error into a traceback; ``[a-z]+`` in a regex vanished as a tag.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wakeful.cli import app

runner = CliRunner()
TRICKY = "[/b] hello [a-z]+ [bold]not bold[/bold] [link=x]y[/link]"


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


def flat(text: str) -> str:
    """Table cells wrap; join the lines back so the text can be looked for."""
    return re.sub(r"[\s│┃|]+", " ", text)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "team"
    assert invoke("init", str(folder))[0] == 0
    return folder


def test_mail_and_tasks_with_markup_are_shown_verbatim(project: Path) -> None:
    p = ["-p", str(project)]
    code, out, err = invoke("mail", "send", "researcher", TRICKY, "-s", "[red]subject", *p)
    assert code == 0, err
    mail_id = re.search(r"m_\w+", out).group(0)  # type: ignore[union-attr]
    code, out, err = invoke("mail", "show", mail_id, *p)
    assert code == 0, err
    assert TRICKY in out and "[red]subject" in out
    code, out, err = invoke("mail", "list", *p)
    assert code == 0, err
    assert "[/b] hel" in flat(out)
    code, out, err = invoke("start-task", "researcher", TRICKY, *p)
    assert code == 0, err
    task_id = re.search(r"t_\w+", out).group(0)  # type: ignore[union-attr]
    code, out, err = invoke("tasks", *p)
    assert code == 0, err
    assert "[/b] hel" in flat(out)
    code, out, err = invoke("task", task_id, *p)
    assert code == 0, err
    assert "[/b] hel" in flat(out)
    code, out, err = invoke("channel", "create", "ops", "-m", "researcher", "-m",
                            "person:operator", "--topic",
                            "[/topic]", *p)
    assert code == 0, err
    code, out, err = invoke("channel", "post", "ops", TRICKY, *p)
    assert code == 0, err
    code, out, err = invoke("channel", "history", "ops", *p)
    assert code == 0, err
    assert TRICKY in out
    code, out, err = invoke("channel", "list", *p)
    assert code == 0, err
    assert "[/topic]" in flat(out)


def test_a_config_value_with_markup_gives_the_clear_error(project: Path) -> None:
    agent_file = next((project / "agents").glob("*.yaml"))
    text = agent_file.read_text()
    agent_file.write_text(re.sub(r"max_concurrent_tasks: *\d+", 'max_concurrent_tasks: "[/oops]"',
                                 text) if "max_concurrent_tasks" in text
                          else text + 'max_concurrent_tasks: "[/oops]"\n')
    code, _, err = invoke("agents", "-p", str(project))
    assert code == 1
    assert "[/oops]" in err and "max_concurrent_tasks" in err
    (project / "wakeful.yaml").write_text("name: team\ndefault_model: '[/oops]'\n"
                                          "poll_interval_s: '[/bad]'\n")
    code, _, err = invoke("agents", "-p", str(project))
    assert code == 1
    assert "[/bad]" in err and "poll_interval_s" in err


MARK = "[/b] hel"  # what survives clipping in a table cell


async def _plant(store_path: Path, task_id: str) -> None:
    """What models and tools write, straight into the real store: an approval whose
    call has markup in its arguments, and a lock on a resource named with markup."""
    import os

    from wakeful.core.approvals import Approval
    from wakeful.core.resources import Mode, Owner, Resource
    from wakeful.store import open_store
    from wakeful.store.approvals import approval_store

    store = open_store(store_path)
    await store.open()
    try:
        await approval_store(store).request(Approval(
            id="ap_markup", key="k", task_id=task_id, agent="writer", tool="write_file",
            arguments='{"path": "[/b] hello"}', summary=f"write_file({TRICKY})"))
        await store.locks().acquire(Resource("file", TRICKY), Mode.WRITE,
                                    Owner(task_id, "writer"), process="test",
                                    pid=os.getpid(), lease_s=3600, waiter_id=None)
    finally:
        await store.close()


@pytest.fixture
def wide() -> Iterator[None]:
    """A console wide enough that table cells are not wrapped mid-word."""
    from wakeful.cli.common import out

    out.width = 400
    try:
        yield
    finally:
        out.width = None  # type: ignore[assignment]  # back to the terminal's width


def test_every_view_of_user_text_shows_it_verbatim(project: Path, wide: None) -> None:
    """Instructions, results, roles, schedules, approvals, locks, mail and events with
    markup in them: every command that prints them exits 0 and shows the text."""
    import asyncio

    p = ["-p", str(project)]
    (project / "agents" / "marker.yaml").write_text(
        'name: marker\nrole: "[/b] hello role [a-z]+"\nmodel: scripted\n'
        'schedule:\n  - every: 1h\n    instruction: "[/b] hello schedule [x]"\n')
    code, out, err = invoke("start-task", "writer", TRICKY, *p)
    assert code == 0, err
    task_id = re.search(r"t_\w+", out).group(0)  # type: ignore[union-attr]
    code, out, err = invoke("mail", "send", "researcher", TRICKY, "-s", "[red]subject", *p)
    assert code == 0, err
    code, out, err = invoke("run", "--until-idle", "--plain", *p)
    assert code == 0, err
    asyncio.run(_plant(project / "wakeful.db", task_id))
    shown: dict[str, list[str]] = {
        "agents": ["[/b] hello role"],
        "tasks": [MARK],
        "task": [TRICKY],
        "inspect": ["[/b] hello [a-z]+"],
        "trace": ["[/b] hello"],
        "status": [],
        "why": [],
        "timers": ["[/b] hello schedule [x]"],
        "approvals": ["[/b] hello [a-z]+"],
        "locks": ["[/b] hello [a-z]+"],
        "mail list": ["[red]subject"],
        "people list": [],
    }
    args = {"task": [task_id], "inspect": [task_id], "why": ["writer"],
            "trace": ["--task", task_id, "--last", "200"]}
    for command, expected in shown.items():
        code, out, err = invoke(*command.split(), *args.get(command, []), *p)
        assert code == 0, f"{command}: {err}"
        for text in expected:
            assert text in out, f"{command} does not show {text!r}:\n{out}"
    code, _, err = invoke("people", "add", "[/b]", *p)
    assert code == 1 and "[/b]" in err and "Traceback" not in err
