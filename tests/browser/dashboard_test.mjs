// The dashboard in real headless Chromium (Debian's chromium, driven by playwright-core) against a
// real three-node Herald cluster on loopback with demo traffic (`herald serve --demo` on node 1).
// APNs points at a closed local port, so pushes to iOS devices fail and retry; a user whose phone
// never connects (ivan) keeps one delivery retrying throughout. The test finds messages by id and
// checks their lanes and attempts, retries ivan's delivery from the dashboard and checks the
// action in its history, opens one of the web chat sign-in links the demo printed and reaches the
// signed-in chat, then SIGKILLs the leader and checks that the cluster view follows. Screenshots go
// to tests/browser/screenshots/ (or $HERALD_SCREENSHOTS).
//
// Usage: node --test dashboard_test.mjs   with HERALD_BINARY=<path to herald>
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { freePort, sleep, operatorApi, waitFor } from "../support/node_util.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BINARY = process.env.HERALD_BINARY;
const CHROMIUM = process.env.HERALD_CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.HERALD_SCREENSHOTS || path.join(HERE, "screenshots");
const TOKEN = crypto.randomBytes(16).toString("hex");
const OPERATOR = "dana-oncall";
// Bounds of each wait, ms.
const CLUSTER_UP_MS = 20000;
const TRAFFIC_MS = 90000;
const FAILOVER_MS = 20000;
const CHAT_MS = 15000;
// Web chat sign-in links `herald serve --demo` prints: two tabs each for alice and bob.
const DEMO_CHAT_LINKS = 4;

const root = fs.mkdtempSync(path.join(os.tmpdir(), "herald-dashboard-"));
const procs = new Map();
let browser = null;

after(async () => {
  if (browser) await browser.close();
  for (const proc of procs.values()) proc.kill("SIGKILL");
  if (!process.env.HERALD_KEEP) fs.rmSync(root, { recursive: true, force: true });
});


const api = operatorApi(TOKEN);

async function startCluster() {
  const secret = path.join(root, "cluster-secret");
  fs.writeFileSync(secret, crypto.randomBytes(32).toString("base64") + "\n", { mode: 0o600 });
  // APNs at a closed port: every push to an iOS device fails as unavailable and is retried.
  const { privateKey } = crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const keyFile = path.join(root, "apns.p8");
  fs.writeFileSync(keyFile, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  const closed = await freePort();
  const config = path.join(root, "herald.toml");
  fs.writeFileSync(config, `[apns]\nkey_file = "${keyFile}"\nkey_id = "TESTKEY123"\n` +
    `team_id = "TESTTEAM12"\ntopic = "org.herald.demo"\nendpoint = "https://127.0.0.1:${closed}"\n`);
  const nodes = [];
  for (let id = 1; id <= 3; ++id) nodes.push({ id, client: await freePort(), peer: await freePort() });
  const peers = nodes.map((n) => `${n.id}=127.0.0.1:${n.peer}`).join(",");
  for (const n of nodes) {
    const args = ["serve", "--config", config, "--id", String(n.id), "--data", path.join(root, `n${n.id}`),
      "--client", `127.0.0.1:${n.client}`, "--peer", `127.0.0.1:${n.peer}`, "--peers", peers,
      "--cluster-secret-file", secret];
    if (n.id === 1) args.push("--demo");
    const log = fs.openSync(path.join(root, `n${n.id}.log`), "a");
    const proc = spawn(BINARY, args, { env: { ...process.env, HERALD_ADMIN_TOKEN: TOKEN },
      stdio: ["ignore", log, log] });
    procs.set(n.id, proc);
  }
  const leader = await waitFor("a leader", CLUSTER_UP_MS, async () => {
    const views = await Promise.all(nodes.map((n) => api(n.client, "GET", "/v1/cluster")));
    const leaders = new Set(views.map((v) => v.json.leader));
    return leaders.size === 1 && !leaders.has(null) ? [...leaders][0] : null;
  });
  return { nodes, leader };
}

test("the dashboard follows demo traffic, retries a workflow and a leader kill", { timeout: 240000 }, async (t) => {
  assert.ok(BINARY && fs.existsSync(BINARY), "HERALD_BINARY names the herald binary");
  assert.ok(fs.existsSync(CHROMIUM),
    `${CHROMIUM} is missing: install it with bash scripts/install-deps.sh --browser`);
  fs.mkdirSync(SHOTS, { recursive: true });
  const { nodes } = await startCluster();
  const demoPort = nodes[0].client;

  // Beside the demo, a user whose phone never connects: its pushes go to APNs, which is down, so
  // its delivery keeps retrying for as long as the test runs.
  // Each write is retried across a leader change (503, outcome unknown); a repeat that finds its
  // first try applied answers 409 (exists), or dedups (the message's client id).
  const provision = (method, urlPath, body) => waitFor(`${method} ${urlPath}`, CLUSTER_UP_MS, async () => {
    const r = await api(demoPort, method, urlPath, body);
    assert.ok(r.status < 300 || r.status === 409 || r.status >= 500, JSON.stringify(r.json));
    return r.status < 300 || r.status === 409;
  });
  await provision("POST", "/v1/admin/users", { user_id: "ivan" });
  await provision("POST", "/v1/admin/users/ivan/devices", { device_id: "ivan-phone", platform: "ios" });
  await provision("PUT", "/v1/admin/users/ivan/devices/ivan-phone/push",
    { provider: "apns", token: "0badc0de0badc0de" });
  await provision("POST", "/v1/admin/conversations",
    { creator: "ivan", kind: "group", conversation_id: "ops", members: ["alice"] });
  await provision("POST", "/v1/admin/conversations/ops/messages",
    { body: "disk on n2 at 91%", client_message_id: "ops-1" });
  const ivan = "delivery/ops/1/ivan";
  await waitFor("ivan's delivery retrying its push", TRAFFIC_MS, async () => {
    const view = await api(demoPort, "GET", "/v1/overview/workflows?stuck_after_ms=600000&limit=1000");
    return view.json.retrying.some((w) => w.id === ivan);
  });
  await waitFor("demo traffic in team", TRAFFIC_MS, async () =>
    (await api(demoPort, "GET", "/v1/admin/search?q=team%202")).json.results.length > 0);

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1500, height: 1000 } });
  const problems = [];
  page.on("pageerror", (e) => problems.push(e.message));
  await page.goto(`http://127.0.0.1:${demoPort}/dashboard`);

  await t.test("the token is asked for, and never lands in the URL", async () => {
    await page.fill("#token", TOKEN);
    await page.fill("#operator", OPERATOR);
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector("#search-box");
    assert.ok(!page.url().includes(TOKEN));
  });

  const lanesOf = () => page.$$eval("#timeline thead .lane", (xs) => xs.map((x) => x.textContent));

  await t.test("search finds a demo message by id and shows a lane per recipient", async () => {
    await page.fill("#search-box", "team 2");
    await page.press("#search-box", "Enter");
    await page.waitForSelector("#timeline");
    const lanes = await lanesOf();
    const recipients = lanes.filter((l) => l.endsWith(" · delivery"));
    // The demo's team has four members (alice, bob, carol, dave): three recipients per message.
    assert.equal(recipients.length, 3, lanes.join(" | "));
  });

  await t.test("a retried push shows its attempts: node, term, error and next retry", async () => {
    await page.click('nav a[data-view="search"]');
    await page.fill("#search-box", "ops/1");
    await page.press("#search-box", "Enter");
    await page.waitForFunction(() => document.querySelector("#view h2")?.textContent === "Message ops #1");
    await page.waitForSelector('#timeline .attempt[data-outcome="retrying"]');
    const lanes = await lanesOf();
    for (const lane of ["ivan · delivery", "ivan · ivan-phone", "provider · apns"]) {
      assert.ok(lanes.includes(lane), `${lane} in ${lanes.join(" | ")}`);
    }
    const text = await page.$eval('#timeline .attempt[data-outcome="retrying"]', (x) => x.textContent);
    assert.match(text, /attempt \d+/);
    assert.match(text, /node \d+ · term \d+/);
    assert.match(text, /push\.\w+/);
    assert.match(text, /next retry/);
    await page.screenshot({ path: path.join(SHOTS, "timeline.png"), fullPage: true });
  });

  await t.test("retry now is confirmed, replicated and recorded with the operator", async () => {
    await page.goto(`http://127.0.0.1:${demoPort}/dashboard/#/workflows`);
    await page.waitForSelector(`#list-retrying tr[data-workflow="${ivan}"]`);
    const before = (await api(demoPort, "GET", `/v1/workflows/${encodeURIComponent(ivan)}`)).json.history_length;
    // An attempt that is running (its backoff just ended) cannot be retried now: try again.
    await waitFor("an accepted retry_now", 60000, async () => {
      const button = await page.waitForSelector(`#list-retrying tr[data-workflow="${ivan}"] button[data-action="retry_now"]`);
      await page.evaluate(() => { document.getElementById("action-result").textContent = ""; });
      await button.click();
      await page.fill("#confirm-reason", "provider is back");
      await page.click("#confirm-ok");
      const said = await (await page.waitForFunction(() => {
        const r = document.getElementById("action-result").textContent;
        return r.includes(": ") ? r : null;
      })).jsonValue();
      return said.includes("done");
    });
    const history = (await api(demoPort, "GET",
      `/v1/workflows/${encodeURIComponent(ivan)}/history?limit=1000`)).json.events;
    const action = history.find((e) => e.kind === "operator_action" && e.seq > before);
    assert.ok(action, "the history records the action");
    assert.equal(action.name, "retry_now");
    assert.equal(action.payload, `${OPERATOR}: provider is back`);
    await page.goto(`http://127.0.0.1:${demoPort}/dashboard/#/workflow/${encodeURIComponent(ivan)}`);
    await page.waitForSelector('#history tr[data-kind="operator_action"]');
    await page.screenshot({ path: path.join(SHOTS, "workflow.png"), fullPage: true });
  });

  await t.test("the workflows view counts by type and state", async () => {
    await page.goto(`http://127.0.0.1:${demoPort}/dashboard/#/workflows`);
    await page.waitForSelector('#counts .count[data-type="messaging.delivery"]');
    await page.screenshot({ path: path.join(SHOTS, "workflows.png"), fullPage: true });
  });

  await t.test("a web chat link the demo printed signs its tab in", async () => {
    const linkPattern = /demo: web chat as (\w+) \(tab (\d+)\): (\S+)/g;
    const links = await waitFor("the demo's web chat links", TRAFFIC_MS, () => {
      const found = [...fs.readFileSync(path.join(root, "n1.log"), "utf8").matchAll(linkPattern)];
      return found.length >= DEMO_CHAT_LINKS ? found : null;
    });
    assert.equal(links.length, DEMO_CHAT_LINKS, "printed once");
    const [, user, , link] = links.find(([, who, tab]) => who === "bob" && tab === "2");
    const url = new URL(link);
    assert.equal(url.port, String(demoPort), "the link points at the demo's node");
    const device = new URLSearchParams(url.hash.slice(1)).get("device");
    const context = await browser.newContext({ viewport: { width: 1000, height: 640 } });
    const chat = await context.newPage();
    const chatProblems = [];
    chat.on("pageerror", (e) => chatProblems.push(e.message));
    await chat.goto(link);
    await chat.waitForSelector('#state[data-state="online"]', { timeout: CHAT_MS });
    assert.equal(await chat.textContent("#who"), `${user} · ${device}`);
    assert.ok(!chat.url().includes("token="), "the secret is dropped from the address");
    // The demo's team conversation, with its traffic, is in the chat list.
    await chat.waitForSelector('#chat-list li[data-conversation="team"]', { timeout: CHAT_MS });
    await chat.click('#chat-list li[data-conversation="team"]');
    await chat.waitForSelector("#messages li .body", { timeout: CHAT_MS });
    assert.deepEqual(chatProblems, [], "no script errors in the chat");
    await context.close();
  });

  await t.test("the cluster view follows a SIGKILLed leader", async () => {
    const leader = (await api(demoPort, "GET", "/v1/cluster")).json.leader;
    const watcher = nodes.find((n) => n.id !== leader);
    await page.goto(`http://127.0.0.1:${watcher.client}/dashboard/#/cluster`);
    if (watcher.client !== demoPort) {
      // Another node is another origin: the token is asked for again.
      await page.fill("#token", TOKEN);
      await page.fill("#operator", OPERATOR);
      await page.click("#login-form button[type=submit]");
    }
    await page.waitForFunction((id) => document.getElementById("leader")?.textContent === String(id), leader);
    // Every node's own figures (sent between the nodes every second) are shown on this one.
    await page.waitForFunction(() => document.querySelectorAll('#nodes tr[data-figures-stale="no"] td.fsync').length === 3);
    await page.screenshot({ path: path.join(SHOTS, "cluster-before.png"), fullPage: true });
    procs.get(leader).kill("SIGKILL");
    procs.delete(leader);
    await page.waitForFunction((id) => {
      const shown = document.getElementById("leader")?.textContent;
      return shown && shown !== "none" && shown !== String(id);
    }, leader, { timeout: FAILOVER_MS });
    const changes = await page.$$eval("#leader-changes li", (xs) => xs.map((x) => x.textContent));
    assert.ok(changes.length >= 1, "the leader change is listed");
    await page.screenshot({ path: path.join(SHOTS, "cluster.png"), fullPage: true });
  });

  assert.deepEqual(problems, [], "no script errors on the page");
});
