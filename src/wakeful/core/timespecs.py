"""When a timer is due: one-shot dates, intervals and cron lines, in a time zone.

A :class:`TimerSpec` is what a person or a model wrote ("every 30m", "0 9 * * 1-5" in
Europe/Paris, "2025-06-01T09:00"), reduced to what the scheduler needs: the due time
after a given instant. Intervals are anchored (every 30 minutes counted from the
anchor, not from whenever the last run happened to finish), so they do not drift;
cron lines are evaluated in their time zone, so "9:00 on weekdays" stays 9:00 local
time across daylight-saving changes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from wakeful.errors import ScheduleError

TimerKind = Literal["at", "every", "cron"]
MisfirePolicy = Literal["once", "skip", "all"]
MISFIRE_POLICIES: tuple[MisfirePolicy, ...] = ("once", "skip", "all")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Parse ``"30m"``, ``"1.5h"``, ``"250ms"`` into seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"expected a duration such as '30s', '30m', '2h' or '250ms', got {text!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ScheduleError says what a zone looks like."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {name!r} (use an IANA name such as 'UTC', "
                            "'Europe/Paris' or 'America/New_York')") from None


def to_timestamp(value: datetime, timezone: str) -> float:
    """A datetime as epoch seconds; a naive one is read in ``timezone``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone(timezone))
    return value.timestamp()


_CLOCK_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")


def parse_when(text: str, timezone: str, now: float) -> float:
    """Parse what a model writes for "until when": an ISO 8601 date-time
    ("2025-06-01T09:30", with or without an offset) or a time of day ("09:30", the next
    time the clock shows it in ``timezone``)."""
    tz = zone(timezone)
    match = _CLOCK_TIME.match(text)
    if match:
        hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise ScheduleError(f"{text!r} is not a time of day (expected e.g. '09:30')")
        today = datetime.fromtimestamp(now, tz).date()
        candidate = datetime.combine(today, dtime(hour, minute, second), tz)
        if candidate.timestamp() <= now:
            candidate = datetime.combine(today + timedelta(days=1),
                                         dtime(hour, minute, second), tz)
        return candidate.timestamp()
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ScheduleError(f"{text!r} is not a date-time: use ISO 8601 such as "
                            "'2025-06-01T09:30' (read in the given timezone), "
                            "'2025-06-01T09:30:00+02:00', or a time of day such as "
                            "'09:30'") from None
    return to_timestamp(parsed, timezone)


def parse_seconds(value: str | float) -> float:
    """A duration: seconds as a number, or text such as '30s', '30m', '2h', '250ms'."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                seconds = parse_duration(text)
            except ValueError as exc:
                raise ScheduleError(str(exc)) from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ScheduleError(f"a duration must be zero or more seconds, got {value!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class TimerSpec:
    """``kind`` and ``value``: ``at`` (epoch seconds), ``every`` (seconds, counted from
    ``anchor``) or ``cron`` (a cron line read in ``timezone``)."""

    kind: TimerKind
    value: str
    timezone: str = "UTC"
    anchor: float = 0.0

    @classmethod
    def at(cls, when: float, timezone: str = "UTC") -> TimerSpec:
        return cls("at", repr(float(when)), timezone)

    @classmethod
    def every(cls, interval: str | float, anchor: float, timezone: str = "UTC") -> TimerSpec:
        seconds = parse_seconds(interval)
        if seconds <= 0:
            raise ScheduleError(f"an interval must be more than zero, got {interval!r}")
        return cls("every", repr(seconds), timezone, anchor)

    @classmethod
    def cron(cls, line: str, timezone: str = "UTC") -> TimerSpec:
        if not croniter.is_valid(line):
            raise ScheduleError(f"not a valid cron line: {line!r} (expected five fields "
                                "such as '0 9 * * 1-5': minute hour day month weekday)")
        zone(timezone)
        return cls("cron", line, timezone)

    @property
    def interval(self) -> float:
        return float(self.value)

    def first_due(self, now: float) -> float | None:
        """The first due time of a new timer set at ``now`` (an ``at`` in the past is
        due at once, and its misfire policy applies)."""
        if self.kind == "at":
            return float(self.value)
        return self.next_after(now)

    def next_after(self, when: float) -> float | None:
        """The first due time strictly after ``when``; None when there is none."""
        if self.kind == "at":
            due = float(self.value)
            return due if due > when else None
        if self.kind == "every":
            step = self.interval
            runs = math.floor((when - self.anchor) / step) + 1
            due = self.anchor + max(runs, 1) * step
            while due <= when:  # floating-point rounding at an exact multiple
                due += step
            return due
        start = datetime.fromtimestamp(when, zone(self.timezone))
        following: float = croniter(self.value, start).get_next(float)
        return following

    def describe(self) -> str:
        if self.kind == "at":
            return "at " + datetime.fromtimestamp(float(self.value), zone(
                self.timezone)).isoformat(timespec="seconds")
        if self.kind == "every":
            return f"every {format_seconds(self.interval)}"
        suffix = "" if self.timezone == "UTC" else f" ({self.timezone})"
        return f"cron {self.value}{suffix}"


def format_seconds(seconds: float) -> str:
    """90 -> '90s', 1800 -> '30m', 7200 -> '2h', 0.25 -> '250ms'."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def stamp(ts: float | None, timezone: str = "UTC") -> str | None:
    """An instant as ISO 8601 (seconds), in ``timezone``."""
    if ts is None:
        return None
    moment = datetime.fromtimestamp(ts, zone(timezone))
    text = moment.isoformat(timespec="milliseconds" if ts % 1 else "seconds")
    return text.replace("+00:00", "Z")
