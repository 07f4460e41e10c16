"""The ``wakeful`` command line, driven in-process through Typer's runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from wakeful.cli import app

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "team"
    code, out, _ = invoke("init", str(folder))
    assert code == 0, out
    return folder


def test_init_writes_the_example_team(project: Path) -> None:
    assert (project / "wakeful.yaml").is_file()
    names = sorted(p.stem for p in (project / "agents").iterdir())
    assert names == ["coordinator", "monitor", "researcher", "writer"]
    code, _, err = invoke("init", str(project))
    assert code == 1
    assert "already exists" in err


def test_agents_lists_definitions(project: Path) -> None:
    code, out, _ = invoke("agents", "-p", str(project))
    assert code == 0
    for name in ("coordinator", "researcher", "writer", "monitor"):
        assert name in out


def test_bad_agent_file_is_reported_and_others_still_listed(project: Path) -> None:
    (project / "agents" / "broken.yaml").write_text("name: broken\nmax_concurrent_tasks: 0\n")
    code, out, err = invoke("agents", "-p", str(project))
    assert code == 1
    assert "broken.yaml" in err and "max_concurrent_tasks" in err
    assert "greater than or equal to 1" in err
    assert "researcher" in out


def test_missing_project_is_one_clear_line(tmp_path: Path) -> None:
    code, _, err = invoke("status", "-p", str(tmp_path / "nowhere"))
    assert code == 1
    assert err.strip().count("\n") == 0
    assert "does not exist" in err and "wakeful init" in err


def test_start_task_for_unknown_agent_fails_with_known_names(project: Path) -> None:
    code, _, err = invoke("start-task", "nobody", "do it", "-p", str(project))
    assert code == 1
    assert "unknown agent 'nobody'" in err and "researcher" in err
    assert "Traceback" not in err


def test_status_before_and_after_a_run(project: Path) -> None:
    code, out, _ = invoke("status", "-p", str(project))
    assert code == 0 and "Never run" in out
    code, out, err = invoke("run", "-p", str(project), "--until-idle", "--plain")
    assert code == 0, err
    assert "Tasks: 10 done." in out
    code, out, _ = invoke("status", "-p", str(project))
    assert code == 0
    assert "ended cleanly" in out
    assert "10 done" in out


def test_start_task_queues_and_next_run_executes_it(project: Path) -> None:
    code, out, _ = invoke("start-task", "writer", "Write a haiku", "-p", str(project))
    assert code == 0
    task_id = out.split("Queued task ")[1].split()[0]
    code, out, _ = invoke("tasks", "-p", str(project), "--state", "queued")
    assert task_id in out
    code, out, err = invoke("run", "-p", str(project), "--until-idle", "--plain")
    assert code == 0, err
    assert "Tasks: 11 done." in out
    code, out, _ = invoke("task", task_id, "-p", str(project))
    assert code == 0
    assert "Write a haiku" in out and "word_count" in out
    code, out, _ = invoke("tasks", "-p", str(project), "--agent", "writer")
    assert code == 0 and task_id in out


def test_tasks_rejects_unknown_agent_and_state(project: Path) -> None:
    code, _, err = invoke("tasks", "-p", str(project), "--agent", "ghost")
    assert code == 1 and "unknown agent 'ghost'" in err
    code, _, err = invoke("tasks", "-p", str(project), "--state", "sleepy")
    assert code == 2 and "sleepy" in err


def test_task_unknown_id(project: Path) -> None:
    code, _, err = invoke("task", "t_nope", "-p", str(project))
    assert code == 1 and "unknown task 't_nope'" in err


def test_demo_runs_the_example_team_from_a_fresh_store(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    for _ in range(2):  # rerunnable: each demo starts from a fresh store
        code, out, err = invoke("demo", str(folder))
        assert code == 0, err
        assert "Tasks: 10 done." in out


def test_start_task_with_bytes_that_are_not_utf8_is_one_clear_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    project = tmp_path / "team"
    assert CliRunner().invoke(app, ["init", str(project)]).exit_code == 0
    # A shell passes the raw bytes; Python turns \xff into a lone surrogate.
    done = subprocess.run([sys.executable, "-m", "wakeful", "start-task", "writer",
                           b"\xff draft".decode("utf-8", "surrogateescape"), "-p",
                           str(project)], capture_output=True, text=True,
                          errors="replace", timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("error: the instruction contains a lone surrogate")
