"""Why a sleeper woke: the message a sleeping task's model reads when it wakes.

A :class:`Wake` is the tool result of ``sleep_for``, ``sleep_until`` and
``wait_for_event``: which timer fired, which event happened, or that the wait timed
out. It is also stored with the wait (its ``outcome``), so a task that resumes after a
restart, and calls the tool again, is told the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from wakeful.core.timespecs import stamp

WakeReason = Literal["timer", "event", "timeout"]


def describe_event(event: dict[str, Any]) -> str:
    kind = event.get("kind")
    if kind == "mail":
        if event.get("mail_id"):
            subject = f" {event['subject']!r}" if event.get("subject") else ""
            return (f"mail {event['mail_id']}{subject} from {event.get('from')} arrived "
                    "(take it with check_mail)")
        return (f"{event.get('pending')} mail(s) {event.get('matching', '')} waiting "
                "(take them with check_mail)").replace("  ", " ")
    if kind == "task":
        return f"task {event.get('task_id')} ({event.get('agent')}) is {event.get('state')}"
    if kind == "agent":
        if event.get("from") is None:
            return f"agent {event.get('agent')} is {event.get('to')}"
        return (f"agent {event.get('agent')} went from {event.get('from')} to "
                f"{event.get('to')}")
    if kind == "resource":
        return f"resource {event.get('resource')} is free"
    return str(event)


@dataclass(frozen=True, slots=True)
class Wake:
    reason: WakeReason
    at: float  # when it woke (the runtime's clock)
    since: float | None = None  # when the wait began
    timer_id: str | None = None
    due: float | None = None  # when the timer was due (timer, timeout)
    event: dict[str, Any] | None = None  # which event (reason "event")
    waited_for: str | None = None  # what the wait was for, in words
    resumed: bool = False  # this wait ended before a restart: its recorded outcome

    @property
    def slept_s(self) -> float | None:
        return None if self.since is None else max(0.0, self.at - self.since)

    def record(self) -> dict[str, Any]:
        """As stored in the wait's ``outcome`` (JSON)."""
        data: dict[str, Any] = {"reason": self.reason, "at": self.at}
        for name in ("since", "timer_id", "due", "event", "waited_for"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data

    @classmethod
    def from_record(cls, data: dict[str, Any], *, resumed: bool = False) -> Wake:
        return cls(reason=data.get("reason", "timer"), at=float(data.get("at", 0.0)),
                   since=data.get("since"), timer_id=data.get("timer_id"),
                   due=data.get("due"), event=data.get("event"),
                   waited_for=data.get("waited_for"), resumed=resumed)

    def message(self) -> str:
        slept = self.slept_s
        took = f" after {slept:.3g} s" if slept is not None else ""
        if self.reason == "timer":
            text = (f"Woke up: timer {self.timer_id} fired at {stamp(self.at)} "
                    f"(due {stamp(self.due)}){took}.")
        elif self.reason == "timeout":
            waited = f" for {self.waited_for}" if self.waited_for else ""
            text = f"Woke up: the wait{waited} timed out at {stamp(self.at)}{took}."
        else:
            text = f"Woke up: {describe_event(self.event or {})}, at {stamp(self.at)}{took}."
        if self.resumed:
            text += " (This wait ended before the runtime restarted; it is not repeated.)"
        return text

    def result(self) -> dict[str, Any]:
        """As the tool returns it to the model."""
        data: dict[str, Any] = {"woke": self.reason, "message": self.message(),
                                "at": stamp(self.at)}
        if self.timer_id:
            data["timer_id"] = self.timer_id
        if self.due is not None:
            data["due"] = stamp(self.due)
        if self.event:
            data["event"] = self.event
        if self.slept_s is not None:
            data["slept_s"] = round(self.slept_s, 3)
        if self.resumed:
            data["resumed"] = True
        return data
