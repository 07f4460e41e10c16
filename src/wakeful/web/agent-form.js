// Agents made at run time: the "new agent" form (admins), and on an agent's page
// Export (its agent file, YAML) and Remove (an agent made at run time). Also who is
// logged in: a person's own token names them; the project token is the admin's.

import { api, enc, get, session } from "./api.js";
import { el } from "./util.js";
import { toast } from "./toast.js";

export async function showWhoIsLoggedIn(node) {
  try {
    const me = await get("/api/whoami");
    if (!me.project_token) session.login(session.token, me.name); // speak as yourself
    node.textContent = me.project_token ? `${session.name} (admin token)` : `${me.name} (${me.role})`;
    node.dataset.role = me.role;
    document.body.dataset.role = me.role;
    return me;
  } catch (err) {
    node.textContent = session.name;
    return null;
  }
}

async function exportAgent(name) {
  const response = await fetch(`/api/agents/${enc(name)}/export`,
    { headers: { Authorization: `Bearer ${session.token}` } });
  if (!response.ok) {
    toast(`export of ${name}: HTTP ${response.status}`);
    return;
  }
  const text = await response.text();
  const link = el("a", { href: URL.createObjectURL(new Blob([text], { type: "application/yaml" })),
    download: `${name}.yaml` });
  document.body.append(link);
  link.click();
  link.remove();
}

async function removeAgent(name) {
  if (!window.confirm(`Remove ${name}? Its queued tasks are cancelled.`)) return;
  const finish = window.confirm("Let its running tasks finish? (Cancel: cancel them now.)");
  try {
    await api("DELETE", `/api/agents/${enc(name)}?running=${finish ? "finish" : "cancel"}`);
    toast(`${name} removed.`, "info", 3000);
    location.hash = "#/";
  } catch (err) {
    toast(err.message);
  }
}

export function agentAdminLinks(name) {
  return el("span", { class: "agent-admin" },
    el("button", { class: "small export", text: "Export", title: "download its agent file", onclick: () => exportAgent(name) }),
    el("button", { class: "small remove-agent", text: "Remove", title: "remove an agent made at run time", onclick: () => removeAgent(name) }));
}

export function newAgentView(onCreated) {
  const error = el("p", { class: "error", role: "alert", hidden: true });
  const form = el("form", { class: "card form", id: "agent-form" },
    el("h2", { text: "New agent" }),
    el("p", { class: "muted", text: "Made now and kept in the store: it survives a restart and every worker runs it." }),
    el("label", {}, "Name ", el("input", { name: "name", required: true, placeholder: "helper", pattern: "[a-z0-9][a-z0-9_\\-]{0,63}" })),
    el("label", {}, "Role ", el("input", { name: "role", placeholder: "a helper" })),
    el("label", {}, "Instructions ", el("textarea", { name: "instructions", rows: "4" })),
    el("label", {}, "Model ", el("input", { name: "model", placeholder: "the project's default" })),
    el("label", {}, "Tools (comma-separated) ", el("input", { name: "tools", placeholder: "note, word_count" })),
    el("button", { type: "submit", text: "Create" }), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const fields = { name: String(data.get("name")).trim() };
    for (const key of ["role", "instructions", "model"]) {
      const value = String(data.get(key) || "").trim();
      if (value) fields[key] = value;
    }
    const tools = String(data.get("tools") || "").split(",").map((t) => t.trim()).filter(Boolean);
    if (tools.length) fields.tools = tools;
    try {
      const made = await api("POST", "/api/agents", fields);
      if (onCreated) await onCreated(made);
      location.hash = `#/agent/${enc(made.name)}`;
    } catch (err) {
      error.hidden = false;
      error.textContent = err.message;
    }
  });
  return { node: el("section", { class: "page" }, form), close() {} };
}
