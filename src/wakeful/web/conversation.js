// One task's conversation as a person reads it: the instruction, what the model said
// at each step (markdown), and a card per tool call with its arguments, result,
// duration and error. Used by the task view, and folded under a reply in chat.

import { renderMarkdown } from "./markdown.js";
import { el } from "./util.js";

const LONG = 1200;

function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return String(text ?? "");
  }
}

// Long text folded: the first part shown, the rest one click away, with its size.
export function folded(text, cls = "pre") {
  const s = String(text ?? "");
  if (s.length <= LONG) return el("pre", { class: cls, text: s });
  return el("details", { class: "fold" },
    el("summary", { text: `${s.slice(0, 160).replace(/\s+/g, " ")}… (${s.length.toLocaleString()} characters)` }),
    el("pre", { class: cls, text: s }));
}

// `calls`: tool.call/tool.error events of the task, in order, to add durations.
export function toolCard(call, result, event) {
  const name = call.function ? call.function.name : call.name;
  const args = call.function ? call.function.arguments : call.arguments;
  const d = event ? event.data || {} : {};
  const failed = event ? event.type !== "tool.call" || d.ok === false : false;
  const facts = [
    event && typeof d.latency_ms === "number" ? `${d.latency_ms < 10 ? d.latency_ms.toFixed(1) : Math.round(d.latency_ms)} ms` : null,
    result === undefined ? "no result yet" : null,
    failed ? (event.type === "tool.call" ? "error" : event.type.replace("tool.", "")) : null,
  ].filter(Boolean).join(" · ");
  return el("details", { class: `tool-card${failed ? " bad" : ""}`, dataset: { tool: name } },
    el("summary", {}, el("span", { class: "tool-name", text: name }),
      el("span", { class: "tool-args", text: ` (${String(args || "").slice(0, 80)})` }),
      facts ? el("span", { class: "muted", text: ` · ${facts}` }) : null),
    el("div", { class: "tool-body" },
      el("h4", { text: "Arguments" }), folded(pretty(args)),
      el("h4", { text: failed ? "Error" : "Result" }),
      result === undefined ? el("p", { class: "muted", text: "(still running)" }) : folded(pretty(result)),
      d.error && d.error !== result ? el("p", { class: "err", text: d.error }) : null));
}

// messages: the task's stored conversation; toolEvents: its tool.* events in order.
export function renderConversation(messages, toolEvents = []) {
  const results = new Map();
  for (const m of messages) if (m.role === "tool" && m.tool_call_id) results.set(m.tool_call_id, m.content);
  const pending = toolEvents.filter((e) => e.type.startsWith("tool.") && e.data && e.data.tool);
  const takeEvent = (name) => {
    const index = pending.findIndex((e) => e.data.tool === name);
    return index < 0 ? null : pending.splice(index, 1)[0];
  };
  const out = [];
  let step = 0;
  for (const m of messages) {
    if (m.role === "system") {
      out.push(el("details", { class: "turn system" }, el("summary", { text: "System prompt" }), folded(m.content)));
    } else if (m.role === "user") {
      out.push(el("div", { class: "turn user" }, el("div", { class: "who", text: "instruction / input" }),
        el("div", { class: "md" }, renderMarkdown(m.content))));
    } else if (m.role === "assistant") {
      step += 1;
      const calls = m.tool_calls || [];
      out.push(el("div", { class: "turn assistant", dataset: { step: String(step) } },
        el("div", { class: "who", text: `model · step ${step}` }),
        m.content ? el("div", { class: "md" }, renderMarkdown(m.content)) : null,
        calls.map((c) => toolCard(c, results.get(c.id), takeEvent(c.function ? c.function.name : c.name)))));
    }
  }
  return out;
}
