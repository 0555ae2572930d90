// Messages on their way: each `say`/`dm` gets a ref (unique in the session) and waits in
// state.outbox, shown in its conversation with a pending mark, until the server echoes it.
// Typed while disconnected, it is queued ("Not sent yet"); after every welcome everything not
// yet echoed is sent again with the same ref, which the server treats as the same message
// (contract: sending exactly once). The outbox is saved with the session, so a reload keeps it.

import { addPending, markPending } from "./messages.js";
import { conv, dmKey, newRef, roomKey, state, store } from "./state.js";

const nodes = new Map(); // ref -> its pending <li>
const RETRIES = 5;
const RETRY_AFTER = 1500;

function convOf(req) {
  if (req.type === "dm") return conv(dmKey(req.to), req.to, "dm");
  return conv(roomKey(req.room), req.room, "room");
}

// Queue a say/dm (without ref); `send` returns false when not connected. `raw` is what was
// typed, given back if the server refuses it.
export function submit(req, raw, send, connected) {
  const entry = { ref: newRef(), req: null, raw, conv: "", at: Date.now() };
  entry.req = { ...req, ref: entry.ref };
  const c = convOf(entry.req);
  entry.conv = c.key;
  state.outbox.push(entry);
  store();
  const sent = connected && send(entry.req);
  nodes.set(entry.ref, addPending(c, entry, !sent));
}

// After a welcome: send everything not yet echoed, oldest first, with its own ref.
export function flush(send) {
  for (const entry of state.outbox) {
    clearTimeout(entry.timer); // sent now: a retry waiting from before is not needed
    if (!send(entry.req)) return;
    const li = nodes.get(entry.ref);
    if (li) markPending(li, false);
  }
}

// `rate_limited` for `ref`: send it again a little later (a queue sent at once after a drop can
// exceed the limit), a few times; false when it is not ours or has waited enough.
export function later(ref, send) {
  const entry = state.outbox.find((e) => e.ref === ref);
  if (!entry || (entry.attempts = (entry.attempts || 0) + 1) > RETRIES) return false;
  clearTimeout(entry.timer);
  entry.timer = setTimeout(() => {
    if (state.outbox.includes(entry)) send(entry.req); // if not connected, the next welcome
  }, RETRY_AFTER * entry.attempts);
  return true;
}

// The connection is gone: what was sent but not echoed waits again.
export function requeue() {
  for (const li of nodes.values()) markPending(li, true);
}

// The server answered `ref` (its message, or an error): take it out. Returns the entry.
export function settle(ref) {
  const i = state.outbox.findIndex((e) => e.ref === ref);
  if (i === -1) return null;
  const [entry] = state.outbox.splice(i, 1);
  clearTimeout(entry.timer);
  const li = nodes.get(ref);
  if (li) li.remove();
  nodes.delete(ref);
  store();
  return entry;
}

// A saved outbox (a reload): show its messages again, still pending.
export function restore(saved) {
  if (!Array.isArray(saved)) return;
  for (const e of saved) {
    const req = e && e.req;
    if (!req || typeof e.ref !== "string" || req.ref !== e.ref || typeof req.text !== "string" ||
        !(req.type === "say" ? typeof req.room === "string" : req.type === "dm" &&
          typeof req.to === "string")) continue;
    const entry = { ref: e.ref, req, raw: String(e.raw || req.text), conv: "",
      at: Number(e.at) || Date.now() };
    const c = convOf(req);
    entry.conv = c.key;
    state.outbox.push(entry);
    nodes.set(entry.ref, addPending(c, entry, true));
  }
}

// Signing out: nothing more will be sent.
export function clear() {
  for (const li of nodes.values()) li.remove();
  nodes.clear();
  state.outbox = [];
}
