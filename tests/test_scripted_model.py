"""The scripted model's tool-call arguments: templates filled per call, constant
arguments encoded once and reused (they are played thousands of times a second)."""

from __future__ import annotations

import json

from wakeful.models.base import Message
from wakeful.models.scripted import ScriptedModel, ScriptFile


def _model() -> ScriptedModel:
    return ScriptedModel(ScriptFile.model_validate({"scripts": [{"steps": [{
        "tool_calls": [
            {"tool": "fixed", "args": {"text": "plain words", "n": 3}},
            {"tool": "filled", "args": {"path": "{instruction}.md", "n": 1}},
            {"tool": "braces", "args": {"text": "a}}b"}},
        ]}]}]}))


async def _arguments(model: ScriptedModel, instruction: str) -> dict[str, dict[str, object]]:
    response = await model.complete([Message(role="system", content="s"),
                                     Message(role="user", content=instruction)], [])
    return {c.name: json.loads(c.arguments) for c in response.message.tool_calls}


async def test_constant_arguments_repeat_and_templates_follow_each_instruction() -> None:
    model = _model()
    first = await _arguments(model, "alpha")
    second = await _arguments(model, "beta")
    assert first["fixed"] == second["fixed"] == {"text": "plain words", "n": 3}
    assert first["filled"] == {"path": "alpha.md", "n": 1}
    assert second["filled"] == {"path": "beta.md", "n": 1}
    assert first["braces"] == second["braces"] == {"text": "a}b"}  # a format escape
