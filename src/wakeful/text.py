"""Text the store can hold, checked once at the edges.

A Python ``str`` may hold things no store can write: a lone surrogate (``"\\ud800"``,
which valid JSON can spell as ``"\\ud800"`` and a model or an injected document can
emit) has no UTF-8 encoding, and PostgreSQL refuses the NUL character in text. Caught
only when a store encodes it, one such string fails a whole batch of other people's
writes; so every edge (mail drafts, API bodies, tool-call arguments, configuration)
asks :func:`unstorable` first and refuses the input with the place that was wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_DEPTH = 64
"""Deeper nesting than this is refused too: nothing sensible needs it, and walking or
encoding it costs recursion a hostile input could exhaust."""


def _bad_char(text: str) -> tuple[int, str] | None:
    """The first character of ``text`` that cannot be stored, with why."""
    if text.isascii():
        index = text.find("\x00")
        return None if index < 0 else (index, "a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start, f"a lone surrogate {text[exc.start]!r} (not valid Unicode text)"
    index = text.find("\x00")
    return None if index < 0 else (index, "a NUL character")


def describe_text(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None when it can."""
    found = _bad_char(text)
    if found is None:
        return None
    index, what = found
    return f"contains {what} at character {index}; it cannot be stored, send UTF-8 text"


def unstorable(value: Any, where: str = "", depth: int = 0) -> str | None:
    """The first place in ``value`` (a str, or JSON-like dicts and lists of them) that
    cannot be stored, as ``"where: why"``; None when all of it can."""
    if isinstance(value, str):
        why = describe_text(value)
        return None if why is None else f"{where or 'text'}: {why}"
    if depth > MAX_DEPTH and isinstance(value, Mapping | list | tuple):
        return f"{where or 'value'}: nested more than {MAX_DEPTH} levels deep"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                why = describe_text(key)
                if why is not None:
                    return f"{where or 'value'}: a key {why}"
            found = unstorable(item, f"{where}.{key}" if where else str(key), depth + 1)
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = unstorable(item, f"{where}[{index}]", depth + 1)
            if found is not None:
                return found
    return None


def check_storable(value: Any, where: str = "") -> None:
    """Raise ValueError (pydantic turns it into a field error) if ``value`` cannot be
    stored."""
    found = unstorable(value, where)
    if found is not None:
        raise ValueError(found)
