// Herald's JavaScript client: one device's WebSocket session (docs/protocol.md), with what a
// careful app needs around it (docs/js-client.md):
//  - authentication with a device secret or an app sign-in token (JWT), refreshed before expiry;
//  - reconnection with exponential backoff and jitter, resuming the change stream with `since`
//    and dropping changes already processed (by change cursor);
//  - idempotent sends: each message gets a client_message_id and waits in a stored outbox until
//    the server answers it, across reconnects and page reloads, and is re-sent unchanged;
//  - acknowledgements, read sync, typing, presence and the chat list with unread counts;
//  - events as callbacks (`on`) and as async iterators (`events`).
//
// An ES module without dependencies and without a build step. It runs in browsers and in Node 18
// or later: it uses `options.WebSocket` when given, else the global WebSocket (browsers, Node 22,
// Node 20 with --experimental-websocket), else the `ws` npm package, imported when first needed.

// Backoff between connection attempts: the first wait, the ceiling, and the growth per attempt.
export const kReconnectInitialMs = 500;
export const kReconnectMaxMs = 30_000;
export const kReconnectFactor = 2;
// How long a request may wait for its answer before it fails with `timeout` (outcome unknown).
export const kRequestTimeoutMs = 15_000;
// A send is retried until this long after it was first queued, then reported failed. Well below
// the server's send-dedup window (7 days by default), after which a retransmission would be
// stored as a new message.
export const kSendRetryWindowMs = 24 * 3600 * 1000;
// Refresh a sign-in token this long before it expires.
export const kRefreshBeforeExpiryMs = 30_000;
// Ping the server when nothing was received for this long (the server closes after 60 s of
// silence; browsers answer the server's pings themselves, this keeps the link observed).
export const kKeepAliveMs = 25_000;
// Events an async iterator buffers for a slow reader before it drops the oldest.
export const kMaxIteratorBuffer = 10_000;
// Entries of the outbox kept in storage, at most: a send beyond it is refused at once.
export const kMaxOutbox = 1_000;
// Requests in flight on one connection, at most (the server answers `overloaded` past 64).
export const kMaxInflight = 48;
// Chats per page asked of the server.
export const kChatsPageSize = 100;
// Largest message body, in bytes of UTF-8 (the server's kMaxMessageBodyBytes).
export const kMaxBodyBytes = 65_536;

// Close codes of the server that change what the client does next (server/gateway.h;
// docs/protocol.md, "Closing codes").
const kCloseDeviceRemoved = 4001;  // stop: the device's credential is dead
const kCloseReplaced = 4003;       // stop: a newer session of this device is live
const kCloseTokenExpired = 4004;   // reconnect with a fresh sign-in token
const kCloseUserRevoked = 4005;    // stop: the app signs the user in again

// Error codes whose request was certainly not applied: retrying is safe even as a new request.
const kNotApplied = new Set([
  "unavailable", "overloaded", "rate_limited", "resource_exhausted", "not_authenticated",
]);
// Error codes whose request may or may not have been applied: retry idempotently.
const kOutcomeUnknown = new Set(["outcome_unknown", "timeout", "internal", "disconnected"]);

// An error answered by the server (or a local failure with the same shape). `code` is the
// protocol's error code; `retryable` says whether sending again may succeed; `outcomeUnknown`
// whether the request may have taken effect (retry with the same client_message_id).
export class HeraldError extends Error {
  constructor(code, message, extra = {}) {
    super(`${code}: ${message}`);
    this.name = "HeraldError";
    this.code = code;
    this.retryAfterMs = extra.retry_after_ms ?? null;
    this.cursor = extra.cursor ?? null;
    this.notApplied = kNotApplied.has(code);
    this.outcomeUnknown = kOutcomeUnknown.has(code);
    this.retryable = this.notApplied || this.outcomeUnknown;
  }
}

// Storage keeps small strings under keys. Every method may return a value or a Promise.
// MemoryStorage: for tests and short-lived processes.
export class MemoryStorage {
  constructor() { this.map = new Map(); }
  get(key) { return this.map.has(key) ? this.map.get(key) : null; }
  set(key, value) { this.map.set(key, String(value)); }
  remove(key) { this.map.delete(key); }
}

// WebStorage: a browser's localStorage (shared by the tabs of one origin; the keys carry the
// device id, so two tabs that are two devices do not meet).
export class WebStorage {
  constructor(store = globalThis.localStorage) { this.store = store; }
  get(key) { return this.store.getItem(key); }
  set(key, value) { this.store.setItem(key, String(value)); }
  remove(key) { this.store.removeItem(key); }
}

// FileStorage (Node): one JSON file, rewritten whole on every change through a temporary file and
// a rename, so a crash leaves the old or the new content.
export class FileStorage {
  constructor(path) {
    this.path = path;
    this.data = null;
    this.loading = null;
    this.chain = Promise.resolve();
    this.writes = 0;
  }
  load() {
    this.loading ??= (async () => {
      const fs = await import("node:fs/promises");
      try {
        this.data = JSON.parse(await fs.readFile(this.path, "utf8"));
      } catch (error) {
        if (error.code !== "ENOENT") throw error;
        this.data = {};
      }
    })();
    return this.loading;
  }
  async get(key) { await this.load(); return key in this.data ? this.data[key] : null; }
  async set(key, value) { await this.load(); this.data[key] = String(value); await this.flush(); }
  async remove(key) { await this.load(); delete this.data[key]; await this.flush(); }
  // Writes run one after another; a failed one is reported to its caller and does not stop the
  // next. The temporary name is unique, so two storages on one file (two processes) do not
  // trip over each other: the last rename wins.
  flush() {
    const run = this.chain.then(async () => {
      const fs = await import("node:fs/promises");
      const tmp = `${this.path}.${globalThis.process?.pid ?? 0}.${++this.writes}.tmp`;
      await fs.writeFile(tmp, JSON.stringify(this.data));
      await fs.rename(tmp, this.path);
    });
    this.chain = run.catch(() => {});
    return run;
  }
}

// The delay before reconnection attempt `attempt` (0 = the first retry): exponential growth up to
// the ceiling, then "equal jitter" (half fixed, half random) so that many clients cut off at once
// do not come back at once.
export function backoffDelay(attempt, random = Math.random, initialMs = kReconnectInitialMs,
  maxMs = kReconnectMaxMs) {
  const ceiling = Math.min(maxMs, initialMs * kReconnectFactor ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

function utf8Bytes(text) {
  return new TextEncoder().encode(text).length;
}

function newClientMessageId(deviceId) {
  const c = globalThis.crypto;
  const random = c && c.randomUUID ? c.randomUUID()
    : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  // At most 64 bytes (kMaxIdBytes): a UUID is 36, the prefix is cut to leave room.
  return `${deviceId.slice(0, 20)}-${random}`;
}

// A queue of events read by `for await`; bounded, dropping the oldest when a reader lags.
class EventQueue {
  constructor(filter) { this.filter = filter; this.items = []; this.waiters = []; this.done = false; }
  push(event) {
    if (this.done || (this.filter && !this.filter(event))) return;
    const waiter = this.waiters.shift();
    if (waiter) { waiter({ value: event, done: false }); return; }
    if (this.items.length >= kMaxIteratorBuffer) this.items.shift();
    this.items.push(event);
  }
  end() {
    this.done = true;
    for (const waiter of this.waiters.splice(0)) waiter({ value: undefined, done: true });
  }
  next() {
    if (this.items.length) return Promise.resolve({ value: this.items.shift(), done: false });
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

// The client of one device. Options:
//   url         ws(s)://host:port/v1/ws (required)
//   userId, deviceId
//   token       the device secret; or
//   jwt         an app sign-in token, or getJwt: async () => token (called again to refresh)
//   storage     MemoryStorage | WebStorage | FileStorage | any {get,set,remove} (default: memory)
//   WebSocket   a WebSocket constructor (default: the global one, else the `ws` package)
//   autoAck     acknowledge every message received from others (default true)
//   random      () => [0,1) for the backoff jitter (tests)
//   requestTimeoutMs, sendRetryWindowMs, reconnectInitialMs, reconnectMaxMs
export class HeraldClient {
  constructor(options) {
    if (!options || !options.url) throw new TypeError("HeraldClient: options.url is required");
    if (!options.userId || !options.deviceId) {
      throw new TypeError("HeraldClient: options.userId and options.deviceId are required");
    }
    if (!options.token && !options.jwt && !options.getJwt) {
      throw new TypeError("HeraldClient: one of options.token, options.jwt, options.getJwt");
    }
    this.options = options;
    this.userId = options.userId;
    this.deviceId = options.deviceId;
    this.storage = options.storage ?? new MemoryStorage();
    this.random = options.random ?? Math.random;
    this.requestTimeoutMs = options.requestTimeoutMs ?? kRequestTimeoutMs;
    this.sendRetryWindowMs = options.sendRetryWindowMs ?? kSendRetryWindowMs;
    this.autoAck = options.autoAck ?? true;
    this.prefix = `herald:${this.userId}:${this.deviceId}:`;
    this.state = "idle";  // idle | connecting | authenticating | online | offline | closed
    this.socket = null;
    this.attempt = 0;
    this.nextId = 1;
    this.pending = new Map();  // request id -> {resolve, reject, timer, frame}
    this.waitingFrames = [];   // requests waiting for a connection (or for room in flight)
    this.listeners = new Map();
    this.queues = new Set();
    this.cursor = null;        // last change cursor processed (null: none stored)
    this.outbox = [];          // [{conversation_id, client_message_id, body, queued_ms, status, seq?}]
    this.outboxWaiters = new Map();  // client_message_id -> [{resolve, reject}]
    this.chatMap = new Map();  // conversation_id -> Chat with read_cursor, delivered_up_to
    // conversation_id -> the highest seq another member has received (delivery or read receipts),
    // stored: receipts are changes, and the stored cursor does not replay them.
    this.deliveredMap = new Map();
    this.presenceMap = new Map();
    this.ackedUpTo = new Map();
    this.ackTimers = new Map();
    this.jwtExpiresAtMs = null;
    this.timers = new Set();
    this.loaded = false;
    this.ready = null;
    this.lastError = null;
    this.offline = false;
    // In a browser, follow the network: drop the connection when it goes offline (a socket may
    // otherwise look open for a long time) and reconnect at once when it comes back.
    if (options.watchNetwork ?? (typeof window !== "undefined" && window.addEventListener)) {
      this.onOffline = () => this.setNetwork(false);
      this.onOnline = () => this.setNetwork(true);
      window.addEventListener("offline", this.onOffline);
      window.addEventListener("online", this.onOnline);
    }
  }

  // Tells the client whether the network is up. Going down drops the connection and holds off
  // reconnecting; coming back reconnects at once (the backoff starts over).
  setNetwork(online) {
    if (this.state === "closed" || this.offline === !online) return;
    this.offline = !online;
    if (!online) {
      this.dropSocket(4000, "network offline");
    } else {
      this.attempt = 0;
      if (!this.socket) this.open();
    }
  }

  // Forgets the current socket at once (without waiting for a closing handshake that may never
  // come) and treats it as closed.
  dropSocket(code, reason) {
    const socket = this.socket;
    if (!socket) return;
    this.socket = null;
    try { socket.close(); } catch { /* already closed */ }
    this.closed(code, reason);
  }

  // --- events -----------------------------------------------------------------------------------

  // Calls `callback(event)` for each event of `type` ("*" for all); returns the unsubscribe
  // function. Types: state, connected, disconnected, auth, change, message, read, receipt,
  // delivered, typing, presence, chat, outbox, resync, error, removed, revoked, replaced.
  on(type, callback) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(callback);
    return () => this.listeners.get(type)?.delete(callback);
  }

  // An async iterator over events ({type, ...}); `types` limits it to some types. It ends when the
  // client is closed, or when the loop breaks.
  events(types) {
    const wanted = types ? new Set([].concat(types)) : null;
    const queue = new EventQueue(wanted ? (e) => wanted.has(e.type) : null);
    this.queues.add(queue);
    if (this.state === "closed") queue.end();
    const self = this;
    return {
      next: () => queue.next(),
      return: () => { queue.end(); self.queues.delete(queue); return Promise.resolve({ done: true }); },
      [Symbol.asyncIterator]() { return this; },
    };
  }

  emit(type, fields = {}) {
    const event = { type, ...fields };
    for (const set of [this.listeners.get(type), this.listeners.get("*")]) {
      if (!set) continue;
      for (const callback of [...set]) {
        try {
          callback(event);
        } catch (error) {
          if (type !== "error") this.emit("error", { error });
        }
      }
    }
    for (const queue of this.queues) queue.push(event);
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", { state });
  }

  // --- lifecycle --------------------------------------------------------------------------------

  // Loads the stored cursor and outbox, opens the connection and resolves with the first `auth`
  // answer. Reconnects by itself after that until close(), a removed device (4001), a revoked
  // user (4005) or a session replaced by a newer one of the device (4003). Rejects when the
  // credentials are refused (`unauthorized`) or the device was removed.
  connect() {
    if (this.ready) return this.ready;
    this.ready = new Promise((resolve, reject) => {
      this.firstAuth = { resolve, reject };
    });
    this.load().then(() => this.open(), (error) => this.fail(error));
    return this.ready;
  }

  // Closes the connection and stops reconnecting. Sends still in the outbox stay stored and go
  // out at the next connect() of this device.
  close() {
    this.setState("closed");
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    if (this.socket) {
      try { this.socket.close(1000, "client closed"); } catch { /* already closed */ }
    }
    this.socket = null;
    this.failPending(new HeraldError("disconnected", "the client was closed"));
    for (const queue of this.queues) queue.end();
    this.queues.clear();
    if (this.onOffline) {
      window.removeEventListener("offline", this.onOffline);
      window.removeEventListener("online", this.onOnline);
    }
  }

  fail(error) {
    this.lastError = error;
    this.emit("error", { error });
    if (this.firstAuth) { this.firstAuth.reject(error); this.firstAuth = null; }
    this.close();
  }

  later(ms, fn) {
    const timer = setTimeout(() => { this.timers.delete(timer); fn(); }, ms);
    this.timers.add(timer);
    return timer;
  }

  async load() {
    if (this.loaded) return;
    const cursor = await this.storage.get(this.prefix + "cursor");
    this.cursor = cursor === null || cursor === undefined ? null : Number(cursor);
    const outbox = await this.storage.get(this.prefix + "outbox");
    this.outbox = outbox ? JSON.parse(outbox) : [];
    for (const entry of this.outbox) if (entry.status === "sending") entry.status = "queued";
    const delivered = await this.storage.get(this.prefix + "delivered");
    this.deliveredMap = new Map(Object.entries(delivered ? JSON.parse(delivered) : {}));
    this.loaded = true;
  }

  async socketClass() {
    if (this.options.WebSocket) return this.options.WebSocket;
    if (globalThis.WebSocket) return globalThis.WebSocket;
    const module = await import("ws");
    return module.default ?? module.WebSocket;
  }

  async open() {
    if (this.state === "closed" || this.offline || this.socket) return;
    this.setState("connecting");
    let Socket;
    try {
      Socket = await this.socketClass();
    } catch (error) {
      this.fail(new HeraldError("no_websocket",
        "no WebSocket: pass options.WebSocket or install the ws package"));
      return;
    }
    if (this.state === "closed") return;
    const socket = new Socket(this.options.url);
    this.socket = socket;
    socket.onopen = () => { if (this.socket === socket) this.authenticate(); };
    socket.onmessage = (message) => { if (this.socket === socket) this.receive(message.data); };
    // A browser fires close after error; Node 20's WebSocket does not when the connection fails,
    // so an error drops the socket at once (its later close, if any, is ignored).
    socket.onerror = () => { if (this.socket === socket) this.dropSocket(1006, "connection error"); };
    socket.onclose = (event) => { if (this.socket === socket) this.closed(event.code, event.reason); };
  }

  async credentials() {
    if (this.options.token) return { token: this.options.token };
    let jwt = this.options.jwt;
    if (this.options.getJwt && (!jwt || this.jwtStale)) jwt = await this.options.getJwt();
    this.options.jwt = jwt;
    this.jwtStale = false;
    return { jwt };
  }

  async authenticate() {
    this.setState("authenticating");
    const frame = { type: "auth", user_id: this.userId, device_id: this.deviceId,
      ...(await this.credentials()) };
    if (this.cursor !== null) frame.since = this.cursor;
    let answer;
    try {
      answer = await this.rawRequest(frame);
    } catch (error) {
      if (error.code === "disconnected") return;  // closed() reconnects
      if (error.code === "unauthorized") {
        this.fail(error);
        return;
      }
      // unavailable, timeout, rate_limited: no leader right now; try again on this connection.
      this.emit("error", { error });
      this.later(backoffDelay(this.attempt++, this.random), () => {
        if (this.socket && this.state === "authenticating") this.authenticate();
      });
      return;
    }
    this.attempt = 0;
    if (this.cursor === null || answer.resync_required) await this.setCursor(answer.cursor);
    if (answer.expires_at_ms) this.scheduleRefresh(answer.expires_at_ms);
    this.setState("online");
    this.keepAlive();
    this.emit("auth", { answer });
    if (answer.resync_required) {
      this.chatMap.clear();
      this.emit("resync", { cursor: answer.cursor });
    }
    this.emit("connected", { answer });
    if (this.firstAuth) { this.firstAuth.resolve(answer); this.firstAuth = null; }
    this.flushWaiting();
    this.flushOutbox();
  }

  scheduleRefresh(expiresAtMs) {
    this.jwtExpiresAtMs = expiresAtMs;
    if (!this.options.getJwt) return;
    // One refresh timer at a time: a reconnect's auth replaces the one of the previous session.
    if (this.refreshTimer) {
      clearTimeout(this.refreshTimer);
      this.timers.delete(this.refreshTimer);
    }
    const wait = Math.max(0, expiresAtMs - Date.now() - kRefreshBeforeExpiryMs);
    this.refreshTimer = this.later(wait, async () => {
      if (this.state !== "online") return;
      try {
        this.jwtStale = true;
        const { jwt } = await this.credentials();
        const answer = await this.request("refresh", { jwt });
        this.scheduleRefresh(answer.expires_at_ms);
      } catch (error) {
        this.emit("error", { error });
      }
    });
  }

  keepAlive() {
    const socket = this.socket;
    this.later(kKeepAliveMs, () => {
      if (this.socket !== socket || this.state !== "online") return;
      // A ping without an answer means a dead link: drop it and reconnect.
      this.request("ping", {}).catch((error) => {
        if (error.code === "timeout" && this.socket === socket) this.dropSocket(4000, "no pong");
      });
      this.keepAlive();
    });
  }

  closed(code, reason) {
    this.socket = null;
    this.failPending(new HeraldError("disconnected", `connection closed (${code} ${reason || ""})`));
    for (const entry of this.outbox) if (entry.status === "sending") entry.status = "queued";
    if (this.state === "closed") return;
    this.emit("disconnected", { code, reason });
    // The credentials are dead: the device was removed (4001), or the operator revoked the user
    // (4005; the app has to sign the user in again). Reconnecting with them cannot succeed.
    // A replaced session (4003) must not come back on its own either: a newer session of this
    // device is live, and reconnecting would close the oldest of them in turn, so two tabs of
    // one device beyond the node's bound would replace each other for ever.
    if (code === kCloseReplaced) {
      this.emit("replaced", {});
      this.fail(new HeraldError("session_replaced",
        "a newer session of this device replaced this one: reconnect only when the user asks"));
      return;
    }
    if (code === kCloseDeviceRemoved) {
      this.emit("removed", {});
      this.fail(new HeraldError("device_removed", "this device was removed"));
      return;
    }
    if (code === kCloseUserRevoked) {
      this.emit("revoked", {});
      this.fail(new HeraldError("user_revoked", "the user was revoked: sign in again"));
      return;
    }
    if (code === kCloseTokenExpired) this.jwtStale = true;  // get a fresh token before reconnecting
    if (code === 1008 && this.lastAuthRefused) return;  // fail() ran already
    this.setState(this.offline ? "offline" : "connecting");
    if (this.offline) return;  // setNetwork(true) reconnects
    this.later(backoffDelay(this.attempt++, this.random, this.options.reconnectInitialMs,
      this.options.reconnectMaxMs), () => this.open());
  }

  failPending(error) {
    for (const [, entry] of this.pending) {
      clearTimeout(entry.timer);
      entry.reject(error);
    }
    this.pending.clear();
    for (const entry of this.waitingFrames.splice(0)) entry.reject(error);
  }

  // --- requests ---------------------------------------------------------------------------------

  rawRequest(frame) {
    return new Promise((resolve, reject) => {
      const id = `r${this.nextId++}`;
      frame = { ...frame, id };
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new HeraldError("timeout", `no answer to ${frame.type} within ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
      this.pending.set(id, { resolve, reject, timer, frame });
      try {
        this.socket.send(JSON.stringify(frame));
      } catch (error) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new HeraldError("disconnected", String(error.message || error)));
      }
    });
  }

  // Sends a request of `type` with `fields` once the session is online and resolves with the
  // `ok` answer (without `type` and `re`), or rejects with a HeraldError. A request made while
  // the session is not online waits for the next authenticated connection, and rejects with
  // `disconnected` if that attempt fails; one in flight when the connection drops rejects with
  // `disconnected` (outcome unknown). Sends go through the outbox instead, which retries them.
  request(type, fields = {}) {
    if (this.state === "closed") {
      return Promise.reject(new HeraldError("disconnected", "the client is closed"));
    }
    if (this.state === "online" && this.pending.size < kMaxInflight) {
      return this.rawRequest({ type, ...fields });
    }
    return new Promise((resolve, reject) => this.waitingFrames.push({ type, fields, resolve, reject }));
  }

  flushWaiting() {
    while (this.state === "online" && this.waitingFrames.length && this.pending.size < kMaxInflight) {
      const { type, fields, resolve, reject } = this.waitingFrames.shift();
      this.rawRequest({ type, ...fields }).then(resolve, reject);
    }
  }

  receive(data) {
    let frame;
    try {
      frame = JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data));
    } catch {
      this.emit("error", { error: new HeraldError("malformed_json", "a frame from the server") });
      return;
    }
    if (frame.type === "ok" || frame.type === "error") {
      const entry = this.pending.get(frame.re);
      if (!entry) return;
      this.pending.delete(frame.re);
      clearTimeout(entry.timer);
      if (frame.type === "ok") {
        const { type, re, ...result } = frame;
        entry.resolve(result);
      } else {
        if (entry.frame.type === "auth" && frame.code === "unauthorized") this.lastAuthRefused = true;
        entry.reject(new HeraldError(frame.code, frame.message, frame));
      }
      this.flushWaiting();
      return;
    }
    if (frame.type === "change") this.applyChange(frame.change);
    else if (frame.type === "typing") this.emit("typing", { ...frame });
    else if (frame.type === "presence") {
      this.presenceMap.set(frame.user_id, { online: frame.online, last_seen_ms: frame.last_seen_ms });
      this.emit("presence", { ...frame });
    } else if (frame.type === "resync_required") {
      this.chatMap.clear();
      this.setCursor(frame.cursor).catch((error) => this.emit("error", { error }));
      this.emit("resync", { cursor: frame.cursor });
    }
  }

  async setCursor(cursor) {
    this.cursor = cursor;
    await this.storage.set(this.prefix + "cursor", String(cursor));
  }

  // --- the change stream ------------------------------------------------------------------------

  applyChange(change) {
    // The same change may reach a connection twice only across a reconnect: drop what was
    // processed already (docs/protocol.md, "Live stream").
    if (this.cursor !== null && change.cursor <= this.cursor) return;
    this.updateChat(change);
    this.emit("change", { change });
    const conv = change.conversation_id;
    switch (change.kind) {
      case "message_new":
      case "message_edited":
      case "message_deleted":
        this.emit("message", { change, message: change.message, kind: change.kind });
        if (change.kind === "message_new" && change.message && change.actor !== this.userId) {
          if (this.autoAck) this.scheduleAck(conv, change.seq);
        }
        if (change.kind === "message_new" && change.message &&
            change.message.sender_device === this.deviceId) {
          this.settleOutbox(change.message);
        }
        break;
      case "read_cursor":
        this.emit("read", { conversation_id: conv, seq: change.seq, device_id: change.device_id });
        break;
      case "read_receipt":
        this.emit("receipt", { conversation_id: conv, user_id: change.actor, seq: change.seq });
        break;
      case "delivery_receipt":
        this.emit("delivered", { conversation_id: conv, user_id: change.actor, seq: change.seq });
        break;
      default:
        break;
    }
    this.setCursor(change.cursor).catch((error) => this.emit("error", { error }));
  }

  updateChat(change) {
    const chat = this.chatMap.get(change.conversation_id);
    const receipt = change.kind === "delivery_receipt" || change.kind === "read_receipt";
    if (receipt && change.actor !== this.userId) this.noteDelivered(change.conversation_id, change.seq);
    if (change.kind === "conversation_created" && !chat) {
      this.chatMap.set(change.conversation_id, {
        conversation_id: change.conversation_id, kind: change.conversation_id.startsWith("direct:")
          ? "direct" : "group", title: change.title ?? "", activity_ms: change.time_ms,
        last_seq: 0, last_sender: "", preview: "", unread: 0, muted: false, read_cursor: 0,
        delivered_up_to: this.deliveredUpTo(change.conversation_id),
      });
    } else if (!chat) {
      return;
    } else if (change.kind === "message_new") {
      chat.last_seq = Math.max(chat.last_seq, change.seq);
      chat.activity_ms = change.time_ms;
      chat.last_sender = change.actor;
      chat.preview = change.message ? change.message.body.slice(0, 100) : chat.preview;
      if (change.actor === this.userId) chat.read_cursor = Math.max(chat.read_cursor, change.seq);
    } else if (change.kind === "read_cursor") {
      chat.read_cursor = Math.max(chat.read_cursor, change.seq);
    } else if (receipt && change.actor !== this.userId) {
      chat.delivered_up_to = this.deliveredUpTo(change.conversation_id);
    } else if (change.kind === "conversation_renamed") {
      chat.title = change.title ?? chat.title;
    } else if (change.kind === "member_left" && change.actor === this.userId) {
      this.chatMap.delete(change.conversation_id);
      this.emit("chat", { chat: null, conversation_id: change.conversation_id });
      return;
    } else {
      return;
    }
    const current = this.chatMap.get(change.conversation_id);
    current.unread = Math.max(0, current.last_seq - current.read_cursor);
    this.emit("chat", { chat: { ...current }, conversation_id: change.conversation_id });
  }

  // The highest seq another member of the conversation has received, as far as this device has
  // heard (a `delivery_receipt` or a `read_receipt`): every message of the user's up to it is
  // delivered. 0: none known.
  deliveredUpTo(conversationId) {
    return this.deliveredMap.get(conversationId) ?? 0;
  }

  noteDelivered(conversationId, seq) {
    if (seq <= this.deliveredUpTo(conversationId)) return;
    this.deliveredMap.set(conversationId, seq);
    this.saveDelivered().catch((error) => this.emit("error", { error }));
  }

  async saveDelivered() {
    await this.storage.set(this.prefix + "delivered",
      JSON.stringify(Object.fromEntries(this.deliveredMap)));
  }

  // Acknowledges delivery up to `seq` in a conversation, coalescing a burst into one `ack`.
  scheduleAck(conversationId, seq) {
    if ((this.ackedUpTo.get(conversationId) ?? 0) >= seq) return;
    this.ackedUpTo.set(conversationId, seq);
    if (this.ackTimers.has(conversationId)) return;
    this.ackTimers.set(conversationId, this.later(0, () => {
      this.ackTimers.delete(conversationId);
      this.ack(conversationId, this.ackedUpTo.get(conversationId)).catch((error) => {
        if (error.code !== "disconnected") this.emit("error", { error });
      });
    }));
  }

  // --- the outbox -------------------------------------------------------------------------------

  async saveOutbox() {
    await this.storage.set(this.prefix + "outbox", JSON.stringify(this.outbox));
  }

  // The messages queued on this device and not yet answered by the server, oldest first:
  // [{conversation_id, client_message_id, body, queued_ms, status: "queued"|"sending"|"failed"}].
  pendingSends() {
    return this.outbox.map((entry) => ({ ...entry }));
  }

  // Queues a message and sends it as soon as possible. Resolves with the server's answer
  // {seq, existed, server_time_ms, client_message_id} once the message is stored, however many
  // reconnects (or reloads: the outbox is stored) that takes; rejects with a HeraldError only
  // when the send cannot succeed (not_member, too_large, ...) or its retry window passed.
  async send(conversationId, body, clientMessageId) {
    if (typeof body !== "string" || body.length === 0) {
      throw new HeraldError("invalid_argument", "a message body is a non-empty string");
    }
    if (utf8Bytes(body) > kMaxBodyBytes) {
      throw new HeraldError("too_large", `a message body is at most ${kMaxBodyBytes} bytes`);
    }
    await this.load();
    if (this.outbox.length >= kMaxOutbox) {
      throw new HeraldError("overloaded", `the outbox holds ${kMaxOutbox} messages already`);
    }
    const entry = { conversation_id: conversationId, body, queued_ms: Date.now(), status: "queued",
      client_message_id: clientMessageId ?? newClientMessageId(this.deviceId) };
    this.outbox.push(entry);
    await this.saveOutbox();
    this.emit("outbox", { entry: { ...entry } });
    const answer = this.waitForSend(entry.client_message_id);
    this.flushOutbox();
    return answer;
  }

  // Resolves when the outbox entry `clientMessageId` is answered (for sends restored after a
  // reload: the app learns their seq).
  waitForSend(clientMessageId) {
    return new Promise((resolve, reject) => {
      if (!this.outboxWaiters.has(clientMessageId)) this.outboxWaiters.set(clientMessageId, []);
      this.outboxWaiters.get(clientMessageId).push({ resolve, reject });
    });
  }

  flushOutbox() {
    if (this.state !== "online") return;
    for (const entry of this.outbox) {
      if (entry.status !== "queued") continue;
      if (Date.now() - entry.queued_ms > this.sendRetryWindowMs) {
        this.finishSend(entry, null, new HeraldError("expired",
          "the send was not answered within its retry window"));
        continue;
      }
      entry.status = "sending";
      this.request("send", { conversation_id: entry.conversation_id,
        client_message_id: entry.client_message_id, body: entry.body })
        .then((answer) => this.finishSend(entry, answer, null), (error) => this.sendFailed(entry, error));
    }
  }

  sendFailed(entry, error) {
    if (!this.outbox.includes(entry)) return;
    if (error.retryable) {
      // Not applied, or maybe applied: the same client_message_id goes out again, and the server
      // answers a retransmission of an applied send with its original seq.
      entry.status = "queued";
      if (this.state === "online") {
        const wait = error.retryAfterMs ?? backoffDelay(entry.retries = (entry.retries ?? 0) + 1,
          this.random, 200, 5_000);
        this.later(wait, () => this.flushOutbox());
      }
      return;
    }
    this.finishSend(entry, null, error);
  }

  async finishSend(entry, answer, error) {
    const index = this.outbox.indexOf(entry);
    if (index < 0) return;
    this.outbox.splice(index, 1);
    await this.saveOutbox();
    const result = answer ? { ...answer, client_message_id: entry.client_message_id,
      conversation_id: entry.conversation_id } : null;
    this.emit("outbox", { entry: { ...entry, status: answer ? "sent" : "failed", seq: answer?.seq },
      error });
    for (const waiter of this.outboxWaiters.get(entry.client_message_id) ?? []) {
      if (answer) waiter.resolve(result); else waiter.reject(error);
    }
    this.outboxWaiters.delete(entry.client_message_id);
  }

  // A message of ours seen in the stream answers its outbox entry when no send of it is in
  // flight (its answer timed out or was lost with a connection): it was stored by an earlier one.
  settleOutbox(message) {
    const entry = this.outbox.find((e) => e.client_message_id === message.client_message_id &&
      e.conversation_id === message.conversation_id);
    if (!entry || entry.status === "sending") return;
    this.finishSend(entry, { seq: message.seq, existed: true, server_time_ms: message.time_ms }, null);
  }

  // Drops a queued message from the outbox (it may still have been stored if it was sent).
  async discard(clientMessageId) {
    const entry = this.outbox.find((e) => e.client_message_id === clientMessageId);
    if (entry) await this.finishSend(entry, null, new HeraldError("canceled", "discarded"));
  }

  // --- conversations, receipts, typing ---------------------------------------------------------

  ack(conversationId, seq) { return this.request("ack", { conversation_id: conversationId, seq }); }

  // Marks the conversation read up to `seq` on this device; the user's other devices see it as a
  // `read` event and the senders as a `receipt`.
  async markRead(conversationId, seq) {
    const answer = await this.request("read", { conversation_id: conversationId, seq });
    const chat = this.chatMap.get(conversationId);
    if (chat && answer.cursor > chat.read_cursor) {
      chat.read_cursor = answer.cursor;
      chat.unread = Math.max(0, chat.last_seq - chat.read_cursor);
      this.emit("chat", { chat: { ...chat }, conversation_id: conversationId });
    }
    return answer;
  }

  typing(conversationId, active = true) {
    return this.request("typing", { conversation_id: conversationId, active: Boolean(active) });
  }

  // Whether `userId` was last heard online ({online, last_seen_ms}), or null.
  presence(userId) { return this.presenceMap.get(userId) ?? null; }

  // Loads the whole chat list (every page) and returns it, most recent first; afterwards the
  // client keeps it current from the change stream (`chat` events, chatList()).
  async loadChats() {
    const chats = [];
    let page = null;
    do {
      const answer = await this.request("chats", { limit: kChatsPageSize, ...(page ? { page } : {}) });
      chats.push(...answer.chats);
      page = answer.next_page;
    } while (page);
    this.chatMap.clear();
    for (const chat of chats) {
      this.chatMap.set(chat.conversation_id, { ...chat, read_cursor: chat.last_seq - chat.unread,
        delivered_up_to: this.deliveredUpTo(chat.conversation_id) });
    }
    return this.chatList();
  }

  // The chat list as known locally, most recent activity first.
  chatList() {
    return [...this.chatMap.values()].map((c) => ({ ...c }))
      .sort((a, b) => b.activity_ms - a.activity_ms);
  }

  // Sum of unread messages over the chat list.
  unreadTotal() {
    let total = 0;
    for (const chat of this.chatMap.values()) total += chat.muted ? 0 : chat.unread;
    return total;
  }

  history(conversationId, { beforeSeq, afterSeq, limit } = {}) {
    const fields = { conversation_id: conversationId };
    if (beforeSeq !== undefined) fields.before_seq = beforeSeq;
    if (afterSeq !== undefined) fields.after_seq = afterSeq;
    if (limit !== undefined) fields.limit = limit;
    return this.request("history", fields);
  }

  sync(since, limit) {
    return this.request("sync", { since, ...(limit ? { limit } : {}) });
  }

  async createDirect(userId) {
    return (await this.request("conversation.create", { kind: "direct", members: [userId] }))
      .conversation;
  }

  async createGroup(members, title = "", conversationId) {
    const fields = { kind: "group", members, title };
    if (conversationId) fields.conversation_id = conversationId;
    return (await this.request("conversation.create", fields)).conversation;
  }

  async conversation(conversationId) {
    return (await this.request("conversation.get", { conversation_id: conversationId }))
      .conversation;
  }

  edit(conversationId, seq, body) {
    return this.request("edit", { conversation_id: conversationId, seq, body });
  }

  remove(conversationId, seq) {
    return this.request("delete", { conversation_id: conversationId, seq });
  }

  addMembers(conversationId, members) {
    return this.request("members.add", { conversation_id: conversationId, members });
  }

  leave(conversationId) {
    return this.request("conversation.leave", { conversation_id: conversationId });
  }
}
