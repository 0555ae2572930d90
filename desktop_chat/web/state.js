// What the web client knows: the page's elements, the conversations, and what is remembered
// in localStorage between visits (the name; the session to resume with its last id, the
// messages not yet sent and the recent join/leave lines; the notification choice).

export const GENERAL = "general";
const STORE = "desktop-chat:";

const $ = (id) => document.getElementById(id);

export const ui = {
  login: $("login"), loginForm: $("login-form"), loginTitle: $("login-title"),
  name: $("name"), password: $("password"), passwordRow: $("password-row"),
  loginError: $("login-error"), loginButton: $("login-button"), showPassword: $("show-password"),
  chat: $("chat"), drawer: $("drawer"), scrim: $("scrim"), drawerClose: $("drawer-close"),
  serverTitle: $("server-title"), roomList: $("room-list"), joinForm: $("join-form"),
  joinRoom: $("join-room"), browseRooms: $("browse-rooms"), allRooms: $("all-rooms"),
  dmList: $("dm-list"), dmEmpty: $("dm-empty"), peopleRoom: $("people-room"),
  peopleList: $("people-list"), leaveRoom: $("leave-room"), meName: $("me-name"),
  meAvatar: $("me-avatar"), signOut: $("sign-out"), conversation: $("conversation"),
  menuButton: $("menu-button"), menuDot: $("menu-dot"), convTitle: $("conv-title"),
  convSub: $("conv-sub"), peopleButton: $("people-button"), peopleCount: $("people-count"),
  banner: $("banner"), bannerText: $("banner-text"), bannerRetry: $("banner-retry"),
  messages: $("messages"), loadEarlier: $("load-earlier"), jump: $("jump"),
  typing: $("typing"), composer: $("composer"), text: $("text"), toast: $("toast"),
  roomPass: $("room-pass"), roomPassForm: $("room-pass-form"), roomPassName: $("room-pass-name"),
  roomPassword: $("room-password"), roomPassError: $("room-pass-error"),
  roomPassCancel: $("room-pass-cancel"), notifyButton: $("notify-button"),
  notifyNote: $("notify-note"), invite: $("invite"), securityNote: $("security-note"),
  attach: $("attach"), camera: $("camera"), fileInput: $("file-input"),
  cameraInput: $("camera-input"), dropHint: $("drop-hint"),
};

export const state = {
  name: "",
  password: "",           // kept in memory only, for reconnecting
  session: null,
  lastId: 0,              // the highest message id seen: `since` when resuming
  title: document.title,
  rooms: [],              // the rooms we are in, in the server's spelling
  convs: new Map(),       // "#room" / "@person" (name keys) -> conversation
  current: null,          // the key of the conversation on screen
  users: new Map(),       // room key -> names in it
  topics: new Map(),      // room key -> topic
  // Every say/dm not yet echoed by the server, oldest first: {ref, req, raw, conv, at}. Sent
  // again with the same ref after each welcome (the server's idempotency key), kept on reload.
  outbox: [],
  // A ref is unique in the session, across reloads too: a random start, then a counter.
  refBase: Math.random().toString(36).slice(2, 10),
  nextRef: 1,
  joining: null,          // the room asked for, opened when the server confirms
  joinRefs: new Map(),    // the ref of a join -> {room, password: whether one was given}
  passRoom: "",           // the room whose password is being asked for
  away: new Map(),        // room key -> (name key -> {name, since, reason, timer}): dropped
  typingSent: 0,
};

// Things other modules ask the app to do (the app fills this in; no import cycles).
export const actions = {
  open: (_convKey, _label) => {},
  joinRoom: (_room, _password) => {},
};

// Names are compared as the server does (NFC, then case-insensitive).
export const key = (name) => String(name).normalize("NFC").toLowerCase();
export const roomKey = (room) => "#" + key(room);
export const dmKey = (name) => "@" + key(name);
export const isMe = (name) => key(name) === key(state.name);
export const newRef = () => `${state.refBase}-${state.nextRef++}`;

// How long someone whose connection dropped may take to come back before the room is told
// (a reload, a Wi-Fi blip). A page can shorten it with localStorage, which the tests do.
export function awayGrace() {
  const set = Number(read("away-grace-ms"));
  return Number.isFinite(set) && set > 0 ? set : 60000;
}

function read(name) {
  try {
    return localStorage.getItem(STORE + name);
  } catch (err) {
    console.warn("localStorage is not available", err);
    return null;
  }
}

function write(name, value) {
  try {
    if (value === null) localStorage.removeItem(STORE + name);
    else localStorage.setItem(STORE + name, value);
  } catch (err) {
    console.warn("cannot remember", name, err);
  }
}

// Other modules' own keys (uploads on their way, the invitation's fingerprint).
export { read as recall, write as remember };

export const notifyChoice = () => read("notify");
export const setNotifyChoice = (on) => write("notify", on ? "on" : "off");

// The conversation under `convKey`, made (with its own hidden message list) on first use.
export function conv(convKey, label, kind) {
  let c = state.convs.get(convKey);
  if (!c) {
    const list = document.createElement("ol");
    list.className = "log";
    list.hidden = true;
    list.setAttribute("role", "log");
    list.setAttribute("aria-live", "polite");
    ui.messages.append(list);
    c = {
      key: convKey, kind, label, list, ids: new Set(), unread: 0, typing: new Map(),
      historyAsked: false, more: false, oldest: null, newest: 0, lastNotified: 0,
    };
    state.convs.set(convKey, c);
  }
  if (label) c.label = label;
  return c;
}

export function forget(convKey) {
  const c = state.convs.get(convKey);
  if (c) {
    c.list.remove();
    state.convs.delete(convKey);
  }
}

export function rememberedName() {
  try {
    return localStorage.getItem(STORE + "name") || "";
  } catch (err) {
    console.warn("no saved name", err);
    return "";
  }
}

export function loadSession() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE + "session") || "null");
    if (saved && typeof saved.session === "string" && typeof saved.name === "string") {
      return saved;
    }
  } catch (err) {
    console.warn("ignoring a damaged saved session", err);
  }
  return null;
}

export function store() {
  try {
    localStorage.setItem(STORE + "name", state.name);
    if (state.session) {
      const dms = [...state.convs.values()].filter((c) => c.kind === "dm").map((c) => c.label);
      const outbox = state.outbox.map(({ ref, req, raw, conv: c, at }) =>
        ({ ref, req, raw, conv: c, at }));
      localStorage.setItem(STORE + "session", JSON.stringify({
        session: state.session, since: state.lastId, name: state.name, dms,
        rooms: state.rooms, current: state.current, outbox,
      }));
    } else {
      localStorage.removeItem(STORE + "session");
      localStorage.removeItem(STORE + "events");
    }
  } catch (err) {
    console.warn("cannot remember the session (private browsing?)", err);
  }
}

// Join, leave and topic lines are not in the server's history: the page keeps the recent ones
// of each conversation, so a reload shows them again in their place.
const EVENTS_KEPT = 60;

export function loadEvents() {
  try {
    const saved = JSON.parse(read("events") || "{}");
    return saved && typeof saved === "object" ? saved : {};
  } catch (err) {
    console.warn("ignoring damaged saved events", err);
    return {};
  }
}

export function saveEvent(convKey, ts, words, after) {
  const saved = loadEvents();
  const list = Array.isArray(saved[convKey]) ? saved[convKey] : [];
  list.push([ts, words, after]);
  saved[convKey] = list.slice(-EVENTS_KEPT);
  write("events", JSON.stringify(saved));
}
