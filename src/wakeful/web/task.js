// One task, live: its whole conversation (what the model said between steps, each
// tool call with its result), its events (waits, sleeps and wake-ups, locks, mail),
// the tasks it delegated to and the one that delegated it, and the causal tree of its
// trace. Reachable from chat replies, the timeline, the agent page and the overview.

import { enc, get, post } from "./api.js";
import { renderConversation } from "./conversation.js";
import { agentLink, describe, taskLink, tone } from "./events.js";
import { renderMarkdown } from "./markdown.js";
import { el, money, num, throttle, time, when, fill } from "./util.js";
import { toast } from "./toast.js";

const TERMINAL = new Set(["done", "failed", "cancelled"]);

export class TaskView {
  constructor(id) {
    this.id = id;
    this.tokens = { tasks: [id] }; // the streamed tokens it shows (stream.wantTokens)
    this.closed = false;
    this.title = el("h1", { text: `Task ${id}` });
    this.facts = el("div", { class: "task-facts" });
    this.controls = el("div", { class: "controls" });
    this.conversation = el("div", { class: "conversation", id: "task-conversation" });
    this.live = el("div", { class: "turn assistant live", hidden: true },
      el("div", { class: "who", text: "model · writing…" }), el("div", { class: "md live-text" }));
    this.events = el("ol", { class: "timeline", id: "task-events", tabindex: "0", "aria-label": "task events" });
    this.links = el("div", { id: "task-links" });
    this.tree = el("div", { id: "task-tree" });
    const panel = (title, body, id) => el("section", { class: "panel", id, "aria-labelledby": `${id}-h` },
      el("h2", { id: `${id}-h`, text: title }), body);
    this.node = el("section", { class: "page task", dataset: { task: id } },
      el("header", {}, this.title, this.controls, this.facts),
      el("div", { class: "task-grid" },
        panel("Conversation", el("div", {}, this.conversation, this.live), "panel-conversation"),
        el("div", { class: "side" },
          panel("Delegations and trace", el("div", {}, this.links, this.tree), "panel-trace"),
          panel("Events", this.events, "panel-events"))));
    this.refreshSoon = throttle(() => this.refresh(), 600);
  }

  async open() { await this.refresh(); }
  close() { this.closed = true; }
  reload() { return this.refresh(); }

  async refresh() {
    if (this.closed) return;
    try {
      const [task, events, tree] = await Promise.all([
        get(`/api/tasks/${enc(this.id)}`), get(`/api/tasks/${enc(this.id)}/events?limit=1000`),
        get(`/api/tasks/${enc(this.id)}/tree`)]);
      if (this.closed) return;
      this.task = task;
      this.render(task, events.events, tree.root);
    } catch (err) {
      fill(this.node, el("h1", { text: `Task ${this.id}` }),
        el("p", { class: "error", role: "alert", text: err.message }),
        el("p", {}, el("a", { href: "#/", text: "Back to the overview" })));
    }
  }

  render(t, events, root) {
    this.node.dataset.state = t.state;
    fill(this.title, `Task ${t.id} `, el("span", { class: `pill ${t.state}`, text: t.state }));
    const duration = t.started_at ? ((t.finished_at || Date.now() / 1000) - t.started_at).toFixed(1) : null;
    fill(this.facts, 
      el("div", { class: "md instruction" }, renderMarkdown(t.instruction)),
      el("dl", { class: "kv" },
        el("dt", { text: "agent" }), el("dd", {}, agentLink(t.agent)),
        el("dt", { text: "asked by" }), el("dd", {}, t.parent_id ? taskLink(t.parent_id) : t.created_by),
        el("dt", { text: "created" }), el("dd", {}, when(t.created_at), ` (${time(t.created_at)})`),
        duration ? el("dt", { text: "duration" }) : null, duration ? el("dd", { text: `${duration} s` }) : null,
        el("dt", { text: "steps" }), el("dd", { text: `${t.step}${t.max_steps ? ` of at most ${t.max_steps}` : ""}, attempt ${t.attempt}` }),
        el("dt", { text: "usage" }), el("dd", { text: `${num(t.input_tokens + t.output_tokens)} tokens, ${money(t.cost)}, ${num(t.tool_calls)} tool calls` }),
        t.waiting_on ? el("dt", { text: "waiting on" }) : null, t.waiting_on ? el("dd", { text: t.waiting_on }) : null,
        t.result ? el("dt", { text: "result" }) : null,
        t.result ? el("dd", { class: "md" }, t.truncated
          ? el("p", { class: "truncated", text: "Cut off: the model reached its output limit (max_output_tokens) before it finished." })
          : null, renderMarkdown(t.result)) : null,
        t.error ? el("dt", { text: "error" }) : null,
        t.error ? el("dd", { class: "err" }, t.error_kind ? el("strong", { text: `${t.error_kind}: ` }) : null, t.error) : null));
    fill(this.controls, 
      TERMINAL.has(t.state) ? null : el("button", { class: "control cancel", text: "Cancel task", onclick: () => this.cancel() }),
      el("button", { class: "control", text: "Export JSON", onclick: () => this.export(events) }));
    fill(this.conversation, ...renderConversation(t.messages || [], events));
    this.renderEvents(events);
    this.renderLinks(t);
    fill(this.tree, el("h3", { text: "Causal tree" }), el("ul", { class: "tree", role: "tree" }, this.treeNode(root)));
  }

  treeNode(n) {
    const current = n.id === this.id;
    return el("li", { role: "treeitem", "aria-current": current ? "page" : null, class: current ? "current" : "" },
      el("span", { class: `pill ${n.state}`, text: n.state }), " ", n.agent, ": ",
      current ? el("strong", { text: n.instruction.slice(0, 80) }) : taskLink(n.id, n.instruction.slice(0, 80)),
      n.error_kind ? el("span", { class: "err", text: ` (${n.error_kind})` }) : null,
      n.children.length ? el("ul", { role: "group" }, n.children.map((c) => this.treeNode(c))) : null);
  }

  renderLinks(t) {
    const parts = [];
    if (t.parent_id) parts.push(el("p", {}, "Delegated by ", taskLink(t.parent_id)));
    if (t.children.length) {
      parts.push(el("p", { text: "Delegated to:" }), el("ul", { class: "plain" }, t.children.map((c) =>
        el("li", {}, el("span", { class: `pill ${c.state}`, text: c.state }), " ", c.agent, ": ", taskLink(c.id, c.instruction.slice(0, 80))))));
    }
    if (!parts.length) parts.push(el("p", { class: "muted", text: "No delegations." }));
    fill(this.links, ...parts);
  }

  renderEvents(events) {
    fill(this.events, ...events.filter((e) => e.type !== "model.token").map((e) =>
      el("li", { class: `ev tone-${tone(e)}`, dataset: { type: e.type } },
        el("time", { text: time(e.ts), title: new Date(e.ts * 1000).toISOString() }),
        el("span", { class: "type", text: e.type }), el("span", { class: "desc", text: describe(e) }))));
  }

  async cancel() {
    if (!confirm(`Cancel task ${this.id}?`)) return;
    try {
      await post(`/api/tasks/${enc(this.id)}/cancel`);
      toast("Task cancelled.", "info", 3000);
      this.refreshSoon();
    } catch (err) {
      toast(err.message);
    }
  }

  export(events) {
    const blob = new Blob([JSON.stringify({ task: this.task, events }, null, 2)], { type: "application/json" });
    const a = el("a", { href: URL.createObjectURL(blob), download: `${this.id}.json` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }

  onEvents(events) {
    if (this.closed) return;
    let dirty = false;
    for (const e of events) {
      if (e.task_id !== this.id) {
        if (e.type === "task.state" && this.task && this.task.children.some((c) => c.id === e.task_id)) dirty = true;
        continue;
      }
      if (e.type === "model.token") {
        this.live.hidden = false;
        this.live.querySelector(".live-text").append(e.data.text);
      } else {
        if (e.type === "model.call" || e.type === "task.state") {
          // The step is stored now: the reload shows it in place of the live text.
          this.live.hidden = true;
          this.live.querySelector(".live-text").textContent = "";
        }
        dirty = true;
      }
    }
    if (dirty) this.refreshSoon();
  }
}
