// Tests of the JavaScript client that fail fast. Each test runs against a deadline of its own and
// releases what it opened (clients, event waits, child processes, a stopped node) in a finally
// block, whether it passed, failed or ran out of time.
//
// Why: node:test waits for a test's promise, and the test process for an empty event loop. A check
// that fails before a test closes its clients leaves them reconnecting and pinging for ever, and a
// wait for an event that never comes holds the test; either way the process lived on until
// ctest's timeout and said nothing about what it waited for.
//
// Usage:
//   boundedTest("WhatItPins", kTestMs, async (scope) => {
//     const client = scope.own(new HeraldClient(...));   // closed when the test ends
//     scope.defer(() => ...);                             // any other cleanup, last first
//   });
import { test } from "node:test";

// Time left to the cleanup of a test past its own deadline before node:test declares the test
// timed out by itself (a cleanup that hangs; a restarted node may take kNodeUpMs, 20 s), ms.
export const kCleanupMs = 30_000;

// What one test opened, released when it ends.
export class Scope {
  constructor() {
    this.cleanups = [];
  }

  // Runs `cleanup` (which may return a promise) when the test ends, the last deferred first.
  defer(cleanup) {
    this.cleanups.push(cleanup);
  }

  // Returns `client` (a HeraldClient), closed when the test ends.
  own(client) {
    this.defer(() => client.close());
    return client;
  }

  // Runs every cleanup, each even when an earlier one failed; resolves with their errors.
  async release() {
    const errors = [];
    for (const cleanup of this.cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch (error) {
        errors.push(error);
      }
    }
    return errors;
  }
}

// Registers a node:test test `name` whose `body(scope)` must settle within `timeoutMs`. Past it the
// test fails with a message saying so, and the scope is released all the same; a check that fails
// in the body fails the test with the check's own message. A cleanup that fails fails a test that
// had passed.
export function boundedTest(name, timeoutMs, body) {
  test(name, { timeout: timeoutMs + kCleanupMs }, async () => {
    const scope = new Scope();
    let timer = null;
    const deadline = new Promise((resolve, reject) => {
      const overdue = new Error(`"${name}" did not finish within ${timeoutMs} ms: an awaited ` +
        "answer, event or process never came (what the test opened is released now)");
      timer = setTimeout(() => reject(overdue), timeoutMs);
    });
    let passed = false;
    try {
      await Promise.race([body(scope), deadline]);
      passed = true;
    } finally {
      clearTimeout(timer);
      const errors = await scope.release();
      // A failure of the body is the one to report; the cleanup's errors only fail a pass.
      if (passed && errors.length) {
        throw new AggregateError(errors, `the cleanup of "${name}" failed`);
      }
    }
  });
}
