"""Strategies shared by the property-based tests (tests/test_fuzz_*.py).

Every parser and edge gets arbitrary input and must answer with either a value or its
own clear error type; any other exception is a crash the tests report. No deadline is
set: a busy machine must not fail a test (a hang still does, by never finishing).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Text as a model or an injected document may write it: any code point, including lone
# surrogates, NUL, control and bidi characters, and markup-looking brackets.
any_text = st.text(st.characters(exclude_categories=()), max_size=60) | st.sampled_from(
    ["", " ", "\ud800", "a\x00b", "[/b]", "{", "{0}", "{instruction.x}", "${{x}}", "\u202e",
     "é" * 3, "null", "~", "- a", ": b", "&a *a", "!!python/object:os.system", "\t\n"])
scalars = st.none() | st.booleans() | st.integers() | st.floats() | any_text


def json_like(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Nested dicts and lists of scalars, as JSON (or YAML) might hold."""
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(any_text, inner, max_size=4),
                        max_leaves=max_leaves)


def fields_of(names: list[str], values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mappings whose keys are mostly real field names, so validation goes deep."""
    keys = st.sampled_from(names) | any_text
    return st.dictionaries(keys, values, max_size=len(names) + 2)
