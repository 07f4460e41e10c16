"""What people and models write is shown as written, never read as Rich markup.

A mail body ``[/b] hello`` used to make ``wakeful tasks`` and ``wakeful task ID`` fail
for the whole project (MarkupError); a config value ``"[/oops]"`` turned a clear
validation error into a traceback; ``[a-z]+`` in a regex vanished as a tag.
"""

from __future__ import annotations

import re
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
