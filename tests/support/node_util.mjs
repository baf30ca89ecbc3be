// Helpers shared by Herald's JavaScript tests (tests/browser/, clients/js/test/): ports, waits and
// the operator API of a node on the loopback.
import net from "node:net";

// A TCP port free on 127.0.0.1 right now (the caller binds it soon after).
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls `probe` every `intervalMs` until it returns a truthy value (returned) or `timeoutMs` has
// passed (throws, naming `what` and the probe's last error).
export async function waitFor(what, timeoutMs, probe, intervalMs = 250) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    await sleep(intervalMs);
  }
  throw new Error(`timed out waiting for ${what}${last ? ": " + last.message : ""}`);
}

// A caller of the operator HTTP API with `token`: api(port, method, path, body?) answers
// {status, json} within 3 s.
export function operatorApi(token) {
  return async function api(port, method, urlPath, body) {
    const response = await fetch(`http://127.0.0.1:${port}${urlPath}`, {
      method, headers: { Authorization: `Bearer ${token}` },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(3000),
    });
    const text = await response.text();
    return { status: response.status, json: text ? JSON.parse(text) : null };
  };
}
