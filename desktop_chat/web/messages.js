// Drawing the conversation: people's colours and initials, message bubbles (mentions of me
// highlighted, messages not yet sent marked), join/leave lines with their time.
//
// Safety rule: text from the network goes into the page only as text nodes (textContent) or as
// an http(s) link's address, never as HTML.

import { fileCard } from "./filecards.js";
import { isMe, key, state, ui } from "./state.js";

const GROUP_GAP = 5 * 60 * 1000;
const NAME_HUES = [0, 215, 95, 280, 25, 170, 320, 45, 245, 195]; // as in the desktop app

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

// A person has the same colour here as in the desktop app: CRC-32 of the UTF-8 name key.
function nameHue(name) {
  let crc = 0xffffffff;
  for (const byte of new TextEncoder().encode(key(name))) {
    crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  }
  return NAME_HUES[((crc ^ 0xffffffff) >>> 0) % NAME_HUES.length];
}

export function paintName(el, name) {
  const hue = nameHue(name);
  el.style.setProperty("--hue", String(hue));
  // As in the desktop app: yellows and greens need to be darker to read on a light page.
  if (hue > 20 && hue < 180) el.style.setProperty("--dim", "6%");
}

export function initial(name) {
  const first = Array.from(String(name).trim())[0] || "?";
  return first.toUpperCase();
}

export function avatar(name, size) {
  const el = document.createElement("span");
  el.className = size ? `avatar ${size}` : "avatar";
  el.setAttribute("aria-hidden", "true");
  el.textContent = initial(name);
  paintName(el, name);
  return el;
}

const LINK = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;

const NAME_CHAR = /[\p{L}\p{N}_-]/u;

// Ranges [start, end) of "@name" in `text` (any case, as the server compares names), not
// followed by more name characters: "@ann" mentions ann, "@anna" does not. As the desktop app.
export function findMentions(text, name) {
  const spans = [];
  if (!name || !text.includes("@")) return spans;
  const want = key(name);
  const n = name.length;
  let at = text.indexOf("@");
  while (at !== -1) {
    const after = text.charAt(at + 1 + n);
    if (key(text.slice(at + 1, at + 1 + n)) === want && !(after && NAME_CHAR.test(after))) {
      spans.push([at, at + 1 + n]);
      at = text.indexOf("@", at + 1 + n);
    } else {
      at = text.indexOf("@", at + 1);
    }
  }
  return spans;
}

// Plain text with mentions of me marked; every piece stays a text node.
function markedText(el, text) {
  let last = 0;
  for (const [start, end] of findMentions(text, state.name)) {
    if (start > last) el.append(document.createTextNode(text.slice(last, start)));
    const mark = document.createElement("mark");
    mark.className = "mention";
    mark.textContent = text.slice(start, end);
    el.append(mark);
    last = end;
  }
  if (last < text.length) el.append(document.createTextNode(text.slice(last)));
}

// Text with its web addresses as links and mentions of me marked.
function richText(el, text, mentions) {
  let last = 0;
  const plain = (piece) => (mentions ? markedText(el, piece) : el.append(piece));
  for (const m of text.matchAll(LINK)) {
    if (m.index > last) plain(text.slice(last, m.index));
    const a = document.createElement("a");
    a.href = m[0];
    a.textContent = m[0];
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    el.append(a);
    last = m.index + m[0].length;
  }
  if (last < text.length) plain(text.slice(last));
}

// Whether a message from someone else names me.
export function mentionsMe(msg) {
  return !isMe(msg.from) && findMentions(String(msg.text), state.name).length > 0;
}

function formatTime(ts) {
  const d = new Date(ts);
  const time = d.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
  if (d.toDateString() === new Date().toDateString()) return time;
  return d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + time;
}

function messageNode(msg) {
  const mine = isMe(msg.from);
  const mention = mentionsMe(msg);
  const li = document.createElement("li");
  li.className = "msg" + (mine ? " mine" : "") + (msg.me ? " action" : "") +
    (mention ? " mention" : "");
  li.dataset.id = String(msg.id);
  li.dataset.from = key(msg.from);
  li.dataset.ts = String(msg.ts);

  const meta = document.createElement("div");
  meta.className = "meta";
  const from = document.createElement("span");
  from.className = "from";
  from.textContent = mine ? "You" : msg.from;
  paintName(from, msg.from);
  meta.append(from);

  const bubble = document.createElement("div");
  bubble.className = "bubble";
  const text = document.createElement("span");
  text.className = "text";
  if (msg.me) {
    const who = document.createElement("span");
    who.className = "action-name";
    who.textContent = msg.from + " ";
    text.append(who);
  }
  richText(text, String(msg.text || ""), mention);
  const shared = msg.file && typeof msg.file === "object" && typeof msg.file.name === "string" &&
    typeof msg.file.id === "string";
  if (!shared || msg.text) bubble.append(text);
  if (shared) {
    li.classList.add("has-file");
    bubble.append(fileCard(msg));
  }
  const stamp = document.createElement("time");
  stamp.className = "stamp";
  stamp.dateTime = new Date(msg.ts).toISOString();
  stamp.textContent = formatTime(msg.ts);
  bubble.append(stamp);

  const body = document.createElement("div");
  body.className = "body";
  body.append(meta, bubble);
  li.append(avatar(msg.from), body);
  return li;
}

// A message continues the one above it when the same person wrote both within a few minutes.
function regroup(li) {
  if (!li || !li.classList.contains("msg")) return;
  const prev = li.previousElementSibling;
  const cont = !!prev && prev.classList.contains("msg") &&
    prev.dataset.from === li.dataset.from &&
    Number(li.dataset.ts) - Number(prev.dataset.ts) < GROUP_GAP;
  li.classList.toggle("cont", cont);
}

// Live lines go at the end, above the messages still waiting to be sent.
function appendLive(c, li) {
  const pending = c.list.querySelector(".pending");
  if (pending) pending.before(li);
  else c.list.append(li);
}

const tsOf = (el) => Number(el.dataset.ts) || 0;
const isEvent = (el) => !!el && el.classList.contains("event");
const anchorOf = (el) => Number(el.dataset.after) || 0;

// Messages are ordered by id. A join/leave line is anchored to the newest message id the page
// had seen when it happened (ids are server-wide): it sits after every message up to that id
// and before the later ones. (Not by time: the server's and the phone's clocks differ.)
function settleAmongEvents(li, id) {
  while (isEvent(li.previousElementSibling) && anchorOf(li.previousElementSibling) >= id) {
    li.previousElementSibling.before(li);
  }
  while (isEvent(li.nextElementSibling) && anchorOf(li.nextElementSibling) < id) {
    li.nextElementSibling.after(li);
  }
}

// Adds a message to its conversation once (by id), in id order.
export function insertMessage(c, msg) {
  if (c.ids.has(msg.id)) return false; // seen already: resume backlog or history overlap
  c.ids.add(msg.id);
  if (c.oldest === null || msg.id < c.oldest) c.oldest = msg.id;
  const li = messageNode(msg);
  if (msg.id > c.newest) {
    c.newest = msg.id;
    appendLive(c, li); // live traffic: after everything, join lines included
  } else {
    // History fills in older messages.
    let after = c.list.lastElementChild;
    while (after && !(after.classList.contains("msg") && !after.classList.contains("pending") &&
        Number(after.dataset.id) < msg.id)) {
      after = after.previousElementSibling;
    }
    if (after) after.after(li);
    else c.list.prepend(li);
  }
  settleAmongEvents(li, msg.id);
  regroup(li);
  regroup(li.nextElementSibling);
  return true;
}

// A message of mine that the server has not confirmed yet: shown at the end, marked.
export function addPending(c, entry, queued) {
  const li = messageNode({
    id: 0, ts: entry.at, from: state.name, text: entry.req.text, me: entry.req.me,
  });
  li.classList.add("pending");
  li.dataset.ref = String(entry.ref);
  li.removeAttribute("data-id");
  markPending(li, queued);
  const stick = nearBottom();
  c.list.append(li);
  regroup(li);
  if (c.key === state.current && stick) scrollToBottom();
  return li;
}

// `queued`: waiting for the connection; else sent, waiting for the server's answer.
export function markPending(li, queued) {
  const stamp = li.querySelector(".stamp");
  stamp.removeAttribute("datetime");
  stamp.textContent = queued ? "Not sent yet" : "Sending…";
  li.classList.toggle("queued", queued);
}

// A join/leave/topic line, shown with its time (`ts`, Unix ms), placed after the messages up to
// id `after` (see settleAmongEvents): live ones at the end, restored or late ones (a drop told
// after the grace period) in their place.
export function addEvent(c, words, ts, after) {
  const li = document.createElement("li");
  li.className = "event";
  li.dataset.ts = String(ts);
  li.dataset.after = String(after);
  const text = document.createElement("span");
  text.className = "event-text";
  text.textContent = words;
  const stamp = document.createElement("time");
  stamp.className = "event-time";
  stamp.dateTime = new Date(ts).toISOString();
  stamp.textContent = formatTime(ts);
  li.append(text, " ", stamp);
  const stick = nearBottom();
  let before = null; // the first line that comes after this one
  for (let el = c.list.lastElementChild; el; el = el.previousElementSibling) {
    const later = el.classList.contains("pending") ||
      (el.classList.contains("msg") && Number(el.dataset.id) > after) ||
      (isEvent(el) && (anchorOf(el) > after || (anchorOf(el) === after && tsOf(el) > ts)));
    if (!later) break;
    before = el;
  }
  if (before) before.before(li);
  else c.list.append(li);
  regroup(li.nextElementSibling);
  if (c.key === state.current && stick) scrollToBottom();
}

// The top of a conversation, once history says there is nothing older.
export function addIntro(c) {
  if (c.list.querySelector(".intro")) return;
  const li = document.createElement("li");
  li.className = "intro";
  li.textContent = c.kind === "room"
    ? `This is the beginning of # ${c.label}.`
    : `This is the beginning of your private conversation with ${c.label}.`;
  c.list.prepend(li);
}

export function nearBottom() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 120;
}

export function scrollToBottom() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
  ui.jump.hidden = true;
}
