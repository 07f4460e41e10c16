"""Validation errors as people read them: one line per problem, naming the file, the
field and what was expected (shared by project files and model scripts)."""

from __future__ import annotations

import difflib
from typing import Any, get_args

from pydantic import BaseModel, ValidationError


def _fields_at(model: type[BaseModel] | None, path: tuple[int | str, ...]) -> list[str]:
    """The field names a nested model accepts at ``path`` (list indexes skipped)."""
    for part in path:
        if model is None or isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return []
        candidates = [info.annotation, *get_args(info.annotation)]
        for arg in list(candidates):
            candidates.extend(get_args(arg))
        model = next((c for c in candidates
                      if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return list(model.model_fields) if model is not None else []


def describe_validation_error(source: str, error: ValidationError,
                              model: type[BaseModel] | None = None) -> str:
    """One line per problem: ``source: field 'a.b': message (got X)``.

    An unknown field (usually a typo) also names the fields that are allowed there and
    the closest one, since "extra inputs are not permitted" alone does not say what to
    write instead.
    """
    lines = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"]) or "(top level)"
        got = item.get("input")
        shown = "" if isinstance(got, dict) else f" (got {_clip_repr(got)})"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            allowed = _fields_at(model, tuple(item["loc"][:-1]))
            close = difflib.get_close_matches(str(item["loc"][-1]), allowed, n=1)
            message = "unknown field" + (f"; did you mean {close[0]!r}?" if close else "")
            if allowed:
                message += f" (allowed: {', '.join(allowed)})"
            shown = ""
        lines.append(f"{source}: field {loc!r}: {message}{shown}")
    return "; ".join(lines)


def _clip_repr(value: Any, width: int = 80) -> str:
    """The offending input, shortened: a message must stay one readable line (and
    ``repr`` of a huge value is slow)."""
    if isinstance(value, list | tuple) and len(value) > 10:
        return f"a list of {len(value):,} items"
    text = repr(value)
    return text if len(text) <= width else text[:width - 1] + "…"
