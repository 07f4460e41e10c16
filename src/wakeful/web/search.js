// Search and filters across mail, tasks and events: words, kind, agent, task state
// and time. The query lives in the address (#/search/q=...&kind=...), so a search
// can be reloaded, shared and gone back to.

import { get } from "./api.js";
import { agentLink, taskLink } from "./events.js";
import { el, fill, when } from "./util.js";

const PAGE = 100;
const STATES = ["", "queued", "running", "waiting", "done", "failed", "cancelled"];
const KINDS = [["", "everything"], ["tasks", "tasks"], ["mail", "mail"], ["events", "events"]];
const SINCE = [["", "any time"], ["3600", "last hour"], ["86400", "last day"], ["604800", "last week"]];

export class SearchView {
  constructor(query, agents) {
    const params = new URLSearchParams(query);
    this.closed = false;
    const select = (name, options, value, label) => el("label", {}, `${label} `,
      el("select", { name, "aria-label": label }, options.map(([v, text]) =>
        el("option", { value: v, text, selected: v === value ? true : null }))));
    this.form = el("form", { class: "search-form", role: "search" },
      el("input", { name: "q", type: "search", value: params.get("q") || "", placeholder: "words to find", "aria-label": "search words" }),
      select("kind", KINDS, params.get("kind") || "", "kind"),
      select("agent", [["", "any agent"], ...[...agents.keys()].sort().map((n) => [n, n])], params.get("agent") || "", "agent"),
      select("state", STATES.map((s) => [s, s || "any state"]), params.get("state") || "", "task state"),
      select("within", SINCE, params.get("within") || "", "time"),
      el("button", { type: "submit", text: "Search" }));
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      const data = new URLSearchParams();
      for (const [k, v] of new FormData(this.form)) if (String(v).trim()) data.set(k, String(v).trim());
      location.hash = `#/search/${data.toString()}`;
    });
    this.status = el("p", { class: "muted", role: "status" });
    this.results = el("ol", { class: "results plain", id: "search-results" });
    this.node = el("section", { class: "page search" }, el("h1", { text: "Search" }), this.form, this.status, this.results);
    this.params = params;
  }

  async open() {
    this.form.querySelector("input").focus();
    await this.reload();
  }

  async reload() {
    const p = this.params;
    if (![...p.keys()].length) {
      this.status.textContent = "Find tasks, mail and events by words, agent, state, kind and time.";
      return;
    }
    const api = new URLSearchParams({ limit: String(PAGE) });
    for (const key of ["q", "kind", "agent", "state"]) if (p.get(key)) api.set(key, p.get(key));
    if (p.get("within")) api.set("since", String(Date.now() / 1000 - Number(p.get("within"))));
    this.api = api;
    this.shown = 0;
    fill(this.results);
    await this.page(null);
  }

  // One page of hits; "More results" asks for the next (the API's `after` and `next`).
  async page(after) {
    const api = new URLSearchParams(this.api);
    if (after) api.set("after", after);
    try {
      const data = await get(`/api/search?${api}`);
      if (this.closed) return;
      this.shown += data.hits.length;
      this.status.textContent = `${this.shown}${data.next ? "+" : ""} found.`;
      this.more?.remove();
      this.results.append(...data.hits.map((h) => el("li", { class: `hit ${h.kind}`, dataset: { kind: h.kind, id: h.id } },
        el("div", { class: "hit-head" }, el("span", { class: `pill ${h.state || ""}`, text: h.state ? `task · ${h.state}` : h.kind.replace(/s$/, "") }), " ",
          h.agent && !h.agent.startsWith("person:") ? agentLink(h.agent) : el("span", { text: h.agent || "" }), " ",
          h.task_id ? taskLink(h.task_id, h.title) : el("strong", { text: h.title }), " ", when(h.ts)),
        el("div", { class: "hit-text", text: h.text }))));
      if (data.next) {
        this.more = el("button", { class: "more-results", type: "button", text: "More results", onclick: () => this.page(data.next) });
        this.results.after(this.more);
      }
    } catch (err) {
      this.status.textContent = err.message;
      this.status.className = "error";
    }
  }

  close() { this.closed = true; }
}

export function searchLink(params) {
  return `#/search/${new URLSearchParams(params).toString()}`;
}

