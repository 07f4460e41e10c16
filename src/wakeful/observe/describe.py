"""One line of text for an event or a long value: what the terminal views, the status
tools and the live timeline show."""

from __future__ import annotations

from wakeful.core.records import Event


def clip(text: str | None, width: int = 60) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def describe_event(event: Event) -> str:
    data = event.data
    if event.type in ("task.state", "agent.state"):
        detail = f"{data.get('from')} → {data.get('to')}"
        extra = data.get("error") or data.get("reason") or data.get("result")
        return detail + (f"  {clip(str(extra), 70)}" if extra else "")
    if event.type == "model.call":
        calls = ", ".join(data.get("tool_calls", [])) or "reply"
        tokens = f"{data.get('input_tokens', 0)}+{data.get('output_tokens', 0)} tokens"
        cost = f", cost {data['cost']:.6g}" if data.get("cost") else ""
        return f"{data.get('latency_ms', 0):.0f} ms, {tokens}{cost} → {calls}"
    if event.type == "model.retry":
        return (f"retry {data.get('attempt')}/{data.get('max_retries')} in "
                f"{data.get('delay_s')} s: {clip(data.get('error'), 70)}")
    if event.type.startswith("tool."):
        return f"{data.get('tool')}({clip(data.get('arguments'), 40)}) → {clip(data.get('result'))}"
    if event.type == "mail.sent":
        subject = f": {clip(data.get('subject'), 50)}" if data.get("subject") else ""
        return f"{data.get('from')} → {data.get('to')}{subject}"
    if event.type == "task.created":
        return clip(data.get("instruction"), 70)
    if event.type == "task.progress":
        return f"{data.get('percent'):g}%  {clip(data.get('note'), 70)}"
    if event.type == "task.woke":
        why = data.get("reason")
        if why == "event" and isinstance(data.get("event"), dict):
            why = f"event: {data['event'].get('kind')}"
        slept = data.get("slept_s")
        return f"woke ({why})" + (f" after {slept:g} s" if slept is not None else "")
    if event.type in ("timer.fired", "timer.skipped"):
        what = f"{data.get('runs')} run(s)" + (f", {data.get('missed')} missed"
                                               if data.get("missed") else "")
        return (f"{data.get('timer_id')} due {data.get('due')} ({what}); next "
                f"{data.get('next_due') or 'never'}")
    if event.type == "monitor.alert":
        return f"[{data.get('kind')}] {clip(data.get('detail'), 100)}"
    if event.type == "resource.deadlock":
        return clip(data.get("message"), 200)
    if event.type.startswith("resource."):
        shown = [f"{key} {data[key]}" for key in ("mode", "kind", "token", "waited_ms",
                                                  "reason") if data.get(key) is not None]
        blocked = data.get("blocked_by") or []
        text = f"{data.get('resource', '')}  {', '.join(shown)}"
        return clip(text + (f"  ({blocked[0]})" if blocked else ""), 130)
    return clip(", ".join(f"{k}={v}" for k, v in data.items() if k != "traceback"), 90)
