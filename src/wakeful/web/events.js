// What one event means, in a line a person can read; shared by the timeline, the
// overview's activity feed and the task view.

import { enc } from "./api.js";
import { el } from "./util.js";

const short = (text, n) => {
  const s = String(text ?? "");
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
};

export function describe(e) {
  const d = e.data || {};
  switch (e.type) {
    case "agent.state":
      return `${d.from} → ${d.to}${d.reason ? ` (${d.reason})` : ""}`;
    case "task.state":
      return `${d.from} → ${d.to}${d.reason ? ` (${d.reason})` : ""}${d.error ? `: ${short(d.error, 200)}` : ""}`
        + (d.to === "done" && d.result ? `: ${short(d.result, 200)}` : "");
    case "model.call":
      return `${Math.round(d.latency_ms || 0)} ms, ${d.input_tokens}+${d.output_tokens} tokens → ${(d.tool_calls || []).join(", ") || "reply"}`;
    case "task.created":
      return `${short(d.instruction, 200)} (by ${d.created_by})`;
    case "mail.sent":
      return `${d.from} → ${d.to}${d.subject ? ": " + short(d.subject, 120) : ""}`;
    case "mail.delegated":
      return `asked ${d.to_agent}: ${short(d.instruction, 160)}`;
    case "mail.answering":
      return `answering mail ${d.mail_id}`;
    case "monitor.alert":
      return short(d.text || d.message || d.summary || JSON.stringify(d), 240);
    case "task.woke":
      return `woke: ${d.reason || d.by || d.outcome || ""}`;
    case "timer.fired":
      return `timer fired: ${short(d.instruction || d.action || d.timer_id || "", 160)}`;
    default:
      if (e.type.startsWith("tool.")) {
        return `${d.tool}(${short(d.arguments, 80)}) → ${short(d.error || d.result, 120)}`;
      }
      return short(Object.entries(d).filter(([k]) => k !== "traceback")
        .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(", "), 240);
  }
}

// How grave an event is, for colouring: "bad", "good" or "".
export function tone(e) {
  const d = e.data || {};
  if (e.type.endsWith("error") || e.type === "monitor.alert" || e.type === "task.failed"
    || e.type === "resource.deadlock" || e.type === "budget.exhausted" || e.type === "agent.gave_up"
    || e.type === "mail.dead_lettered" || d.to === "failed" || d.ok === false) return "bad";
  if (d.to === "done") return "good";
  return "";
}

export function taskLink(id, text) {
  return el("a", { href: `#/task/${enc(id)}`, class: "task-link", text: text || id });
}

export function agentLink(name) {
  return el("a", { href: `#/agent/${enc(name)}`, class: "agent-link", text: name });
}
