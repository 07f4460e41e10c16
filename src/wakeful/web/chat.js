// A conversation: 1-1 with one agent, or a channel with several agents and people.
//
// A person's message is mail. The agent answers in its own task; while it does, the
// stream carries `mail.answering` (which task answers which mail), then that task's
// `model.token`s, which fill a "typing" bubble, and finally the `mail.sent` of the
// reply, which turns the bubble into the reply itself.

import { enc, get, post, session } from "./api.js";
import { displayName, el, statusLabel, throttle, time } from "./util.js";
import { toast } from "./toast.js";

export const metrics = { lastSend: null, firstToken: [] };
if (window.wakeful) window.wakeful.metrics = metrics;
window.wakefulMetrics = metrics;

const NEAR_BOTTOM_PX = 120;

export class ChatView {
  constructor({ agent = null, channel = null, agents, onRead = () => {} }) {
    this.agent = agent;
    this.channel = channel;
    this.agents = agents;
    this.onRead = onRead;
    this.me = session.me;
    this.shown = new Set(); // mail ids on screen
    this.typing = new Map(); // task id -> {node, body, mailId, agent}
    this.answering = new Map(); // mail id -> task id
    this.closed = false;
    this.refreshPostsSoon = throttle(() => this.refreshPosts(), 300);

    const title = agent ? agent : `#${channel}`;
    this.subtitle = el("p", { class: "subtitle" });
    this.list = el("div", { class: "messages", role: "log", "aria-live": "polite" });
    this.input = el("textarea", { id: "message", rows: 2, placeholder: agent ? `Message ${agent}…` : `Message #${channel}…`, "aria-label": "message" });
    this.error = el("p", { class: "error", role: "alert", hidden: true });
    this.send = el("button", { type: "submit", id: "send", text: "Send" });
    this.form = el("form", { class: "composer" }, this.input, this.send);
    this.form.addEventListener("submit", (e) => { e.preventDefault(); this.submit(); });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); this.submit(); }
    });
    const links = agent ? el("a", { href: `#/agent/${enc(agent)}`, class: "small-link", text: "agent page" }) : null;
    this.node = el("section", { class: "page chat", dataset: { chat: agent ? `agent:${agent}` : `channel:${channel}` } },
      el("header", { class: "chat-head" }, el("h1", { text: title }), links, this.subtitle),
      this.list, this.error, this.form);
  }

  async open() {
    this.describe();
    try {
      if (this.agent) {
        const data = await get(`/api/conversations/${enc(this.agent)}?person=${enc(this.me)}&mark_read=true`);
        this.addMails(data.mail);
      } else {
        const data = await get(`/api/channels/${enc(this.channel)}/posts?limit=200`);
        this.addMails(data.posts);
        this.markRead();
      }
    } catch (err) {
      this.showError(err.message);
    }
    this.scrollDown(true);
    this.input.focus();
  }

  close() { this.closed = true; }

  async describe() {
    if (this.agent) {
      const a = this.agents.get(this.agent);
      this.subtitle.textContent = a ? `${a.role || ""} · ${statusLabel(a)}` : "unknown agent";
      return;
    }
    try {
      const c = await get(`/api/channels/${enc(this.channel)}`);
      this.members = c.members;
      const names = c.members.map(displayName);
      const shown = names.length > 12 ? `${names.slice(0, 10).join(", ")} and ${names.length - 10} more` : names.join(", ");
      this.subtitle.textContent = `${c.topic ? c.topic + " · " : ""}${names.length} members: ${shown}`;
      this.subtitle.title = names.join(", ");
    } catch (err) {
      this.showError(err.message);
    }
  }

  agentsChanged() { if (this.agent) this.describe(); }

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

  messageNode(mail) {
    const mine = mail.sender === this.me;
    const isPerson = mail.sender.startsWith("person:");
    const kind = mine ? "mine" : isPerson ? "person" : "agent";
    return el("div", { class: `msg ${kind}`, dataset: { mail: mail.id, sender: displayName(mail.sender) } },
      el("div", { class: "meta" }, el("span", { class: "from", text: displayName(mail.sender) }),
        el("time", { text: time(mail.created_at) })),
      el("div", { class: "body", text: mail.body || mail.subject }));
  }

  addMails(mails) {
    const near = this.nearBottom();
    for (const mail of mails) {
      if (this.shown.has(mail.id)) continue;
      this.shown.add(mail.id);
      const taskId = (mail.payload && mail.payload.task_id) || this.answering.get(mail.in_reply_to);
      const bubble = taskId && this.typing.get(taskId);
      if (bubble) {
        // The streamed bubble becomes the reply, where it already is.
        this.typing.delete(taskId);
        bubble.node.replaceWith(this.messageNode(mail));
      } else {
        this.list.append(this.messageNode(mail));
      }
    }
    this.scrollDown(near);
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
    const body = el("div", { class: "body" });
    const node = el("div", { class: "msg agent typing", dataset: { task: d.task_id, sender: d.agent } },
      el("div", { class: "meta" }, el("span", { class: "from", text: d.agent }),
        el("span", { class: "dots", text: "typing" })),
      body);
    this.typing.set(d.task_id, { node, body, mailId: d.mail_id, agent: d.agent, tokens: 0 });
    this.list.append(node);
  }

  onEvents(events) {
    if (this.closed) return;
    const near = this.nearBottom();
    const fetches = [];
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
      } else if (e.type === "mail.sent" && this.relevantMail(d) && !this.shown.has(d.mail_id)) {
        fetches.push(d.mail_id);
      } else if (e.type === "task.state" && this.typing.has(e.task_id)
        && (d.to === "failed" || d.to === "cancelled")) {
        // The responder still sends an answer saying so; it replaces this bubble.
        this.typing.get(e.task_id).node.classList.add("failed");
      } else if (e.type === "agent.state" && this.agent === e.agent) {
        this.describe();
      }
    }
    if (fetches.length) {
      // A channel reloads its latest posts (at most a few times a second, however many
      // agents answer at once); a 1-1 chat fetches the new mail itself.
      if (this.channel) this.refreshPostsSoon();
      else this.fetchMails(fetches);
    }
    this.scrollDown(near);
  }

  async refreshPosts() {
    if (this.closed) return;
    try {
      const data = await get(`/api/channels/${enc(this.channel)}/posts?limit=200`);
      if (this.closed) return;
      this.addMails(data.posts);
      this.markRead();
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
    if (near) this.list.scrollTop = this.list.scrollHeight;
  }
}
