// The live event stream: one WebSocket, reconnecting with backoff. The server sends
// batches (tokens already coalesced per task); what arrived is handed to the listeners
// in one go, in the next animation frame's shared update pass (frames.js), so a flood
// of events costs one pass of DOM work per frame at most. Each batch's size is reported
// to frames.js, which tells the views when the stream is busy (they reload less then).
//
// The token travels as a WebSocket subprotocol ("bearer.TOKEN"), never in the URL, so
// the console's "connection failed" lines never show it. After a reconnect the stream
// resumes after the last event id seen (the server replays what was missed, without
// repeats), and the status handler is told "resumed" so that views reload their data.
//
// Streamed tokens are most of a busy team's events, and a view shows few of them: the
// open view says whose it wants (wantTokens), and the server sends only those (it sends
// all of them until told otherwise, and is told again after every reconnect).

import { session } from "./api.js";
import { noteEvents, write } from "./frames.js";

const listeners = new Set();
let socket = null;
let retry = 250;
let queue = [];
let stopped = true;
let lastId = 0;
let everLive = false;
let statusHandler = () => {};
let tokens = { all: true }; // whose streamed tokens the open view shows
export const stats = { batches: 0, events: 0, dropped: 0, reconnects: 0, replayed: 0 };

export function onEvents(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function onStatus(handler) { statusHandler = handler; }
export function lastEventId() { return lastId; }

function sendTokens(ws) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "tokens", ...tokens }));
}

// Whose tokens to receive: { all: true }, or { agents: [...], tasks: [...] } (both
// optional; {} is none at all).
export function wantTokens(spec) {
  tokens = { all: spec.all === true, agents: spec.agents || [], tasks: spec.tasks || [] };
  sendTokens(socket);
}

function flush() {
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

function deliver(events, dropped) {
  if (dropped) queue.push({ type: "stream.dropped", data: { count: dropped } });
  for (const event of events) {
    if (typeof event.id === "number") {
      if (event.id <= lastId) continue; // seen already (a replay overlaps nothing, but be sure)
      lastId = event.id;
    }
    queue.push(event);
  }
  write("stream", flush);
}

export function connect() {
  if (socket) return; // connected or connecting already
  stopped = false;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const resume = lastId ? `?after_id=${lastId}` : "";
  let opened = false;
  const ws = new WebSocket(`${scheme}://${location.host}/api/stream${resume}`,
    ["wakeful", `bearer.${session.token}`]);
  socket = ws;
  ws.onmessage = (message) => {
    const data = JSON.parse(message.data);
    if (data.type === "hello") {
      opened = true;
      if (typeof data.last_event_id === "number" && data.last_event_id < lastId) lastId = 0;
      retry = 250;
      sendTokens(ws);
      statusHandler(everLive ? "resumed" : "live", data);
      everLive = true;
      return;
    }
    if (data.type !== "events") return;
    stats.batches += 1;
    stats.events += data.events.length;
    stats.dropped += data.dropped || 0;
    if (data.replayed) stats.replayed += data.events.length;
    noteEvents(data.events.length);
    deliver(data.events, data.dropped);
  };
  ws.onclose = (event) => {
    if (socket !== ws) return; // an older socket, replaced already
    socket = null;
    if (stopped) return;
    if (opened) stats.reconnects += 1;
    statusHandler("reconnecting", { code: event.code, attempt: retry });
    setTimeout(() => { if (!stopped) connect(); }, retry);
    retry = Math.min(retry * 2, 4000);
  };
}

export function disconnect() {
  stopped = true;
  if (socket) socket.close();
  socket = null;
}
