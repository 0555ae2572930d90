// The WebSocket to the server that served this page (ws: or wss: like the page itself): one
// JSON object per text frame, as in docs/protocol.md. This module says hello on every
// (re)connection, answers the server's pings, notices a dead link, and reconnects with a
// growing delay once the user has been let in. What the messages mean is the app's business.

const KEEPALIVE_EVERY = 25000; // ask after this much silence...
const KEEPALIVE_GRACE = 10000; // ...and give up on the link if no answer comes in this time
const RETRY_FIRST = 500;
const RETRY_MAX = 15000;
const OPEN_TIMEOUT = 8000; // a socket that did not open in this time: "timed out"

// Why the link ended, in the words the banner uses (what a page can know: a WebSocket never
// says "refused", but one that fails at once was refused, one that hangs timed out).
export const WHY = {
  refused: "the connection was refused",
  timeout: "the connection timed out",
  closed: "the server closed the connection",
  stopped: "the server stopped the chat",
};

export class ChatConnection {
  // handlers: hello() -> the hello object to send; event(msg); lost(delayMs, refused, why) when
  // the link dropped and a retry is due; retrying(); failed(refused) when the first connection
  // did not work. `refused`: the socket never opened (no server, or a refusal such as "full");
  // `why`: one of WHY's texts.
  constructor(handlers) {
    this.handlers = handlers;
    this.ws = null;
    this.stopped = true;
    this.loggedIn = false;  // this socket got its welcome
    this.resumable = false; // some socket got a welcome since start(): reconnect on loss
    this.retryDelay = 0;
    this.retryTimer = 0;
    this.aliveTimer = 0;
    this.lastHeard = 0;
    this.pingSent = 0;
    this.opened = false;    // this socket opened (a refused one never does)
    this.why = "";          // set when we know better than the close event (timeout, closing)
    this.openTimer = 0;
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  // `resumable`: we have a session already (a reload): keep trying rather than give up.
  start(resumable = false) {
    this.stopped = false;
    this.resumable = resumable;
    this.retryDelay = 0;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.openTimer);
    clearInterval(this.aliveTimer);
  }

  send(obj) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  // The app calls this on `welcome`.
  welcomed() {
    this.loggedIn = true;
    this.resumable = true;
    this.retryDelay = 0;
    this.pingSent = 0;
    clearInterval(this.aliveTimer);
    this.aliveTimer = setInterval(() => this.checkAlive(KEEPALIVE_EVERY), 2500);
  }

  retryNow() {
    if (!this.stopped && this.resumable && !this.ws) {
      clearTimeout(this.retryTimer);
      this.retryDelay = 0;
      this.handlers.retrying();
      this.open();
    }
  }

  // A phone that changes networks or wakes from sleep may hold a dead socket for minutes
  // without noticing: after a quiet spell, ask; no answer in time means the link is gone.
  checkAlive(quietFor) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const now = Date.now();
    if (this.pingSent && this.lastHeard < this.pingSent) {
      if (now - this.pingSent > KEEPALIVE_GRACE) {
        this.pingSent = 0;
        this.why = WHY.timeout;
        ws.close();
        this.closed(ws); // its own close event may come much later: reconnect now
      }
      return;
    }
    if (now - this.lastHeard > quietFor) {
      this.pingSent = now;
      this.send({ type: "ping", n: now });
    }
  }

  open() {
    clearTimeout(this.retryTimer);
    if (this.ws) {
      const old = this.ws;
      this.ws = null;
      old.close();
    }
    this.loggedIn = false;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    this.ws = ws;
    this.opened = false;
    this.why = "";
    clearTimeout(this.openTimer);
    this.openTimer = setTimeout(() => {
      if (this.ws !== ws || this.opened) return;
      this.why = WHY.timeout;
      ws.close();
      this.closed(ws);
    }, OPEN_TIMEOUT);
    ws.onopen = () => {
      clearTimeout(this.openTimer);
      this.opened = true;
      this.lastHeard = Date.now();
      ws.send(JSON.stringify(this.handlers.hello()));
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.lastHeard = Date.now();
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (err) {
        console.warn("not JSON from the server", err);
        return;
      }
      if (!msg || typeof msg.type !== "string") return;
      if (msg.type === "ping") {
        this.send({ type: "pong", n: msg.n });
        return;
      }
      if (msg.type === "closing") this.why = WHY.stopped;
      this.handlers.event(msg);
    };
    ws.onclose = () => this.closed(ws);
  }

  closed(ws) {
    if (this.ws !== ws) return;
    clearTimeout(this.openTimer);
    this.ws = null;
    this.loggedIn = false;
    clearInterval(this.aliveTimer);
    if (this.stopped) return;
    if (!this.resumable) {
      this.stopped = true;
      this.handlers.failed(!this.opened);
      return;
    }
    this.retryDelay = Math.min(this.retryDelay ? this.retryDelay * 2 : RETRY_FIRST, RETRY_MAX);
    const why = this.why || (this.opened ? WHY.closed : WHY.refused);
    this.handlers.lost(this.retryDelay, !this.opened, why);
    this.retryTimer = setTimeout(() => {
      this.handlers.retrying();
      this.open();
    }, this.retryDelay);
  }
}

// Why a WebSocket did not open, which a page cannot see: a server at its connection cap answers
// every HTTP request with 503 (the service worker leaves HEAD requests alone), so ask.
export async function serverIsFull() {
  try {
    const answer = await fetch("./?probe", { method: "HEAD", cache: "no-store" });
    return answer.status === 503;
  } catch (err) {
    console.info("the server cannot be reached", err);
    return false;
  }
}
