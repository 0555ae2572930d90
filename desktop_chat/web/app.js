// Desktop Chat web client for phones and browsers: the native JSON protocol over a WebSocket to
// the server that served this page (see docs/protocol.md). No framework, no build step; the
// modules are: state.js (what we know), connection.js (the socket), messages.js (the
// conversation), panels.js (drawer, top bar, banners), presence.js (who is here, join/leave
// lines), outbox.js (messages on their way), alerts.js (notifications), uploads.js (sending
// files), filecards.js (shared files in the conversation), invite.js (the invitation's
// fingerprint), sw.js (the service worker: the page's files offline). This one reacts to the
// server and to the user.

import { listenToWorker, looking, notifyMessage, renderNotifyToggle } from "./alerts.js";
import { ChatConnection, serverIsFull } from "./connection.js";
import {
  addEvent, addIntro, insertMessage, mentionsMe, nearBottom, paintName, initial, scrollToBottom,
} from "./messages.js";
import { secureAdvice, showInvitation } from "./invite.js";
import * as outbox from "./outbox.js";
import * as uploads from "./uploads.js";
import {
  ERRORS, askRoomPassword, closeDrawer, currentRoom, hideBanner, openDrawer, renderDirectory,
  renderHeader, renderLists, renderTyping, showBanner, toast,
} from "./panels.js";
import {
  forgetRoom, onJoined, onLeft as someoneLeft, onNotice, onTopic, onUsers as setUsers,
} from "./presence.js";
import {
  GENERAL, actions, conv, dmKey, forget, isMe, key, loadEvents, loadSession, newRef,
  rememberedName, roomKey, state, store, ui,
} from "./state.js";

const HISTORY_LIMIT = 50;
const TYPING_SEND_EVERY = 3000;
const TYPING_SHOW_FOR = 5000;

const LOGIN_ERRORS = {
  name_taken: "Someone is already using that name (or one that looks just like it). " +
    "Pick another.",
  name_invalid: "That name can’t be used. Use 1 to 32 characters: no invisible characters, " +
    "and no spaces at the start or end.",
  auth_failed: "That password is not right.",
  protocol_version: "This server runs a different version of Desktop Chat.",
  banned: "You are not allowed on this server.",
  server_full: "The server is full right now. Try again in a moment.",
  tls_required: "This server accepts only secure connections: open it with https://.",
  timeout: "The server waited too long. Try again.",
};

const FULL = "The chat is full right now.";

const connection = new ChatConnection({
  hello() {
    const hello = { type: "hello", protocol: 1, name: state.name, client: "desktop-chat-web" };
    if (state.password) hello.password = state.password;
    if (state.session) hello.resume = { session: state.session, since: state.lastId };
    return hello;
  },
  event: handle,
  lost(delay, refused, why) {
    outbox.requeue();
    const secs = Math.max(1, Math.round(delay / 1000));
    if (!refused) {
      showBanner(`Connection lost: ${why}. Reconnecting in ${secs} s…`, true);
      return;
    }
    showBanner(`Not connected: ${why}. Trying again in ${secs} s…`, true);
    serverIsFull().then((full) => {
      if (full && !connection.loggedIn) showBanner(`${FULL} Trying again in ${secs} s…`, true);
    });
  },
  retrying() {
    showBanner("Reconnecting…", false);
  },
  failed(refused) {
    const words = "Not connected: could not reach the chat server. Check the Wi-Fi and try again.";
    if (!refused) {
      showLogin(words);
      return;
    }
    serverIsFull().then((full) => showLogin(full ? `${FULL} Try again in a moment.` : words));
  },
});

const send = (obj) => connection.send(obj);

// ---- what the server says -------------------------------------------------------------------

function handle(msg) {
  switch (msg.type) {
    case "welcome": return onWelcome(msg);
    case "users": return onUsers(msg);
    case "message": return onMessage(msg, true);
    case "history": return onHistory(msg);
    case "joined": return onJoined(msg);
    case "left": return onLeft(msg);
    case "typing": return onTyping(msg);
    case "rooms": return renderDirectory(Array.isArray(msg.rooms) ? msg.rooms : []);
    case "error": return onError(msg);
    case "topic": return onTopic(msg);
    case "notice":
      if (typeof msg.text !== "string") return undefined;
      return typeof msg.room === "string" ? onNotice(msg) : toast(msg.text);
    case "closing": return showBanner("The server is restarting. Reconnecting…", false);
    default: return undefined; // pong, ok and anything newer: nothing to show
  }
}

function onWelcome(msg) {
  const first = ui.chat.hidden || !state.current;
  connection.welcomed();
  state.name = msg.name;
  state.session = msg.session;
  state.title = msg.server || state.title;
  state.rooms = Array.isArray(msg.rooms) ? msg.rooms.slice() : [GENERAL];
  document.title = state.title;
  ui.serverTitle.textContent = state.title;
  ui.loginTitle.textContent = state.title;
  ui.meName.textContent = state.name;
  ui.meAvatar.textContent = initial(state.name);
  paintName(ui.meAvatar, state.name);
  hideBanner();
  renderNotifyToggle();
  for (const room of state.rooms) conv(roomKey(room), room, "room");
  if (!msg.resumed) {
    // A fresh session (or the old one was gone): no backlog comes, so each conversation
    // fetches its recent history again when it is shown.
    for (const c of state.convs.values()) c.historyAsked = false;
  }
  const here = state.convs.get(state.current);
  const stillThere = !!here &&
    (here.kind === "dm" || state.rooms.some((r) => roomKey(r) === here.key));
  if (first) showChat();
  if (first || !stillThere) {
    open(stillThere ? here.key : roomKey(state.rooms[0] || GENERAL));
  } else {
    askHistory(here); // back after a drop: stay where the reader was
    renderHeader();
    renderLists();
  }
  store();
  outbox.flush(send); // what was typed while away, or not yet confirmed: with the same refs
  uploads.restoreOnce();
}


function onUsers(msg) {
  const k = roomKey(msg.room);
  if (!state.rooms.some((r) => roomKey(r) === k)) state.rooms.push(msg.room);
  conv(k, msg.room, "room");
  setUsers(k, Array.isArray(msg.names) ? msg.names.filter((n) => typeof n === "string") : []);
  if (typeof msg.topic === "string") state.topics.set(k, msg.topic);
  if (state.joining === k) {
    state.joining = null;
    if (ui.roomPass.open) ui.roomPass.close();
    open(k);
  }
  renderLists();
  if (state.current === k) renderHeader();
}

function onMessage(msg, live) {
  if (typeof msg.id !== "number" || typeof msg.from !== "string") return;
  if (msg.id > state.lastId) {
    state.lastId = msg.id;
    store();
  }
  const mine = isMe(msg.from);
  if (mine && msg.ref !== undefined) outbox.settle(msg.ref); // confirmed: no longer pending
  if (mine && msg.file) uploads.noticeShared(msg);
  const c = typeof msg.to === "string"
    ? conv(dmKey(mine ? msg.to : msg.from), mine ? msg.to : msg.from, "dm")
    : conv(roomKey(msg.room), msg.room, "room");
  const stick = nearBottom();
  if (!insertMessage(c, msg)) return;
  c.typing.delete(key(msg.from));
  if (!live) return;
  if (!mine && !(c.key === state.current && looking())) {
    c.unread += 1;
    renderLists();
  }
  if (!mine) notifyMessage(c, msg, mentionsMe(msg));
  if (c.key === state.current) {
    renderTyping();
    if (stick || isMe(msg.from)) scrollToBottom();
    else ui.jump.hidden = false;
  }
}

function onHistory(msg) {
  const c = typeof msg.with === "string"
    ? conv(dmKey(msg.with), msg.with, "dm")
    : conv(roomKey(msg.room), msg.room, "room");
  const fromBottom = ui.messages.scrollHeight - ui.messages.scrollTop;
  const wasEmpty = c.ids.size === 0;
  for (const m of Array.isArray(msg.messages) ? msg.messages : []) onMessage(m, false);
  c.more = msg.more === true;
  if (!c.more) addIntro(c);
  if (c.key === state.current) {
    ui.loadEarlier.hidden = !c.more;
    if (wasEmpty) scrollToBottom();
    else ui.messages.scrollTop = ui.messages.scrollHeight - fromBottom; // keep the place
  }
}

function onLeft(msg) {
  const k = roomKey(msg.room);
  if (isMe(msg.name)) {
    state.rooms = state.rooms.filter((r) => roomKey(r) !== k);
    forgetRoom(k);
    forget(k);
    if (state.current === k) {
      state.current = null;
      if (state.rooms.length) open(roomKey(state.rooms[0]));
      else renderHeader();
    }
    renderLists();
    store();
    return;
  }
  someoneLeft(msg);
}

function onTyping(msg) {
  if (isMe(msg.name)) return;
  const c = typeof msg.to === "string"
    ? conv(dmKey(msg.name), msg.name, "dm")
    : conv(roomKey(msg.room), msg.room, "room");
  c.typing.set(key(msg.name), { name: msg.name, until: Date.now() + TYPING_SHOW_FOR });
  if (c.key === state.current) renderTyping();
  setTimeout(renderTyping, TYPING_SHOW_FOR + 50);
}

function onError(msg) {
  const code = String(msg.code || "");
  const text = typeof msg.message === "string" ? msg.message : "";
  if (code === "kicked") {
    connection.stop();
    state.session = null;
    outbox.clear();
    store();
    showLogin(text ? `You were removed from the chat: ${text}` : "You were removed from the chat.");
    return;
  }
  if (!connection.loggedIn || code === "banned") {
    // Refused at the door: the server closes. Knock again by ourselves only when it was full.
    if (code === "server_full" && connection.resumable) return;
    connection.stop();
    if (code === "name_taken" || code === "name_invalid") {
      state.session = null;
      store();
    }
    if (code === "tls_required") {
      showLogin(secureAdvice(text), ui.password);
      const link = document.createElement("a");
      link.href = `https://${location.host}/`;
      link.textContent = "Open the secure page";
      ui.loginError.append(" ", link);
      return;
    }
    const words = code === "auth_failed" && !state.password
      ? "This server (or this name) needs a password."
      : LOGIN_ERRORS[code] || text || "The server refused to let you in.";
    const nameWrong = code === "name_taken" || code === "name_invalid";
    showLogin(words, nameWrong ? ui.name : code === "auth_failed" ? ui.password : null);
    if (code === "auth_failed") revealPassword();
    else if (nameWrong) ui.name.select();
    return;
  }
  const join = msg.ref !== undefined ? state.joinRefs.get(msg.ref) : undefined;
  if (join) {
    state.joinRefs.delete(msg.ref);
    if (code === "auth_failed") {
      askRoomPassword(join.room, join.password ? "That password is not right." : "");
      return;
    }
    if (code === "tls_required") {
      askRoomPassword(join.room, "This server takes passwords only over a secure connection: " +
        "open this page with https://.");
      return;
    }
    state.joining = null;
  }
  if (code === "rate_limited" && msg.ref !== undefined && outbox.later(msg.ref, send)) return;
  const refused = msg.ref !== undefined ? outbox.settle(msg.ref) : null;
  if (refused && !ui.text.value) {
    ui.text.value = refused.raw; // give the words back, to try again
    autosize();
  }
  toast(code === "tls_required" ? secureAdvice(text)
    : ERRORS[code] || text || "Something went wrong.");
}

// ---- what the user does ---------------------------------------------------------------------

function askHistory(c, before) {
  if (before === undefined && (c.historyAsked || !connection.loggedIn)) return;
  const req = { type: "history", limit: HISTORY_LIMIT };
  if (c.kind === "room") req.room = c.label;
  else req.with = c.label;
  if (before !== undefined) req.before = before;
  if (send(req) && before === undefined) c.historyAsked = true;
}

function open(convKey, label) {
  const c = state.convs.get(convKey) ||
    conv(convKey, label || convKey.slice(1), convKey[0] === "#" ? "room" : "dm");
  for (const other of state.convs.values()) other.list.hidden = other !== c;
  state.current = c.key;
  c.unread = 0;
  ui.loadEarlier.hidden = !c.more;
  renderHeader();
  renderLists();
  renderTyping();
  askHistory(c);
  scrollToBottom();
  if (state.session) store();
}

function joinRoom(name, password) {
  const room = String(name).trim().replace(/^#\s*/, "");
  if (!room) return;
  const ref = newRef();
  const req = { type: "join", room, ref };
  if (password) req.password = password;
  if (!send(req)) {
    toast("Not connected. Wait for the connection to come back.");
    return;
  }
  state.joinRefs.set(ref, { room, password: !!password });
  state.joining = roomKey(room); // opened when the server's `users` confirms it
  closeDrawer();
}

// A say or dm: shown at once as pending, sent now or as soon as the connection is back.
function sendText(req, raw) {
  outbox.submit(req, raw, send, connection.loggedIn);
  ui.text.value = "";
  state.typingSent = 0;
  autosize();
  scrollToBottom();
}

// The message box: text for the conversation on screen, or a command like the terminal's.
function submitText() {
  const raw = ui.text.value;
  if (!raw.trim()) return;
  const c = state.convs.get(state.current);
  let text = raw;
  let me = false;
  if (raw.startsWith("/") && !raw.startsWith("//")) {
    const [cmd, ...rest] = raw.slice(1).split(" ");
    const arg = rest.join(" ").trim();
    const command = cmd.toLowerCase();
    if (["join", "part", "leave"].includes(command) && !connection.loggedIn) {
      toast("Not connected. Wait for the connection to come back."); // the words stay
      return;
    }
    switch (command) {
      case "me":
        if (!arg) return;
        text = arg;
        me = true;
        break;
      case "join":
        ui.text.value = "";
        joinRoom(arg);
        return;
      case "part":
      case "leave": {
        const room = arg || (c && c.kind === "room" ? c.label : "");
        if (room) send({ type: "part", room });
        ui.text.value = "";
        return;
      }
      case "msg": {
        const [to, ...words] = arg.split(" ");
        if (!to || !words.join(" ").trim()) {
          toast("Write it as: /msg name your message");
          return;
        }
        sendText({ type: "dm", to, text: words.join(" ") }, raw);
        open(dmKey(to), to);
        return;
      }
      default:
        toast("Unknown command. Try /me, /join, /part or /msg. Start with // to send a /.");
        return;
    }
  } else if (raw.startsWith("//")) {
    text = raw.slice(1);
  }
  if (!c) {
    toast("Join a room first: open the menu, or type /join and a room name.");
    return;
  }
  const req = c.kind === "room"
    ? { type: "say", room: c.label, text }
    : { type: "dm", to: c.label, text };
  if (me) req.me = true;
  sendText(req, raw);
}

function autosize() {
  ui.text.style.height = "auto";
  ui.text.style.height = Math.min(ui.text.scrollHeight, 160) + "px";
}

// The name form, with what went wrong in words; `wrong` is the field to fix, if one is.
function showLogin(error, wrong) {
  ui.chat.hidden = true;
  ui.login.hidden = false;
  ui.loginError.textContent = error || "";
  ui.loginButton.disabled = false;
  ui.loginButton.textContent = "Join the chat";
  for (const field of [ui.name, ui.password]) {
    field.setAttribute("aria-invalid", field === wrong ? "true" : "false");
  }
  ui.name.focus();
}

function revealPassword() {
  ui.passwordRow.hidden = false;
  ui.showPassword.hidden = true;
  ui.password.focus();
}

function showChat() {
  ui.login.hidden = true;
  ui.chat.hidden = false;
  if (!window.matchMedia("(pointer: coarse)").matches) ui.text.focus();
}

function signOut() {
  send({ type: "quit", reason: "signed out" });
  connection.stop();
  state.session = null;
  state.lastId = 0;
  state.password = "";
  outbox.clear();
  uploads.clear();
  store(); // forgets the session, its outbox and its join/leave lines
  for (const k of [...state.convs.keys()]) {
    forgetRoom(k);
    forget(k);
  }
  state.rooms = [];
  state.current = null;
  hideBanner();
  showLogin("");
}

function logIn(ev) {
  ev.preventDefault();
  const name = ui.name.value.trim();
  if (!name) {
    showLogin("Type the name others will see.", ui.name);
    return;
  }
  if (key(name) !== key(state.name)) {
    state.session = null; // a session belongs to one name
    state.lastId = 0;
    store();
  }
  state.name = name;
  state.password = ui.password.value;
  ui.loginError.textContent = "";
  ui.loginButton.disabled = true;
  ui.loginButton.textContent = "Joining…";
  connection.start();
}

// ---- wiring ---------------------------------------------------------------------------------

actions.open = open;
actions.joinRoom = joinRoom;

ui.loginForm.addEventListener("submit", logIn);
ui.showPassword.addEventListener("click", revealPassword);
ui.composer.addEventListener("submit", (ev) => {
  ev.preventDefault();
  submitText();
  ui.text.focus();
});
ui.text.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    submitText();
  }
});
ui.text.addEventListener("input", () => {
  autosize();
  const c = state.convs.get(state.current);
  const now = Date.now();
  if (!c || !ui.text.value.trim() || ui.text.value.startsWith("/")) return;
  if (now - state.typingSent < TYPING_SEND_EVERY) return;
  state.typingSent = now;
  send(c.kind === "room" ? { type: "typing", room: c.label } : { type: "typing", to: c.label });
});
ui.joinForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  joinRoom(ui.joinRoom.value);
  ui.joinRoom.value = "";
});
ui.browseRooms.addEventListener("click", () => {
  if (!send({ type: "rooms" })) toast("Not connected.");
});
ui.leaveRoom.addEventListener("click", () => {
  const c = currentRoom();
  if (c) send({ type: "part", room: c.label });
  closeDrawer();
});
ui.loadEarlier.addEventListener("click", () => {
  const c = state.convs.get(state.current);
  if (c && c.oldest !== null) askHistory(c, c.oldest);
});
ui.messages.addEventListener("scroll", () => {
  if (nearBottom()) ui.jump.hidden = true;
});
ui.jump.addEventListener("click", scrollToBottom);
ui.menuButton.addEventListener("click", () => openDrawer(false));
ui.peopleButton.addEventListener("click", () => openDrawer(true));
ui.drawerClose.addEventListener("click", () => {
  closeDrawer();
  ui.menuButton.focus();
});
ui.scrim.addEventListener("click", closeDrawer);
ui.signOut.addEventListener("click", signOut);
ui.bannerRetry.addEventListener("click", () => connection.retryNow());
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && ui.chat.classList.contains("drawer-open")) {
    closeDrawer();
    ui.menuButton.focus();
  }
});
// Back to the page: what is on screen has been read.
function seen() {
  if (!looking()) return;
  const c = state.convs.get(state.current);
  if (c) c.unread = 0;
  renderLists();
}
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") return;
  seen();
  connection.retryNow();
  connection.checkAlive(5000); // back from sleep: is the link still there?
});
window.addEventListener("focus", seen);
window.addEventListener("online", () => connection.retryNow());
listenToWorker();

uploads.init(toast);

// ---- start ----------------------------------------------------------------------------------

function start() {
  showInvitation();
  const remembered = rememberedName();
  const saved = loadSession();
  ui.name.value = remembered;
  if (saved && remembered && key(saved.name) === key(remembered)) {
    // Come back as before: the same session, and only what we have not seen yet.
    state.name = saved.name;
    state.session = saved.session;
    state.lastId = Number(saved.since) || 0;
    const names = (list) => (Array.isArray(list) ? list.filter((n) => typeof n === "string") : []);
    // The page as it was left, before the server confirms it: typing works even offline.
    state.rooms = names(saved.rooms);
    for (const room of state.rooms) conv(roomKey(room), room, "room");
    for (const name of names(saved.dms)) conv(dmKey(name), name, "dm");
    outbox.restore(saved.outbox);
    const events = loadEvents();
    for (const c of state.convs.values()) {
      for (const [ts, words, after] of Array.isArray(events[c.key]) ? events[c.key] : []) {
        if (typeof ts === "number" && typeof words === "string") {
          addEvent(c, words, ts, Number(after) || 0);
        }
      }
    }
    ui.login.hidden = true;
    ui.chat.hidden = false;
    const current = typeof saved.current === "string" && state.convs.get(saved.current);
    if (current) open(current.key);
    else renderLists();
    renderNotifyToggle();
    showBanner("Connecting…", false);
    uploads.restoreOnce(); // the server takes a stored session's token before the socket is up
    // A refusal shows the name form (onError); no server: "not connected", and keep trying.
    connection.start(true);
    return;
  }
  showLogin("");
}

// The service worker keeps the page's files for offline starts and makes it installable;
// browsers allow one only in a secure context (https://, or this computer).
if ("serviceWorker" in navigator && window.isSecureContext) {
  navigator.serviceWorker.register("./sw.js", { scope: "./" })
    .catch((err) => console.warn("no offline page", err));
}

start();
