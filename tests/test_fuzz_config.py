"""Property-based: agent files, project files and script files, whatever they hold,
load or give a ConfigError naming the file; nothing else escapes."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from fuzz_support import FUZZ, any_text, fields_of, json_like, scalars
from wakeful.errors import ConfigError
from wakeful.models.scripted import ScriptedModel
from wakeful.project.definitions import AgentDefinition, ProjectConfig
from wakeful.project.loader import load_agent_file, load_project
from wakeful.text import unstorable

AGENT_FIELDS = list(AgentDefinition.model_fields)
PROJECT_FIELDS = list(ProjectConfig.model_fields)
values = json_like(12) | st.sampled_from(
    [1, 0, -1, 10**30, "30m", "every 5m", [], {}, {"policy": "always"}, ["note"],
     [{"every": "1s", "instruction": "x"}], [{"cron": "* * * *"}], "sqlite:///x.db"])


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True) if unstorable(data) is None else \
        yaml.safe_dump(data)  # lone surrogates: escaped by the dumper


def _write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
    return path


def _check_agent(text: str | bytes, suffix: str = ".yaml") -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = _write(Path(folder), "fuzzed" + suffix, text)
        try:
            agent = load_agent_file(path)
        except ConfigError as exc:
            message = str(exc)
            assert message.startswith(str(path)), message
            assert "\n" not in message.strip() or "Traceback" not in message
            assert len(message) < 20_000
        else:
            assert isinstance(agent, AgentDefinition)
            assert unstorable(agent.model_dump(mode="json")) is None


@FUZZ
@given(fields_of(AGENT_FIELDS, values))
def test_agent_files_of_any_fields(data: dict[str, Any]) -> None:
    _check_agent(_dump(data))


@FUZZ
@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=300) | st.binary(
    max_size=200))
def test_agent_files_of_any_text(text: str | bytes) -> None:
    _check_agent(text)
    _check_agent(text if isinstance(text, bytes) else "---\n" + text, ".md")


@FUZZ
@given(fields_of(PROJECT_FIELDS, values), fields_of(AGENT_FIELDS, values))
def test_project_folders(config: dict[str, Any], agent: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        _write(root, "wakeful.yaml", _dump(config))
        (root / "agents").mkdir()
        _write(root / "agents", "a.yaml", _dump(agent))
        try:
            project = load_project(root)
        except ConfigError as exc:
            assert str(root) in str(exc)
        else:
            assert all(isinstance(e, ConfigError) for e in project.errors)
            for error in project.errors:
                assert str(root) in str(error)


@FUZZ
@given(st.dictionaries(st.sampled_from(["latency_ms", "token_delay_ms", "scripts"]) | any_text,
                       values | st.lists(fields_of(["match", "steps"], values
                                         | st.lists(fields_of(["say", "tool_calls", "error",
                                                               "fail_times", "latency_ms",
                                                               "raw_args"], scalars
                                                              | json_like(6)), max_size=3)),
                                         max_size=3), max_size=4),
       any_text)
def test_script_files_load_or_refuse_and_play_what_they_load(data: dict[str, Any],
                                                            instruction: str) -> None:
    import asyncio

    from wakeful.errors import ModelError
    from wakeful.models.base import Message

    with tempfile.TemporaryDirectory() as folder:
        path = _write(Path(folder), "s.yaml", _dump(data))
        try:
            model = ScriptedModel.from_file(path, "s")
        except ConfigError as exc:
            assert str(exc).startswith(str(path)), str(exc)
            return
    model.script = model.script.model_copy(update={"latency_ms": 0})
    messages = [Message(role="user", content=instruction)]
    for _ in range(3):
        try:
            response = asyncio.run(model.complete(messages, []))
        except ModelError:
            return
        messages.append(response.message)


@FUZZ
@given(any_text, any_text, any_text)
def test_any_say_and_args_text_plays(say: str, arg: str, instruction: str) -> None:
    """A script's text is a template only where it holds ``{name}``: braces of JSON,
    ``{0}`` or a lone ``{`` are played as written, never a crash of the model call."""
    import asyncio

    from wakeful.models.base import Message

    model = ScriptedModel.from_steps([{"say": say, "tool_calls": [
        {"tool": "note", "args": {"text": arg}}]}])
    response = asyncio.run(model.complete([Message(role="user", content=instruction)], []))
    assert response.message.content is not None


def test_templates_fill_known_names_and_keep_other_braces() -> None:
    import asyncio

    from wakeful.models.base import Message

    for say, expected in [("Done: {instruction}", "Done: hi"), ("{0} and {instruction}",
                          "{0} and hi"), ('{"a": 1} {step}', '{"a": 1} 0'),
                          ("{", "{"), ("{instruction.x}", "{instruction.x}"),
                          ("{{literal}} {instruction}", "{literal} hi")]:
        model = ScriptedModel.from_steps([{"say": say}])
        response = asyncio.run(model.complete([Message(role="user", content="hi")], []))
        assert response.message.content == expected, say
