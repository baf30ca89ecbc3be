// The JavaScript client against a real Herald node: `herald serve` on ephemeral loopback ports
// with a temporary data directory, users and devices provisioned through the admin API, and the
// client speaking the real protocol over a real WebSocket (Node's own, or the `ws` package).
//
// Usage: node --experimental-websocket --test herald_integration_test.mjs
//        with HERALD_BINARY=<path to herald>
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { HeraldClient, FileStorage, MemoryStorage } from "../herald.js";
import { freePort, sleep, waitFor as waitForEvery } from "../../../tests/support/node_util.mjs";

const BINARY = process.env.HERALD_BINARY;
const TOKEN = crypto.randomBytes(16).toString("hex");
const SIGNIN_SECRET = crypto.randomBytes(32).toString("hex");
// Bounds of each wait, ms.
const NODE_UP_MS = 20_000;
const EVENT_MS = 10_000;

const root = fs.mkdtempSync(path.join(os.tmpdir(), `herald-js-${process.pid}-`));
let node = null;  // {proc, client, peer}
const clients = [];


const waitFor = (what, timeoutMs, probe) => waitForEvery(what, timeoutMs, probe, 50);

async function startNode(ports) {
  const config = path.join(root, "herald.toml");
  const secretFile = path.join(root, "signin-secret");
  fs.writeFileSync(secretFile, SIGNIN_SECRET, { mode: 0o600 });
  fs.writeFileSync(config, `[signin]\nhs256_secret_file = "${secretFile}"\naudience = "herald"\n`);
  const log = fs.openSync(path.join(root, "node.log"), "a");
  const proc = spawn(BINARY, ["serve", "--config", config, "--data", path.join(root, "data"),
    "--client", `127.0.0.1:${ports.client}`, "--peer", `127.0.0.1:${ports.peer}`],
  { env: { ...process.env, HERALD_ADMIN_TOKEN: TOKEN }, stdio: ["ignore", log, log] });
  node = { proc, ...ports };
  await waitFor("the node to serve", NODE_UP_MS, async () => {
    const r = await fetch(`http://127.0.0.1:${ports.client}/v1/health`);
    return r.status === 200;
  });
}

async function stopNode() {
  const { proc } = node;
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGTERM");
  await exited;
}

async function admin(method, urlPath, body) {
  const response = await fetch(`http://127.0.0.1:${node.client}${urlPath}`, {
    method, headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.status < 300, `${method} ${urlPath}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const secrets = {};
async function provision(user, devices) {
  await admin("POST", "/v1/admin/users", { user_id: user, display_name: user });
  for (const device of devices) {
    secrets[device] = (await admin("POST", `/v1/admin/users/${user}/devices`,
      { device_id: device, platform: "web" })).token;
  }
}

function connectAs(user, device, extra = {}) {
  const client = new HeraldClient({ url: `ws://127.0.0.1:${node.client}/v1/ws`, userId: user,
    deviceId: device, token: secrets[device], reconnectInitialMs: 100, reconnectMaxMs: 1000,
    ...extra });
  clients.push(client);
  return client;
}

// Resolves with the first event of `type` on `client` that satisfies `match`.
function next(client, type, match = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`no ${type} event in time`)); }, EVENT_MS);
    const off = client.on(type, (event) => {
      if (!match(event)) return;
      clearTimeout(timer);
      off();
      resolve(event);
    });
  });
}

function hs256(claims) {
  const encode = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = `${encode({ alg: "HS256", typ: "JWT" })}.${encode(claims)}`;
  return `${head}.${crypto.createHmac("sha256", SIGNIN_SECRET).update(head).digest("base64url")}`;
}

before(async () => {
  assert.ok(BINARY && fs.existsSync(BINARY), "HERALD_BINARY names the herald binary");
  await startNode({ client: await freePort(), peer: await freePort() });
  await provision("alice", ["alice-phone"]);
  await provision("bob", ["bob-laptop", "bob-phone"]);
  await provision("carol", ["carol-tablet"]);
});

after(async () => {
  for (const client of clients) client.close();
  if (node) node.proc.kill("SIGKILL");
  if (!process.env.HERALD_KEEP) fs.rmSync(root, { recursive: true, force: true });
});

test("messages, acks, read sync across devices, receipts, typing and presence", async () => {
  const alice = connectAs("alice", "alice-phone");
  const bob = connectAs("bob", "bob-laptop");
  const bobPhone = connectAs("bob", "bob-phone");
  await Promise.all([alice.connect(), bob.connect(), bobPhone.connect()]);
  const conversation = await alice.createDirect("bob");
  assert.equal(conversation.conversation_id, "direct:alice:bob");

  const received = next(bob, "message", (e) => e.message.body === "Lunch at noon?");
  // Bob's devices acknowledge it on their own: the first of them tells Alice.
  const delivered = next(alice, "delivered", (e) => e.user_id === "bob");
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
  const phoneRead = next(bobPhone, "read", (e) => e.seq === answer.seq);
  const receipt = next(alice, "receipt", (e) => e.user_id === "bob" && e.seq === answer.seq);
  await bob.markRead(conversation.conversation_id, answer.seq);
  assert.equal((await phoneRead).device_id, "bob-laptop");
  await receipt;
  assert.equal(bobPhone.unreadTotal(), 0);

  const typing = next(bob, "typing", (e) => e.user_id === "alice" && e.active);
  await alice.typing(conversation.conversation_id, true);
  await typing;

  const presence = next(alice, "presence", (e) => e.user_id === "carol" && e.online);
  await alice.createGroup(["carol"], "Lunch crew");
  const carol = connectAs("carol", "carol-tablet");
  await carol.connect();
  await presence;
  assert.equal(alice.presence("carol").online, true);
});

test("a retransmitted client_message_id answers the first seq", async () => {
  const alice = connectAs("alice", "alice-phone");
  await alice.connect();
  const first = await alice.send("direct:alice:bob", "once", "cm-fixed-1");
  const again = await alice.send("direct:alice:bob", "once", "cm-fixed-1");
  assert.equal(again.existed, true);
  assert.equal(again.seq, first.seq);
});

test("errors carry the protocol's codes", async () => {
  const carol = connectAs("carol", "carol-tablet");
  await carol.connect();
  await assert.rejects(carol.send("direct:alice:bob", "let me in"),
    (e) => e.code === "not_member" && !e.retryable);
  const wrong = new HeraldClient({ url: `ws://127.0.0.1:${node.client}/v1/ws`, userId: "carol",
    deviceId: "carol-tablet", token: "not-the-secret" });
  clients.push(wrong);
  wrong.on("error", () => {});
  await assert.rejects(wrong.connect(), (e) => e.code === "unauthorized");
});

test("a device resumes with since and a stored outbox survives a node restart", async () => {
  const file = path.join(root, "bob-laptop.json");
  let bob = connectAs("bob", "bob-laptop", { storage: new FileStorage(file) });
  await bob.connect();
  bob.close();

  const alice = connectAs("alice", "alice-phone", { storage: new FileStorage(path.join(root, "alice.json")) });
  await alice.connect();
  await alice.createDirect("bob");  // the existing one when the first test made it
  const missed = [];
  for (const body of ["while you were away 1", "while you were away 2"]) {
    missed.push((await alice.send("direct:alice:bob", body)).seq);
  }

  // Bob comes back (a new process with the same storage): exactly the missed messages, in order.
  bob = connectAs("bob", "bob-laptop", { storage: new FileStorage(file) });
  const seen = [];
  bob.on("message", (e) => seen.push(e.message.seq));
  await bob.connect();
  await waitFor("the missed messages", EVENT_MS, () => seen.length >= 2);
  await sleep(300);
  assert.deepEqual(seen, missed);

  // The node goes down; Alice sends meanwhile, then "reloads" before any answer.
  await stopNode();
  await waitFor("alice to notice", EVENT_MS, () => alice.state !== "online");
  alice.send("direct:alice:bob", "sent while the node was down").catch(() => {});
  await sleep(100);
  assert.equal(alice.pendingSends().length, 1);
  alice.close();
  const stored = JSON.parse(fs.readFileSync(path.join(root, "alice.json"), "utf8"));
  assert.equal(JSON.parse(stored["herald:alice:alice-phone:outbox"]).length, 1);

  await startNode({ client: node.client, peer: node.peer });
  const arrived = [];
  bob.on("message", (e) => { if (e.message.body === "sent while the node was down") arrived.push(e.message.seq); });
  const reloaded = connectAs("alice", "alice-phone", { storage: new FileStorage(path.join(root, "alice.json")) });
  await reloaded.connect();
  await waitFor("the outbox to drain", EVENT_MS, () => reloaded.pendingSends().length === 0);
  await waitFor("bob to reconnect and receive it", EVENT_MS, () => arrived.length === 1).catch((e) => { console.log("DEBUG", bob.state, bob.cursor, reloaded.state, JSON.stringify(reloaded.pendingSends())); throw e; });
  await sleep(300);
  assert.equal(arrived.length, 1, "stored exactly once");
});

test("a device signs in with the app's token and the first sign-in creates it", async () => {
  const exp = Math.floor(Date.now() / 1000) + 600;
  const dave = new HeraldClient({ url: `ws://127.0.0.1:${node.client}/v1/ws`, userId: "dave",
    deviceId: "dave-web", getJwt: async () => hs256({ sub: "dave", device_id: "dave-web",
      aud: "herald", exp, name: "Dave" }), storage: new MemoryStorage() });
  clients.push(dave);
  const answer = await dave.connect();
  assert.equal(answer.expires_at_ms, exp * 1000);
  const user = await admin("GET", "/v1/admin/users/dave");
  assert.equal(user.user.display_name, "Dave");
  const conversation = await dave.createDirect("alice");
  assert.ok((await dave.send(conversation.conversation_id, "hi from a token")).seq >= 1);
});
