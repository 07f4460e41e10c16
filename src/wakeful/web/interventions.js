// The "Interventions" panel of an agent's page: every control action on the agent
// (by a person, the CLI, another agent, the monitor), who did it and why, and an Undo
// button where there is one (resume after a pause, start a cancelled task again...).

import { enc, get, post } from "./api.js";
import { clear, el, time } from "./util.js";
import { toast } from "./toast.js";

const UNDO_LABEL = { resume: "Undo: resume", wake: "Undo: wake", start: "Undo: start",
  restart_task: "Undo: run the task again" };

export class InterventionsPanel {
  constructor(agent) {
    this.agent = agent;
    this.node = el("ol", { class: "interventions", id: "interventions", "aria-label": "interventions, newest first" });
    this.empty = el("p", { class: "muted", text: "Nobody has acted on this agent yet." });
    this.root = el("div", {}, this.empty, this.node);
    this.last = "";
  }

  async refresh() {
    try {
      const data = await get(`/api/agents/${enc(this.agent)}/controls?limit=50`);
      const json = JSON.stringify(data.controls);
      if (json === this.last) return;
      this.last = json;
      this.render(data.controls);
    } catch (err) {
      this.empty.hidden = false;
      this.empty.textContent = err.message;
    }
  }

  render(controls) {
    clear(this.node);
    this.empty.hidden = controls.length > 0;
    for (const c of [...controls].reverse()) {
      const what = c.action === "refused"
        ? `refused: ${c.data.action} by ${c.data.by}: ${c.data.why}`
        : `${c.action.replace("_", " ")}${c.data.task ? ` ${c.data.task}` : ""} by ${c.by}: ${c.reason}`;
      const row = el("li", { class: `intervention ${c.action}`, dataset: { control: c.control_id || "", action: c.action } },
        el("span", { class: "when", text: time(c.ts) }), " ", el("span", { class: "what", text: what }));
      if (c.undone_by) {
        row.append(" ", el("span", { class: "muted undone", text: `(undone by ${c.undone_by})` }));
      } else if (c.undo && c.control_id) {
        row.append(" ", el("button", { class: "small undo", "data-undo": c.control_id,
          text: UNDO_LABEL[c.undo.action] || "Undo", onclick: (e) => this.undo(c, e.currentTarget) }));
      }
      this.node.append(row);
    }
  }

  async undo(c, button) {
    button.disabled = true;
    try {
      await post(`/api/controls/${enc(c.control_id)}/undo`, { reason: "undone from the web UI" });
      toast(`Undone: ${c.action} of ${this.agent}.`, "info", 3000);
      this.last = "";
      await this.refresh();
    } catch (err) {
      button.disabled = false;
      toast(err.message);
    }
  }

  onEvents(events) {
    if (events.some((e) => e.agent === this.agent && e.type.startsWith("control."))) this.refresh();
  }
}
