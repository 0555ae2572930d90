// Telling the user about messages while they are not looking at the page (it is hidden, or its
// window is not focused): a system notification, when the browser allows it and the user turned
// it on. As in the desktop app, mentions of me and direct messages always notify, a busy room at
// most every 10 s. Notifications need a secure context (https://, or this computer): on
// http://<LAN address> the browser offers none, and the drawer says so quietly.

import { actions, notifyChoice, setNotifyChoice, state, ui } from "./state.js";

const ROOM_QUIET = 10000;
const PREVIEW = 140;

export const looking = () => document.visibilityState === "visible" && document.hasFocus();

const supported = () => window.isSecureContext && "Notification" in window;

function enabled() {
  return supported() && Notification.permission === "granted" && notifyChoice() !== "off";
}

export function renderNotifyToggle() {
  let note = "";
  if (!supported()) {
    note = "Notifications need a secure connection (https://), so this page can’t show them.";
  } else if (Notification.permission === "denied") {
    note = "Notifications are blocked for this page in the browser’s settings.";
  }
  ui.notifyButton.hidden = note !== "";
  ui.notifyNote.textContent = note;
  ui.notifyNote.hidden = note === "";
  const on = enabled();
  ui.notifyButton.textContent = on ? "Notifications: on" : "Notifications: off";
  ui.notifyButton.setAttribute("aria-pressed", on ? "true" : "false");
}

async function toggle() {
  if (enabled()) {
    setNotifyChoice(false);
  } else if (supported()) {
    let permission = Notification.permission;
    if (permission === "default") permission = await Notification.requestPermission();
    setNotifyChoice(permission === "granted");
  }
  renderNotifyToggle();
}

function preview(text) {
  const line = String(text).split(/\s+/).join(" ").trim();
  return line.length > PREVIEW ? line.slice(0, PREVIEW - 1) + "…" : line;
}

// A live message from someone else in conversation `c`; `mention`: it names me.
export function notifyMessage(c, msg, mention) {
  if (!enabled() || looking()) return;
  const now = Date.now();
  if (c.kind === "room" && !mention && now - c.lastNotified < ROOM_QUIET) return;
  c.lastNotified = now;
  let title = `${msg.from} in # ${c.label}`;
  if (c.kind === "dm") title = `${msg.from} (private)`;
  else if (mention) title = `${msg.from} mentioned you in # ${c.label}`;
  let body = msg.me ? `${msg.from} ${preview(msg.text)}` : preview(msg.text);
  if (msg.file && typeof msg.file.name === "string") body = `shared ${preview(msg.file.name)}`;
  show(title, { body, tag: c.key, icon: "icon-192.png", data: { conv: c.key } });
}

// Through the service worker where there is one (phones allow no other way), else directly.
async function show(title, options) {
  try {
    const reg = "serviceWorker" in navigator
      ? await navigator.serviceWorker.getRegistration() : undefined;
    if (reg && reg.active) {
      await reg.showNotification(title, options);
      return;
    }
    const n = new Notification(title, options);
    n.onclick = () => {
      window.focus();
      actions.open(options.data.conv);
      n.close();
    };
  } catch (err) {
    console.warn("could not show a notification", err);
  }
}

// Tapping a notification shown by the service worker opens its conversation.
export function listenToWorker() {
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.addEventListener("message", (ev) => {
    const data = ev.data || {};
    if (data.type === "open" && typeof data.conv === "string" && state.convs.has(data.conv)) {
      actions.open(data.conv);
    }
  });
}

ui.notifyButton.addEventListener("click", () => {
  toggle().catch((err) => console.warn("notification permission", err));
});
