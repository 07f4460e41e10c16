// How the page paces its own work while agents stream, shared by every view.
//
// On a busy machine the browser's threads wait their turn for a core, so the page's
// frames stay short only if each frame asks for little and few frames ask at all:
//
// * write(key, fn): a DOM update, run in the next animation frame together with every
//   other one queued, within a budget of BUDGET_MS; what does not fit waits for the next
//   frame. A key queued again before its frame runs keeps one update (the latest), so a
//   view that is told ten times "redraw" redraws once. An update queued while the pass
//   runs waits for the next frame: a long job splits itself by queueing its rest.
// * busy(): whether the live stream brings more than BUSY_EVENTS_PER_S events a second
//   (stream.js reports each batch to noteEvents). While it does, low-value refreshes (a
//   count, the sidebar's labels, a side panel) wait longer between reloads: see paced().

const BUDGET_MS = 8;
const BUSY_EVENTS_PER_S = 60;
const WINDOW_MS = 2000;

const jobs = new Map(); // key -> the latest update queued under it, in first-queued order
let scheduled = false;
const recent = []; // [time, events] of the stream's batches in the last WINDOW_MS
let recentEvents = 0;

function runFrame() {
  scheduled = false;
  const start = performance.now();
  for (const key of [...jobs.keys()]) { // what is queued meanwhile waits for the next frame
    const fn = jobs.get(key);
    jobs.delete(key);
    try {
      fn();
    } catch (err) {
      console.error("page update failed", key, err);
    }
    if (performance.now() - start > BUDGET_MS) break;
  }
  if (jobs.size) schedule();
}

function schedule() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(runFrame);
}

export function write(key, fn) {
  jobs.set(key, fn); // a key already queued keeps its place and takes the latest update
  schedule();
}

function forget(now) {
  while (recent.length && now - recent[0][0] > WINDOW_MS) recentEvents -= recent.shift()[1];
}

export function noteEvents(count) {
  const now = performance.now();
  forget(now);
  recent.push([now, count]);
  recentEvents += count;
}

export function busy() {
  forget(performance.now());
  return recentEvents * (1000 / WINDOW_MS) > BUSY_EVENTS_PER_S;
}

// An interval for throttle(): `quiet` ms, or `whileBusy` ms while the stream is busy.
export function paced(quiet, whileBusy) {
  return () => (busy() ? whileBusy : quiet);
}
