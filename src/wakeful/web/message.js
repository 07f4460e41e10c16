// One chat message: its sender, time and body (safe markdown), a link to the task that
// wrote it, long text folded with its length, and the task's steps and tool calls
// folded under an agent's reply (loaded when opened).

import { enc, get } from "./api.js";
import { renderConversation } from "./conversation.js";
import { renderMarkdown } from "./markdown.js";
import { displayName, el, fill, time } from "./util.js";

const LONG_CHARS = 1500;
const orderOf = (m) => [m.created_at || 0, m.seq || 0];

export function messageNode(mail, me) {
  const mine = mail.sender === me;
  const isPerson = mail.sender.startsWith("person:");
  const kind = mine ? "mine" : isPerson ? "person" : "agent";
  const text = mail.body || mail.subject || "";
  const taskId = mail.payload && mail.payload.task_id;
  const body = el("div", { class: "body md" }, renderMarkdown(text));
  const node = el("div", { class: `msg ${kind}`, dataset: { mail: mail.id, sender: displayName(mail.sender) } },
    el("div", { class: "meta" }, el("span", { class: "from", text: displayName(mail.sender) }),
      el("time", { text: time(mail.created_at) }),
      taskId ? el("a", { href: `#/task/${enc(taskId)}`, class: "reply-task", text: "open task" }) : null),
    body);
  node.order = orderOf(mail);
  if (mail.payload && mail.payload.note) node.classList.add("note"); // merged, queued...
  if (text.length > LONG_CHARS) {
    node.classList.add("collapsed");
    const more = el("button", { class: "more", type: "button", text: `Show all (${text.length.toLocaleString()} characters)` });
    more.addEventListener("click", () => {
      const open = node.classList.toggle("collapsed");
      more.textContent = open ? `Show all (${text.length.toLocaleString()} characters)` : "Show less";
    });
    node.append(more);
  }
  if (taskId && !isPerson) node.append(workFold(taskId));
  return node;
}

// The task's steps and tool calls, folded under its reply, loaded when opened.
function workFold(taskId) {
  const box = el("div");
  const fold = el("details", { class: "work" }, el("summary", { text: "How it answered (steps and tool calls)" }), box);
  fold.addEventListener("toggle", async () => {
    if (!fold.open || box.dataset.loaded) return;
    box.dataset.loaded = "1";
    try {
      const [task, events] = await Promise.all([get(`/api/tasks/${enc(taskId)}`),
        get(`/api/tasks/${enc(taskId)}/events?limit=1000`)]);
      const turns = renderConversation(task.messages || [], events.events)
        .filter((n) => !n.classList.contains("system") && !n.classList.contains("user"));
      fill(box, ...turns);
    } catch (err) {
      fill(box, el("p", { class: "error", text: err.message }));
    }
  }, { once: false });
  return fold;
}
