// Shared files as cards in the conversation: an icon by type, the name (a label: always text,
// never HTML, never a path), the size; a Download button that fetches the file with the session
// token, shows progress, picks up where it stopped after a dropped connection (Range), checks
// the SHA-256 where the browser allows it, and saves under a safe name; and, for the four image
// types the server serves inline, a thumbnail fetched the same way and shown from a blob: URL
// (the page's CSP allows blob: images and nothing wider). Blob URLs are revoked as soon as
// their card leaves the page. A file the server no longer has (404, 410 or `expired`) says so.

import { state, ui } from "./state.js";

const INLINE = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
const THUMB_MAX = 16 * 1024 * 1024;   // bigger images get a card without a picture
const HASH_MAX = 512 * 1024 * 1024;   // checked in memory: a phone cannot hash more at once
const RETRIES = 8;                    // a dropped download is picked up this often in a row
const THUMB_PX = 260;                 // the longer side of a thumbnail on screen

export function formatSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GB`;
}

// Speed and time left of a transfer, over the last few seconds only: a mean since the start,
// or one that counts a pause, shows absurd figures right after a resume. `restart` on each new
// attempt; `note` on each progress; `describe` is "" until there is enough to measure.
const RATE_WINDOW = 3000; // ms
const RATE_MIN_SPAN = 500; // ms of samples before a speed is shown
export class Rate {
  constructor() {
    this.samples = [];
  }

  restart(bytes) {
    this.samples = [[performance.now(), bytes]];
  }

  note(bytes) {
    const now = performance.now();
    this.samples.push([now, bytes]);
    while (this.samples.length > 2 && now - this.samples[1][0] >= RATE_WINDOW) {
      this.samples.shift();
    }
  }

  describe(done, size) {
    if (this.samples.length < 2) return "";
    const [t0, b0] = this.samples[0];
    const [t1, b1] = this.samples[this.samples.length - 1];
    if (t1 - t0 < RATE_MIN_SPAN || b1 <= b0) return "";
    const perSecond = ((b1 - b0) * 1000) / (t1 - t0);
    const left = Math.floor(Math.max(0, size - done) / perSecond) + 1;
    const eta = left < 90 ? `${left} s` : `${Math.round(left / 60)} min`;
    return ` · ${formatSize(Math.round(perSecond))}/s, ${eta} left`;
  }
}

export const authorization = () => ({ Authorization: `Bearer ${state.session || ""}` });

// A name to save under: the server already removed folders and control characters, but what
// is safe on this device's file system is the saver's business (CON, trailing dots, "a:b").
const RESERVED = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i;
export function safeName(name) {
  let out = String(name).normalize("NFC")
    .replace(/[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069]/g, "")
    .replace(/[\\/:*?"<>|]/g, "_")
    .replace(/^[\s.]+|[\s.]+$/g, "");
  if (RESERVED.test(out)) out = "_" + out;
  return out.slice(0, 200) || "file";
}

// A short label for the icon: the extension, else a word for the detected type.
export function typeLabel(name, mime) {
  const ext = /\.([A-Za-z0-9]{1,4})$/.exec(String(name));
  if (ext) return ext[1].toUpperCase();
  if (String(mime).startsWith("image/")) return "IMG";
  return { "application/pdf": "PDF", "application/zip": "ZIP", "text/plain": "TXT" }[mime] ||
    "FILE";
}

// A colour by kind: the detected type first, else what the name's extension suggests.
const KINDS = {
  "kind-image": /^(png|jpe?g|gif|webp|heic|bmp|svg|tiff?)$/,
  "kind-doc": /^(pdf|txt|md|docx?|odt|rtf|xlsx?|ods|pptx?|odp|csv)$/,
  "kind-archive": /^(zip|7z|rar|gz|tgz|bz2|xz|tar)$/,
  "kind-media": /^(mp4|mov|mkv|webm|avi|mp3|m4a|ogg|opus|wav|flac)$/,
};
function typeClass(name, mime) {
  mime = String(mime);
  if (/^image\/(png|jpeg|gif|webp)$/.test(mime)) return "kind-image";
  if (mime === "application/pdf" || mime === "text/plain") return "kind-doc";
  if (mime === "application/zip") return "kind-archive";
  const ext = (/\.([A-Za-z0-9]{1,5})$/.exec(String(name)) || ["", ""])[1].toLowerCase();
  for (const [kind, exts] of Object.entries(KINDS)) if (exts.test(ext)) return kind;
  return "kind-other";
}

export function fileIcon(name, mime) {
  const icon = document.createElement("span");
  icon.className = `file-icon ${typeClass(name, mime)}`;
  icon.setAttribute("aria-hidden", "true");
  icon.textContent = typeLabel(name, mime);
  return icon;
}

// Round icon buttons (download, cancel): their words are in aria-label and the tooltip.
const SVG = "http://www.w3.org/2000/svg";
export const DOWN = "M12 4v11M7 10.5l5 5 5-5M5 20h14";
export const CROSS = "M7 7l10 10M17 7L7 17";
export function roundButton(cls, path, words) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = `round-button ${cls}`;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const line = document.createElementNS(SVG, "path");
  line.setAttribute("d", path);
  svg.append(line);
  b.append(svg);
  setButton(b, path, words);
  return b;
}
export function setButton(b, path, words) {
  b.querySelector("path").setAttribute("d", path);
  b.setAttribute("aria-label", words);
  b.title = words;
}

// ---- the card -------------------------------------------------------------------------------

export function fileCard(msg) {
  const f = msg.file;
  const name = String(f.name);
  const size = Number(f.size) || 0;
  const card = document.createElement("div");
  card.className = "filecard";
  card.dataset.fileId = String(f.id);
  card.setAttribute("role", "group");
  card.setAttribute("aria-label", `File ${name}, ${formatSize(size)}, from ${msg.from}`);

  if (INLINE.has(f.mime) && size <= THUMB_MAX && !f.expired) card.append(thumbnail(f, name));

  const row = document.createElement("div");
  row.className = "file-row";
  const info = document.createElement("div");
  info.className = "file-info";
  const label = document.createElement("span");
  label.className = "file-name";
  label.textContent = name;
  label.title = name;
  const meta = document.createElement("span");
  meta.className = "file-meta";
  meta.textContent = formatSize(size);
  info.append(label, meta);
  const get = roundButton("file-get", DOWN, `Download ${name}`);
  get.addEventListener("click", () => download(card, f, get));
  row.append(fileIcon(name, f.mime), info, get);

  const bar = document.createElement("progress");
  bar.className = "file-progress";
  bar.max = 1;
  bar.value = 0;
  bar.hidden = true;
  bar.setAttribute("aria-label", `Downloading ${name}`);
  card.append(row, bar);
  if (f.expired) markGone(card, 410);
  return card;
}

function markGone(card, status) {
  card.classList.add("expired");
  card.querySelector(".thumb")?.remove();
  card.querySelector(".file-get")?.remove();
  card.querySelector(".file-progress")?.setAttribute("hidden", "");
  card.querySelector(".file-meta").textContent = status === 410
    ? "Expired: the server no longer keeps this file"
    : "Not available: the server no longer has this file";
}

function setMeta(card, words) {
  card.querySelector(".file-meta").textContent = words;
}

// ---- thumbnails -----------------------------------------------------------------------------

// Fetched when the card first comes into view, not for every image in the history at once.
const seen = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    seen.unobserve(entry.target);
    loadThumb(entry.target);
  }
}, { root: ui.messages, rootMargin: "300px 0px" });

function thumbnail(f, name) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "thumb";
  button.setAttribute("aria-label", `Download ${name}`);
  const img = document.createElement("img");
  img.alt = name;
  const w = Number(f.width) || 0;
  const h = Number(f.height) || 0;
  if (w > 0 && h > 0) {
    // The space is kept before the picture arrives, so the conversation does not jump.
    const scale = Math.min(1, THUMB_PX / Math.max(w, h));
    img.width = Math.max(1, Math.round(w * scale));
    img.height = Math.max(1, Math.round(h * scale));
  }
  img.dataset.fileId = String(f.id);
  button.append(img);
  button.addEventListener("click", () => button.closest(".filecard").querySelector(".file-get")
    ?.click());
  seen.observe(img);
  return button;
}

async function loadThumb(img, attempt = 1) {
  if (!img.isConnected) return;
  const card = img.closest(".filecard");
  try {
    const res = await fetch(`/files/${encodeURIComponent(img.dataset.fileId)}`,
      { headers: authorization() });
    if (res.status === 404 || res.status === 410) {
      markGone(card, res.status);
      return;
    }
    if (!res.ok) throw new Error(`the server answered ${res.status}`);
    const blob = await res.blob();
    if (!img.isConnected) return;
    const url = URL.createObjectURL(blob);
    img.dataset.blob = url;
    img.src = url;
    card.classList.add("has-thumb");
  } catch (err) {
    console.info("no thumbnail yet", err);
    if (attempt < 4) setTimeout(() => loadThumb(img, attempt + 1), 2000 * attempt);
  }
}

// A card that leaves the page (a conversation forgotten, signing out) gives its memory back.
function revokeIn(node) {
  if (node.nodeType !== Node.ELEMENT_NODE) return;
  const imgs = node.matches("img[data-blob]") ? [node] : node.querySelectorAll("img[data-blob]");
  for (const img of imgs) {
    URL.revokeObjectURL(img.dataset.blob);
    delete img.dataset.blob;
  }
}
new MutationObserver((records) => {
  for (const record of records) {
    for (const node of record.removedNodes) {
      if (!node.isConnected) revokeIn(node);
    }
  }
}).observe(ui.messages, { childList: true, subtree: true });

// ---- downloads ------------------------------------------------------------------------------

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function download(card, f, button) {
  if (card.downloading) {
    card.downloading.abort(); // the button says Cancel while it runs
    return;
  }
  const ctl = new AbortController();
  card.downloading = ctl;
  const size = Number(f.size) || 0;
  const bar = card.querySelector(".file-progress");
  bar.hidden = false;
  bar.value = 0;
  setButton(button, CROSS, `Cancel the download of ${f.name}`);
  const chunks = [];
  const rate = new Rate();
  let got = 0;
  let failures = 0;
  let complete = false;
  try {
    while (!complete) {
      const headers = authorization();
      if (got > 0) headers.Range = `bytes=${got}-`;
      rate.restart(got);
      try {
        const res = await fetch(`/files/${encodeURIComponent(f.id)}`,
          { headers, signal: ctl.signal, cache: "no-store" });
        if (res.status === 404 || res.status === 410) {
          markGone(card, res.status);
          return;
        }
        if (!(res.status === 200 || (got > 0 && res.status === 206))) {
          throw new Error(`the server answered ${res.status}`);
        }
        if (res.status === 200 && got > 0) { // the range was not honoured: start over
          chunks.length = 0;
          got = 0;
        }
        const reader = res.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          chunks.push(value);
          got += value.length;
          failures = 0;
          bar.value = size ? got / size : 1;
          rate.note(got);
          setMeta(card, `${formatSize(got)} of ${formatSize(size)}${rate.describe(got, size)}`);
        }
        if (got < size) throw new Error("the download stopped early");
        complete = true;
      } catch (err) {
        if (ctl.signal.aborted) throw err;
        failures += 1;
        if (failures > RETRIES) throw err;
        // A dropped connection (a phone asleep, a cable out): try again from where it stopped.
        setMeta(card, `Connection lost at ${formatSize(got)}. Trying again…`);
        await pause(Math.min(1000 * 2 ** (failures - 1), 15000));
      }
    }
    const blob = new Blob(chunks, { type: "application/octet-stream" });
    if (!(await sameHash(blob, f))) {
      setMeta(card, "The download was damaged on the way. Try again.");
      return;
    }
    save(blob, f.name);
    setMeta(card, `${formatSize(size)} · saved`);
  } catch (err) {
    if (ctl.signal.aborted) setMeta(card, `${formatSize(size)} · download cancelled`);
    else setMeta(card, `Could not download it (${err.message || err}). Try again.`);
  } finally {
    card.downloading = null;
    bar.hidden = true;
    if (button.isConnected) setButton(button, DOWN, `Download ${f.name}`);
  }
}

// SHA-256 needs a secure context (https or this computer); elsewhere TCP's and TLS's checks
// are all there is, and the card does not claim more.
async function sameHash(blob, f) {
  if (!(window.crypto && crypto.subtle) || blob.size > HASH_MAX || typeof f.sha256 !== "string") {
    return true;
  }
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return hex === f.sha256.toLowerCase();
}

function save(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = safeName(name);
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  // The browser copies the blob for the download; a minute is plenty before letting it go.
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
}
