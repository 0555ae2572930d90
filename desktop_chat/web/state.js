// What the web client knows: the page's elements, the conversations, and what is remembered
// in localStorage between visits (the name, and the session to resume with its last id).

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
  refs: new Map(),        // ref -> text sent, so a refused message can be given back
  nextRef: 1,
  joining: null,          // the room asked for, opened when the server confirms
  typingSent: 0,
  restore: { dms: [], current: null }, // the page as it was left, from the saved session
};

// Things other modules ask the app to do (the app fills this in; no import cycles).
export const actions = {
  open: (_convKey, _label) => {},
  joinRoom: (_room) => {},
};

// Names are compared as the server does (NFC, then case-insensitive).
export const key = (name) => String(name).normalize("NFC").toLowerCase();
export const roomKey = (room) => "#" + key(room);
export const dmKey = (name) => "@" + key(name);
export const isMe = (name) => key(name) === key(state.name);

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
      historyAsked: false, more: false, oldest: null, newest: 0,
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
      localStorage.setItem(STORE + "session", JSON.stringify({
        session: state.session, since: state.lastId, name: state.name, dms,
        current: state.current,
      }));
    } else {
      localStorage.removeItem(STORE + "session");
    }
  } catch (err) {
    console.warn("cannot remember the session (private browsing?)", err);
  }
}
