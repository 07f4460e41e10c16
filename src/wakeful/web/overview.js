// The home page: what is running now, what happened (an activity feed), totals
// (tasks by state, tokens, cost, per agent) and failures, each linking to its trace.

import { get } from "./api.js";
import { agentLink, describe, taskLink, tone } from "./events.js";
import { el, money, num, plural, statusLabel, throttle, when, fill } from "./util.js";

const STATES = ["running", "waiting", "queued", "done", "failed", "cancelled"];
const REFRESH_ON = /^(task\.|agent\.|mail\.sent|mail\.delegated|monitor\.|resource\.deadlock|budget\.|timer\.fired)/;

export class OverviewView {
  constructor() {
    this.closed = false;
    this.summary = el("p", { class: "summary", id: "overview-summary", role: "status" });
    this.now = el("div", { id: "overview-now" });
    this.totals = el("div", { id: "overview-totals" });
    this.failures = el("div", { id: "overview-failures" });
    this.activity = el("ol", { class: "feed", id: "overview-activity", tabindex: "0", "aria-label": "activity" });
    const panel = (title, body, id) => el("section", { class: "panel", id, "aria-labelledby": `${id}-h` },
      el("h2", { id: `${id}-h`, text: title }), body);
    this.node = el("section", { class: "page overview" },
      el("header", {}, el("h1", { text: "Overview" }), this.summary),
      el("div", { class: "grid" },
        panel("Running now", this.now, "panel-now"),
        panel("Failures", this.failures, "panel-failures"),
        panel("Totals", this.totals, "panel-totals"),
        panel("Activity", this.activity, "panel-activity")));
    this.refreshSoon = throttle(() => this.refresh(), 1200);
  }

  async open() { await this.refresh(); }
  close() { this.closed = true; }
  reload() { return this.refresh(); }

  async refresh() {
    if (this.closed) return;
    try {
      const data = await get("/api/overview?activity=80");
      if (!this.closed) this.render(data);
    } catch (err) {
      this.summary.textContent = err.message;
      this.summary.classList.add("error");
    }
  }

  render(o) {
    this.summary.classList.remove("error");
    this.summary.textContent = sentence(o);
    this.renderNow(o);
    this.renderTotals(o);
    this.renderFailures(o.failures);
    this.renderActivity(o.activity);
  }

  renderNow(o) {
    const chips = el("p", { class: "chips" }, Object.entries(o.agent_states).sort().map(([state, n]) =>
      el("span", { class: `pill ${state}`, text: `${n} ${n === 1 ? "agent" : "agents"} ${state}` })),
      o.queued ? el("span", { class: "pill queued", text: `${o.queued} tasks queued` }) : null);
    const rows = o.running.map((t) => el("li", { dataset: { task: t.id } },
      el("span", { class: `pill ${t.state}`, text: t.state }), " ", agentLink(t.agent), " ",
      taskLink(t.id, t.instruction.slice(0, 120)),
      el("span", { class: "muted", text: t.waiting_on ? ` · waiting on ${t.waiting_on}` : ` · step ${t.step}` })));
    const busy = o.agents.filter((a) => a.state !== "running" || a.running || a.queued);
    const agents = busy.map((a) => el("li", {}, agentLink(a.name), el("span", { class: "muted", text: ` · ${statusLabel(a)}` })));
    fill(this.now, ...[chips,
      rows.length ? el("ul", { class: "plain" }, rows)
        : el("p", { class: "muted", text: o.idle ? "Nothing is running: the team is idle." : "No task is running right now." }),
      agents.length ? el("h3", { text: "Agents not idle" }) : null,
      agents.length ? el("ul", { class: "plain" }, agents) : null].filter(Boolean));
  }

  renderTotals(o) {
    const t = o.totals;
    const head = el("tr", {}, ["agent", "tasks", ...STATES.filter((s) => s !== "queued"), "tokens", "cost"]
      .map((h) => el("th", { scope: "col", text: h })));
    const row = (name, x, strong) => el("tr", { class: strong ? "total" : "" },
      el("th", { scope: "row" }, strong ? "all agents" : agentLink(name)), el("td", { text: num(x.tasks) }),
      ...STATES.filter((s) => s !== "queued").map((s) => el("td", { class: s === "failed" && x.by_state[s] ? "bad" : "", text: num(x.by_state[s] || 0) })),
      el("td", { text: num(x.tokens) }), el("td", { text: money(x.cost) }));
    const run = o.this_run || {};
    fill(this.totals, 
      el("dl", { class: "kv" },
        el("dt", { text: "tasks" }), el("dd", { text: `${num(t.tasks)} (${STATES.map((s) => `${t.by_state[s] || 0} ${s}`).join(", ")})` }),
        el("dt", { text: "tokens" }), el("dd", { text: `${num(t.tokens)} (${num(t.input_tokens)} in, ${num(t.output_tokens)} out)` }),
        el("dt", { text: "cost" }), el("dd", { text: money(t.cost) }),
        el("dt", { text: "tool calls" }), el("dd", { text: num(t.tool_calls) }),
        el("dt", { text: "this run" }), el("dd", { text: `${num((run.input_tokens || 0) + (run.output_tokens || 0))} tokens, ${money(run.cost)}, ${num(run.tool_calls || 0)} tool calls` })),
      el("div", { class: "scroll-x", tabindex: "0", role: "region", "aria-label": "totals per agent" },
        el("table", { class: "table" }, el("thead", {}, head),
          el("tbody", {}, Object.entries(o.per_agent).map(([name, x]) => row(name, x, false)), row("", t, true)))));
  }

  renderFailures(failures) {
    if (!failures.length) {
      fill(this.failures, el("p", { class: "muted good", text: "No task has failed." }));
      return;
    }
    fill(this.failures, el("ul", { class: "plain failures" }, failures.map((f) => el("li", { dataset: { task: f.id } },
      el("span", { class: "pill failed", text: f.error_kind || "failed" }), " ", agentLink(f.agent), " ",
      taskLink(f.id, f.instruction.slice(0, 100)), " ", f.finished_at ? when(f.finished_at) : null,
      el("div", { class: "err", text: (f.error || "").slice(0, 300) }),
      f.trace_id && f.trace_id !== f.id ? el("div", { class: "muted" }, "in the trace of ", taskLink(f.trace_id)) : null))));
  }

  renderActivity(events) {
    const items = events.slice().reverse().map((e) => el("li", { class: `ev tone-${tone(e)}`, dataset: { type: e.type } },
      when(e.ts), e.agent ? agentLink(e.agent) : el("span", { class: "muted", text: "run" }),
      el("span", { class: "type", text: e.type }),
      e.task_id ? taskLink(e.task_id, "trace") : el("span"),
      el("span", { class: "desc", text: describe(e) })));
    fill(this.activity, ...(items.length ? items : [el("li", { class: "muted", text: "Nothing has happened yet." })]));
  }

  onEvents(events) {
    if (!this.closed && events.some((e) => REFRESH_ON.test(e.type))) this.refreshSoon();
  }
}

function sentence(o) {
  const t = o.totals;
  const s = (k) => t.by_state[k] || 0;
  const parts = [`${plural(t.tasks, "task")} so far: ${s("done")} done, ${s("failed")} failed, ${s("running") + s("waiting")} running, ${s("queued")} queued`];
  parts.push(`${plural(o.agents.length, "agent")} (${Object.entries(o.agent_states).map(([k, n]) => `${n} ${k}`).join(", ")})`);
  parts.push(`${num(t.tokens)} tokens, ${money(t.cost)}`);
  return `${o.idle ? "Idle. " : "Working. "}${parts.join(" · ")}.`;
}
