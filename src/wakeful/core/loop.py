"""The event loop Wakeful's commands run on: uvloop where it is installed, else asyncio's.

Why: an agent step is a few dozen callbacks, futures and socket writes, and with a
thousand agents the loop itself is most of the work. uvloop runs the same asyncio
programs with its machinery in C (side by side, ``benchmarks/store.py``'s thousand
agents stepped 1.5x faster on it). Nothing in Wakeful depends on which loop runs it;
``WAKEFUL_EVENT_LOOP=asyncio`` picks asyncio's own (to compare, or to debug with its
debug mode), ``uvloop`` insists on uvloop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from wakeful.errors import ConfigError

T = TypeVar("T")
LOOP_ENV = "WAKEFUL_EVENT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")


def loop_name(choice: str | None = None) -> str:
    """The loop a command will run on: ``uvloop`` or ``asyncio``."""
    choice = (choice if choice is not None else os.environ.get(LOOP_ENV, "auto")).strip()
    if choice not in CHOICES:
        raise ConfigError(f"{LOOP_ENV}={choice!r}: expected one of {', '.join(CHOICES)}")
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(f"{LOOP_ENV}=uvloop: uvloop is not installed "
                              "(pip install uvloop)") from None
        return "asyncio"
    return "uvloop"


def loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    if loop_name(choice) == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: str | None = None) -> T:
    """``asyncio.run(main)`` on the chosen loop."""
    try:
        factory = loop_factory(choice)
    except ConfigError:
        main.close()  # never awaited: say so quietly, not with a warning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
