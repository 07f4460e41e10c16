// Entry point: login, the sidebar (agents with live state, channels; a drawer on a
// phone), the connection banner, and a hash router over the views: overview, task,
// agent page, 1-1 chat, channel chat, new channel.

import { api, ApiError, enc, get, getAll, post, session, whenUnauthorized } from "./api.js";
import * as stream from "./stream.js";
import { el, clear, statusLabel, throttle } from "./util.js";
import { paced, write } from "./frames.js";
import { ChatView } from "./chat.js";
import { AgentView } from "./agent.js";
import { OverviewView } from "./overview.js";
import { TaskView } from "./task.js";
import { SearchView } from "./search.js";
import { InboxView, refreshCount, watchInbox } from "./inbox.js";
import { clearErrors, toast } from "./toast.js";
import { newAgentView, showWhoIsLoggedIn } from "./agent-form.js";

const state = {
  agents: new Map(), // name -> summary from the API
  channels: new Map(), // name -> channel
  view: null,
};
const $ = (id) => document.getElementById(id);

// --- login -----------------------------------------------------------------
function takeTokenFromUrl() {
  const match = location.hash.match(/token=([^&]+)/);
  if (!match) return false;
  session.login(decodeURIComponent(match[1]), session.name);
  history.replaceState(null, "", location.pathname + location.search);
  return true;
}

// A "#token=" link pasted into a tab that already shows the login (or the app).
window.addEventListener("hashchange", () => {
  if (!takeTokenFromUrl()) return;
  get("/api/status").then(start, (err) => showLogin(err.status === 401
    ? "That token is not right: check .wakeful/token." : err.message));
});

function showLogin(message) {
  stream.disconnect();
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-name").value = session.name;
  const error = $("login-error");
  error.hidden = !message;
  error.textContent = message || "";
  $("login-token").focus();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = $("login-token").value.trim();
  const name = $("login-name").value.trim();
  session.login(token, name);
  try {
    await get("/api/status");
  } catch (err) {
    session.logout();
    showLogin(err.status === 401 ? "That token is not right: check .wakeful/token." : err.message);
    return;
  }
  start();
});

whenUnauthorized(() => {
  session.logout();
  showLogin("The server no longer accepts this token; log in again.");
});

$("logout").addEventListener("click", () => {
  session.logout();
  showLogin();
});

// --- sidebar ------------------------------------------------------------------
const agentRows = new Map();

function agentRow(name) {
  let row = agentRows.get(name);
  if (row) return row;
  const dot = el("span", { class: "dot", "aria-hidden": "true" });
  const label = el("span", { class: "status" });
  const link = el("a", { href: `#/agent/${enc(name)}`, class: "name", text: name });
  const chat = el("a", { href: `#/chat/${enc(name)}`, class: "chat-link", title: `chat with ${name}`, text: "chat" });
  row = { li: el("li", { dataset: { agent: name } }, dot, el("div", { class: "who" }, link, label), chat), dot, label };
  agentRows.set(name, row);
  return row;
}

function renderAgents() {
  const list = $("agent-list");
  const names = [...state.agents.keys()].sort();
  $("agent-count").textContent = String(names.length);
  names.forEach((name, index) => {
    const a = state.agents.get(name);
    const row = agentRow(name);
    const text = statusLabel(a);
    if (row.label.textContent !== text) row.label.textContent = text;
    const look = a.state === "running" && a.waiting && a.waiting.length ? "waiting" : a.state;
    if (row.li.dataset.state !== look) {
      row.li.dataset.state = look;
      row.dot.className = `dot ${look}`;
    }
    row.li.classList.toggle("active", isCurrent("agent", name) || isCurrent("chat", name));
    if (list.children[index] !== row.li) list.insertBefore(row.li, list.children[index] || null);
  });
  while (list.children.length > names.length) list.lastChild.remove();
  list.classList.toggle("many", names.length > 200);
}
// The sidebar is drawn in the shared update pass, and reloaded less often while busy:
// its labels are a glance, the page beside it is what is being read.
const renderAgentsSoon = throttle(() => write("sidebar", renderAgents), paced(250, 1000));

function renderChannels() {
  const list = clear($("channel-list"));
  for (const c of [...state.channels.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const unread = c.unread ? el("span", { class: "badge", text: String(c.unread), title: `${c.unread} unread` }) : null;
    list.append(el("li", { dataset: { channel: c.name }, class: isCurrent("channel", c.name) ? "active" : "" },
      el("a", { href: `#/channel/${enc(c.name)}`, class: "name", text: `#${c.name}` }), unread));
  }
}

async function refreshAgents() {
  try {
    const agents = await getAll("/api/agents?limit=1000", "agents");
    const seen = new Set();
    for (const a of agents) {
      state.agents.set(a.name, a);
      seen.add(a.name);
    }
    for (const name of [...state.agents.keys()]) if (!seen.has(name)) state.agents.delete(name);
    state.loaded = true;
    renderAgentsSoon();
    if (state.view && state.view.agentsChanged) state.view.agentsChanged(state.agents);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) toast(err.message);
  }
}
const refreshAgentsSoon = throttle(refreshAgents, paced(500, 2500));

async function refreshChannels() {
  try {
    const channels = await getAll(`/api/channels?member=${enc(session.me)}&limit=1000`, "channels");
    state.channels = new Map(channels.map((c) => [c.name, c]));
    renderChannels();
  } catch (err) {
    toast(err.message);
  }
}
const refreshChannelsSoon = throttle(refreshChannels, paced(1500, 4000));

function onEvents(events) {
  let agentsDirty = false;
  let channelsDirty = false;
  for (const e of events) {
    if (e.type === "agent.state" && state.agents.has(e.agent)) {
      const a = state.agents.get(e.agent);
      a.state = e.data.to;
      a.reason = e.data.reason || "";
      agentsDirty = true;
    } else if (e.type === "task.state" || e.type === "task.created" || e.type === "stream.dropped"
      || e.type === "run.started") {
      agentsDirty = true;
    } else if (e.type.startsWith("mail.channel") || (e.type === "mail.sent" && e.data.to && e.data.to.startsWith("#"))) {
      channelsDirty = true;
    }
  }
  if (agentsDirty) {
    renderAgentsSoon();
    refreshAgentsSoon();
  }
  if (channelsDirty) refreshChannelsSoon();
}

// --- new channel ----------------------------------------------------------------
function newChannelView() {
  const names = [...state.agents.keys()].sort();
  const boxes = names.map((n) => el("label", { class: "check" },
    el("input", { type: "checkbox", value: n, name: "member" }), n));
  const error = el("p", { class: "error", role: "alert", hidden: true });
  const form = el("form", { class: "card form", id: "channel-form" },
    el("h2", { text: "New channel" }),
    el("label", {}, "Name ", el("input", { name: "name", required: true, placeholder: "team" })),
    el("label", {}, "Topic ", el("input", { name: "topic" })),
    el("fieldset", {}, el("legend", { text: "Agents in it (you join it too)" }), boxes),
    el("button", { type: "submit", text: "Create" }), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    try {
      const channel = await post("/api/channels", {
        name: String(data.get("name")).trim().replace(/^#/, ""),
        topic: String(data.get("topic") || ""),
        members: data.getAll("member").map(String),
        created_by: session.me,
      });
      await refreshChannels();
      location.hash = `#/channel/${enc(channel.name)}`;
    } catch (err) {
      error.hidden = false;
      error.textContent = err.message;
    }
  });
  return { node: el("section", { class: "page" }, form), close() {} };
}

// --- router ---------------------------------------------------------------------
function route() {
  const [, kind, raw] = location.hash.match(/^#\/([\w-]+)\/?(.*)$/) || [];
  let name = raw || "";
  try { name = decodeURIComponent(name); } catch { /* keep it as it is */ }
  return { kind: kind || "home", name, raw: raw || "" };
}

function isCurrent(kind, name) {
  const r = route();
  return r.kind === kind && r.name === name;
}

function notFoundView(what) {
  return {
    node: el("section", { class: "page not-found" },
      el("h1", { text: "Not found" }),
      el("p", { role: "alert", text: what }),
      el("p", {}, el("a", { href: "#/", text: "Back to the overview" }))),
    close() {},
  };
}

function unknownPlace({ kind, name }) {
  const agent = (kind === "chat" || kind === "agent") && name && !state.agents.has(name);
  const channel = kind === "channel" && name && !state.channels.has(name);
  return { agent, channel };
}

let shows = 0; // how many times a page was shown (start() shows one unless a click did)
async function show() {
  shows += 1;
  const where = route();
  if (state.loaded) {
    const unknown = unknownPlace(where);
    // Made a moment ago elsewhere? Look again before saying it is not there.
    if (unknown.agent || unknown.channel) await Promise.all([refreshAgents(), refreshChannels()]);
    if (route().raw !== where.raw || route().kind !== where.kind) return; // moved on meanwhile
  }
  if (state.view) state.view.close();
  const { kind, name, raw } = where;
  let view;
  const unknown = state.loaded ? unknownPlace(where) : { agent: false, channel: false };
  const unknownAgent = unknown.agent;
  const unknownChannel = unknown.channel;
  if (unknownAgent) view = notFoundView(`There is no agent named '${name}'.`);
  else if (unknownChannel) view = notFoundView(`There is no channel named '#${name}'.`);
  else if (kind === "chat" && name) view = new ChatView({ agent: name, agents: state.agents });
  else if (kind === "channel" && name) view = new ChatView({ channel: name, agents: state.agents, onRead: refreshChannelsSoon });
  else if (kind === "agent" && name) view = new AgentView(name, state.agents);
  else if (kind === "task" && name) view = new TaskView(name);
  else if (kind === "search") view = new SearchView(raw, state.agents);
  else if (kind === "inbox") view = new InboxView();
  else if (kind === "new-channel") view = newChannelView();
  else if (kind === "new-agent") view = newAgentView(refreshAgents);
  else if (kind === "home") view = new OverviewView();
  else view = notFoundView(`There is no page at '${location.hash}'.`);
  state.view = view;
  // Only the streamed tokens this view shows come down the stream (the agent page and
  // the overview show none: with a hundred agents streaming, most of what is sent).
  stream.wantTokens(view.tokens || {});
  closeDrawer();
  clear($("main")).append(view.node);
  if (view.open) view.open();
  renderAgents();
  renderChannels();
}

let started = false;
async function start() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("me").textContent = session.name;
  await showWhoIsLoggedIn($("me"));
  if (!started) {
    started = true;
    stream.onEvents(onEvents);
    stream.onEvents(watchInbox);
    stream.onEvents((events) => state.view && state.view.onEvents && state.view.onEvents(events));
    stream.onStatus(connectionChanged);
    window.addEventListener("hashchange", () => { if (!/token=/.test(location.hash)) show(); });
    $("new-channel").addEventListener("click", () => { location.hash = "#/new-channel/"; });
    $("new-agent").addEventListener("click", () => { location.hash = "#/new-agent/"; });
    $("menu").addEventListener("click", toggleDrawer);
    $("scrim").addEventListener("click", closeDrawer);
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeDrawer(); });
  }
  stream.connect();
  const shown = shows;
  await Promise.all([refreshAgents(), refreshChannels()]);
  refreshCount();
  // A person who moved on while the lists loaded (clicked "New agent", say) keeps the
  // page they are on: showing it again would wipe what they have typed into it.
  if (shows === shown) show();
}

// --- connection: a banner while the server is away, everything reloaded after --------
let lostAt = null;
function connectionChanged(status) {
  const live = status === "live" || status === "resumed";
  document.body.dataset.conn = live ? "live" : "lost";
  $("conn").className = `conn ${live ? "live" : "reconnecting"}`;
  $("conn").textContent = live ? "live" : "offline";
  $("conn").title = live ? "live stream connected" : "reconnecting…";
  const banner = $("banner");
  if (!live) {
    lostAt = lostAt || Date.now();
    banner.hidden = false;
    banner.textContent = "Lost the connection to the server. Reconnecting… (what you see may be out of date)";
    return;
  }
  const wasLost = lostAt !== null;
  lostAt = null;
  banner.hidden = true;
  clearErrors();
  if (status === "resumed" || wasLost) {
    toast("Reconnected: reloading what this page shows.", "info", 3000);
    reloadEverything();
  } else {
    refreshAgentsSoon();
  }
}

async function reloadEverything() {
  await Promise.all([refreshAgents(), refreshChannels()]);
  const view = state.view;
  if (!view) return;
  // A view that failed to load while the server was away is built again; others reload.
  if (view.reload) await view.reload();
  else show();
}

// --- drawer (phone) ----------------------------------------------------------------
function toggleDrawer() {
  const open = !document.body.classList.contains("drawer-open");
  document.body.classList.toggle("drawer-open", open);
  $("menu").setAttribute("aria-expanded", String(open));
  if (open) $("agent-list").querySelector("a")?.focus();
}
function closeDrawer() {
  document.body.classList.remove("drawer-open");
  $("menu").setAttribute("aria-expanded", "false");
}

// --- boot -------------------------------------------------------------------------
takeTokenFromUrl();
if (session.token) {
  get("/api/status").then(start, (err) => {
    if (err.status === 0) start(); // the server is away: show the app, it reconnects
    else showLogin(err.status === 401 ? "That token is not right: check .wakeful/token." : err.message);
  });
} else {
  showLogin();
}
window.wakeful = { state, stream, api };
