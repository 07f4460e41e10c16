"""One router per resource: agents, tasks, mail, channels, locks, events, the stream."""
