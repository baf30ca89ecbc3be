// The "build a chat in ten minutes" walkthrough of docs/js-client.md: its code, in
// clients/js/examples/chat-walkthrough.mjs, run top to bottom as its own process against a real
// node whose users and devices were made as step 1 makes them; and the doc's code checked to be
// the file's, so that what the doc shows is what runs here.
//
// Usage: HERALD_BINARY=<path to herald> node --test test/walkthrough_test.mjs   (from clients/js)
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { boundedTest } from "./bounded_test.mjs";
import { HeraldNode, kNodeUpMs } from "./herald_node.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const EXAMPLE = path.join(HERE, "..", "examples", "chat-walkthrough.mjs");
const DOC = path.join(HERE, "..", "..", "..", "docs", "js-client.md");
// How long the walkthrough may run, ms: it needs well under a second on a quiet machine.
const RUN_MS = 30_000;
// Bound of each test, ms: the node's start, its users, and the walkthrough's run.
const kTestMs = kNodeUpMs + RUN_MS + 10_000;

const root = fs.mkdtempSync(path.join(os.tmpdir(), `herald-walkthrough-${process.pid}-`));
let node = null;

after(() => {
  if (node) node.kill();
  if (!process.env.HERALD_KEEP) fs.rmSync(root, { recursive: true, force: true });
});

// Runs the example with `env` in `cwd`; resolves with {code, stdout, stderr}. The process is
// killed when the test of `scope` ends.
function runExample(scope, cwd, env) {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [EXAMPLE],
      { cwd, env: { ...process.env, ...env }, timeout: RUN_MS },
      (error, stdout, stderr) => resolve({ code: error ? (error.code ?? error.signal) : 0, stdout,
        stderr }));
    scope.defer(() => { if (child.exitCode === null && child.signalCode === null) child.kill(); });
  });
}

boundedTest("the walkthrough runs to its end against a real node", kTestMs, async (scope) => {
  node = new HeraldNode({ binary: process.env.HERALD_BINARY, root });
  await node.start();
  const { "alice-laptop": aliceToken } = await node.provision("alice", ["alice-laptop"]);
  const { "bob-laptop": bobToken } = await node.provision("bob", ["bob-laptop"]);
  const cwd = fs.mkdtempSync(path.join(root, "app-"));
  const run = await runExample(scope, cwd,
    { HERALD_URL: node.wsUrl, ALICE_TOKEN: aliceToken, BOB_TOKEN: bobToken });
  const told = `exit ${run.code}\n--- stdout\n${run.stdout}--- stderr\n${run.stderr}`;
  assert.equal(run.code, 0, told);
  const lines = run.stdout.split("\n");
  for (const line of ["alice sent #1", "bob got #1 from alice: Lunch at noon?", "bob read up to #1",
    "bob has 1 chat(s), 0 unread"]) {
    assert.ok(lines.includes(line), `the walkthrough prints "${line}"\n${told}`);
  }
  // The clients' storage: each device's cursor, and Alice's outbox empty.
  const alice = JSON.parse(fs.readFileSync(path.join(cwd, "alice-laptop.json"), "utf8"));
  const bob = JSON.parse(fs.readFileSync(path.join(cwd, "bob-laptop.json"), "utf8"));
  assert.deepEqual(JSON.parse(alice["herald:alice:alice-laptop:outbox"]), []);
  assert.ok(Number(bob["herald:bob:bob-laptop:cursor"]) > 0);
  // The message is stored once, as the node tells an operator.
  const stored = await node.admin("GET", "/v1/admin/conversations/direct:alice:bob");
  assert.equal(stored.conversation.last_seq, 1);
});

// The fenced `js` blocks of the doc's walkthrough section.
function walkthroughBlocks() {
  const doc = fs.readFileSync(DOC, "utf8");
  const start = doc.indexOf("## Build a chat in ten minutes");
  assert.ok(start >= 0, "docs/js-client.md has the walkthrough");
  const end = doc.indexOf("\n## ", start + 1);
  const section = doc.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
}

// Synchronous (files only): it cannot wait on anything, so it needs no bound.
test("the doc's walkthrough code is the example file's, in its order", () => {
  const source = fs.readFileSync(EXAMPLE, "utf8");
  const blocks = walkthroughBlocks();
  assert.ok(blocks.length >= 4, `the walkthrough shows its steps (${blocks.length} js blocks)`);
  let from = 0;
  for (const block of blocks) {
    const at = source.indexOf(block, from);
    assert.ok(at >= 0, `this block of the doc is in ${path.basename(EXAMPLE)} after the one before:\n${block}`);
    from = at + block.length;
  }
});
