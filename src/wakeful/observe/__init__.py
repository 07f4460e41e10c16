"""Events, traces, the inspector and replay."""

from wakeful.observe.events import EventLog, Subscription

__all__ = ["EventLog", "Subscription"]
