"""Sleep and wake: durable timers, cron, event waits, and watching other agents' progress."""

from wakeful.core.timespecs import TimerSpec
from wakeful.schedule.clock import Clock, FakeClock, RealClock
from wakeful.schedule.conditions import (
    AgentChanges,
    Condition,
    MailArrives,
    ResourceFree,
    TaskReaches,
    Who,
)
from wakeful.schedule.progress import Progress
from wakeful.schedule.timers import Scheduler
from wakeful.schedule.waits import Waits
from wakeful.schedule.wake import Wake

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
