// Everything around the conversation: the drawer (rooms, direct messages, people), the top
// bar, the typing line, the connection banner and short notes (toasts). Text from the network
// goes in with textContent only.

import { avatar } from "./messages.js";
import { GENERAL, actions, conv, dmKey, isMe, key, roomKey, state, ui } from "./state.js";

const wide = window.matchMedia("(min-width: 860px)");

function plural(n, one, many) {
  return n === 1 ? `1 ${one}` : `${n} ${many}`;
}

function convButton(c, text, lead) {
  const li = document.createElement("li");
  const b = document.createElement("button");
  b.type = "button";
  b.className = "conv";
  if (c.key === state.current) b.setAttribute("aria-current", "true");
  if (lead) b.append(lead);
  const label = document.createElement("span");
  label.className = "conv-label";
  label.textContent = text;
  b.append(label);
  if (c.unread) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = c.unread > 99 ? "99+" : String(c.unread);
    badge.setAttribute("aria-label", `${c.unread} unread`);
    b.append(badge);
  }
  b.addEventListener("click", () => {
    actions.open(c.key);
    closeDrawer();
  });
  li.append(b);
  return li;
}

export function currentRoom() {
  const c = state.convs.get(state.current);
  return c && c.kind === "room" ? c : null;
}

export function renderLists() {
  ui.roomList.replaceChildren(...state.rooms.map((room) => {
    const c = conv(roomKey(room), room, "room");
    return convButton(c, "# " + c.label);
  }));
  const dms = [...state.convs.values()].filter((c) => c.kind === "dm");
  ui.dmList.replaceChildren(...dms.map((c) => convButton(c, c.label, avatar(c.label, "tiny"))));
  ui.dmEmpty.hidden = dms.length > 0;
  renderPeople();
  const unread = [...state.convs.values()].reduce((n, c) => n + c.unread, 0);
  ui.menuDot.hidden = unread === 0;
  ui.menuButton.setAttribute("aria-label",
    unread ? `Rooms and people (${unread} unread)` : "Rooms and people");
  document.title = unread ? `(${unread}) ${state.title}` : state.title;
}

// Whether `name` dropped out of room `k` a moment ago (see presence.js).
export function isAway(k, name) {
  const away = state.away.get(k);
  return !!away && away.has(key(name));
}

// Everyone to list in room `k`: those in it, and those whose connection dropped a moment ago.
export function peopleIn(k) {
  const names = (state.users.get(k) || []).slice();
  for (const { name } of (state.away.get(k) || new Map()).values()) {
    if (!names.some((n) => key(n) === key(name))) names.push(name);
  }
  return names.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

function renderPeople() {
  const room = currentRoom() || state.convs.get(roomKey(state.rooms[0] || GENERAL));
  ui.peopleRoom.textContent = room ? "# " + room.label : "this room";
  const names = room ? peopleIn(room.key) : [];
  ui.peopleList.replaceChildren(...names.map((name) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "person";
    const label = document.createElement("span");
    label.className = "person-name";
    label.textContent = isMe(name) ? `${name} (you)` : name;
    b.append(avatar(name, "small"), label);
    if (isAway(room.key, name)) {
      // Their connection dropped: greyed at once, a line only if they stay away.
      li.className = "away";
      const note = document.createElement("span");
      note.className = "person-note";
      note.textContent = "reconnecting…";
      b.append(note);
    }
    if (isMe(name)) {
      b.disabled = true;
    } else {
      b.setAttribute("aria-label", `Message ${name} privately`);
      b.addEventListener("click", () => {
        actions.open(dmKey(name), name);
        closeDrawer();
        ui.text.focus();
      });
    }
    li.append(b);
    return li;
  }));
  ui.leaveRoom.hidden = !currentRoom();
}

// The answer to "Show all rooms": every room on the server, to join with a tap.
export function renderDirectory(rooms) {
  ui.allRooms.replaceChildren(...rooms.map((info) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "conv";
    const label = document.createElement("span");
    label.className = "conv-label";
    label.textContent = "# " + info.name;
    const count = document.createElement("span");
    count.className = "conv-meta";
    count.textContent = plural(Number(info.users) || 0, "person", "people");
    b.append(label, count);
    if (typeof info.topic === "string") b.title = info.topic;
    b.addEventListener("click", () => actions.joinRoom(info.name));
    li.append(b);
    return li;
  }));
  ui.allRooms.hidden = false;
}

export function renderHeader() {
  const c = state.convs.get(state.current);
  if (!c) {
    // Out of every room (after leaving general): say how to get back in.
    ui.convTitle.textContent = "No room";
    ui.convSub.textContent = "Open the menu to join a room";
    ui.peopleButton.hidden = true;
    return;
  }
  if (c.kind === "room") {
    const count = (state.users.get(c.key) || []).length;
    const topic = state.topics.get(c.key);
    const people = plural(count, "person", "people");
    ui.convTitle.textContent = "# " + c.label;
    ui.convSub.textContent = topic ? `${people} · ${topic}` : people;
    ui.peopleCount.textContent = String(count);
    ui.peopleButton.hidden = false;
    ui.text.placeholder = `Message # ${short(c.label)}`;
  } else {
    ui.convTitle.textContent = c.label;
    ui.convSub.textContent = "Private conversation";
    ui.peopleButton.hidden = true;
    ui.text.placeholder = `Message ${short(c.label)}`;
  }
}

// A placeholder cannot ellipsize in a one-line textarea (it wraps and is cut off): shorten
// long names here. 14 characters fit beside "Message # " on the narrowest phones.
function short(label) {
  const chars = Array.from(label);
  return chars.length > 14 ? chars.slice(0, 13).join("") + "…" : label;
}

export function renderTyping() {
  const c = state.convs.get(state.current);
  const now = Date.now();
  const names = [];
  if (c) {
    for (const [k, t] of c.typing) {
      if (t.until > now) names.push(t.name);
      else c.typing.delete(k);
    }
  }
  let words = "";
  if (names.length === 1) words = `${names[0]} is typing…`;
  else if (names.length === 2) words = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) words = "Several people are typing…";
  ui.typing.textContent = words;
}

// What the server's refusals mean, for a toast.
export const ERRORS = {
  rate_limited: "You’re sending too fast. Wait a moment and try again.",
  not_in_room: "You are not in that room.",
  no_such_user: "That person is not online, so they can’t get private messages right now.",
  name_invalid: "That room name can’t be used (1 to 32 characters).",
  too_long: "That message is too long.",
  forbidden: "Only moderators can do that.",
  auth_failed: "That room needs a password.",
  bad_message: "The server did not understand that.",
};

let toastTimer = 0;
export function toast(words) {
  ui.toast.textContent = words;
  ui.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { ui.toast.hidden = true; }, 5000);
}

export function showBanner(words, retry) {
  ui.bannerText.textContent = words;
  ui.bannerRetry.hidden = !retry;
  ui.banner.hidden = false;
  ui.composer.classList.add("offline");
}

export function hideBanner() {
  ui.banner.hidden = true;
  ui.composer.classList.remove("offline");
}

export function openDrawer(focusPeople) {
  ui.chat.classList.add("drawer-open");
  // On a phone the drawer covers the conversation: keep focus and taps inside it.
  if (!wide.matches) ui.conversation.inert = true;
  ui.scrim.hidden = false;
  ui.menuButton.setAttribute("aria-expanded", "true");
  if (focusPeople) {
    ui.peopleList.scrollIntoView({ block: "start" });
    const first = ui.peopleList.querySelector("button:not([disabled])");
    (first || ui.drawer).focus();
  } else {
    (ui.roomList.querySelector("button") || ui.drawer).focus();
  }
}

export function closeDrawer() {
  if (!ui.chat.classList.contains("drawer-open")) return;
  ui.chat.classList.remove("drawer-open");
  ui.conversation.inert = false;
  ui.scrim.hidden = true;
  ui.menuButton.setAttribute("aria-expanded", "false");
}

// The room asked for needs a password: a small dialog asks for it (`problem`: what was wrong).
export function askRoomPassword(room, problem) {
  state.passRoom = room;
  ui.roomPassName.textContent = room;
  ui.roomPassError.textContent = problem;
  ui.roomPassword.value = "";
  ui.roomPassword.setAttribute("aria-invalid", problem ? "true" : "false");
  if (!ui.roomPass.open) ui.roomPass.showModal();
  ui.roomPassword.focus();
}

ui.roomPassForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!ui.roomPassword.value) {
    ui.roomPassError.textContent = "Type the room’s password.";
    ui.roomPassword.focus();
    return;
  }
  ui.roomPassError.textContent = "";
  actions.joinRoom(state.passRoom, ui.roomPassword.value);
});
ui.roomPassCancel.addEventListener("click", () => {
  state.joining = null;
  ui.roomPass.close();
});

wide.addEventListener("change", closeDrawer);
