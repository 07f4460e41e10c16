"""Sleep and wake: durable timers, cron, event waits, and watching other agents' progress."""

from wakeful.core.conditions import (
    AgentChanges,
    Condition,
    MailArrives,
    ResourceFree,
    TaskReaches,
    Who,
)
from wakeful.core.timespecs import TimerSpec
from wakeful.core.wake import Wake
from wakeful.schedule.clock import Clock, FakeClock, RealClock
from wakeful.schedule.progress import Progress
from wakeful.schedule.timers import Scheduler
from wakeful.schedule.waits import Waits

__all__ = [
    "AgentChanges",
    "Clock",
    "Condition",
    "FakeClock",
    "MailArrives",
    "Progress",
    "RealClock",
    "ResourceFree",
    "Scheduler",
    "TaskReaches",
    "TimerSpec",
    "Waits",
    "Wake",
    "Who",
]
