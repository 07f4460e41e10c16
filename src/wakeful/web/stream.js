// The live event stream: one WebSocket, reconnecting with backoff. The server sends
// batches (tokens already coalesced per task); each batch is handed to the listeners
// in one go, on the next animation frame, so a flood of events costs one pass of DOM
// work per frame at most.

import { session } from "./api.js";

const listeners = new Set();
let socket = null;
let retry = 250;
let queue = [];
let scheduled = false;
let stopped = true;
let statusHandler = () => {};
export const stats = { batches: 0, events: 0, dropped: 0 };

export function onEvents(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function onStatus(handler) { statusHandler = handler; }

function flush() {
  scheduled = false;
  const events = queue;
  queue = [];
  for (const listener of listeners) {
    try {
      listener(events);
    } catch (err) {
      console.error("stream listener failed", err);
    }
  }
}

export function connect() {
  stopped = false;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/api/stream?token=${encodeURIComponent(session.token)}`);
  socket.onopen = () => { retry = 250; statusHandler("live"); };
  socket.onmessage = (message) => {
    const data = JSON.parse(message.data);
    if (data.type === "hello") {
      statusHandler("live", data);
      return;
    }
    if (data.type !== "events") return;
    stats.batches += 1;
    stats.events += data.events.length;
    stats.dropped += data.dropped || 0;
    if (data.dropped) queue.push({ type: "stream.dropped", data: { count: data.dropped } });
    for (const event of data.events) queue.push(event);
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(flush);
    }
  };
  socket.onclose = () => {
    socket = null;
    if (stopped) return;
    statusHandler("reconnecting");
    setTimeout(() => { if (!stopped) connect(); }, retry);
    retry = Math.min(retry * 2, 5000);
  };
}

export function disconnect() {
  stopped = true;
  if (socket) socket.close();
  socket = null;
}
