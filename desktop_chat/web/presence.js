// Who is in each room, and the lines that say so (joins, leaves, topics, notices). A person whose connection dropped (`left`
// with reason `disconnected` or `timeout`: a reload, a Wi-Fi blip) is greyed in the people list
// at once, but the room is told only if they are still gone after a grace period (about a
// minute); coming back within it shows nothing. `part`, `quit`, `kicked` and `slow` are told at
// once. Lines are kept (state.saveEvent) so that a reload shows them again.

import { addEvent } from "./messages.js";
import { renderHeader, renderLists, renderTyping } from "./panels.js";
import { awayGrace, conv, key, roomKey, saveEvent, state } from "./state.js";

const LEFT_WORDS = {
  part: "left", quit: "left the chat", disconnected: "lost their connection",
  timeout: "timed out", slow: "was disconnected (connection too slow)",
  kicked: "was removed", banned: "was removed",
};
const DROPPED = new Set(["disconnected", "timeout"]);

const byKey = (a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);

// A line in a room or conversation, remembered for the next visit. `ts` and `after` (the
// newest message id seen then) say when it happened: now, unless told later.
export function tell(c, words, ts = Date.now(), after = state.lastId) {
  addEvent(c, words, ts, after);
  saveEvent(c.key, ts, words, after);
}

function refresh(k) {
  renderLists();
  if (state.current === k) {
    renderHeader();
    renderTyping();
  }
}

// The dropped people of room `k` (name key -> {name, since, after, reason, timer}).
function awayIn(k) {
  let away = state.away.get(k);
  if (!away) {
    away = new Map();
    state.away.set(k, away);
  }
  return away;
}

// Back within the grace period: no line, no longer greyed. True if they were away.
function cameBack(k, name) {
  const away = state.away.get(k);
  const was = away && away.get(key(name));
  if (!was) return false;
  clearTimeout(was.timer);
  away.delete(key(name));
  return true;
}

export function onUsers(k, names) {
  state.users.set(k, names.slice());
  for (const name of names) cameBack(k, name); // back while our own connection was down
}

export function onJoined(msg) {
  const k = roomKey(msg.room);
  const names = (state.users.get(k) || []).filter((n) => key(n) !== key(msg.name));
  names.push(msg.name);
  state.users.set(k, names.sort(byKey));
  if (!cameBack(k, msg.name)) tell(conv(k, msg.room, "room"), `${msg.name} joined`);
  refresh(k);
}

export function onLeft(msg) {
  const k = roomKey(msg.room);
  state.users.set(k, (state.users.get(k) || []).filter((n) => key(n) !== key(msg.name)));
  const c = conv(k, msg.room, "room");
  c.typing.delete(key(msg.name));
  cameBack(k, msg.name);
  if (DROPPED.has(msg.reason)) {
    const since = Date.now();
    const away = { name: msg.name, since, after: state.lastId, reason: msg.reason, timer: 0 };
    away.timer = setTimeout(() => stillGone(k, msg.room, away), awayGrace());
    awayIn(k).set(key(msg.name), away);
  } else {
    tell(c, `${msg.name} ${LEFT_WORDS[msg.reason] || "left"}`);
  }
  refresh(k);
}

// The grace period is over and they are not back: now the room is told, at the drop's time.
function stillGone(k, room, away) {
  const current = state.away.get(k);
  if (!current || current.get(key(away.name)) !== away) return; // back, or gone another way
  current.delete(key(away.name));
  if (state.convs.has(k)) {
    tell(conv(k, room, "room"), `${away.name} ${LEFT_WORDS[away.reason]}`, away.since,
      away.after);
  }
  refresh(k);
}

// We left room `k` (or signed out): nobody there is waited for any more.
export function forgetRoom(k) {
  for (const away of (state.away.get(k) || new Map()).values()) clearTimeout(away.timer);
  state.away.delete(k);
  state.users.delete(k);
}

export function onTopic(msg) {
  const k = roomKey(msg.room);
  state.topics.set(k, msg.topic);
  tell(conv(k, msg.room, "room"), msg.topic
    ? `${msg.by} set the topic: ${msg.topic}` : `${msg.by} cleared the topic`);
  if (state.current === k) renderHeader();
}

// Something the server says about a room (slow mode on, a password set...).
export function onNotice(msg) {
  if (typeof msg.text === "string") tell(conv(roomKey(msg.room), msg.room, "room"), msg.text);
}
