// The service worker: it makes the page installable and lets it open without the network.
// It keeps the page's own files (the shell) and nothing else: never messages, never /ws.
// Network first, so a server update shows at once; the kept copy only when the server cannot
// be reached or is refusing (full), so the page opens and says "not connected" itself.

const CACHE = "desktop-chat-shell";
const SHELL = [
  "./", "app.js", "state.js", "connection.js", "messages.js", "panels.js", "presence.js",
  "outbox.js", "alerts.js", "uploads.js", "filecards.js", "invite.js", "style.css", "files.css",
  "icon.svg", "icon-192.png", "icon-512.png", "manifest.webmanifest",
];
const scope = new URL(self.registration.scope);
const SHELL_PATHS = new Set(SHELL.map((p) => new URL(p, scope).pathname));

// Each file is tried a few times: one failed request (a dropped idle connection) must not cost
// the page its offline copy until the next visit.
async function keep(cache, path) {
  for (let attempt = 1; ; attempt++) {
    try {
      const response = await fetch(path, { cache: "no-store" });
      if (response.ok) return cache.put(path, response);
      if (attempt >= 3) throw new Error(`${path}: ${response.status}`);
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
}

self.addEventListener("install", (ev) => {
  ev.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await Promise.all(SHELL.map((path) => keep(cache, path)));
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (ev) => {
  ev.waitUntil(self.clients.claim());
});

function shellKey(request) {
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== scope.origin) return null;
  if (request.mode === "navigate" && (url.pathname === scope.pathname ||
      url.pathname === scope.pathname + "index.html")) return scope.pathname;
  return SHELL_PATHS.has(url.pathname) && !url.search ? url.pathname : null;
}

async function networkFirst(request, cacheKey) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) {
      await cache.put(cacheKey, response.clone());
      return response;
    }
    return (await cache.match(cacheKey)) || response; // full (503): the page explains it
  } catch (err) {
    const kept = await cache.match(cacheKey);
    if (kept) return kept;
    throw err;
  }
}

self.addEventListener("fetch", (ev) => {
  const cacheKey = shellKey(ev.request);
  if (cacheKey !== null) ev.respondWith(networkFirst(ev.request, cacheKey));
});

self.addEventListener("notificationclick", (ev) => {
  ev.notification.close();
  const conv = (ev.notification.data || {}).conv;
  ev.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const client = windows[0];
    if (client) {
      await client.focus();
      client.postMessage({ type: "open", conv });
    } else {
      await self.clients.openWindow(scope.href);
    }
  })());
});
