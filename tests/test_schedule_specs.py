"""Due times of each timer kind, time zones, misfire planning, and the fake clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from wakeful.core.timers import Timer
from wakeful.core.timespecs import TimerSpec, format_seconds, parse_seconds, parse_when
from wakeful.errors import ConfigError, ScheduleError
from wakeful.project.loader import load_agent_file
from wakeful.schedule.clock import FakeClock, RealClock
from wakeful.schedule.plans import MAX_CATCH_UP, plan


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_interval_is_anchored_and_does_not_drift() -> None:
    spec = TimerSpec.every("30m", anchor=ts("2025-01-01T00:00:00+00:00"))
    assert spec.first_due(ts("2025-01-01T00:00:00+00:00")) == ts("2025-01-01T00:30:00+00:00")
    # Asked late (at 00:47), the next run is still on the half hour.
    assert spec.next_after(ts("2025-01-01T00:47:13+00:00")) == ts("2025-01-01T01:00:00+00:00")
    # Exactly on a due time: the one after it.
    assert spec.next_after(ts("2025-01-01T01:00:00+00:00")) == ts("2025-01-01T01:30:00+00:00")
    assert TimerSpec.every(0.25, anchor=0).next_after(0.75) == 1.0


def test_one_shot_is_due_once() -> None:
    spec = TimerSpec.at(ts("2025-03-01T09:00:00+00:00"))
    assert spec.first_due(0) == ts("2025-03-01T09:00:00+00:00")
    assert spec.next_after(ts("2025-03-01T09:00:00+00:00")) is None
    # In the past when set: due at once (its misfire policy applies).
    assert spec.first_due(ts("2026-01-01T00:00:00+00:00")) == ts("2025-03-01T09:00:00+00:00")


def test_cron_in_a_time_zone_follows_daylight_saving() -> None:
    spec = TimerSpec.cron("0 9 * * 1-5", "America/New_York")
    # Friday 2025-03-07 10:00 New York (EST, UTC-5): next is Monday 09:00 EDT (UTC-4),
    # the day after clocks went forward.
    friday = ts("2025-03-07T10:00:00-05:00")
    monday = spec.next_after(friday)
    assert monday == ts("2025-03-10T09:00:00-04:00") == ts("2025-03-10T13:00:00+00:00")
    # And in winter 09:00 is 14:00 UTC.
    assert spec.next_after(ts("2025-01-06T12:00:00+00:00")) == ts("2025-01-06T14:00:00+00:00")
    # The same line in UTC is 09:00 UTC.
    utc = TimerSpec.cron("0 9 * * 1-5")
    assert utc.next_after(ts("2025-01-06T08:00:00+00:00")) == ts("2025-01-06T09:00:00+00:00")
    # Weekends are skipped: Saturday morning -> Monday.
    assert utc.next_after(ts("2025-01-04T10:00:00+00:00")) == ts("2025-01-06T09:00:00+00:00")


def test_bad_specs_are_clear_errors() -> None:
    with pytest.raises(ScheduleError, match="not a valid cron line: '61 \\* \\* \\* \\*'"):
        TimerSpec.cron("61 * * * *")
    with pytest.raises(ScheduleError, match="unknown time zone 'Mars/Olympus'"):
        TimerSpec.cron("0 9 * * *", "Mars/Olympus")
    with pytest.raises(ScheduleError, match="more than zero"):
        TimerSpec.every(0, anchor=0)
    with pytest.raises(ScheduleError, match="expected a duration"):
        parse_seconds("soon")
    with pytest.raises(ScheduleError, match="zero or more"):
        parse_seconds(-5)
    with pytest.raises(ScheduleError, match="is not a date-time"):
        parse_when("next tuesday", "UTC", 0)
    with pytest.raises(ScheduleError, match="not a time of day"):
        parse_when("25:00", "UTC", 0)


def test_parsing_durations_and_dates() -> None:
    assert parse_seconds("30m") == 1800 and parse_seconds(90) == 90 and parse_seconds("90") == 90
    assert parse_seconds("250ms") == 0.25
    now = ts("2025-06-01T10:00:00+00:00")
    assert parse_when("2025-06-01T12:30", "Europe/Paris", now) == ts("2025-06-01T12:30:00+02:00")
    assert parse_when("2025-06-01T12:30:00Z", "Europe/Paris", now) == ts(
        "2025-06-01T12:30:00+00:00")
    # A time of day: today if still ahead, else tomorrow, in the zone given.
    assert parse_when("13:00", "Europe/Paris", now) == ts("2025-06-01T13:00:00+02:00")
    assert parse_when("11:00", "Europe/Paris", now) == ts("2025-06-02T11:00:00+02:00")
    assert format_seconds(1800) == "30m" and format_seconds(0.25) == "250ms"
    assert format_seconds(7200) == "2h" and format_seconds(90) == "90s"


def _timer(spec: TimerSpec, due: float, misfire: str, fired: int = 0,
           max_runs: int | None = None) -> Timer:
    return Timer("tm_x", None, spec.kind, spec.value, spec.timezone, spec.anchor, "start_task",
                 "a", None, "go", "", misfire, max_runs, "active", due,  # type: ignore[arg-type]
                 None, fired, 0.0, "test", None, None, None)


def test_misfire_policies_plan_the_missed_runs() -> None:
    spec = TimerSpec.every(60, anchor=0)
    # Due at 60; the runtime comes back at 330: runs at 60..300 were missed (5 runs).
    once = plan(_timer(spec, 60, "once"), 330)
    assert (once.runs, once.next_due, once.missed) == ([300], 360, 4)
    skip = plan(_timer(spec, 60, "skip"), 330)
    assert (skip.runs, skip.next_due, skip.missed) == ([], 360, 5)
    every = plan(_timer(spec, 60, "all"), 330)
    assert (every.runs, every.next_due, every.missed) == ([60, 120, 180, 240, 300], 360, 0)
    # On time (within the grace period), skip fires like the others.
    assert plan(_timer(spec, 60, "skip"), 60.2).runs == [60]
    # max_runs bounds the catch-up and ends the timer.
    capped = plan(_timer(spec, 60, "all", fired=3, max_runs=5), 330)
    assert (capped.runs, capped.next_due) == ([60, 120], None)
    # A very long outage fires at most MAX_CATCH_UP runs, and carries on from now.
    huge = plan(_timer(spec, 60, "all"), 60 * (MAX_CATCH_UP + 500))
    assert len(huge.runs) == MAX_CATCH_UP and huge.next_due == 60 * (MAX_CATCH_UP + 501)


async def test_fake_clock_fires_in_order_and_only_when_advanced() -> None:
    clock = FakeClock(1000.0)
    seen: list[tuple[str, float]] = []
    clock.call_at(1030, lambda: seen.append(("b", clock.now())))
    clock.call_at(1010, lambda: seen.append(("a", clock.now())))
    cancelled = clock.call_at(1020, lambda: seen.append(("x", clock.now())))
    cancelled.cancel()
    sleeper = asyncio.create_task(clock.sleep_until(1025))
    await asyncio.sleep(0.01)
    assert seen == [] and not sleeper.done()
    await clock.advance(20)
    assert seen == [("a", 1010.0)] and clock.now() == 1020.0 and not sleeper.done()
    await clock.advance(3600)
    assert seen == [("a", 1010.0), ("b", 1030.0)] and sleeper.done()
    with pytest.raises(ValueError, match="cannot go back"):
        await clock.advance(-1)


async def test_real_clock_wakes_on_time() -> None:
    clock = RealClock()
    start = clock.now()
    await clock.sleep_until(start + 0.05)
    assert 0.05 <= clock.now() - start < 1.0
    fired: list[float] = []
    handle = clock.call_at(clock.now() + 0.01, lambda: fired.append(clock.now()))
    later = clock.call_at(clock.now() + 0.02, lambda: fired.append(-1))
    later.cancel()
    await asyncio.sleep(0.1)
    handle.cancel()
    assert len(fired) == 1 and fired[0] > 0


def test_iso_dates_with_offsets_are_exact() -> None:
    moment = datetime(2025, 6, 1, 9, 30, tzinfo=UTC).timestamp()
    assert parse_when("2025-06-01T11:30:00+02:00", "UTC", 0) == moment


@pytest.mark.parametrize(("body", "field", "message"), [
    ("schedule:\n  - {every: 1h, timezone: Moon/Base, instruction: x}\n",
     "'schedule.0.timezone'", "unknown time zone 'Moon/Base'"),
    ("schedule:\n  - {every: 1h, misfire: sometimes, instruction: x}\n",
     "'schedule.0.misfire'", "'once', 'skip' or 'all'"),
    ("schedule:\n  - {every: 1h, max_runs: 0, instruction: x}\n",
     "'schedule.0.max_runs'", "greater than or equal to 1"),
    ("can_watch: [Everyone]\n", "'can_watch'", "'Everyone' is not an agent name"),
])
def test_agent_file_schedule_fields_are_validated(tmp_path: Path, body: str, field: str,
                                                  message: str) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("name: a\n" + body)
    with pytest.raises(ConfigError) as caught:
        load_agent_file(path)
    assert field in str(caught.value) and message in str(caught.value)
    assert str(path) in str(caught.value)


def test_agent_file_schedule_with_every_option(tmp_path: Path) -> None:
    path = tmp_path / "watch.yaml"
    path.write_text("name: watch\ncan_watch: ['*']\nschedule:\n"
                    "  - {cron: '0 9 * * 1-5', timezone: Europe/Paris, misfire: skip,\n"
                    "     max_runs: 3, instruction: check}\n")
    agent = load_agent_file(path)
    [entry] = agent.schedule
    assert (entry.misfire, entry.max_runs, entry.timezone) == ("skip", 3, "Europe/Paris")
    assert agent.may_watch("anyone") and load_agent_file(path).may_watch("watch")
