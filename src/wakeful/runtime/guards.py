"""Guards against a model that goes in circles or says nothing.

Small models (and large ones, on a bad day) repeat the same tool call forever or
reply with nothing at all. Each guard turns that into a message the model can act on,
and, when the model does not, into a clear failure instead of a task that burns its
whole step budget.
"""

from __future__ import annotations

import json

import orjson

from wakeful.models.base import ToolCall

EMPTY_REPLY_NUDGE = (
    "(from the runtime) Your last reply was empty: no text and no tool call. Continue "
    "the task: call one of your tools, or reply with your final answer.")


def _signature(call: ToolCall) -> tuple[str, str | bytes]:
    """Name and arguments, with JSON normalised so key order and spacing don't count
    (by orjson: this runs at every tool call; the standard library's parser takes
    what orjson refuses, such as NaN or integers past 64 bits)."""
    try:
        return call.name, orjson.dumps(orjson.loads(call.arguments),
                                       option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        pass
    try:
        return call.name, json.dumps(json.loads(call.arguments), sort_keys=True)
    except ValueError:
        return call.name, call.arguments.strip()


class RepeatGuard:
    """Counts identical tool calls in a row (across replies)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._last: tuple[str, str | bytes] | None = None
        self.streak = 0
        self.warnings = 0

    def observe(self, call: ToolCall) -> bool:
        """Record ``call``; True when it repeats the previous call ``limit`` times or
        more, i.e. it should not run again."""
        signature = _signature(call)
        self.streak = self.streak + 1 if signature == self._last else 1
        self._last = signature
        if self.streak >= self.limit:
            self.warnings += 1
            return True
        return False

    def message(self, call: ToolCall) -> str:
        return (f"error: you have called {call.name!r} with the same arguments {self.streak} "
                "times in a row, so it was not run again: the result would not change. Use "
                "the result you already have, try something different, or give your final "
                "answer.")
