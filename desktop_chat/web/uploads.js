// Sending files: tus 1.0.0 uploads to /files (docs/protocol.md, "Files"), written here with
// XMLHttpRequest (fetch cannot report upload progress). An upload is created with POST, then
// sent in PATCHes of a few MiB; after any failure (a phone asleep, Wi-Fi gone, a cable out)
// the page asks the server where it got to (HEAD) and goes on from there, by itself, with a
// growing pause, and at once when the network or the page comes back. Each upload is kept in
// localStorage with the session (and the file itself in IndexedDB when it is not too big), so
// a reload continues it too; a bigger file has to be picked again, and the page says so.
// While it runs, the upload is a row at the end of its conversation with progress and Cancel;
// when the last byte arrives the server sends the file's message, which becomes its card.

import {
  CROSS, Rate, fileIcon, formatSize, roundButton, setButton,
} from "./filecards.js";
import { conv, dmKey, recall, remember, roomKey, state, ui } from "./state.js";

const CHUNK = 8 * 1024 * 1024;
const KEEP_MAX = 256 * 1024 * 1024; // files up to this size survive a reload without a re-pick
const STALL = 30000;                // a PATCH with no progress for this long is given up
const RETRY_MAX = 15000;

const uploads = new Map(); // uid -> entry {uid, location, name, size, type, modified, target,
//                            conv, offset, session; not saved: file, row, xhr, state}
let say = (_words) => {}; // the app's toast

// Wires the picker, the camera, dropping files on the conversation and pasting an image.
export function init(toast) {
  say = toast;
  window.addEventListener("online", wakeAll);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") wakeAll();
  });
  const here = (files) => {
    if (files && files.length) send([...files], state.convs.get(state.current));
  };
  ui.attach.addEventListener("click", () => ui.fileInput.click());
  ui.camera.addEventListener("click", () => ui.cameraInput.click());
  for (const input of [ui.fileInput, ui.cameraInput]) {
    input.addEventListener("change", () => {
      here(input.files);
      input.value = ""; // the same file may be picked again
    });
  }
  const carriesFiles = (ev) => !!ev.dataTransfer && [...ev.dataTransfer.types].includes("Files");
  let depth = 0;
  ui.conversation.addEventListener("dragenter", (ev) => {
    if (!carriesFiles(ev)) return;
    ev.preventDefault();
    depth += 1;
    ui.dropHint.hidden = false;
  });
  ui.conversation.addEventListener("dragover", (ev) => {
    if (!carriesFiles(ev)) return;
    ev.preventDefault();
    ev.dataTransfer.dropEffect = "copy";
  });
  ui.conversation.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) ui.dropHint.hidden = true;
  });
  ui.conversation.addEventListener("drop", (ev) => {
    if (!carriesFiles(ev)) return;
    ev.preventDefault();
    depth = 0;
    ui.dropHint.hidden = true;
    here(ev.dataTransfer.files);
  });
  ui.text.addEventListener("paste", (ev) => {
    const files = ev.clipboardData ? [...ev.clipboardData.files] : [];
    if (!files.length) return; // text is pasted as usual
    ev.preventDefault();
    here(files);
  });
}

// The size of each PATCH; a page may set a smaller one in localStorage, which the tests do.
function chunkSize() {
  const set = Number(recall("upload-chunk-bytes"));
  return Number.isFinite(set) && set > 0 ? set : CHUNK;
}

function save() {
  const list = [...uploads.values()].filter((e) => e.location).map((e) => ({
    uid: e.uid, location: e.location, name: e.name, size: e.size, type: e.type,
    modified: e.modified, target: e.target, conv: e.conv, offset: e.offset, session: e.session,
    since: e.since,
  }));
  remember("uploads", list.length ? JSON.stringify(list) : null);
}

// ---- starting -------------------------------------------------------------------------------

// Send `files` to the conversation `c` (a room or a DM).
export function send(files, c) {
  if (!state.session) {
    say("Join the chat first.");
    return;
  }
  if (!c) {
    say("Open a room or a conversation first.");
    return;
  }
  for (const file of files) {
    const paused = [...uploads.values()].find((e) => !e.file && e.name === file.name &&
      e.size === file.size && e.conv === c.key);
    if (paused) { // the same file again, after a reload: go on where it stopped
      resumeWith(paused, file);
      continue;
    }
    const entry = {
      uid: `${state.refBase}-u${state.nextRef++}`, location: "", name: file.name || "file",
      size: file.size, type: file.type, modified: file.lastModified || 0,
      target: c.kind === "room" ? { room: c.label } : { to: c.label },
      conv: c.kind === "room" ? roomKey(c.label) : dmKey(c.label),
      offset: 0, session: state.session, since: state.lastId, file,
    };
    uploads.set(entry.uid, entry);
    row(entry);
    if (file.size <= KEEP_MAX) keepFile(entry.uid, file);
    run(entry);
  }
}

function resumeWith(entry, file) {
  entry.file = file;
  if (file.size <= KEEP_MAX) keepFile(entry.uid, file);
  run(entry);
}

// Uploads of this session that a reload interrupted go on (once per page load, as soon as the
// session is known: the server takes a stored session's token before the socket is up).
let restored = false;
export function restoreOnce() {
  if (restored || !state.session) return;
  restored = true;
  restore().catch((err) => console.warn("could not restore uploads", err));
}

// After a reload: the uploads of this session, continued, or waiting for their file.
async function restore() {
  let saved = [];
  try {
    saved = JSON.parse(recall("uploads") || "[]");
  } catch (err) {
    console.warn("ignoring damaged saved uploads", err);
  }
  for (const e of Array.isArray(saved) ? saved : []) {
    if (!e || e.session !== state.session || typeof e.location !== "string" ||
        !e.location.startsWith("/files/uploads/") || typeof e.name !== "string" ||
        typeof e.conv !== "string" || !e.target || uploads.has(e.uid)) continue;
    const entry = { ...e, offset: Number(e.offset) || 0, size: Number(e.size) || 0, file: null,
      ask: true }; // the saved offset may be behind the server's: HEAD says
    uploads.set(entry.uid, entry);
    row(entry);
    entry.file = await keptFile(entry.uid);
    if (entry.file && entry.file.size === entry.size) run(entry);
    else {
      entry.file = null;
      show(entry, "paused", "Paused. Choose the file again to go on.");
    }
  }
  save();
}

// Signing out: every upload of this session is abandoned, on the server too.
export function clear() {
  for (const entry of [...uploads.values()]) cancel(entry);
}

// ---- the upload itself ------------------------------------------------------------------------

class Refused extends Error {}  // the server said no: trying again will not help
class Lost extends Error {}     // no answer: try again in a while

async function run(entry) {
  if (entry.running || !entry.file) return;
  entry.running = true;
  entry.failures = 0;
  try {
    while (!entry.cancelled) {
      try {
        if (!entry.location) await create(entry);
        else if (entry.ask) await head(entry);
        entry.ask = false;
        if (await patch(entry)) {
          finished(entry);
          return;
        }
        entry.failures = 0;
      } catch (err) {
        if (entry.cancelled) return;
        if (err instanceof Refused) {
          failed(entry, err.message);
          return;
        }
        entry.ask = true; // where the server got to is known only to the server
        entry.failures += 1;
        const wait = Math.min(1000 * 2 ** Math.min(entry.failures - 1, 4), RETRY_MAX);
        show(entry, "waiting", `Connection lost at ${percent(entry)}. Trying again…`);
        await sleep(entry, err.retryAfter || wait);
      }
    }
  } finally {
    entry.running = false;
  }
}

function sleep(entry, ms) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      entry.wake = null;
      resolve();
    };
    const timer = setTimeout(done, ms);
    entry.wake = done;
  });
}

// The network or the page is back: waiting uploads try now.
function wakeAll() {
  for (const entry of uploads.values()) if (entry.wake) entry.wake();
}

function request(entry, method, url, headers, body, progress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    entry.xhr = xhr;
    xhr.open(method, url);
    // An upload belongs to the session that created it (the server says 404 to any other).
    const all = { "Tus-Resumable": "1.0.0", Authorization: `Bearer ${entry.session}`, ...headers };
    for (const [name, value] of Object.entries(all)) xhr.setRequestHeader(name, value);
    let stall = 0;
    const watch = () => {
      clearTimeout(stall);
      stall = setTimeout(() => xhr.abort(), STALL); // asleep or unplugged: TCP may never say
    };
    if (progress) {
      xhr.upload.onprogress = (ev) => {
        watch();
        progress(ev.loaded);
      };
    }
    xhr.onload = () => {
      clearTimeout(stall);
      resolve(xhr);
    };
    xhr.onerror = () => {
      clearTimeout(stall);
      reject(new Lost("network error"));
    };
    xhr.onabort = () => {
      clearTimeout(stall);
      reject(new Lost("stopped"));
    };
    watch();
    xhr.send(body === undefined ? null : body);
  });
}

function b64(text) {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}

function refuse(xhr, words) {
  const told = String(xhr.responseText || "").trim();
  return new Refused(words || told || `the server answered ${xhr.status}`);
}

function retryable(xhr) {
  const err = new Lost(`the server answered ${xhr.status}`);
  if (xhr.status === 423) err.retryAfter = 1000;
  return err;
}

async function create(entry) {
  const [key, value] = Object.entries(entry.target)[0];
  const xhr = await request(entry, "POST", "/files", {
    "Upload-Length": String(entry.size),
    "Upload-Metadata": `filename ${b64(entry.name)},${key} ${b64(value)}`,
  });
  if (xhr.status === 201 && xhr.getResponseHeader("Location")) {
    entry.location = new URL(xhr.getResponseHeader("Location"), location.href).pathname;
    entry.offset = 0;
    save();
    return;
  }
  throw fault(xhr, {
    401: "Your session has ended. Sign in again, then send the file again.",
    403: "You are not in that room any more.",
    404: `${entry.target.to} is not online, so they can’t get files right now.`,
    413: `This file is too large for this chat (${limitOf(xhr)}).`,
    507: "The server has no room for this file right now.",
  });
}

// "files may have up to 2147483648 bytes" -> "the limit is 2.00 GB".
function limitOf(xhr) {
  const told = String(xhr.responseText || "").trim();
  const bytes = /(\d+) bytes/.exec(told);
  return bytes ? `the limit is ${formatSize(Number(bytes[1]))}` : told;
}

async function head(entry) {
  const xhr = await request(entry, "HEAD", entry.location, {});
  if (xhr.status === 200) {
    entry.offset = Number(xhr.getResponseHeader("Upload-Offset")) || 0;
    return;
  }
  if (xhr.status === 404) entry.gone = true; // finished unseen, or swept: see noticeShared
  throw fault(xhr, GONE);
}

// When the connection breaks just as the last PATCH is answered, the server has finished the
// upload and shared the file, and HEAD finds no upload any more. The file's message (mine, in
// that conversation, that size, newer than the upload) says it went through: the row goes.
function sharedAs(entry, msg) {
  const f = msg.file;
  const where = typeof msg.to === "string" ? dmKey(msg.to) : roomKey(String(msg.room));
  return where === entry.conv && Number(f.size) === entry.size && msg.id > (entry.since || 0);
}

// A message of mine with a file (live, backlog or history).
export function noticeShared(msg) {
  seen.push(msg);
  if (seen.length > 50) seen.shift();
  for (const entry of [...uploads.values(), ...gone]) {
    if (entry.gone && sharedAs(entry, msg)) {
      gone.delete(entry);
      forgetEntry(entry);
    }
  }
}
const gone = new Set(); // refused with 404: perhaps finished after all
const seen = [];        // my recent file messages, for an upload that fails after them

const GONE = {
  401: "Your session has ended: this upload cannot go on. Send the file again.",
  404: "The server no longer has this upload (it waited too long). Send the file again.",
};

function fault(xhr, words) {
  if (words[xhr.status]) return new Refused(words[xhr.status]);
  if (xhr.status === 0 || xhr.status >= 500 && xhr.status !== 507 || xhr.status === 423 ||
      xhr.status === 408) return retryable(xhr);
  if (xhr.status === 507) return new Refused("The server’s disk is full.");
  return refuse(xhr);
}

// One chunk from the server's offset; true when it was the last.
async function patch(entry) {
  const start = entry.offset;
  const piece = entry.file.slice(start, Math.min(entry.size, start + chunkSize()));
  show(entry, "sending", null);
  const xhr = await request(entry, "PATCH", entry.location, {
    "Upload-Offset": String(start),
    "Content-Type": "application/offset+octet-stream",
  }, piece, (sent) => progress(entry, start + sent));
  const told = Number(xhr.getResponseHeader("Upload-Offset"));
  if (xhr.status === 204 || xhr.status === 409) { // 409: it knows better where we are
    if (Number.isFinite(told) && xhr.getResponseHeader("Upload-Offset") !== null) {
      entry.offset = told;
    } else {
      entry.ask = true;
    }
    save();
    progress(entry, entry.offset);
    return xhr.status === 204 && entry.offset >= entry.size &&
      xhr.getResponseHeader("Upload-Message-Id") !== null;
  }
  throw fault(xhr, { ...GONE, 403: "You left that room, so the file was not shared." });
}

function finished(entry) {
  forgetEntry(entry);
}

// Refused: not kept any more; the row stays, saying why, until it is dismissed.
function failed(entry, words) {
  if (entry.gone && seen.some((msg) => sharedAs(entry, msg))) {
    forgetEntry(entry); // its message came already: it did go through
    return;
  }
  if (entry.gone) gone.add(entry);
  uploads.delete(entry.uid);
  dropFile(entry.uid);
  save();
  show(entry, "failed", words);
}

function cancel(entry) {
  entry.cancelled = true;
  if (entry.xhr) entry.xhr.abort();
  if (entry.wake) entry.wake();
  if (entry.location) {
    // Fire and forget: the server forgets it too, or its sweeper will.
    const xhr = new XMLHttpRequest();
    xhr.open("DELETE", entry.location);
    xhr.setRequestHeader("Tus-Resumable", "1.0.0");
    xhr.setRequestHeader("Authorization", `Bearer ${entry.session}`);
    xhr.send();
  }
  forgetEntry(entry);
}

function forgetEntry(entry) {
  uploads.delete(entry.uid);
  gone.delete(entry);
  dropFile(entry.uid);
  save();
  if (entry.row) entry.row.remove();
}

// ---- its row in the conversation ---------------------------------------------------------------

const percent = (entry) =>
  entry.size ? `${Math.floor((100 * entry.offset) / entry.size)}%` : "0%";

function row(entry) {
  const c = entry.target.room
    ? conv(roomKey(entry.target.room), entry.target.room, "room")
    : conv(dmKey(entry.target.to), entry.target.to, "dm");
  const li = document.createElement("li");
  li.className = "msg mine pending upload";
  li.dataset.upload = entry.uid;
  const body = document.createElement("div");
  body.className = "body";
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  const card = document.createElement("div");
  card.className = "filecard uploading";
  card.setAttribute("role", "group");
  card.setAttribute("aria-label", `Sending ${entry.name}`);
  const line = document.createElement("div");
  line.className = "file-row";
  const info = document.createElement("div");
  info.className = "file-info";
  const name = document.createElement("span");
  name.className = "file-name";
  name.textContent = entry.name;
  const meta = document.createElement("span");
  meta.className = "file-meta";
  meta.setAttribute("aria-live", "polite");
  info.append(name, meta);
  const stop = roundButton("file-cancel", CROSS, `Cancel sending ${entry.name}`);
  stop.addEventListener("click", () => cancel(entry));
  line.append(fileIcon(entry.name, entry.type), info, stop);
  const bar = document.createElement("progress");
  bar.className = "file-progress";
  bar.max = 1;
  bar.setAttribute("aria-label", `Sending ${entry.name}`);
  const pick = document.createElement("label");
  pick.className = "button small file-pick";
  pick.textContent = "Choose the file";
  const input = document.createElement("input");
  input.type = "file";
  input.className = "visually-hidden";
  input.addEventListener("change", () => {
    const file = input.files && input.files[0];
    input.value = "";
    if (!file) return;
    if (file.name !== entry.name || file.size !== entry.size) {
      say(`That is not ${entry.name} (${formatSize(entry.size)}).`);
      return;
    }
    resumeWith(entry, file);
  });
  pick.append(input);
  card.append(line, bar, pick);
  bubble.append(card);
  body.append(bubble);
  li.append(body);
  c.list.append(li); // at the end, with the messages still on their way
  entry.row = li;
  progress(entry, entry.offset);
}

function progress(entry, sent) {
  if (!entry.row) return;
  const bar = entry.row.querySelector(".file-progress");
  bar.value = entry.size ? Math.min(1, sent / entry.size) : 1;
  if (entry.state === "sending" || entry.state === undefined) {
    const pct = entry.size ? Math.floor((100 * sent) / entry.size) : 100;
    if (!entry.rate) {
      entry.rate = new Rate();
      entry.rate.restart(sent);
    }
    entry.rate.note(sent);
    entry.row.querySelector(".file-meta").textContent =
      `${pct}% · ${formatSize(sent)} of ${formatSize(entry.size)}` +
      entry.rate.describe(sent, entry.size);
  }
}

// `how`: sending, waiting (for the network), paused (for the file), failed.
function show(entry, how, words) {
  // A new attempt measures its speed afresh (the pause is not part of it).
  if (how === "sending" && entry.state !== "sending") entry.rate = null;
  entry.state = how;
  const li = entry.row;
  if (!li) return;
  li.dataset.state = how;
  li.querySelector(".file-pick").hidden = how !== "paused";
  setButton(li.querySelector(".file-cancel"), CROSS,
    how === "failed" ? `Dismiss ${entry.name}` : `Cancel sending ${entry.name}`);
  if (words) li.querySelector(".file-meta").textContent = words;
  else progress(entry, entry.offset);
}

// ---- the file kept for a reload (IndexedDB) ----------------------------------------------------

function db() {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open("desktop-chat-uploads", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("files");
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
}

async function inStore(mode, work) {
  const handle = await db();
  try {
    return await new Promise((resolve, reject) => {
      const tx = handle.transaction("files", mode);
      const req = work(tx.objectStore("files"));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    handle.close();
  }
}

function keepFile(uid, file) {
  inStore("readwrite", (files) => files.put(file, uid))
    .catch((err) => console.info("the file is not kept for a reload", err));
}

async function keptFile(uid) {
  try {
    return (await inStore("readonly", (files) => files.get(uid))) || null;
  } catch (err) {
    console.info("no kept file", err);
    return null;
  }
}

function dropFile(uid) {
  inStore("readwrite", (files) => files.delete(uid))
    .catch((err) => console.info("could not drop a kept file", err));
}
