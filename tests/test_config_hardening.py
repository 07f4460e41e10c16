"""Hostile or broken configuration files give one clear line, at once.

A 'billion laughs' wakeful.yaml (nine levels of anchors, 10**9 strings once expanded)
hung the CLI for minutes, and a file that is not UTF-8 gave a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from wakeful.cli import app
from wakeful.errors import ConfigError
from wakeful.models.scripted import ScriptedModel
from wakeful.project.loader import load_agent_file, load_project, load_project_config

LAUGHS = "\n".join(
    ['name: team', 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    + ["poll_interval_s: *a9"]) + "\n"


def _project(tmp_path: Path, text: str | bytes) -> Path:
    (tmp_path / "agents").mkdir(exist_ok=True)
    path = tmp_path / "wakeful.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return tmp_path


def test_billion_laughs_is_refused(tmp_path: Path) -> None:
    root = _project(tmp_path, LAUGHS)
    with pytest.raises(ConfigError, match="expands to more than 100,000 values"):
        load_project_config(root)
    result = CliRunner().invoke(app, ["agents", "-p", str(root)])
    assert result.exit_code == 1
    assert "billion laughs" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    agent = tmp_path / "agents" / "bad.yaml"
    agent.write_text(LAUGHS.replace("name: team", "name: bad").replace(
        "poll_interval_s", "tools"))
    with pytest.raises(ConfigError, match=r"bad\.yaml: the YAML expands"):
        load_agent_file(agent)


def test_reasonable_aliases_still_work(tmp_path: Path) -> None:
    root = _project(tmp_path, "name: team\n")
    (root / "agents" / "a.yaml").write_text(
        "name: a\nrole: &r a writer\ninstructions: *r\nrestart: &rs {policy: never}\n")
    project = load_project(root)
    assert not project.errors
    assert project.agents["a"].instructions == "a writer"


@pytest.mark.parametrize("text, expected", [
    (b"name: caf\xe9\n", "is not UTF-8 text (byte 9, line 1)"),
    ("name: team\nx: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("name: team\nx: &x [*x]\n", "YAML"),
    ("name: team\n  bad: indent\n", "invalid YAML at line 2"),
    ('name: "team\\ud800"\n', "name: contains a lone surrogate"),
    ("name: team\nx: \x1f\n", "invalid YAML"),
], ids=["latin-1", "deep", "recursive", "indent", "surrogate", "control"])
def test_broken_project_files_are_one_line_errors(tmp_path: Path, text: str | bytes,
                                                  expected: str) -> None:
    root = _project(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_project_config(root)
    assert expected in str(caught.value) and "wakeful.yaml" in str(caught.value)
    result = CliRunner().invoke(app, ["agents", "-p", str(root)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert expected in result.stderr


def test_a_non_utf8_agent_file_is_skipped_with_the_reason(tmp_path: Path) -> None:
    root = _project(tmp_path, "name: team\n")
    (root / "agents" / "ok.yaml").write_text("name: ok\n")
    (root / "agents" / "latin.yaml").write_bytes(b"name: latin\nrole: caf\xe9\n")
    project = load_project(root)
    assert list(project.agents) == ["ok"]
    assert "latin.yaml: agent file is not UTF-8 text" in str(project.errors[0])


def test_script_files_are_read_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(LAUGHS.replace("poll_interval_s", "scripts"))
    with pytest.raises(ConfigError, match=r"s\.yaml: the YAML expands"):
        ScriptedModel.from_file(path, "s")
    path.write_bytes(b"scripts: [\xff]\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        ScriptedModel.from_file(path, "s")
