// A conversation: 1-1 with one agent, or a channel with several agents and people.
//
// A person's message is mail. The agent answers in its own task; while it does, the
// stream carries `mail.answering` (which task answers which mail), then that task's
// `model.token`s, which fill a "typing" bubble (each finished step kept apart, as the
// model's words between tool calls), and finally the `mail.sent` of the reply, which
// turns the bubble into the reply itself. A reply links to the task that wrote it, and
// folds that task's tool calls under it. Messages are kept in the order they were
// sent (the store's), live and after a reload alike.

import { enc, get, post, session } from "./api.js";
import { messageNode } from "./message.js";
import { PeoplePanel } from "./inbox.js";
import { displayName, el, statusLabel, throttle } from "./util.js";
import { toast } from "./toast.js";

export const metrics = { lastSend: null, firstToken: [] };
if (window.wakeful) window.wakeful.metrics = metrics;
window.wakefulMetrics = metrics;

const NEAR_BOTTOM_PX = 120;
const PAGE = 100;
const REFRESH_PAGE = 500;
const MANY = 200; // past this many messages, off-screen ones skip rendering (CSS)
const HELD = new Set(["paused", "sleeping", "stopped", "failed"]);

const before = (a, b) => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);

export class ChatView {
  constructor({ agent = null, channel = null, agents, onRead = () => {} }) {
    this.agent = agent;
    this.channel = channel;
    this.agents = agents;
    this.onRead = onRead;
    // The streamed tokens it shows (stream.wantTokens): its agent's, or in a channel
    // any member's (a channel's members are many or few; all is simplest and right).
    this.tokens = agent ? { agents: [agent] } : { all: true };
    this.me = session.me;
    this.shown = new Map(); // mail id -> its node
    this.typing = new Map(); // task id -> {node, body, mailId, agent, tokens}
    this.answering = new Map(); // mail id -> task id
    this.closed = false;
    this.olderCursor = undefined; // the API's `older` of the oldest page shown (null: none)
    this.early = []; // live mail that came before the first page: placed once it is in
    this.oldestSeq = null;
    this.newestSeq = null;
    this.unseen = 0;
    this.refreshPostsSoon = throttle(() => this.refreshPosts(), 300);

    const title = agent ? agent : `#${channel}`;
    this.subtitle = el("p", { class: "subtitle" });
    this.older = el("button", { class: "older", type: "button", text: "Load older messages", onclick: () => this.loadOlder() });
    this.note = el("p", { class: "agent-state-note", role: "status", hidden: true });
    this.list = el("div", { class: "messages", role: "log", "aria-live": "polite", tabindex: "0", "aria-label": "messages" }, this.older);
    this.jump = el("button", { class: "jump", type: "button", hidden: true, onclick: () => this.scrollDown(true) });
    this.list.addEventListener("scroll", () => { if (this.nearBottom()) this.clearUnseen(); }, { passive: true });
    this.input = el("textarea", { id: "message", rows: 2, placeholder: agent ? `Message ${agent}…` : `Message #${channel}… (@name to ask one agent)`, "aria-label": "message" });
    this.error = el("p", { class: "error", role: "alert", hidden: true });
    this.send = el("button", { type: "submit", id: "send", text: "Send" });
    this.form = el("form", { class: "composer" }, this.input, this.send);
    this.form.addEventListener("submit", (e) => { e.preventDefault(); this.submit(); });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); this.submit(); }
    });
    const links = agent ? el("a", { href: `#/agent/${enc(agent)}`, class: "small-link", text: "agent page" }) : null;
    this.mails = new Map(); // mail id -> mail, for Export
    const exportButton = el("button", { class: "small export", type: "button", text: "Export", title: "download this conversation as Markdown", onclick: () => this.export() });
    this.node = el("section", { class: "page chat", dataset: { chat: agent ? `agent:${agent}` : `channel:${channel}` } },
      el("header", { class: "chat-head" }, el("h1", { text: title }), links, exportButton, this.subtitle),
      this.note, this.list, this.jump, this.error, this.form);
    // approvals and questions of this agent's tasks, inline (see inbox.js)
    this.people = agent ? new PeoplePanel(agent) : null;
    if (this.people) this.form.before(this.people.node);
  }

  async open() {
    if (this.people) this.people.refresh();
    this.describe();
    await this.load();
    this.scrollDown(true);
    this.input.focus();
  }

  // After a reconnect: everything since the newest message shown, however much.
  reload() { return this.newestSeq === null ? this.load() : this.refreshPosts(); }

  async load() {
    try {
      const data = await get(this.historyPath());
      // the newest page: where "load older" starts, unless older pages are shown already
      if (this.olderCursor === undefined) this.setOlder(data.older);
      this.addMails(data.mail || data.posts);
      if (this.channel) this.markRead();
      this.showError("");
    } catch (err) {
      this.showError(err.message);
    } finally {
      // Live mail that came first: now that the page says where history starts, mail
      // older than it stays behind "load older" instead of filling the gap before it.
      const early = this.early;
      this.early = [];
      if (early.length) this.addMails(early);
    }
  }

  async loadOlder() {
    const height = this.list.scrollHeight;
    try {
      if (!this.olderCursor) return;
      const data = await get(this.historyPath(this.olderCursor));
      this.setOlder(data.older);
      this.addMails(data.mail || data.posts, { quiet: true });
      this.list.scrollTop += this.list.scrollHeight - height; // keep what was on screen
    } catch (err) {
      toast(err.message);
    }
  }

  // One page of history, newest first: before a seq (the API's `older` cursor).
  historyPath(before = null) {
    const page = `limit=${PAGE}${before ? `&before=${before}` : ""}`;
    return this.agent
      ? `/api/conversations/${enc(this.agent)}?person=${enc(this.me)}&mark_read=true&${page}`
      : `/api/channels/${enc(this.channel)}/posts?${page}`;
  }

  // The mail after a seq, a big page at a time (the API's `after` and `next`).
  newerPath(after) {
    const page = `limit=${REFRESH_PAGE}${after === null ? "" : `&after=${after}`}`;
    return this.agent
      ? `/api/conversations/${enc(this.agent)}?person=${enc(this.me)}&mark_read=true&${page}`
      : `/api/channels/${enc(this.channel)}/posts?${page}`;
  }

  setOlder(cursor) {
    this.olderCursor = cursor ?? null;
    this.older.hidden = !this.olderCursor;
  }

  close() { this.closed = true; }

  async describe() {
    if (this.agent) {
      const a = this.agents.get(this.agent);
      this.subtitle.textContent = a ? `${a.role || ""} · ${statusLabel(a)}` : "unknown agent";
      this.showHeld();
      return;
    }
    try {
      const c = await get(`/api/channels/${enc(this.channel)}`);
      this.members = c.members;
      const names = c.members.map(displayName);
      const shown = names.length > 12 ? `${names.slice(0, 10).join(", ")} and ${names.length - 10} more` : names.join(", ");
      this.subtitle.textContent = `${c.topic ? c.topic + " · " : ""}${names.length} members: ${shown}`;
      this.subtitle.title = names.join(", ");
      this.showHeld();
    } catch (err) {
      this.showError(err.message);
    }
  }

  // Say plainly when an agent will not answer now (paused, asleep, stopped), and
  // mark its typing bubbles as held rather than "typing" forever. Cheap to call often:
  // a bubble is touched only when its agent's state changed.
  showHeld() {
    const names = this.agent ? [this.agent] : (this.members || []).filter((m) => !m.startsWith("person:"));
    const held = [];
    for (const n of names) {
      const a = this.agents.get(n);
      if (a && HELD.has(a.state)) held.push(a);
    }
    let text = "";
    if (held.length && (this.agent || held.length <= 5)) {
      text = held.map((a) => `${a.name} is ${a.state}: ${a.state === "sleeping" ? "it answers when it wakes" : a.state === "paused" ? "it answers once resumed" : "it answers once started"}.`).join(" ");
    } else if (held.length) {
      text = `${held.length} agents here are paused, asleep or stopped; they answer later.`;
    }
    if (this.note.textContent !== text) this.note.textContent = text;
    this.note.hidden = !text;
    for (const bubble of this.typing.values()) this.holdBubble(bubble);
  }

  holdBubble(bubble) {
    const a = this.agents.get(bubble.agent);
    const state = a && HELD.has(a.state) ? a.state : null;
    if (bubble.held === state) return;
    bubble.held = state;
    bubble.node.classList.toggle("held", Boolean(state));
    bubble.dots.textContent = state ? `${state}, will answer later` : "typing";
    bubble.dots.className = state ? "held-state" : "dots";
  }

  agentsChanged() {
    if (this.agent) this.describe();
    else this.showHeld(); // members are known; only their states changed
  }

  async markRead() {
    if (!this.members || !this.members.includes(this.me)) return;
    try {
      await post(`/api/channels/${enc(this.channel)}/read`, { member: this.me });
      this.onRead();
    } catch { /* only a counter */ }
  }

  showError(message) {
    this.error.hidden = !message;
    this.error.textContent = message || "";
  }

  async submit() {
    const body = this.input.value;
    if (!body.trim()) return;
    this.showError("");
    this.send.disabled = true;
    metrics.lastSend = performance.now();
    try {
      const data = this.agent
        ? await post("/api/mail", { sender: this.me, to: this.agent, body })
        : await post(`/api/channels/${enc(this.channel)}/posts`, { sender: this.me, body, join: true });
      this.input.value = "";
      this.addMails([data.mail]);
      this.scrollDown(true);
      if (this.channel && this.members && !this.members.includes(this.me)) this.describe();
    } catch (err) {
      this.showError(err.message); // the text stays in the box, to fix and send again
    } finally {
      this.send.disabled = false;
      this.input.focus();
    }
  }

  // Insert in the store's order; typing bubbles stay last.
  place(node) {
    let at = null;
    for (let child = this.list.lastElementChild; child; child = child.previousElementSibling) {
      if (!child.order) { if (child.classList.contains("typing")) at = child; continue; }
      if (!before(node.order, child.order)) break;
      at = child;
    }
    this.list.insertBefore(node, at);
  }

  addMails(mails, { quiet = false } = {}) {
    if (!quiet && this.olderCursor === undefined) { // the first page is still on its way
      this.early.push(...mails);
      return;
    }
    const near = this.nearBottom();
    const newest = this.newestSeq;
    let added = 0;
    for (const mail of mails) {
      if (this.shown.has(mail.id)) continue;
      const seq = typeof mail.seq === "number" ? mail.seq : null;
      // A live event about mail older than the oldest page shown: "load older" shows it
      // in its place (added now, it would leave a gap before it and count as new).
      if (!quiet && seq !== null && this.olderCursor && this.oldestSeq !== null && seq < this.oldestSeq) continue;
      if (seq !== null) {
        if (this.oldestSeq === null || seq < this.oldestSeq) this.oldestSeq = seq;
        if (this.newestSeq === null || seq > this.newestSeq) this.newestSeq = seq;
      }
      const taskId = (mail.payload && mail.payload.task_id) || this.answering.get(mail.in_reply_to);
      const bubble = taskId && this.typing.get(taskId);
      const node = messageNode(mail, this.me);
      this.shown.set(mail.id, node);
      this.mails.set(mail.id, mail);
      if (bubble) {
        // The streamed bubble becomes the reply.
        this.typing.delete(taskId);
        bubble.node.remove();
      }
      this.place(node);
      // new: from someone else, and after the newest shown before (not history)
      if (mail.sender !== this.me && (newest === null || seq === null || seq > newest)) added += 1;
    }
    this.list.classList.toggle("many", this.list.childElementCount > MANY);
    if (!quiet && added && !near) this.markUnseen(added);
    this.scrollDown(near);
  }

  markUnseen(count) {
    if (!this.unseen) {
      this.marker?.remove();
      this.marker = el("div", { class: "new-marker", role: "status", text: "new messages" });
      const last = [...this.list.children].filter((c) => c.order).slice(-count)[0];
      if (last) this.list.insertBefore(this.marker, last);
    }
    this.unseen += count;
    this.jump.hidden = false;
    this.jump.textContent = `${this.unseen} new message${this.unseen === 1 ? "" : "s"} ↓`;
  }

  clearUnseen() {
    if (!this.unseen) return;
    this.unseen = 0;
    this.jump.hidden = true;
  }

  relevantAnswer(d) {
    if (this.agent) return d.agent === this.agent && d.person === this.me;
    return d.channel && d.channel.replace(/^#/, "") === this.channel;
  }

  relevantMail(d) {
    if (this.agent) {
      return (d.to === this.me && displayName(d.from) === this.agent)
        || (d.from === this.me && d.to === this.agent);
    }
    return d.to === `#${this.channel}`;
  }

  startTyping(d) {
    if (this.typing.has(d.task_id)) return;
    this.answering.set(d.mail_id, d.task_id);
    const steps = el("div", { class: "steps", hidden: true });
    const body = el("div", { class: "body plain" });
    const dots = el("span", { class: "dots", text: "typing" });
    const stop = el("button", { class: "small stop-answer", type: "button", text: "Stop", "aria-label": `stop ${d.agent}'s answer`,
      onclick: () => this.stopAnswer(d.task_id) });
    const node = el("div", { class: "msg agent typing", dataset: { task: d.task_id, sender: d.agent } },
      el("div", { class: "meta" }, el("span", { class: "from", text: d.agent }), dots,
        el("a", { href: `#/task/${enc(d.task_id)}`, text: "open task" }), stop),
      steps, body);
    const bubble = { node, body, steps, dots, mailId: d.mail_id, agent: d.agent, tokens: 0, held: null };
    this.typing.set(d.task_id, bubble);
    this.list.append(node);
    this.list.classList.toggle("many", this.list.childElementCount > MANY);
    this.holdBubble(bubble);
  }

  // The conversation as shown (in order), as a Markdown file.
  export() {
    const mails = [...this.mails.values()].sort((a, b) => (a.created_at - b.created_at) || ((a.seq || 0) - (b.seq || 0)));
    const title = this.agent ? `Conversation with ${this.agent}` : `#${this.channel}`;
    const text = [`# ${title}`, "", ...mails.map((m) =>
      `**${displayName(m.sender)}** (${new Date(m.created_at * 1000).toISOString()}):\n\n${m.body || m.subject}\n`)].join("\n");
    const a = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/markdown" })),
      download: `${this.agent || this.channel}-conversation.md` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }

  async stopAnswer(taskId) {
    try {
      await post(`/api/tasks/${enc(taskId)}/cancel`);
    } catch (err) {
      toast(err.message);
    }
  }

  onEvents(events) {
    if (this.closed) return;
    if (this.people) this.people.onEvents(events);
    const near = this.nearBottom();
    const fetches = [];
    let heldChanged = false;
    for (const e of events) {
      const d = e.data || {};
      if (e.type === "mail.answering" && this.relevantAnswer(d)) {
        this.startTyping(d);
      } else if (e.type === "model.token") {
        const bubble = this.typing.get(e.task_id);
        if (!bubble) continue;
        if (bubble.tokens === 0 && metrics.lastSend !== null) {
          metrics.firstToken.push(performance.now() - metrics.lastSend);
        }
        bubble.tokens += d.count || 1;
        bubble.body.append(d.text);
      } else if (e.type === "model.call" && this.typing.has(e.task_id) && (d.tool_calls || []).length) {
        // A step that called tools ended: keep its words apart from the next step's.
        const bubble = this.typing.get(e.task_id);
        if (bubble.body.textContent) {
          bubble.steps.hidden = false;
          bubble.steps.append(el("div", { text: `${bubble.body.textContent} → ${d.tool_calls.join(", ")}` }));
          bubble.body.textContent = "";
        }
      } else if (e.type === "mail.sent" && this.relevantMail(d) && !this.shown.has(d.mail_id)) {
        fetches.push(d.mail_id);
      } else if (e.type === "task.state" && this.typing.has(e.task_id)
        && (d.to === "failed" || d.to === "cancelled")) {
        // The responder still sends an answer saying so; it replaces this bubble.
        this.typing.get(e.task_id).node.classList.add("failed");
      } else if (e.type === "agent.state" && (this.agent === e.agent || (this.members || []).includes(e.agent))) {
        const a = this.agents.get(e.agent);
        if (a) a.state = d.to;
        heldChanged = true;
      }
    }
    if (heldChanged) {
      if (this.agent) this.describe();
      else this.showHeld();
    }
    if (fetches.length) {
      // A channel reloads its latest posts (at most a few times a second, however many
      // agents answer at once); a 1-1 chat fetches the new mail itself.
      if (this.channel) this.refreshPostsSoon();
      else this.fetchMails(fetches);
    }
    this.scrollDown(near);
  }

  // The posts after the newest one shown, page by page (the API's `after` and `next`),
  // so that a burst of replies between two refreshes, however big, leaves no gap.
  async refreshPosts() {
    if (this.closed) return;
    try {
      const found = [];
      let after = this.newestSeq;
      do {
        const data = await get(this.newerPath(after));
        if (this.closed) return;
        found.push(...(data.mail || data.posts));
        after = data.next;
      } while (after !== null && after !== undefined);
      this.addMails(found);
      if (this.channel) this.markRead();
    } catch (err) {
      toast(err.message);
    }
  }

  async fetchMails(ids) {
    const found = await Promise.all(ids.map((id) => get(`/api/mail/${enc(id)}?reader=${enc(this.me)}`)
      .then((d) => d.mail, (err) => { toast(err.message); return null; })));
    if (this.closed) return;
    this.addMails(found.filter(Boolean));
  }

  nearBottom() {
    const l = this.list;
    return l.scrollHeight - l.scrollTop - l.clientHeight < NEAR_BOTTOM_PX;
  }

  scrollDown(near) {
    if (near) {
      this.list.scrollTop = this.list.scrollHeight;
      this.clearUnseen();
    }
  }
}
