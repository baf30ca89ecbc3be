// The JavaScript client against a real Herald node: `herald serve` on ephemeral loopback ports
// with a temporary data directory, users and devices provisioned through the admin API, and the
// client speaking the real protocol over a real WebSocket: the node's own, or the `ws` package.
//
// Usage: HERALD_BINARY=<path to herald> [HERALD_JS_WEBSOCKET=node|ws] node --test herald_integration_test.mjs
// HERALD_JS_WEBSOCKET says which WebSocket the client must be found using: "node", the node's own
// (node 22, or node 20 with --experimental-websocket); "ws", the ws package, which the client
// imports when there is no global WebSocket (node 18, node 20 without the flag; a node's own is
// hidden for this run). Unset: whichever this node offers.
import { before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { HeraldClient, FileStorage, MemoryStorage } from "../herald.js";
import { sleep, waitFor as waitForEvery } from "../../../tests/support/node_util.mjs";
import { boundedTest } from "./bounded_test.mjs";
import { HeraldNode, kNodeUpMs } from "./herald_node.mjs";

const WEBSOCKET = process.env.HERALD_JS_WEBSOCKET ?? (globalThis.WebSocket ? "node" : "ws");
assert.ok(["node", "ws"].includes(WEBSOCKET), `HERALD_JS_WEBSOCKET is node or ws, not ${WEBSOCKET}`);
if (WEBSOCKET === "ws" && globalThis.WebSocket) {
  delete globalThis.WebSocket;
  if (globalThis.WebSocket) globalThis.WebSocket = undefined;
}
const SIGNIN_SECRET = crypto.randomBytes(32).toString("hex");
const HERE = path.dirname(fileURLToPath(import.meta.url));
// Bound of each wait for an event, ms.
const EVENT_MS = 10_000;
// Bound of each test, ms: one needs a few seconds on a quiet machine, the node restart's the most.
const kTestMs = 60_000;
// Bound of the hooks that start the node and provision the first users, and that stop it, ms.
const kHookMs = kNodeUpMs + 10_000;

const root = fs.mkdtempSync(path.join(os.tmpdir(), `herald-js-${process.pid}-`));
let node = null;  // the HeraldNode

const waitFor = (what, timeoutMs, probe) => waitForEvery(what, timeoutMs, probe, 50);

const secrets = {};
async function provision(user, devices) {
  Object.assign(secrets, await node.provision(user, devices));
}

const admin = (method, urlPath, body) => node.admin(method, urlPath, body);

// The longest wait of connectAs's clients before reconnecting, ms.
const kReconnectMaxMs = 1000;

// A client of `device` (provisioned), closed when the test of `scope` ends.
function connectAs(scope, user, device, extra = {}) {
  return scope.own(new HeraldClient({ url: node.wsUrl, userId: user,
    deviceId: device, token: secrets[device], reconnectInitialMs: 100,
    reconnectMaxMs: kReconnectMaxMs, ...extra }));
}

// Resolves with the first event of `type` on `client` that satisfies `match`; rejects after
// EVENT_MS. The wait ends with the test of `scope`.
function next(scope, client, type, match = () => true) {
  return new Promise((resolve, reject) => {
    const stop = () => { clearTimeout(timer); off(); };
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`no ${type} event on ${client.deviceId} within ${EVENT_MS} ms`));
    }, EVENT_MS);
    const off = client.on(type, (event) => {
      if (!match(event)) return;
      stop();
      resolve(event);
    });
    scope.defer(stop);
  });
}

// The node's bound of authenticated sessions per device, kMaxSessionsPerDevice in
// server/gateway.h: the test node runs with the default.
function maxSessionsPerDevice() {
  const header = fs.readFileSync(path.join(HERE, "..", "..", "..", "server", "gateway.h"), "utf8");
  const found = header.match(/kMaxSessionsPerDevice = (\d+);/);
  assert.ok(found, "server/gateway.h defines kMaxSessionsPerDevice");
  return Number(found[1]);
}

function hs256(claims) {
  const encode = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = `${encode({ alg: "HS256", typ: "JWT" })}.${encode(claims)}`;
  return `${head}.${crypto.createHmac("sha256", SIGNIN_SECRET).update(head).digest("base64url")}`;
}

before(async () => {
  node = new HeraldNode({ binary: process.env.HERALD_BINARY, root, signinSecret: SIGNIN_SECRET });
  await node.start();
  await provision("alice", ["alice-phone"]);
  await provision("bob", ["bob-laptop", "bob-phone"]);
  await provision("carol", ["carol-tablet"]);
}, { timeout: kHookMs });

after(async () => {
  if (node) node.kill();
  if (!process.env.HERALD_KEEP) fs.rmSync(root, { recursive: true, force: true });
}, { timeout: kHookMs });

boundedTest(`the client speaks over ${WEBSOCKET === "ws" ? "the ws package" : "the node's own WebSocket"}`,
  kTestMs, async (scope) => {
    const expected = WEBSOCKET === "ws" ? (await import("ws")).default : globalThis.WebSocket;
    assert.equal(typeof expected, "function", `this node offers no ${WEBSOCKET} WebSocket`);
    const alice = connectAs(scope, "alice", "alice-phone");
    await alice.connect();
    assert.ok(alice.socket instanceof expected, `the client's socket is a ${alice.socket?.constructor?.name}`);
  });

boundedTest("messages, acks, read sync across devices, receipts, typing and presence", kTestMs, async (scope) => {
  const alice = connectAs(scope, "alice", "alice-phone");
  const bob = connectAs(scope, "bob", "bob-laptop");
  const bobPhone = connectAs(scope, "bob", "bob-phone");
  await Promise.all([alice.connect(), bob.connect(), bobPhone.connect()]);
  const conversation = await alice.createDirect("bob");
  assert.equal(conversation.conversation_id, "direct:alice:bob");

  const received = next(scope, bob, "message", (e) => e.message.body === "Lunch at noon?");
  // Bob's devices acknowledge it on their own: the first of them tells Alice.
  const delivered = next(scope, alice, "delivered", (e) => e.user_id === "bob");
  const answer = await alice.send(conversation.conversation_id, "Lunch at noon?");
  assert.equal(answer.existed, false);
  const { message } = await received;
  assert.equal(message.seq, answer.seq);
  assert.equal(message.sender_device, "alice-phone");
  assert.equal((await delivered).seq, answer.seq);
  assert.equal(alice.deliveredUpTo(conversation.conversation_id), answer.seq);

  const chats = await bobPhone.loadChats();
  assert.equal(chats.find((c) => c.conversation_id === "direct:alice:bob").unread, 1);
  assert.equal(bobPhone.unreadTotal(), 1);

  // Bob reads on the laptop: the phone's chat list follows, Alice gets the receipt.
  const phoneRead = next(scope, bobPhone, "read", (e) => e.seq === answer.seq);
  const receipt = next(scope, alice, "receipt", (e) => e.user_id === "bob" && e.seq === answer.seq);
  await bob.markRead(conversation.conversation_id, answer.seq);
  assert.equal((await phoneRead).device_id, "bob-laptop");
  await receipt;
  assert.equal(bobPhone.unreadTotal(), 0);

  const typing = next(scope, bob, "typing", (e) => e.user_id === "alice" && e.active);
  await alice.typing(conversation.conversation_id, true);
  await typing;

  const presence = next(scope, alice, "presence", (e) => e.user_id === "carol" && e.online);
  await alice.createGroup(["carol"], "Lunch crew");
  const carol = connectAs(scope, "carol", "carol-tablet");
  await carol.connect();
  await presence;
  assert.equal(alice.presence("carol").online, true);
});

boundedTest("a retransmitted client_message_id answers the first seq", kTestMs, async (scope) => {
  const alice = connectAs(scope, "alice", "alice-phone");
  await alice.connect();
  const first = await alice.send("direct:alice:bob", "once", "cm-fixed-1");
  const again = await alice.send("direct:alice:bob", "once", "cm-fixed-1");
  assert.equal(again.existed, true);
  assert.equal(again.seq, first.seq);
});

boundedTest("errors carry the protocol's codes", kTestMs, async (scope) => {
  const carol = connectAs(scope, "carol", "carol-tablet");
  await carol.connect();
  await assert.rejects(carol.send("direct:alice:bob", "let me in"),
    (e) => e.code === "not_member" && !e.retryable);
  const wrong = scope.own(new HeraldClient({ url: node.wsUrl, userId: "carol",
    deviceId: "carol-tablet", token: "not-the-secret" }));
  wrong.on("error", () => {});
  await assert.rejects(wrong.connect(), (e) => e.code === "unauthorized");
});

boundedTest("a device resumes with since and a stored outbox survives a node restart", kTestMs, async (scope) => {
  const file = path.join(root, "bob-laptop.json");
  let bob = connectAs(scope, "bob", "bob-laptop", { storage: new FileStorage(file) });
  await bob.connect();
  bob.close();

  const alice = connectAs(scope, "alice", "alice-phone", { storage: new FileStorage(path.join(root, "alice.json")) });
  await alice.connect();
  await alice.createDirect("bob");  // the existing one when the first test made it
  const missed = [];
  for (const body of ["while you were away 1", "while you were away 2"]) {
    missed.push((await alice.send("direct:alice:bob", body)).seq);
  }

  // Bob comes back (a new process with the same storage): exactly the missed messages, in order.
  bob = connectAs(scope, "bob", "bob-laptop", { storage: new FileStorage(file) });
  const seen = [];
  bob.on("message", (e) => seen.push(e.message.seq));
  await bob.connect();
  await waitFor("the missed messages", EVENT_MS, () => seen.length >= 2);
  await sleep(300);
  assert.deepEqual(seen, missed);

  // The node goes down; Alice sends meanwhile, then "reloads" before any answer. A check that
  // fails while it is down must not leave it down for the tests after this one.
  scope.defer(async () => { if (!node.running) await node.start(); });
  await node.stop();
  await waitFor("alice to notice", EVENT_MS, () => alice.state !== "online");
  alice.send("direct:alice:bob", "sent while the node was down").catch(() => {});
  await sleep(100);
  assert.equal(alice.pendingSends().length, 1);
  // The file is written in the background: wait for it rather than read it at once.
  const storedOutbox = () => JSON.parse(JSON.parse(fs.readFileSync(path.join(root, "alice.json"),
    "utf8"))["herald:alice:alice-phone:outbox"]);
  await waitFor("the outbox in alice's file", EVENT_MS, () => storedOutbox().length === 1);
  alice.close();

  await node.start();
  const arrived = [];
  bob.on("message", (e) => { if (e.message.body === "sent while the node was down") arrived.push(e.message.seq); });
  const reloaded = connectAs(scope, "alice", "alice-phone", { storage: new FileStorage(path.join(root, "alice.json")) });
  await reloaded.connect();
  await waitFor("the outbox to drain", EVENT_MS, () => reloaded.pendingSends().length === 0);
  await waitFor("bob to reconnect and receive it", EVENT_MS, () => arrived.length === 1);
  await sleep(300);
  assert.equal(arrived.length, 1, "stored exactly once");
});

boundedTest("a device signs in with the app's token and the first sign-in creates it", kTestMs, async (scope) => {
  const exp = Math.floor(Date.now() / 1000) + 600;
  const dave = scope.own(new HeraldClient({ url: node.wsUrl, userId: "dave",
    deviceId: "dave-web", getJwt: async () => hs256({ sub: "dave", device_id: "dave-web",
      aud: "herald", exp, name: "Dave" }), storage: new MemoryStorage() }));
  const answer = await dave.connect();
  assert.equal(answer.expires_at_ms, exp * 1000);
  const user = await admin("GET", "/v1/admin/users/dave");
  assert.equal(user.user.display_name, "Dave");
  const conversation = await dave.createDirect("alice");
  assert.ok((await dave.send(conversation.conversation_id, "hi from a token")).seq >= 1);
});

boundedTest("a revoked user's client stops and does not reconnect", kTestMs, async (scope) => {
  await provision("erin", ["erin-laptop"]);
  const erin = connectAs(scope, "erin", "erin-laptop");
  erin.on("error", () => {});
  const revoked = next(scope, erin, "revoked");
  const disconnected = next(scope, erin, "disconnected");
  await erin.connect();
  assert.ok((await admin("POST", "/v1/admin/users/erin/revoke")).revoked_at_ms > 0);
  assert.equal((await disconnected).code, 4005);
  await revoked;
  assert.equal(erin.state, "closed");
  assert.equal(erin.lastError.code, "user_revoked");
  let reopened = false;
  erin.on("state", () => { reopened = true; });
  await sleep(kReconnectMaxMs + 500);  // beyond the longest reconnect backoff of these clients
  assert.equal(reopened, false);
});

boundedTest("a session replaced by a newer one of its device stops and does not reconnect",
  kTestMs, async (scope) => {
    // One more session of one device than the node keeps (tabs of one browser, say): the oldest
    // is closed with 4003. Reconnecting would replace the next oldest, and so on for ever.
    const limit = maxSessionsPerDevice();
    await provision("frank", ["frank-laptop"]);
    const tabs = [];
    for (let i = 0; i < limit; ++i) {
      tabs.push(connectAs(scope, "frank", "frank-laptop"));
      await tabs[i].connect();  // one after another: the node keeps them in this order
    }
    const oldest = tabs[0];
    oldest.on("error", () => {});
    const disconnected = next(scope, oldest, "disconnected");
    const replaced = next(scope, oldest, "replaced");
    const others = [];  // [tab, event] for every event of the tabs that must stay up
    for (const tab of tabs.slice(1)) tab.on("*", (event) => others.push([tab, event]));

    const newest = connectAs(scope, "frank", "frank-laptop");
    await newest.connect();
    const { code, reason } = await disconnected;
    assert.equal(code, 4003, `closed with ${code} ${reason}`);
    await replaced;
    assert.equal(oldest.state, "closed");
    assert.equal(oldest.lastError.code, "session_replaced");
    let reopened = false;
    oldest.on("state", () => { reopened = true; });
    await sleep(kReconnectMaxMs + 500);  // beyond the longest reconnect backoff of these clients
    assert.equal(reopened, false, "the replaced session stays closed");
    assert.deepEqual(others.map(([tab, event]) => `${tabs.indexOf(tab)} ${event.type}`), [],
      "the other sessions were left alone");
    for (const tab of [...tabs.slice(1), newest]) assert.equal(tab.state, "online");
    // The device still works through its live sessions.
    const chat = await newest.createDirect("alice");
    assert.ok((await tabs[1].send(chat.conversation_id, "from the second tab")).seq >= 1);
  });
