// One agent's page: state and controls, its tasks with progress, schedules and next
// wake, why it waits, locks, token/cost use, mail, and a live timeline of events.

import { enc, get, post, session } from "./api.js";
import { ago, clear, displayName, el, plural, statusLabel, throttle, time } from "./util.js";
import { toast } from "./toast.js";

const TIMELINE_MAX = 300;
const TERMINAL = new Set(["done", "failed", "cancelled"]);
const QUIET = new Set(["model.token"]);

function describe(e) {
  const d = e.data || {};
  switch (e.type) {
    case "agent.state":
    case "task.state":
      return `${d.from} → ${d.to}${d.reason ? ` (${d.reason})` : ""}${d.error ? `: ${d.error}` : ""}`;
    case "model.call":
      return `${Math.round(d.latency_ms || 0)} ms, ${d.input_tokens}+${d.output_tokens} tokens → ${(d.tool_calls || []).join(", ") || "reply"}`;
    case "task.created":
      return `${d.instruction || ""} (by ${d.created_by})`;
    case "mail.sent":
      return `${d.from} → ${d.to}${d.subject ? ": " + d.subject : ""}`;
    case "mail.answering":
      return `answering mail ${d.mail_id} in task ${d.task_id}`;
    default:
      if (e.type.startsWith("tool.")) return `${d.tool}(${(d.arguments || "").slice(0, 60)}) → ${(d.result || "").slice(0, 80)}`;
      return Object.entries(d).filter(([k]) => k !== "traceback")
        .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ").slice(0, 200);
  }
}

export class AgentView {
  constructor(name, agents) {
    this.name = name;
    this.agents = agents;
    this.closed = false;
    this.timelineIds = new Set();
    const $ = (tag, attrs = {}) => el(tag, attrs);
    this.title = el("h1", { text: name });
    this.status = $("p", { class: "status-line" });
    this.controls = $("div", { class: "controls" });
    this.instruction = el("input", { id: "task-instruction", placeholder: "What should it do?", "aria-label": "task instruction" });
    this.taskError = el("p", { class: "error", role: "alert", hidden: true });
    const taskForm = el("form", { class: "start-task" }, this.instruction,
      el("button", { type: "submit", id: "start-task", text: "Start task" }));
    taskForm.addEventListener("submit", (e) => { e.preventDefault(); this.startTask(); });
    this.tasks = $("div", { class: "tasks" });
    this.schedule = $("div", { class: "schedule" });
    this.why = $("div", { class: "why" });
    this.locks = $("div", { class: "locks" });
    this.usage = $("div", { class: "usage" });
    this.mail = $("div", { class: "mail" });
    this.timeline = $("ol", { class: "timeline", id: "timeline" });
    const section = (title, body, id) => el("section", { class: "panel", id }, el("h2", { text: title }), body);
    this.node = el("section", { class: "page agent", dataset: { agent: name } },
      el("header", { class: "agent-head" }, this.title,
        el("a", { href: `#/chat/${enc(name)}`, class: "small-link", text: "chat" }), this.status, this.controls),
      el("div", { class: "grid" },
        section("Tasks", el("div", {}, taskForm, this.taskError, this.tasks), "panel-tasks"),
        section("Schedule and wake", this.schedule, "panel-schedule"),
        section("Why", this.why, "panel-why"),
        section("Locks", this.locks, "panel-locks"),
        section("Tokens and cost", this.usage, "panel-usage"),
        section("Mail", this.mail, "panel-mail"),
        section("Timeline", this.timeline, "panel-timeline")));
    this.refreshSoon = throttle(() => this.refresh(), 1000);
    this.refreshTasksSoon = throttle(() => this.refreshTasks(), 700);
  }

  async open() {
    await Promise.all([this.refresh(), this.refreshTasks(), this.loadTimeline()]);
  }

  close() { this.closed = true; }

  agentsChanged(agents) {
    const a = agents.get(this.name);
    if (a) this.renderStatus(a);
  }

  async refresh() {
    if (this.closed) return;
    try {
      const [a, mail] = await Promise.all([get(`/api/agents/${enc(this.name)}`),
        get(`/api/agents/${enc(this.name)}/mail?limit=20`)]);
      if (this.closed) return;
      this.detail = a;
      this.renderStatus(a);
      this.renderSchedule(a);
      this.renderWhy(a);
      this.renderLocks(a.locks);
      this.renderUsage(a.usage);
      this.renderMail(mail);
    } catch (err) {
      this.status.textContent = err.message;
      this.status.classList.add("error");
    }
  }

  renderStatus(a) {
    this.node.dataset.state = a.state;
    this.status.className = `status-line ${a.state}`;
    this.status.textContent = `${a.role ? a.role + " · " : ""}${statusLabel(a)}`;
    const button = (action, label, enabled) => el("button", {
      class: `control ${action}`, "data-action": action, disabled: !enabled, text: label,
      onclick: () => this.control(action),
    });
    const s = a.state;
    clear(this.controls).append(
      button("pause", "Pause", s === "running" || s === "sleeping"),
      button("resume", "Resume", s === "paused"),
      button("sleep", "Sleep", s === "running"),
      button("wake", "Wake now", s === "sleeping"),
      button("stop", "Stop", s !== "stopped"),
      button("start", "Start", s === "stopped" || s === "failed"),
      button("restart", "Restart", true));
  }

  async control(action) {
    try {
      const a = await post(`/api/agents/${enc(this.name)}/${action}`);
      this.agents.set(this.name, a);
      this.renderStatus(a);
      this.refreshSoon();
      this.refreshTasksSoon();
    } catch (err) {
      toast(err.message);
    }
  }

  async startTask() {
    const instruction = this.instruction.value;
    this.taskError.hidden = true;
    try {
      await post("/api/tasks", { agent: this.name, instruction, created_by: session.me });
      this.instruction.value = "";
      this.refreshTasksSoon();
    } catch (err) {
      this.taskError.hidden = false;
      this.taskError.textContent = err.message;
    }
  }

  async cancel(id) {
    try {
      await post(`/api/tasks/${enc(id)}/cancel`);
      this.refreshTasksSoon();
    } catch (err) {
      toast(err.message);
    }
  }

  async refreshTasks() {
    if (this.closed) return;
    try {
      const data = await get(`/api/tasks?agent=${enc(this.name)}&limit=30`);
      if (!this.closed) this.renderTasks(data);
    } catch (err) {
      toast(err.message);
    }
  }

  renderTasks(data) {
    const rows = data.tasks.slice().reverse().map((t) => {
      const max = t.max_steps || 50;
      // What the task reported (report_progress) if it did; otherwise steps used.
      const progress = t.state === "done" ? 100 : typeof t.progress === "number"
        ? Math.round(t.progress) : Math.min(100, Math.round((t.step / max) * 100));
      const what = t.waiting_on ? `waiting on ${t.waiting_on}` : t.error || t.result
        || t.progress_note || (TERMINAL.has(t.state) ? t.state : "");
      return el("tr", { dataset: { task: t.id, state: t.state } },
        el("td", {}, el("span", { class: `pill ${t.state}`, text: t.state })),
        el("td", { class: "instr", title: t.instruction, text: t.instruction.slice(0, 90) }),
        el("td", {}, el("progress", { max: 100, value: progress, title: typeof t.progress === "number" ? `${progress}% reported` : `step ${t.step} of at most ${max}` }), ` ${t.step}`),
        el("td", { class: "what", title: what, text: what.slice(0, 90) }),
        el("td", { text: String(t.input_tokens + t.output_tokens) }),
        el("td", {}, TERMINAL.has(t.state) ? "" : el("button", { class: "small cancel", text: "Cancel", onclick: () => this.cancel(t.id) })));
    });
    if (!data.total) {
      clear(this.tasks).append(el("p", { class: "muted", text: "No tasks yet." }));
      return;
    }
    clear(this.tasks).append(
      el("p", { class: "muted", text: `${plural(data.total, "task")} in all${data.total > data.tasks.length ? `; the last ${data.tasks.length}` : ""}, newest first:` }),
      el("table", { class: "table" },
        el("thead", {}, el("tr", {}, ["state", "instruction", "step", "now / outcome", "tokens", ""].map((h) => el("th", { text: h })))),
        el("tbody", {}, rows)));
  }

  renderSchedule(a) {
    const entries = a.definition.schedule.map((s) => el("li", {},
      s.every ? `every ${s.every}` : s.cron ? `cron ${s.cron}` : `at ${s.at}`, `: ${s.instruction || ""}`));
    const timers = (a.timers || []).map((t) => el("li", { class: "timer" },
      `${t.when || t.kind || "timer"}: ${t.does || t.instruction || t.action || ""}`,
      t.next_due_ts ? ` (next ${time(t.next_due_ts)})` : t.next_due ? ` (next ${t.next_due})` : ""));
    clear(this.schedule).append(
      el("p", { text: a.next_wake ? `Next wake: ${time(a.next_wake)}` : a.state === "sleeping" ? "Sleeping until woken." : "No wake pending." }),
      entries.length ? el("ul", {}, entries) : el("p", { class: "muted", text: "No schedule." }),
      ...(timers.length ? [el("ul", {}, timers)] : []));
  }

  renderWhy(a) {
    const items = [...a.why.blockers.map((b) => el("li", {}, b.task_id ? `${b.task_id}: ` : "", b.what)),
      ...a.why.running.map((r) => el("li", {}, r))];
    clear(this.why).append(items.length ? el("ul", {}, items) : el("p", { class: "muted", text: "Nothing running or blocked." }));
  }

  renderLocks(locks) {
    const items = [
      ...locks.held.map((l) => el("li", {}, `holds ${l.mode} lock on ${l.resource} (task ${l.task_id}, ${l.lease_left_s}s of lease left)`)),
      ...locks.waiting.map((w) => el("li", {}, `waits for ${w.mode} on ${w.resource} (task ${w.task_id}, ${w.waiting_s}s)`)),
      ...locks.operations.map((o) => el("li", {}, `${o.state} ${o.resource} (${o.kind}, task ${o.task_id})`)),
    ];
    clear(this.locks).append(items.length ? el("ul", {}, items) : el("p", { class: "muted", text: "No locks held or awaited." }));
  }

  renderUsage(u) {
    clear(this.usage).append(el("dl", { class: "kv" },
      el("dt", { text: "tokens" }), el("dd", { text: `${u.tokens} (${u.input_tokens} in, ${u.output_tokens} out)` }),
      el("dt", { text: "cost" }), el("dd", { text: `$${Number(u.cost).toFixed(4)}` }),
      el("dt", { text: "tasks" }), el("dd", { text: String(u.tasks) }),
      el("dt", { text: "tool calls" }), el("dd", { text: String(u.tool_calls) })));
  }

  renderMail(mail) {
    const line = (m, dir) => el("li", { title: m.body },
      `${dir === "in" ? "from " + displayName(m.sender) : "to " + m.recipient} · ${time(m.created_at)} · `,
      (m.subject || m.body || "").slice(0, 80));
    const inbox = mail.inbox.slice(-10).reverse().map((m) => line(m, "in"));
    const sent = mail.sent.slice(-10).reverse().map((m) => line(m, "out"));
    clear(this.mail).append(
      el("h3", { text: "Received" }), inbox.length ? el("ul", {}, inbox) : el("p", { class: "muted", text: "none" }),
      el("h3", { text: "Sent" }), sent.length ? el("ul", {}, sent) : el("p", { class: "muted", text: "none" }));
  }

  async loadTimeline() {
    try {
      const data = await get(`/api/agents/${enc(this.name)}/timeline?limit=150`);
      if (this.closed) return;
      this.addTimeline(data.events, false);
    } catch (err) {
      toast(err.message);
    }
  }

  addTimeline(events, live) {
    const items = [];
    for (const e of events) {
      if (QUIET.has(e.type)) continue;
      if (e.id !== null && e.id !== undefined) {
        if (this.timelineIds.has(e.id)) continue;
        this.timelineIds.add(e.id);
      }
      items.push(el("li", { class: `ev ${e.type.split(".")[0]}`, dataset: { type: e.type } },
        el("time", { text: time(e.ts), title: ago(e.ts) }),
        el("span", { class: "type", text: e.type }),
        e.task_id ? el("span", { class: "task", text: e.task_id }) : null,
        el("span", { class: "desc", text: describe(e) })));
    }
    if (!items.length) return;
    // Newest first.
    this.timeline.prepend(...items.reverse());
    while (this.timeline.children.length > TIMELINE_MAX) this.timeline.lastChild.remove();
    if (live) this.timeline.firstChild.classList.add("new");
  }

  onEvents(events) {
    if (this.closed) return;
    const mine = events.filter((e) => e.agent === this.name);
    if (!mine.length) return;
    this.addTimeline(mine, true);
    if (mine.some((e) => e.type.startsWith("task.") || e.type === "model.call")) this.refreshTasksSoon();
    if (mine.some((e) => !QUIET.has(e.type))) this.refreshSoon();
  }
}
