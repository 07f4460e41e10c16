// Small DOM and formatting helpers shared by the views.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Replace a node's children, skipping null/undefined/false (which replaceChildren
// would print as text).
export function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export function time(ts) {
  if (!ts) return "";
  const d = new Date(ts * 1000);
  const today = new Date();
  const opts = { hour: "2-digit", minute: "2-digit", second: "2-digit" };
  return d.toDateString() === today.toDateString()
    ? d.toLocaleTimeString([], opts)
    : d.toLocaleString([], { ...opts, month: "short", day: "numeric" });
}

export function ago(ts) {
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  return `${(s / 3600).toFixed(1)}h ago`;
}

export function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

// What a person wants to know about an agent at a glance.
export function statusLabel(a) {
  switch (a.state) {
    case "running": {
      if (a.waiting && a.waiting.length) {
        return `running · waiting on ${a.waiting[0].on}` +
          (a.waiting.length > 1 ? ` (+${a.waiting.length - 1})` : "");
      }
      if (a.running) return `running · ${plural(a.running, "task")}` +
        (a.queued ? `, ${a.queued} queued` : "");
      return a.queued ? `running · ${a.queued} queued` : "running · idle";
    }
    case "sleeping":
      return a.next_wake ? `sleeping until ${time(a.next_wake)}`
        : `sleeping${a.reason ? " · " + a.reason : ""}`;
    case "paused": {
      const reason = a.reason || "a person's request";
      return reason.startsWith("paused") ? reason : `paused on ${reason}`;
    }
    case "failed":
      return `failed · ${a.reason || "unknown error"}`;
    case "stopped":
      return `stopped${a.reason ? " · " + a.reason : ""}`;
    default:
      return a.state;
  }
}

export function person(name) {
  return name.startsWith("person:") ? name : `person:${name}`;
}

export function displayName(address) {
  if (!address) return "";
  if (address.startsWith("person:")) return address.slice(7);
  return address.split("/")[0];
}

// Call fn at most once per `ms`, never dropping the last call. `ms` may be a function
// (frames.js's paced()): the interval is read at each call, so it can grow while busy.
export function throttle(fn, ms) {
  let timer = null;
  let pending = false;
  let last = 0;
  const interval = typeof ms === "function" ? ms : () => ms;
  return function throttled() {
    const wait = last + interval() - Date.now();
    if (wait <= 0 && !timer) {
      last = Date.now();
      fn();
      return;
    }
    pending = true;
    if (!timer) {
      timer = setTimeout(() => {
        timer = null;
        if (pending) {
          pending = false;
          last = Date.now();
          fn();
        }
      }, Math.max(0, wait));
    }
  };
}

// "12s ago", with the exact time kept for a title.
export function when(ts) {
  return el("time", { text: ago(ts), title: time(ts), datetime: new Date(ts * 1000).toISOString() });
}

export function money(cost) {
  return `$${Number(cost || 0).toFixed(cost && cost < 0.01 ? 4 : 2)}`;
}

export function num(n) {
  return Number(n || 0).toLocaleString();
}
