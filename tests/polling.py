"""Waiting for a condition in tests, on the real clock."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

PATIENCE = float(os.environ.get("WAKEFUL_TEST_PATIENCE", "3"))
"""How many times ``within`` a wait really allows: a passing wait returns as soon as
its condition holds, so only a failing test pays for it, and a busy machine (CI, the
suite under load) does not fail a test that is merely slow."""


async def until(predicate: Callable[[], Any], within: float = 10.0, what: str = "it") -> None:
    """Poll an (async or sync) predicate until it holds; fail after ``within`` seconds
    (times :data:`PATIENCE`)."""
    deadline = time.monotonic() + within * PATIENCE
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.005)
