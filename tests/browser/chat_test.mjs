// The web chat (/chat/, web/chat/ on clients/js/herald.js) in real headless Chromium (Debian's
// chromium, driven by playwright-core) against a real Herald node on loopback. Alice and Bob chat
// in two browser contexts; Bob has a second tab, a second device in its own context, whose read
// state follows the first; that tab is taken offline (context.setOffline, which applies to a whole
// context) and catches up when it comes back. Bob then opens a third tab in the same context as
// his first (one browser: shared localStorage), signed in as a third device: it is a device of its
// own, follows the first tab's reading, and removing its device closes it alone. Screenshots go to
// tests/browser/screenshots/ (or $HERALD_SCREENSHOTS).
//
// Usage: node --test chat_test.mjs   with HERALD_BINARY=<path to herald>
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { freePort, sleep, operatorApi } from "../support/node_util.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BINARY = process.env.HERALD_BINARY;
const CHROMIUM = process.env.HERALD_CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.HERALD_SCREENSHOTS || path.join(HERE, "screenshots");
const TOKEN = crypto.randomBytes(16).toString("hex");
// Bounds of each wait, ms.
const NODE_UP_MS = 20_000;
const UI_MS = 15_000;
const DIRECT = "direct:alice:bob";

const root = fs.mkdtempSync(path.join(os.tmpdir(), `herald-chat-${process.pid}-`));
let proc = null;
let browser = null;

after(async () => {
  if (browser) await browser.close();
  if (proc) proc.kill("SIGKILL");
  if (!process.env.HERALD_KEEP) fs.rmSync(root, { recursive: true, force: true });
});


const api = operatorApi(TOKEN);

async function startNode() {
  const client = await freePort();
  const peer = await freePort();
  const log = fs.openSync(path.join(root, "node.log"), "a");
  proc = spawn(BINARY, ["serve", "--data", path.join(root, "data"), "--client", `127.0.0.1:${client}`,
    "--peer", `127.0.0.1:${peer}`], { env: { ...process.env, HERALD_ADMIN_TOKEN: TOKEN },
    stdio: ["ignore", log, log] });
  const deadline = Date.now() + NODE_UP_MS;
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${client}/v1/health`);
      if (r.status === 200) return client;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error("the node did not come up");
    await sleep(100);
  }
}

// Creates `user` with `devices`, returning each device's secret.
async function provision(port, user, devices) {
  assert.equal((await api(port, "POST", "/v1/admin/users", { user_id: user, display_name: user })).status, 201);
  const secrets = {};
  for (const device of devices) {
    const r = await api(port, "POST", `/v1/admin/users/${user}/devices`, { device_id: device, platform: "web" });
    assert.equal(r.status, 201);
    secrets[device] = r.json.token;
  }
  return secrets;
}

// Opens the chat in a new page of `context`, signed in as (user, device) through the fragment.
async function openChat(context, port, user, device, secret) {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  await page.goto(`http://127.0.0.1:${port}/chat/#user=${user}&device=${device}&token=${encodeURIComponent(secret)}`);
  await page.waitForSelector('#state[data-state="online"]', { timeout: UI_MS });
  page.errors = errors;
  return page;
}

const chatItem = (conv) => `#chat-list li[data-conversation="${conv}"]`;
const unreadOf = (conv) => `${chatItem(conv)} .unread`;

async function expectUnread(page, conv, count) {
  await page.waitForSelector(`${unreadOf(conv)}[data-count="${count}"]`, { state: "attached", timeout: UI_MS });
}

async function send(page, body) {
  await page.fill("#composer input[name=body]", body);
  await page.press("#composer input[name=body]", "Enter");
}

// The tick status of my message with `body`.
async function tickOf(page, body, status) {
  const selector = `#messages li.mine:has(.body:text-is("${body}")) .ticks[data-status="${status}"]`;
  await page.waitForSelector(selector, { timeout: UI_MS });
}

test("two users chat; read state follows to other tabs, one in the same browser; an offline tab catches up", { timeout: 240_000 }, async () => {
  assert.ok(BINARY && fs.existsSync(BINARY), "HERALD_BINARY names the herald binary");
  assert.ok(fs.existsSync(CHROMIUM),
    `${CHROMIUM} is missing: install it with bash scripts/install-deps.sh --browser`);
  fs.mkdirSync(SHOTS, { recursive: true });
  const port = await startNode();
  const alice = await provision(port, "alice", ["alice-web"]);
  const bob = await provision(port, "bob", ["bob-web-1", "bob-web-2", "bob-web-3"]);
  await provision(port, "carol", []);
  assert.equal((await api(port, "POST", "/v1/admin/conversations",
    { creator: "alice", kind: "direct", members: ["bob"] })).status, 201);

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  const viewport = { width: 1000, height: 640 };
  const aliceContext = await browser.newContext({ viewport });
  const bobContext = await browser.newContext({ viewport });
  const bobOtherContext = await browser.newContext({ viewport });
  const a = await openChat(aliceContext, port, "alice", "alice-web", alice["alice-web"]);
  const b1 = await openChat(bobContext, port, "bob", "bob-web-1", bob["bob-web-1"]);
  const b2 = await openChat(bobOtherContext, port, "bob", "bob-web-2", bob["bob-web-2"]);
  for (const page of [a, b1, b2]) await page.waitForSelector(chatItem(DIRECT), { timeout: UI_MS });

  // Alice writes while both of Bob's tabs are offline: sent (stored), not delivered.
  for (const [context, page] of [[bobContext, b1], [bobOtherContext, b2]]) {
    await context.setOffline(true);
    await page.waitForSelector('#state[data-state="offline"]', { timeout: UI_MS });
  }
  await a.click(chatItem(DIRECT));
  await send(a, "Lunch at noon?");
  await tickOf(a, "Lunch at noon?", "sent");
  await sleep(500);
  await tickOf(a, "Lunch at noon?", "sent");  // no device of Bob's has it yet

  // Bob's tabs come back: they receive it and acknowledge it without opening the conversation:
  // delivered, not read, 1 unread.
  for (const [context, page] of [[bobContext, b1], [bobOtherContext, b2]]) {
    await context.setOffline(false);
    await page.waitForSelector('#state[data-state="online"]', { timeout: UI_MS });
  }
  await tickOf(a, "Lunch at noon?", "delivered");
  await expectUnread(b1, DIRECT, 1);
  await expectUnread(b2, DIRECT, 1);
  assert.equal(await b1.textContent("#unread-total"), "1");
  await sleep(500);
  await tickOf(a, "Lunch at noon?", "delivered");  // nobody read it yet
  assert.equal(await a.getAttribute('#messages li.mine:has(.body:text-is("Lunch at noon?")) .ticks',
    "title"), "delivered to another member's device");

  // Bob opens it in his first tab: read there, in his second tab, and by Alice's ticks.
  await b1.click(chatItem(DIRECT));
  await b1.waitForSelector('#messages li:has(.body:text-is("Lunch at noon?"))', { timeout: UI_MS });
  await tickOf(a, "Lunch at noon?", "read");
  await expectUnread(b1, DIRECT, 0);
  await expectUnread(b2, DIRECT, 0);
  assert.equal(await b2.textContent("#unread-total"), "0");

  // Bob types: Alice sees it.
  await b1.fill("#composer input[name=body]", "Sure");
  await a.waitForSelector('#typing:text("bob is typing")', { timeout: UI_MS });
  await b1.press("#composer input[name=body]", "Enter");
  await a.waitForSelector('#messages li:not(.mine):has(.body:text-is("Sure"))', { timeout: UI_MS });
  await tickOf(b1, "Sure", "read");  // Alice has the conversation open
  await a.screenshot({ path: path.join(SHOTS, "chat-alice.png") });

  // Bob's second tab goes offline; meanwhile Alice writes twice and Bob reads in his first tab.
  await bobOtherContext.setOffline(true);
  await b2.waitForSelector('#state[data-state="offline"]', { timeout: UI_MS });
  await send(a, "I'll book a table.");
  await send(a, "Window seat?");
  await b1.waitForSelector('#messages li:has(.body:text-is("Window seat?"))', { timeout: UI_MS });
  await tickOf(a, "Window seat?", "read");
  await sleep(300);
  assert.equal(await b2.textContent(`${chatItem(DIRECT)} .preview`), "Sure",
    "the offline tab heard nothing");

  // Back online: it catches up, read already (by the first tab), messages in order.
  await bobOtherContext.setOffline(false);
  await b2.waitForSelector('#state[data-state="online"]', { timeout: UI_MS });
  await b2.waitForSelector(`${chatItem(DIRECT)} .preview:text-is("Window seat?")`, { timeout: UI_MS });
  await expectUnread(b2, DIRECT, 0);
  await b2.click(chatItem(DIRECT));
  await b2.waitForSelector('#messages li:has(.body:text-is("Window seat?"))', { timeout: UI_MS });
  const bodies = await b2.$$eval("#messages li .body", (nodes) => nodes.map((n) => n.textContent));
  assert.deepEqual(bodies, ["Lunch at noon?", "Sure", "I'll book a table.", "Window seat?"]);
  await b2.screenshot({ path: path.join(SHOTS, "chat-bob-second-tab.png") });

  // A group from the page: Alice creates it, Bob's first tab lists it with one unread message.
  await a.fill("#new-chat input[name=members]", "bob, carol");
  await a.fill("#new-chat input[name=title]", "Lunch crew");
  await a.click("#new-chat button");
  await a.waitForSelector('#conversation-title:text-is("Lunch crew")', { timeout: UI_MS });
  await send(a, "Who else is coming?");
  await tickOf(a, "Who else is coming?", "delivered");  // Bob's first tab has it (Carol has no device)
  const group = await a.$eval('#chat-list li[aria-selected="true"]', (li) => li.dataset.conversation);
  await expectUnread(b1, group, 1);
  assert.equal(await b1.textContent(`${chatItem(group)} .title`), "Lunch crew");

  // A reload keeps the tab signed in as the same device, with the conversation and its ticks.
  await a.click(chatItem(DIRECT));
  await a.reload();
  await a.waitForSelector('#state[data-state="online"]', { timeout: UI_MS });
  await tickOf(a, "Window seat?", "read");
  await a.screenshot({ path: path.join(SHOTS, "chat.png") });
  await b1.screenshot({ path: path.join(SHOTS, "chat-bob.png") });

  // A third tab of Bob's, in the same context as his first: one browser, one localStorage. Signed
  // in as another device, it is a device of its own: its own session, and the client's cursor and
  // outbox under its own device's keys.
  const b3 = await openChat(bobContext, port, "bob", "bob-web-3", bob["bob-web-3"]);
  await expectUnread(b3, group, 1);
  assert.equal(await b1.textContent("#who"), "bob · bob-web-1", "the first tab keeps its device");
  assert.equal(await b3.textContent("#who"), "bob · bob-web-3");
  assert.equal(await b1.evaluate(() => window.heraldClient.deviceId), "bob-web-1");

  // Bob reads the group in his first tab: the third tab, beside it, follows.
  await b1.click(chatItem(group));
  await b1.waitForSelector('#messages li:has(.body:text-is("Who else is coming?"))', { timeout: UI_MS });
  await expectUnread(b1, group, 0);
  await expectUnread(b3, group, 0);
  assert.equal(await b3.textContent("#unread-total"), "0");
  // Each tab's client keeps its cursor under its own device's key of the shared localStorage.
  for (const [page, device] of [[b1, "bob-web-1"], [b3, "bob-web-3"]]) {
    await page.waitForFunction((key) => window.heraldClient.cursor !== null &&
      localStorage.getItem(key) === String(window.heraldClient.cursor),
    `herald:bob:${device}:cursor`, { timeout: UI_MS });
  }
  const keys = await b1.evaluate(() => Object.keys(localStorage));
  for (const device of ["bob-web-1", "bob-web-3"]) {
    assert.ok(keys.includes(`herald:bob:${device}:cursor`), `${device}'s cursor in ${keys.join(", ")}`);
  }

  // Removing the third tab's device closes that tab only; the first, in the same context, stays.
  assert.equal((await api(port, "DELETE", "/v1/admin/users/bob/devices/bob-web-3")).status, 200);
  await b3.waitForSelector('#state[data-state="closed"]', { timeout: UI_MS });
  await b3.waitForSelector('#error:has-text("This device was removed")', { timeout: UI_MS });
  await send(a, "Table for three.");
  await b1.waitForSelector(`${chatItem(DIRECT)} .preview:text-is("Table for three.")`, { timeout: UI_MS });
  assert.equal(await b1.getAttribute("#state", "data-state"), "online");

  for (const page of [a, b1, b2, b3]) assert.deepEqual(page.errors, [], "no script errors");
});
