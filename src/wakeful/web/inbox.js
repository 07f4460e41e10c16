// People in the loop: what waits for a person. The inbox page (#/inbox/) lists tool
// calls waiting for an approval (with a diff for file writes: approve, approve with
// edited arguments, deny with a reason) and questions agents asked (answer them); the
// same cards show inline in a 1-1 chat, for that agent's tasks. Everything refreshes
// on approval.* / question.* events from the live stream.

import { enc, get, post } from "./api.js";
import { el, displayName, throttle, time } from "./util.js";
import { paced } from "./frames.js";
import { toast } from "./toast.js";

const RELEVANT = /^(approval\.|question\.|task\.state|message\.)/;

function diffNode(diff) {
  if (!diff) return null;
  const lines = diff.split("\n").filter((l) => l !== "");
  return el("pre", { class: "diff", "aria-label": "what the call would change" },
    ...lines.map((l) => el("span", {
      class: l.startsWith("+") && !l.startsWith("+++") ? "add"
        : l.startsWith("-") && !l.startsWith("---") ? "del" : "ctx",
      text: `${l}\n`,
    })));
}

export function approvalCard(a, onDone) {
  const error = el("p", { class: "error", role: "alert", hidden: true });
  const args = el("textarea", { class: "edit-args", rows: 4, hidden: true, "aria-label": "edited arguments (JSON)" });
  args.value = JSON.stringify(JSON.parse(a.arguments || "{}"), null, 2);
  const reason = el("input", { class: "deny-reason", placeholder: "why not? (the agent reads it)", "aria-label": "reason to deny" });
  const act = async (body) => {
    error.hidden = true;
    try {
      await post(`/api/approvals/${enc(a.id)}`, body);
      onDone();
    } catch (err) {
      error.hidden = false;
      error.textContent = err.message;
    }
  };
  const approve = el("button", { type: "button", class: "approve", text: "Approve", onclick: () => {
    if (args.hidden) return act({ decision: "approve" });
    let parsed;
    try { parsed = JSON.parse(args.value); } catch (err) {
      error.hidden = false;
      error.textContent = `the arguments are not valid JSON: ${err.message}`;
      return undefined;
    }
    return act({ decision: "approve", arguments: parsed });
  } });
  const edit = el("button", { type: "button", class: "small edit", text: "Edit arguments", onclick: () => {
    args.hidden = !args.hidden;
    approve.textContent = args.hidden ? "Approve" : "Approve with these arguments";
  } });
  const deny = el("button", { type: "button", class: "deny", text: "Deny", onclick: () => {
    if (!reason.value.trim()) {
      error.hidden = false;
      error.textContent = "say why the call is denied (the agent reads it)";
      reason.focus();
      return undefined;
    }
    return act({ decision: "deny", reason: reason.value.trim() });
  } });
  const who = a.approvers.length ? a.approvers.map(displayName).join(", ") : "anyone";
  const due = a.due_at ? ` · decided by its timeout (${a.on_timeout}) at ${time(a.due_at)}` : "";
  return el("article", { class: "card approval", dataset: { approval: a.id } },
    el("h3", {}, "Approve ", el("code", { text: a.summary }), "?"),
    el("p", { class: "meta" }, `${a.agent} · `, el("a", { href: `#/task/${enc(a.task_id)}`, text: "task" }),
      ` · approvers: ${who}${due}`),
    diffNode(a.diff) || el("pre", { class: "args", text: args.value }),
    args,
    a.may_decide ? el("div", { class: "actions" }, approve, edit, reason, deny)
      : el("p", { class: "meta", text: `only ${who} may decide this` }),
    error);
}

export function questionCard(q, onDone) {
  const error = el("p", { class: "error", role: "alert", hidden: true });
  const answer = el("textarea", { class: "answer", rows: 2, "aria-label": "your answer", placeholder: "your answer" });
  const send = el("button", { type: "button", class: "send-answer", text: "Answer", onclick: async () => {
    if (!answer.value.trim()) return;
    try {
      await post(`/api/questions/${enc(q.id)}/answer`, { body: answer.value });
      onDone();
    } catch (err) {
      error.hidden = false;
      error.textContent = err.message;
    }
  } });
  const agent = q.sender.split("/")[0];
  return el("article", { class: "card question", dataset: { question: q.id } },
    el("h3", { text: `${agent} asks ${displayName(q.recipient)}` }),
    el("p", { class: "question-text", text: q.body }),
    el("div", { class: "actions" }, answer, send), error);
}

// Makes `nodes` the children of `parent`, in order, without moving a node that is
// already in its place (moving a node would take the focus from a person typing in it).
function place(parent, nodes) {
  nodes.forEach((node, i) => {
    const here = parent.children[i];
    if (here !== node) parent.insertBefore(node, here || null);
  });
  while (parent.children.length > nodes.length) parent.lastElementChild.remove();
}

// The cards of one agent (inline in its 1-1 chat), or of everyone (the inbox).
export class PeoplePanel {
  constructor(agent = null) {
    this.agent = agent;
    this.node = el("section", { class: "people-panel", "aria-label": "waiting for you", hidden: true });
    this.refreshSoon = throttle(() => this.refresh(), 300);
    this.cards = new Map();
  }

  async refresh() {
    try {
      const box = await get("/api/inbox");
      const mine = (x) => !this.agent || x === this.agent;
      const approvals = box.approvals.filter((a) => mine(a.agent));
      const questions = box.questions.filter((q) => mine(q.sender.split("/")[0]));
      const done = () => this.refresh();
      // A card already shown is kept as it is (with whatever the person has typed into
      // it): a refresh only adds new cards and removes decided ones.
      const kept = new Map(this.cards);
      this.cards = new Map();
      const card = (key, make) => {
        const node = kept.get(key) || make();
        this.cards.set(key, node);
        return node;
      };
      place(this.node, [
        ...approvals.map((a) => card(`a:${a.id}`, () => approvalCard(a, done))),
        ...questions.map((q) => card(`q:${q.id}`, () => questionCard(q, done)))]);
      this.node.hidden = this.agent !== null && approvals.length + questions.length === 0;
      if (!this.agent && approvals.length + questions.length === 0) {
        this.node.append(el("p", { class: "empty", text: "Nothing waits for you." }));
      }
      updateCount(box.approvals.length + box.questions.length);
    } catch (err) {
      toast(err.message);
    }
  }

  onEvents(events) {
    if (events.some((e) => RELEVANT.test(e.type))) this.refreshSoon();
  }
}

export class InboxView {
  constructor() {
    this.panel = new PeoplePanel(null);
    this.node = el("section", { class: "page inbox" }, el("h1", { text: "Inbox" }),
      el("p", { class: "subtitle", text: "Tool calls waiting for an approval, and questions agents asked." }),
      this.panel.node);
  }

  open() { this.panel.refresh(); }
  reload() { return this.panel.refresh(); }
  close() {}
  onEvents(events) { this.panel.onEvents(events); }
}

function updateCount(n) {
  const count = document.getElementById("inbox-count");
  if (count) count.textContent = n ? String(n) : "";
}

// The sidebar's count, kept fresh from the stream (less often while it is busy).
const refreshCount = throttle(async () => {
  try {
    const box = await get("/api/inbox");
    updateCount(box.approvals.length + box.questions.length);
  } catch { /* the stream's banner says when the server is away */ }
}, paced(1000, 3000));

export function watchInbox(events) {
  if (events.some((e) => RELEVANT.test(e.type))) refreshCount();
}
export { refreshCount };
