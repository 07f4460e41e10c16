"""The store's fast JSON writes what the standard encoder would, or falls back to it."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from wakeful.core.encoding import to_json

SCALARS = (st.none() | st.booleans() | st.integers() | st.text()
           | st.floats(allow_nan=False, allow_infinity=False))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(), inner, max_size=4), max_leaves=20)


@given(VALUES)
def test_any_json_value_reads_back_as_the_standard_encoders(value: Any) -> None:
    # text with lone surrogates and integers past 64 bits included (the fallback's cases)
    assert json.loads(to_json(value)) == json.loads(json.dumps(value))


@dataclasses.dataclass
class Point:
    x: int


def test_what_json_does_not_know_is_written_as_str_as_before() -> None:
    moment = datetime.datetime(2026, 12, 1, 4, 5, 6)
    value = {"when": moment, "point": Point(1), 3: "int key", "big": 1 << 70,
             "lone": "\ud800"}
    assert json.loads(to_json(value)) == json.loads(json.dumps(value, default=str))


def test_infinities_and_nan_are_written_as_null() -> None:
    # not JSON; the standard encoder would write NaN, which PostgreSQL's json refuses
    assert json.loads(to_json([math.nan, math.inf])) == [None, None]
