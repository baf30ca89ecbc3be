// Unit tests of the JavaScript client against a fake WebSocket that records the frames the client
// writes and lets each test answer them as the server would (docs/protocol.md).
//
// Usage: node --test clients/js/test/herald_unit_test.mjs
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  HeraldClient, HeraldError, MemoryStorage, FileStorage, backoffDelay, kReconnectMaxMs,
  kRefreshBeforeExpiryMs,
} from "../herald.js";
import { boundedTest } from "./bounded_test.mjs";

// Each test's bound, ms: every one needs well under a second.
const kTestMs = 10_000;

// Every socket the client opened, newest last.
function fakeSockets() {
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.sent = [];
      this.closedWith = null;
      sockets.push(this);
      // A refused connection (FakeSocket.refuseNext) reports an error and no close, as Node 20's
      // WebSocket does.
      const refused = FakeSocket.refuseNext;
      FakeSocket.refuseNext = false;
      setTimeout(() => (refused ? this.onerror && this.onerror({}) : this.onopen && this.onopen()), 0);
    }
    send(text) {
      if (this.closedWith) throw new Error("closed");
      this.sent.push(JSON.parse(text));
    }
    close(code = 1000, reason = "") { this.drop(code, reason); }
    // Test side: the server answers or pushes a frame, or the connection drops.
    push(frame) { this.onmessage({ data: JSON.stringify(frame) }); }
    drop(code = 1006, reason = "") {
      if (this.closedWith) return;
      this.closedWith = code;
      setTimeout(() => this.onclose && this.onclose({ code, reason }), 0);
    }
    last(type) { return [...this.sent].reverse().find((f) => f.type === type); }
    all(type) { return this.sent.filter((f) => f.type === type); }
  }
  return { sockets, FakeSocket };
}

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

async function until(what, probe, timeoutMs = 2000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await tick(2);
  }
}

// A client of Bob's laptop over `FakeSocket`, closed when the test of `scope` ends.
function newClient(scope, FakeSocket, extra = {}) {
  return scope.own(new HeraldClient({
    url: "ws://node/v1/ws", userId: "bob", deviceId: "bob-laptop", token: "secret",
    WebSocket: FakeSocket, random: () => 0, reconnectInitialMs: 10, reconnectMaxMs: 40, ...extra,
  }));
}

// Answers the pending auth of `socket` with `cursor` as the user's newest change cursor.
async function answerAuth(socket, cursor, extra = {}) {
  const auth = await until("auth", () => socket.last("auth"));
  socket.push({ type: "ok", re: auth.id, user_id: "bob", device_id: "bob-laptop",
    server_time_ms: 1, cursor, resync_required: false, ...extra });
  return auth;
}

function messageChange(cursor, seq, actor = "alice", body = `m${seq}`, device = "alice-phone",
  cmid = `c${seq}`) {
  return { cursor, kind: "message_new", conversation_id: "direct:alice:bob", seq, actor, time_ms: 5,
    message: { conversation_id: "direct:alice:bob", seq, kind: "user", sender: actor,
      sender_device: device, client_message_id: cmid, time_ms: 5, body, edited: false,
      edited_ms: 0, deleted: false } };
}

boundedTest("FirstConnectOmitsSinceAndStoresTheAnsweredCursor", kTestMs, async (scope) => {
  const { sockets, FakeSocket } = fakeSockets();
  const storage = new MemoryStorage();
  const client = newClient(scope, FakeSocket, { storage });
  const ready = client.connect();
  const auth = await answerAuth(await until("socket", () => sockets[0]), 7);
  assert.equal(auth.since, undefined);
  assert.equal(auth.token, "secret");
  assert.equal((await ready).cursor, 7);
  assert.equal(storage.get("herald:bob:bob-laptop:cursor"), "7");
});

boundedTest("ReconnectResumesWithSinceAndDropsChangesAlreadyProcessed", kTestMs, async (scope) => {
  const { sockets, FakeSocket } = fakeSockets();
  const client = newClient(scope, FakeSocket);
  const seen = [];
  client.on("message", (e) => seen.push(e.message.seq));
  client.connect();
  await answerAuth(await until("socket", () => sockets[0]), 3);
  sockets[0].push({ type: "change", change: messageChange(4, 1) });
  sockets[0].push({ type: "change", change: messageChange(5, 2) });
  sockets[0].drop(1006);
  const second = await until("a second socket", () => sockets[1]);
  const auth = await answerAuth(second, 6);
  assert.equal(auth.since, 5);
  // The server replays from 5 on; a duplicate of 5 (another connection of the device) is dropped.
  second.push({ type: "change", change: messageChange(5, 2) });
  second.push({ type: "change", change: messageChange(6, 3) });
  assert.deepEqual(seen, [1, 2, 3]);
});

boundedTest("BackoffGrowsToItsCeilingWithJitter", kTestMs, async () => {
  assert.equal(backoffDelay(0, () => 0, 100, 1000), 50);
  assert.equal(backoffDelay(0, () => 1, 100, 1000), 100);
  assert.equal(backoffDelay(3, () => 0.5, 100, 1000), 600);
  assert.equal(backoffDelay(50, () => 1), kReconnectMaxMs);
  const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(4)));
  assert.ok(spread.size > 10, "random jitter spreads reconnects");
});

boundedTest("SendRetransmitsTheSameClientMessageIdAfterADrop", kTestMs, async (scope) => {
  const { sockets, FakeSocket } = fakeSockets();
  const client = newClient(scope, FakeSocket);
  client.connect();
  await answerAuth(await until("socket", () => sockets[0]), 1);
  const sent = client.send("direct:alice:bob", "Lunch?");
  const first = await until("send", () => sockets[0].last("send"));
  assert.equal(client.pendingSends().length, 1);
  sockets[0].drop(1006);  // the answer is lost: outcome unknown
  const second = await until("a second socket", () => sockets[1]);
  await answerAuth(second, 2);
  const again = await until("resend", () => second.last("send"));
  assert.equal(again.client_message_id, first.client_message_id);
  assert.equal(again.body, "Lunch?");
  second.push({ type: "ok", re: again.id, seq: 1, existed: true, server_time_ms: 9 });
  const answer = await sent;
  assert.equal(answer.seq, 1);
  assert.equal(answer.existed, true);
  assert.equal(client.pendingSends().length, 0);
});

boundedTest("UnavailableSendIsRetriedAndNotMemberFailsForGood", kTestMs, async (scope) => {
  const { sockets, FakeSocket } = fakeSockets();
  const client = newClient(scope, FakeSocket);
  client.connect();
  const s = await until("socket", () => sockets[0]);
  await answerAuth(s, 1);
  const ok = client.send("direct:alice:bob", "one");
  const first = await until("send", () => s.last("send"));
  s.push({ type: "error", re: first.id, code: "unavailable", message: "no leader" });
  const retry = await until("retry", () => s.all("send").length === 2 && s.last("send"));
  assert.equal(retry.client_message_id, first.client_message_id);
  s.push({ type: "ok", re: retry.id, seq: 4, existed: false, server_time_ms: 9 });
  assert.equal((await ok).seq, 4);

  const refused = client.send("g-other", "two");
  const third = await until("send", () => s.all("send").length === 3 && s.last("send"));
  s.push({ type: "error", re: third.id, code: "not_member", message: "not a member" });
  await assert.rejects(refused, (e) => e instanceof HeraldError && e.code === "not_member" &&
    !e.retryable);
  assert.equal(client.pendingSends().length, 0);
});

boundedTest("ErrorsTellNotAppliedFromOutcomeUnknown", kTestMs, async () => {
  const unavailable = new HeraldError("unavailable", "x");
  assert.ok(unavailable.retryable && unavailable.notApplied && !unavailable.outcomeUnknown);
  const unknown = new HeraldError("outcome_unknown", "x");
  assert.ok(unknown.retryable && unknown.outcomeUnknown && !unknown.notApplied);
  const limited = new HeraldError("rate_limited", "x", { retry_after_ms: 250 });
  assert.equal(limited.retryAfterMs, 250);
  assert.ok(!new HeraldError("forbidden", "x").retryable);
});

boundedTest("OutboxSurvivesARestartInAFile", kTestMs, async (scope) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `herald-js-${process.pid}-`));
  scope.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "state.json");
  {
    const { sockets, FakeSocket } = fakeSockets();
    const client = newClient(scope, FakeSocket, { storage: new FileStorage(file) });
    client.connect();
    const s = await until("socket", () => sockets[0]);
    await answerAuth(s, 1);
    client.send("direct:alice:bob", "survive me").catch(() => {});
    await until("send", () => s.last("send"));
    await tick(20);
    client.close();  // the process "exits" before the answer
  }
  const saved = JSON.parse(fs.readFileSync(file, "utf8"));
  const stored = JSON.parse(saved["herald:bob:bob-laptop:outbox"]);
  assert.equal(stored.length, 1);
  const { sockets, FakeSocket } = fakeSockets();
  const client = newClient(scope, FakeSocket, { storage: new FileStorage(file) });
  client.connect();
  const s = await until("socket", () => sockets[0]);
  const auth = await answerAuth(s, 2);
  assert.equal(auth.since, 1, "the stored cursor is used");
  const resent = await until("resent", () => s.last("send"));
  assert.equal(resent.client_message_id, stored[0].client_message_id);
  const answered = client.waitForSend(resent.client_message_id);
  s.push({ type: "ok", re: resent.id, seq: 3, existed: false, server_time_ms: 9 });
  assert.equal((await answered).seq, 3);
});

boundedTest("OwnMessageInTheStreamSettlesATimedOutSend", kTestMs, async (scope) => {
  const { sockets, FakeSocket } = fakeSockets();
  const client = newClient(scope, FakeSocket, { requestTimeoutMs: 30 });
  client.connect();
  const s = await until("socket", () => sockets[0]);
  await answerAuth(s, 1);
  const sent = client.send("direct:alice:bob", "mine", "cm-1");
  await until("send", () => s.last("send"));
  // In flight: the stream does not answer it (the send's own answer says whether it existed).
  s.push({ type: "change", change: messageChange(2, 8, "bob", "mine", "bob-laptop", "cm-1") });
  assert.equal(client.pendingSends()[0].status, "sending");
  // The answer never comes: the send times out and waits for its retry; the stream answers it.
  await until("timeout", () => client.pendingSends()[0]?.status === "queued");
  s.push({ type: "change", change: messageChange(3, 8, "bob", "mine", "bob-laptop", "cm-1") });
  const answer = await sent;
  assert.deepEqual([answer.seq, answer.existed], [8, true]);
});

boundedTest("MessagesFromOthersAreAcknowledgedOnceCoalesced", kTestMs, async (scope) => {
  const { sockets, FakeSocket } = fakeSockets();
  const client = newClient(scope, FakeSocket);
  client.connect();
  const s = await until("socket", () => sockets[0]);
  await answerAuth(s, 1);
  s.push({ type: "change", change: messageChange(2, 1) });
  s.push({ type: "change", change: messageChange(3, 2) });
  s.push({ type: "change", change: messageChange(4, 3, "bob", "mine", "bob-laptop") });
  const ack = await until("ack", () => s.last("ack"));
  await tick(10);
  assert.equal(s.all("ack").length, 1);
  assert.deepEqual([ack.conversation_id, ack.seq], ["direct:alice:bob", 2]);
});

boundedTest("ChatListKeepsUnreadCountsFromTheStream", kTestMs, async (scope) => {
  const { sockets, FakeSocket } = fakeSockets();
  const client = newClient(scope, FakeSocket);
  client.connect();
  const s = await until("socket", () => sockets[0]);
  await answerAuth(s, 1);
  const loading = client.loadChats();
  const chats = await until("chats", () => s.last("chats"));
  s.push({ type: "ok", re: chats.id, next_page: null, chats: [{ conversation_id: "direct:alice:bob",
    kind: "direct", title: "", activity_ms: 1, last_seq: 2, last_sender: "alice", preview: "x",
    unread: 1, muted: false }] });
  await loading;
  assert.equal(client.unreadTotal(), 1);
  s.push({ type: "change", change: messageChange(2, 3) });
  assert.equal(client.chatList()[0].unread, 2);
  // Another device of Bob read up to 3: the read state follows.
  s.push({ type: "change", change: { cursor: 3, kind: "read_cursor", conversation_id:
    "direct:alice:bob", seq: 3, actor: "bob", time_ms: 6, device_id: "bob-phone" } });
  assert.equal(client.unreadTotal(), 0);
});

boundedTest("DeliveryReceiptsRaiseTheDeliveredMarkAndSurviveARestart", kTestMs, async (scope) => {
  const storage = new MemoryStorage();
  const { sockets, FakeSocket } = fakeSockets();
  const client = newClient(scope, FakeSocket, { storage });
  const events = [];
  client.on("delivered", (e) => events.push([e.conversation_id, e.user_id, e.seq]));
  client.connect();
  const s = await until("socket", () => sockets[0]);
  await answerAuth(s, 1);
  const loading = client.loadChats();
  const chats = await until("chats", () => s.last("chats"));
  s.push({ type: "ok", re: chats.id, next_page: null, chats: [{ conversation_id: "direct:alice:bob",
    kind: "direct", title: "", activity_ms: 1, last_seq: 2, last_sender: "bob", preview: "x",
    unread: 0, muted: false }] });
  await loading;
  assert.equal(client.chatList()[0].delivered_up_to, 0);
  const receipt = (cursor, kind, seq, actor = "alice") => ({ type: "change", change: { cursor, kind,
    conversation_id: "direct:alice:bob", seq, actor, time_ms: 7 } });
  s.push(receipt(2, "delivery_receipt", 2));
  assert.deepEqual(events, [["direct:alice:bob", "alice", 2]]);
  assert.equal(client.chatList()[0].delivered_up_to, 2);
  s.push(receipt(3, "delivery_receipt", 1));  // an older mark (another conversation member's)
  assert.equal(client.deliveredUpTo("direct:alice:bob"), 2, "never goes back");
  s.push(receipt(4, "read_receipt", 3));      // read implies delivered
  assert.equal(client.chatList()[0].delivered_up_to, 3);
  s.push(receipt(5, "read_receipt", 9, "bob"));  // the user's own reads are no delivery
  assert.equal(client.deliveredUpTo("direct:alice:bob"), 3);
  await tick(10);
  client.close();
  // The stored cursor does not replay the receipts: the mark itself is stored.
  const again = fakeSockets();
  const restarted = newClient(scope, again.FakeSocket, { storage });
  restarted.connect();
  await answerAuth(await until("socket", () => again.sockets[0]), 5);
  assert.equal(restarted.deliveredUpTo("direct:alice:bob"), 3);
});

boundedTest("EventsCanBeReadAsAnAsyncIterator", kTestMs, async (scope) => {
  const { sockets, FakeSocket } = fakeSockets();
  const client = newClient(scope, FakeSocket);
  const iterator = client.events(["typing", "presence", "receipt"]);
  client.connect();
  const s = await until("socket", () => sockets[0]);
  await answerAuth(s, 1);
  s.push({ type: "typing", conversation_id: "direct:alice:bob", user_id: "alice", active: true });
  s.push({ type: "presence", user_id: "alice", online: true, last_seen_ms: 3 });
  s.push({ type: "change", change: { cursor: 2, kind: "read_receipt", conversation_id:
    "direct:alice:bob", seq: 4, actor: "alice", time_ms: 6 } });
  const got = [];
  for await (const event of iterator) {
    got.push(event.type);
    if (got.length === 3) break;
  }
  assert.deepEqual(got, ["typing", "presence", "receipt"]);
  assert.equal(client.presence("alice").online, true);
});

boundedTest("UnauthorizedStopsReconnecting", kTestMs, async (scope) => {
  const { sockets, FakeSocket } = fakeSockets();
  const client = newClient(scope, FakeSocket);
  const ready = client.connect();
  const s = await until("socket", () => sockets[0]);
  const auth = await until("auth", () => s.last("auth"));
  s.push({ type: "error", re: auth.id, code: "unauthorized", message: "wrong token" });
  await assert.rejects(ready, (e) => e.code === "unauthorized");
  await tick(60);
  assert.equal(sockets.length, 1);
  assert.equal(client.state, "closed");
});

boundedTest("UnavailableAuthIsRetriedOnTheSameConnection", kTestMs, async (scope) => {
  const { sockets, FakeSocket } = fakeSockets();
  const client = newClient(scope, FakeSocket);
  const ready = client.connect();
  const s = await until("socket", () => sockets[0]);
  const auth = await until("auth", () => s.last("auth"));
  s.push({ type: "error", re: auth.id, code: "unavailable", message: "no leader" });
  await until("second auth", () => s.all("auth").length === 2);
  await answerAuth(s, 4);
  assert.equal((await ready).cursor, 4);
  assert.equal(sockets.length, 1);
});

boundedTest("RemovedDeviceDoesNotReconnect", kTestMs, async (scope) => {
  const { sockets, FakeSocket } = fakeSockets();
  const client = newClient(scope, FakeSocket);
  let removed = false;
  client.on("removed", () => { removed = true; });
  client.on("error", () => {});
  client.connect();
  const s = await until("socket", () => sockets[0]);
  await answerAuth(s, 1);
  s.drop(4001, "device removed");
  await until("removed", () => removed);
  await tick(60);
  assert.equal(sockets.length, 1);
});

boundedTest("RevokedUserDoesNotReconnect", kTestMs, async (scope) => {
  const { sockets, FakeSocket } = fakeSockets();
  const client = newClient(scope, FakeSocket);
  let revoked = false;
  client.on("revoked", () => { revoked = true; });
  client.on("error", () => {});
  client.connect();
  const s = await until("socket", () => sockets[0]);
  await answerAuth(s, 1);
  s.drop(4005, "user revoked");
  await until("revoked", () => revoked);
  assert.equal(client.lastError.code, "user_revoked");
  assert.equal(client.state, "closed");
  await tick(60);  // the backoff would have reconnected by now (reconnectMaxMs 40)
  assert.equal(sockets.length, 1);
});

boundedTest("ReplacedSessionStopsAndDoesNotReconnect", kTestMs, async (scope) => {
  // Two tabs of one device beyond the node's bound of sessions per device: reconnecting after 4003
  // would replace the other tab, which would do the same, for ever.
  const { sockets, FakeSocket } = fakeSockets();
  const storage = new MemoryStorage();
  const client = newClient(scope, FakeSocket, { storage });
  const events = [];
  client.on("*", (e) => events.push(e.type === "disconnected" ? `disconnected ${e.code}` : e.type));
  const ready = client.connect();
  const s = await until("socket", () => sockets[0]);
  await answerAuth(s, 1);
  await ready;
  client.send("direct:alice:bob", "kept for later").catch(() => {});
  await until("send", () => s.last("send"));
  s.drop(4003, "replaced by a newer session of this device");
  await until("replaced", () => events.includes("replaced"));
  assert.equal(client.lastError.code, "session_replaced");
  assert.ok(!client.lastError.retryable, "the app, not a retry loop, decides to come back");
  assert.equal(client.state, "closed");
  assert.deepEqual(events.slice(events.indexOf("disconnected 4003")),
    ["disconnected 4003", "replaced", "error", "state"]);
  await tick(60);  // the backoff would have reconnected by now (reconnectMaxMs 40)
  assert.equal(sockets.length, 1);
  // The unanswered send stays stored for the device's next connect.
  assert.equal(JSON.parse(storage.get("herald:bob:bob-laptop:outbox")).length, 1);
});

boundedTest("TokenIsRefreshedBeforeItExpiresAndAgainFromTheNewExpiry", kTestMs, async (scope) => {
  const { sockets, FakeSocket } = fakeSockets();
  let issued = 0;
  const client = newClient(scope, FakeSocket, { token: undefined,
    getJwt: async () => `jwt-${++issued}` });
  const errors = [];
  client.on("error", (e) => errors.push(e.error));
  client.connect();
  await refreshesTwice(client, sockets);
  assert.deepEqual(errors, []);
});

// The refresh test's steps, on a client that signs in with getJwt.
async function refreshesTwice(client, sockets) {
  const s = await until("socket", () => sockets[0]);
  // The refresh is due kRefreshBeforeExpiryMs before expires_at_ms: here 150 ms from now.
  const leadMs = 150;
  let expiresAtMs = Date.now() + kRefreshBeforeExpiryMs + leadMs;
  const auth = await answerAuth(s, 1, { expires_at_ms: expiresAtMs });
  assert.equal(auth.jwt, "jwt-1");
  await tick(leadMs / 3);
  assert.equal(s.all("refresh").length, 0, "not before it is due");
  const first = await until("a refresh", () => s.last("refresh"));
  assert.equal(first.jwt, "jwt-2", "a fresh token from getJwt");
  assert.ok(Date.now() < expiresAtMs - kRefreshBeforeExpiryMs / 2,
    "sent about kRefreshBeforeExpiryMs before expires_at_ms");
  // The answer's expiry schedules the next refresh, on the same connection.
  expiresAtMs = Date.now() + kRefreshBeforeExpiryMs + leadMs;
  s.push({ type: "ok", re: first.id, expires_at_ms: expiresAtMs });
  const second = await until("a second refresh", () => s.all("refresh").length === 2 &&
    s.last("refresh"));
  assert.equal(second.jwt, "jwt-3");
  assert.ok(Date.now() < expiresAtMs - kRefreshBeforeExpiryMs / 2);
  s.push({ type: "ok", re: second.id, expires_at_ms: Date.now() + 3_600_000 });
  await tick(leadMs * 2);
  assert.equal(s.all("refresh").length, 2, "nothing more due for an hour");
  assert.equal(sockets.length, 1);
  assert.equal(client.state, "online");
}

boundedTest("ExpiredTokenFetchesAFreshOneBeforeReconnecting", kTestMs, async (scope) => {
  const { sockets, FakeSocket } = fakeSockets();
  let issued = 0;
  const client = newClient(scope, FakeSocket, { token: undefined,
    getJwt: async () => `jwt-${++issued}` });
  client.connect();
  const s = await until("socket", () => sockets[0]);
  const auth = await answerAuth(s, 1, { expires_at_ms: Date.now() + 3_600_000 });
  assert.equal(auth.jwt, "jwt-1");
  s.drop(4004, "token expired");
  const second = await until("socket", () => sockets[1]);
  const again = await answerAuth(second, 1);
  assert.equal(again.jwt, "jwt-2");
});

boundedTest("OversizeBodyIsRefusedLocally", kTestMs, async (scope) => {
  const { FakeSocket } = fakeSockets();
  const client = newClient(scope, FakeSocket);
  await assert.rejects(client.send("c", "é".repeat(40_000)), (e) => e.code === "too_large");
  await assert.rejects(client.send("c", ""), (e) => e.code === "invalid_argument");
});

boundedTest("GoingOfflineDropsTheSocketAndComingBackReconnectsAtOnce", kTestMs, async (scope) => {
  const { sockets, FakeSocket } = fakeSockets();
  const client = newClient(scope, FakeSocket, { reconnectInitialMs: 60_000, reconnectMaxMs: 60_000 });
  client.connect();
  await answerAuth(await until("socket", () => sockets[0]), 1);
  client.setNetwork(false);
  await until("offline", () => client.state === "offline");
  await tick(30);
  assert.equal(sockets.length, 1, "no reconnect while offline");
  client.setNetwork(true);
  // Without waiting out the (one minute) backoff.
  const auth = await answerAuth(await until("a second socket", () => sockets[1], 500), 1);
  assert.equal(auth.since, 1);
  assert.equal(client.state, "online");
});

boundedTest("AConnectionThatFailsWithoutACloseEventIsRetried", kTestMs, async (scope) => {
  // Node 20's WebSocket reports a refused connection with an error and no close event.
  const { sockets, FakeSocket } = fakeSockets();
  FakeSocket.refuseNext = true;
  const client = newClient(scope, FakeSocket);
  const ready = client.connect();
  await answerAuth(await until("a second socket", () => sockets[1]), 2);
  assert.equal((await ready).cursor, 2);
});
