"""Loading project folders: wakeful.yaml plus one YAML or Markdown file per agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from wakeful.core.timespecs import parse_duration
from wakeful.errors import ConfigError
from wakeful.project.definitions import AgentDefinition, ScheduleEntry
from wakeful.project.loader import load_project


def make_project(root: Path, agents: dict[str, str], config: str = "name: demo\n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "wakeful.yaml").write_text(config, encoding="utf-8")
    agents_dir = root / "agents"
    agents_dir.mkdir(exist_ok=True)
    for filename, text in agents.items():
        (agents_dir / filename).write_text(text, encoding="utf-8")
    return root


GOOD_YAML = """\
role: a researcher
model: scripted:research
tools: [note, read_notes]
max_concurrent_tasks: 3
max_steps: 12
restart:
  policy: always
  max_restarts: 5
schedule:
  - every: 30m
    instruction: check the inbox
  - cron: "0 9 * * 1-5"
    instruction: morning report
"""

GOOD_MD = """\
---
role: writer
tools: [note]
---
# How to write

Write clearly and briefly.
"""


def error_for(project_errors: list[ConfigError], path: Path) -> str:
    """The one error message that names ``path``."""
    matching = [str(e) for e in project_errors if str(path) in str(e)]
    assert len(matching) == 1, f"expected one error naming {path}, got {project_errors}"
    return matching[0]


def test_yaml_and_markdown_agents_load(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", {"researcher.yaml": GOOD_YAML, "writer.md": GOOD_MD,
                                         "notes.txt": "ignored", ".hidden.yaml": "x: ["})
    project = load_project(root)

    assert project.errors == []
    assert sorted(project.agents) == ["researcher", "writer"]
    researcher = project.agents["researcher"]
    assert researcher.role == "a researcher"
    assert researcher.model == "scripted:research"
    assert researcher.tools == ["note", "read_notes"]
    assert researcher.max_concurrent_tasks == 3
    assert researcher.max_steps == 12
    assert researcher.restart.policy == "always"
    assert researcher.restart.max_restarts == 5
    assert [s.every for s in researcher.schedule] == ["30m", None]
    assert [s.cron for s in researcher.schedule] == [None, "0 9 * * 1-5"]

    writer = project.agents["writer"]
    assert writer.role == "writer"
    assert writer.tools == ["note"]
    assert writer.instructions == "# How to write\n\nWrite clearly and briefly."
    assert writer.max_concurrent_tasks == 4  # default
    assert writer.system_prompt() == (
        "You are writer, writer.\n\n# How to write\n\nWrite clearly and briefly.")
    assert project.config.name == "demo"
    assert project.store_path() == root / "wakeful.db"


def test_markdown_frontmatter_instructions_win_over_body(tmp_path: Path) -> None:
    text = "---\nname: scribe\ninstructions: from the header\n---\nfrom the body\n"
    project = load_project(make_project(tmp_path / "p", {"anything.md": text}))
    assert project.errors == []
    assert project.agents["scribe"].instructions == "from the header"


@pytest.mark.parametrize(
    ("filename", "text", "field", "expected"),
    [
        ("wrongtype.yaml", "max_concurrent_tasks: lots\n", "'max_concurrent_tasks'",
         "valid integer"),
        ("toosmall.yaml", "max_concurrent_tasks: 0\n", "'max_concurrent_tasks'",
         "greater than or equal to 1"),
        ("typo.yaml", "max_concurent_tasks: 3\n", "'max_concurent_tasks'",
         "unknown field; did you mean 'max_concurrent_tasks'?"),
        ("badcron.yaml", 'schedule:\n  - cron: "61 * * * *"\n    instruction: x\n',
         "'schedule.0.cron'", "not a valid cron line: '61 * * * *'"),
        ("both.yaml",
         'schedule:\n  - every: 5m\n    cron: "0 9 * * *"\n    instruction: x\n',
         "'schedule.0'", "exactly one of 'every', 'cron' or 'at'"),
        ("badevery.yaml", "schedule:\n  - every: soon\n    instruction: x\n",
         "'schedule.0.every'", "expected a duration"),
        ("badpolicy.yaml", "restart:\n  policy: sometimes\n", "'restart.policy'",
         "'never', 'on-failure' or 'always'"),
        ("Bad_Name.yaml", "role: x\n", "'name'", "should match pattern"),
        ("mdtypo.md", "---\ntoools: [note]\n---\nbody\n", "'toools'",
         "unknown field; did you mean 'tools'?"),
    ],
)
def test_bad_agent_file_is_reported_and_others_still_load(
    tmp_path: Path, filename: str, text: str, field: str, expected: str,
) -> None:
    root = make_project(tmp_path / "p", {filename: text, "good.yaml": GOOD_YAML,
                                         "writer.md": GOOD_MD})
    project = load_project(root)

    assert sorted(project.agents) == ["good", "writer"]
    assert len(project.errors) == 1
    assert isinstance(project.errors[0], ConfigError)
    message = error_for(project.errors, root / "agents" / filename)
    assert message.startswith(f"{root / 'agents' / filename}: ")
    assert f"field {field}" in message
    assert expected in message


def test_invalid_yaml_names_file_and_position(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", {"broken.yaml": "role: [unclosed\n",
                                         "good.yaml": GOOD_YAML})
    project = load_project(root)
    assert sorted(project.agents) == ["good"]
    message = error_for(project.errors, root / "agents" / "broken.yaml")
    assert "invalid YAML at line" in message
    assert "column" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("role: x\n", "must start with '---' frontmatter"),
        ("---\nrole: x\n", "not closed"),
        ("---\n- a\n- b\n---\nbody\n", "must be a mapping"),
        ("---\nrole: [x\n---\nbody\n", "invalid YAML"),
    ],
)
def test_bad_markdown_agent_files(tmp_path: Path, text: str, expected: str) -> None:
    root = make_project(tmp_path / "p", {"bad.md": text, "good.yaml": GOOD_YAML})
    project = load_project(root)
    assert sorted(project.agents) == ["good"]
    assert expected in error_for(project.errors, root / "agents" / "bad.md")


def test_agent_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", {"list.yaml": "- a\n- b\n", "empty.yaml": ""})
    project = load_project(root)
    assert project.agents == {}
    assert "must be a mapping" in error_for(project.errors, root / "agents" / "list.yaml")
    assert "must be a mapping" in error_for(project.errors, root / "agents" / "empty.yaml")


def test_unknown_field_error_says_what_was_expected(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", {"typo.yaml": "max_concurent_tasks: 3\n"})
    message = error_for(load_project(root).errors, root / "agents" / "typo.yaml")
    assert "max_concurrent_tasks" in message


def test_duplicate_agent_names(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", {
        "a.yaml": "name: twin\nrole: first\n",
        "b.md": "---\nname: twin\nrole: second\n---\n",
        "twin.yaml": "role: third\n",
    })
    project = load_project(root)
    assert list(project.agents) == ["twin"]
    assert project.agents["twin"].role == "first"
    assert len(project.errors) == 2
    for later in ("b.md", "twin.yaml"):
        message = error_for(project.errors, root / "agents" / later)
        assert "agent name 'twin' is already defined in" in message
        assert message.endswith(str(root / "agents" / "a.yaml"))


def test_startup_task_naming_unknown_agent(tmp_path: Path) -> None:
    config = ("name: demo\nstartup_tasks:\n  - agent: good\n    instruction: hi\n"
              "  - agent: ghost\n    instruction: boo\n")
    root = make_project(tmp_path / "p", {"good.yaml": GOOD_YAML}, config=config)
    project = load_project(root)
    assert sorted(project.agents) == ["good"]
    assert len(project.errors) == 1
    message = str(project.errors[0])
    assert message.startswith(str(root / "wakeful.yaml"))
    assert "field 'startup_tasks.1.agent'" in message
    assert "unknown agent 'ghost'" in message
    assert "known agents: good" in message


def test_missing_project_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no project file here") as info:
        load_project(tmp_path / "empty")
    assert str((tmp_path / "empty" / "wakeful.yaml").resolve()) in str(info.value)


def test_missing_project_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="project folder does not exist"):
        load_project(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("nmae: demo\n", "field 'nmae': unknown field; did you mean 'name'?"),
        ("poll_interval_s: 0\n", "field 'poll_interval_s'"),
        ("name: [x\n", "invalid YAML"),
        ("- a\n", "must be a mapping"),
    ],
)
def test_broken_project_file_stops_the_load(tmp_path: Path, config: str, expected: str) -> None:
    root = make_project(tmp_path / "p", {"good.yaml": GOOD_YAML}, config=config)
    with pytest.raises(ConfigError) as info:
        load_project(root)
    assert str(info.value).startswith(str(root / "wakeful.yaml"))
    assert expected in str(info.value)


def test_missing_agents_folder_gives_empty_project(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "wakeful.yaml").write_text("", encoding="utf-8")
    project = load_project(root)
    assert project.agents == {}
    assert project.errors == []
    assert project.config.name == "wakeful-project"


def test_an_unknown_store_scheme_is_a_config_error(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", {}, config="store:\n  url: mysql://localhost/db\n")
    with pytest.raises(ConfigError, match=r"field 'store.url': expected sqlite:///PATH or "
                       r"postgresql://"):
        load_project(root).store_url()
    server = make_project(tmp_path / "q", {},
                          config="store:\n  url: postgresql://localhost/db\n")
    assert load_project(server).store_url() == "postgresql://localhost/db"
    with pytest.raises(ConfigError, match="needs a SQLite store"):
        load_project(server).store_path()


def test_definition_models_directly() -> None:
    assert parse_duration("250ms") == pytest.approx(0.25)
    assert parse_duration("1.5h") == pytest.approx(5400)
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration("10 minutes")
    with pytest.raises(ValueError, match="greater than zero"):
        ScheduleEntry(every="0s", instruction="x")
    with pytest.raises(ValueError, match="exactly one"):
        ScheduleEntry(instruction="x")
    definition = AgentDefinition(name="a")
    assert definition.restart.backoff(1) == 1.0
    assert definition.restart.backoff(3) == 4.0
    assert definition.restart.backoff(100) == 30.0
    assert definition.restart.allows(1) and not definition.restart.allows(2)


def test_restart_backoff_never_overflows() -> None:
    from wakeful.project.definitions import RestartPolicy

    policy = RestartPolicy(policy="always", max_restarts=None, backoff_initial_s=1.0,
                           backoff_max_s=30.0)
    assert [policy.backoff(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    # Restart 1,025 once raised OverflowError (2.0 ** 1024) and ended the chain silently.
    assert policy.backoff(1025) == policy.backoff(10**9) == 30.0
