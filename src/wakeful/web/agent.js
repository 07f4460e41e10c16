// One agent's page: state and controls (destructive ones confirmed, each with
// feedback), its definition, its tasks (each opens its trace), schedules and next
// wake, why it waits, locks, token/cost use, mail, and a live timeline of events.
//
// Kept cheap while work runs: the timeline is capped and contained, task rows are
// updated in place (keyed by task id), and a panel is rebuilt only when its data
// changed, so a flood of events costs little layout and paint. Every DOM update goes
// through the shared update pass (frames.js); while the stream is busy the timeline
// takes new rows four times a second and the side panels reload every few seconds.

import { enc, get, post, session } from "./api.js";
import { describe, taskLink, tone } from "./events.js";
import { ago, clear, displayName, el, money, num, plural, statusLabel, throttle, time, fill } from "./util.js";
import { toast } from "./toast.js";
import { paced, write } from "./frames.js";
import { InterventionsPanel } from "./interventions.js";
import { agentAdminLinks } from "./agent-form.js";

const TIMELINE_MAX = 200;
const TIMELINE_SLICE = 25;
const TERMINAL = new Set(["done", "failed", "cancelled"]);
const QUIET = new Set(["model.token"]);
const CONFIRM = {
  stop: "Stop {name}? Its running tasks go back to the queue and stay there until it is started.",
  restart: "Restart {name}? Its running tasks are interrupted and resumed after the restart.",
  sleep: "Put {name} to sleep? It takes no new step until woken.",
};
const DONE = {
  pause: "paused", resume: "resumed", sleep: "put to sleep", wake: "woken",
  stop: "stopped", start: "started", restart: "restarted",
};

export class AgentView {
  constructor(name, agents) {
    this.name = name;
    this.agents = agents;
    this.closed = false;
    this.timelineIds = new Set();
    this.rendered = {}; // panel -> the JSON it was last built from
    this.taskRows = new Map(); // task id -> {tr, cells}
    this.fresh = [];
    this.pendingTimeline = []; // live events not drawn yet
    this.title = el("h1", { text: name });
    this.status = el("p", { class: "status-line", role: "status" });
    this.controls = el("div", { class: "controls", role: "group", "aria-label": "controls" });
    this.instruction = el("input", { id: "task-instruction", placeholder: "What should it do?", "aria-label": "task instruction" });
    this.taskError = el("p", { class: "error", role: "alert", hidden: true });
    const taskForm = el("form", { class: "start-task" }, this.instruction,
      el("button", { type: "submit", id: "start-task", text: "Start task" }));
    taskForm.addEventListener("submit", (e) => { e.preventDefault(); this.startTask(); });
    this.taskNote = el("p", { class: "muted" });
    this.taskBody = el("tbody");
    this.taskTable = el("div", { class: "scroll-x", tabindex: "0", role: "region", "aria-label": "tasks" },
      el("table", { class: "table" },
        el("thead", {}, el("tr", {}, ["state", "instruction", "step", "now / outcome", "tokens", ""].map((h) => el("th", { scope: "col", text: h })))),
        this.taskBody));
    this.tasks = el("div", { class: "tasks" }, this.taskNote, this.taskTable);
    this.definition = el("div", { class: "definition" });
    this.schedule = el("div", { class: "schedule" });
    this.why = el("div", { class: "why" });
    this.locks = el("div", { class: "locks" });
    this.usage = el("div", { class: "usage" });
    this.mail = el("div", { class: "mail" });
    this.timeline = el("ol", { class: "timeline", id: "timeline", tabindex: "0", "aria-label": "timeline, newest first" });
    const section = (title, body, id) => el("section", { class: "panel", id, "aria-labelledby": `${id}-h` },
      el("h2", { id: `${id}-h`, text: title }), body);
    this.node = el("section", { class: "page agent", dataset: { agent: name } },
      el("header", { class: "agent-head" }, this.title,
        el("a", { href: `#/chat/${enc(name)}`, class: "small-link", text: "chat" }), agentAdminLinks(name), this.status, this.controls),
      el("div", { class: "grid" },
        section("Tasks", el("div", {}, taskForm, this.taskError, this.tasks), "panel-tasks"),
        section("Interventions", (this.interventions = new InterventionsPanel(name)).root, "panel-interventions"),
        section("Schedule and wake", this.schedule, "panel-schedule"),
        section("Why", this.why, "panel-why"),
        section("Locks", this.locks, "panel-locks"),
        section("Tokens and cost", this.usage, "panel-usage"),
        section("Mail", this.mail, "panel-mail"),
        section("Timeline", this.timeline, "panel-timeline"),
        section("Definition", this.definition, "panel-definition")));
    this.refreshSoon = throttle(() => this.refresh(), paced(2000, 5000));
    this.refreshTasksSoon = throttle(() => this.refreshTasks(), paced(1000, 1500));
    this.drawTimelineSoon = throttle(() => write(`timeline:${name}`, () => this.drawTimeline()), paced(0, 250));
  }

  async open() {
    await Promise.all([this.refresh(), this.refreshTasks(), this.loadTimeline(), this.interventions.refresh()]);
  }

  reload() { return this.open(); }

  close() { this.closed = true; }

  agentsChanged(agents) {
    const a = agents.get(this.name);
    if (a) this.renderStatus(a);
  }

  // Rebuild a panel only when what it shows changed.
  changed(key, data) {
    const json = JSON.stringify(data);
    if (this.rendered[key] === json) return false;
    this.rendered[key] = json;
    return true;
  }

  async refresh() {
    if (this.closed) return;
    try {
      const [a, mail] = await Promise.all([get(`/api/agents/${enc(this.name)}`),
        get(`/api/agents/${enc(this.name)}/mail?limit=20`)]);
      if (!this.closed) write(`panels:${this.name}`, () => this.renderPanels(a, mail));
    } catch (err) {
      this.status.textContent = err.message;
      this.status.className = "status-line error";
    }
  }

  renderPanels(a, mail) {
    if (this.closed) return;
    this.detail = a;
    this.renderStatus(a);
    if (this.changed("schedule", [a.definition.schedule, a.timers, a.next_wake, a.state])) this.renderSchedule(a);
    if (this.changed("why", a.why)) this.renderWhy(a);
    if (this.changed("locks", a.locks)) this.renderLocks(a.locks);
    if (this.changed("usage", a.usage)) this.renderUsage(a.usage);
    if (this.changed("mail", mail)) this.renderMail(mail);
    if (this.changed("definition", a.definition)) this.renderDefinition(a.definition);
  }

  renderStatus(a) {
    const label = `${a.role ? a.role + " · " : ""}${statusLabel(a)}`;
    if (!this.changed("status", [a.state, label])) return;
    this.node.dataset.state = a.state;
    this.status.className = `status-line ${a.state}`;
    this.status.textContent = label;
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
    const ask = CONFIRM[action];
    if (ask && !window.confirm(ask.replace("{name}", this.name))) return;
    const buttons = [...this.controls.querySelectorAll("button")];
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const a = await post(`/api/agents/${enc(this.name)}/${action}`);
      this.agents.set(this.name, a);
      delete this.rendered.status;
      this.renderStatus(a);
      toast(`${this.name} ${DONE[action]}: now ${statusLabel(a)}.`, "info", 3500);
      this.refreshSoon();
      this.refreshTasksSoon();
    } catch (err) {
      toast(err.message);
      delete this.rendered.status;
      const known = this.agents.get(this.name);
      if (known) this.renderStatus(known);
    }
  }

  async startTask() {
    const instruction = this.instruction.value;
    this.taskError.hidden = true;
    try {
      const t = await post("/api/tasks", { agent: this.name, instruction, created_by: session.me });
      this.instruction.value = "";
      toast(`Task ${t.id} queued on ${this.name}.`, "info", 3000);
      this.refreshTasksSoon();
    } catch (err) {
      this.taskError.hidden = false;
      this.taskError.textContent = err.message;
    }
  }

  async cancel(id) {
    if (!window.confirm(`Cancel task ${id}?`)) return;
    try {
      await post(`/api/tasks/${enc(id)}/cancel`);
      toast(`Task ${id} cancelled.`, "info", 3000);
      this.refreshTasksSoon();
    } catch (err) {
      toast(err.message);
    }
  }

  async refreshTasks() {
    if (this.closed) return;
    try {
      const data = await get(`/api/tasks?agent=${enc(this.name)}&limit=30`);
      if (!this.closed) write(`tasks:${this.name}`, () => { if (!this.closed) this.renderTasks(data); });
    } catch (err) {
      toast(err.message);
    }
  }

  taskRow(t) {
    let row = this.taskRows.get(t.id);
    if (row) return row;
    const cells = {
      state: el("span", { class: "pill" }),
      instr: el("td", { class: "instr", title: t.instruction }, taskLink(t.id, t.instruction.slice(0, 90))),
      progress: el("progress", { max: 100 }),
      step: el("span"),
      what: el("td", { class: "what" }),
      tokens: el("td"),
      action: el("td"),
    };
    const tr = el("tr", { dataset: { task: t.id } }, el("td", {}, cells.state), cells.instr,
      el("td", {}, cells.progress, cells.step), cells.what, cells.tokens, cells.action);
    row = { tr, cells, last: "" };
    this.taskRows.set(t.id, row);
    return row;
  }

  renderTasks(data) {
    if (!data.total) {
      this.taskNote.textContent = "No tasks yet.";
      this.taskTable.hidden = true;
      return;
    }
    this.taskTable.hidden = false;
    const note = `${plural(data.total, "task")} in all${data.total > data.tasks.length ? `; the last ${data.tasks.length}` : ""}, newest first. Open one to see its conversation.`;
    if (this.taskNote.textContent !== note) this.taskNote.textContent = note;
    const wanted = data.tasks.slice().reverse();
    const keep = new Set(wanted.map((t) => t.id));
    for (const [id, row] of this.taskRows) if (!keep.has(id)) { row.tr.remove(); this.taskRows.delete(id); }
    wanted.forEach((t, index) => {
      const row = this.taskRow(t);
      const max = t.max_steps || 50;
      const progress = t.state === "done" ? 100 : typeof t.progress === "number"
        ? Math.round(t.progress) : Math.min(100, Math.round((t.step / max) * 100));
      const what = t.waiting_on ? `waiting on ${t.waiting_on}` : t.error || t.result
        || t.progress_note || (TERMINAL.has(t.state) ? t.state : "");
      const tokens = num(t.input_tokens + t.output_tokens);
      const key = [t.state, progress, t.step, what, tokens].join("|");
      if (row.last !== key) {
        row.last = key;
        const c = row.cells;
        row.tr.dataset.state = t.state;
        c.state.className = `pill ${t.state}`;
        c.state.textContent = t.state;
        c.progress.value = progress;
        c.progress.title = typeof t.progress === "number" ? `${progress}% reported` : `step ${t.step} of at most ${max}`;
        c.step.textContent = ` ${t.step}`;
        c.what.textContent = what.slice(0, 90);
        c.what.title = what;
        c.tokens.textContent = tokens;
        fill(c.action, TERMINAL.has(t.state) ? "" : el("button", { class: "small cancel", text: "Cancel", "aria-label": `cancel task ${t.id}`, onclick: () => this.cancel(t.id) }));
      }
      if (this.taskBody.children[index] !== row.tr) this.taskBody.insertBefore(row.tr, this.taskBody.children[index] || null);
    });
  }

  renderDefinition(d) {
    const b = d.budget || d.budgets || null;
    fill(this.definition, el("dl", { class: "kv" },
      el("dt", { text: "model" }), el("dd", { text: d.model || "(default)" }),
      el("dt", { text: "tools" }), el("dd", { text: d.tools.length ? d.tools.join(", ") : "none" }),
      el("dt", { text: "tasks at once" }), el("dd", { text: String(d.max_concurrent_tasks) }),
      el("dt", { text: "steps per task" }), el("dd", { text: String(d.max_steps) }),
      el("dt", { text: "restart" }), el("dd", { text: Object.entries(d.restart || {}).map(([k, v]) => `${k}: ${v}`).join(", ") }),
      el("dt", { text: "schedule" }), el("dd", { text: d.schedule.length ? d.schedule.map((s) => s.every ? `every ${s.every}` : s.cron ? `cron ${s.cron}` : `at ${s.at}`).join("; ") : "none" }),
      b ? el("dt", { text: "budget" }) : null, b ? el("dd", { text: JSON.stringify(b) }) : null),
    el("h3", { text: "Instructions" }), el("pre", { class: "pre", text: d.instructions || "(none)" }));
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
    const items = [...a.why.blockers.map((b) => el("li", {}, b.task_id ? taskLink(b.task_id) : "", b.task_id ? ": " : "", b.what)),
      ...a.why.running.map((r) => el("li", {}, r))];
    clear(this.why).append(items.length ? el("ul", {}, items) : el("p", { class: "muted", text: "Nothing running or blocked." }));
  }

  renderLocks(locks) {
    const items = [
      ...locks.held.map((l) => el("li", {}, `holds ${l.mode} lock on ${l.resource} (`, taskLink(l.task_id), `, ${l.lease_left_s}s of lease left)`)),
      ...locks.waiting.map((w) => el("li", {}, `waits for ${w.mode} on ${w.resource} (`, taskLink(w.task_id), `, ${w.waiting_s}s)`)),
      ...locks.operations.map((o) => el("li", {}, `${o.state} ${o.resource} (${o.kind}, `, taskLink(o.task_id), ")")),
    ];
    clear(this.locks).append(items.length ? el("ul", {}, items) : el("p", { class: "muted", text: "No locks held or awaited." }));
  }

  renderUsage(u) {
    clear(this.usage).append(el("dl", { class: "kv" },
      el("dt", { text: "tokens" }), el("dd", { text: `${num(u.tokens)} (${num(u.input_tokens)} in, ${num(u.output_tokens)} out)` }),
      el("dt", { text: "cost" }), el("dd", { text: money(u.cost) }),
      el("dt", { text: "tasks" }), el("dd", { text: num(u.tasks) }),
      el("dt", { text: "tool calls" }), el("dd", { text: num(u.tool_calls) })));
  }

  renderMail(mail) {
    const line = (m, dir) => el("li", { title: m.body },
      `${dir === "in" ? "from " + displayName(m.sender) : "to " + m.recipient} · ${time(m.created_at)} · `,
      (m.subject || m.body || "").slice(0, 160),
      m.payload && m.payload.task_id ? el("span", {}, " · ", taskLink(m.payload.task_id, "task")) : null);
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
      items.push(el("li", { class: `ev tone-${tone(e)}`, dataset: { type: e.type } },
        el("time", { text: time(e.ts), title: ago(e.ts) }),
        el("span", { class: "type", text: e.type }),
        e.task_id ? el("a", { class: "ev-task", href: `#/task/${enc(e.task_id)}`, text: e.task_id }) : null,
        el("span", { class: "desc", title: describe(e), text: describe(e) })));
    }
    if (!items.length) return;
    items.reverse(); // newest first
    const tail = items.length > TIMELINE_MAX ? items.slice(0, TIMELINE_MAX) : items;
    this.timeline.prepend(...tail);
    let extra = this.timeline.children.length - TIMELINE_MAX;
    while (extra-- > 0) this.timeline.lastChild.remove();
    if (live) {
      for (const old of this.fresh) old.classList.remove("new");
      this.fresh = tail.slice(0, 3);
      for (const item of this.fresh) item.classList.add("new");
    }
  }

  // New rows, oldest first, at most TIMELINE_SLICE a frame (a burst of events, such as
  // forty tasks queued at once, is spread over a few frames instead of one long one).
  drawTimeline() {
    if (this.closed) return;
    if (this.pendingTimeline.length > TIMELINE_MAX) this.pendingTimeline = this.pendingTimeline.slice(-TIMELINE_MAX);
    this.addTimeline(this.pendingTimeline.splice(0, TIMELINE_SLICE), true);
    if (this.pendingTimeline.length) write(`timeline:${this.name}`, () => this.drawTimeline());
  }

  onEvents(events) {
    if (this.closed) return;
    const mine = events.filter((e) => e.agent === this.name && !QUIET.has(e.type));
    if (!mine.length) return;
    this.interventions.onEvents(mine);
    this.pendingTimeline.push(...mine);
    this.drawTimelineSoon();
    if (mine.some((e) => e.type.startsWith("task.") || e.type === "model.call")) this.refreshTasksSoon();
    this.refreshSoon();
  }
}
