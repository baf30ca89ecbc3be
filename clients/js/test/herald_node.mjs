// One real `herald serve` for the JavaScript client's tests (herald_integration_test.mjs,
// walkthrough_test.mjs): ephemeral loopback ports, a data directory under the caller's temporary
// root, an admin token of its own, and optionally an HS256 sign-in secret ([signin]). Users and
// devices are made through the admin API, as an operator would.
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { freePort, waitFor } from "../../../tests/support/node_util.mjs";

// How long a started node may take to answer /v1/health, ms.
export const kNodeUpMs = 20_000;
// How long a node may take to exit after SIGTERM before it is killed, ms.
export const kNodeStopMs = 20_000;
// Bound of one admin API call, ms.
const kAdminCallMs = 5_000;

export class HeraldNode {
  // binary: the herald executable; root: an existing directory the node may write under;
  // signinSecret: a hex string enabling sign-in tokens (HS256, audience "herald"), or undefined.
  constructor({ binary, root, signinSecret }) {
    if (!binary || !fs.existsSync(binary)) {
      throw new Error(`HERALD_BINARY names the herald binary (got ${binary})`);
    }
    this.binary = binary;
    this.root = root;
    this.signinSecret = signinSecret;
    this.adminToken = crypto.randomBytes(16).toString("hex");
    this.proc = null;
    this.client = null;  // the client port
    this.peer = null;
  }

  get wsUrl() { return `ws://127.0.0.1:${this.client}/v1/ws`; }

  // Whether the node's process was started and has not exited (by itself or by a signal).
  get running() {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  // Starts the node (on the ports of its previous run, if any: clients come back to the same
  // address) and resolves once it serves /v1/health.
  async start() {
    this.client ??= await freePort();
    this.peer ??= await freePort();
    const args = ["serve", "--data", path.join(this.root, "data"),
      "--client", `127.0.0.1:${this.client}`, "--peer", `127.0.0.1:${this.peer}`];
    if (this.signinSecret) {
      const config = path.join(this.root, "herald.toml");
      const secretFile = path.join(this.root, "signin-secret");
      fs.writeFileSync(secretFile, this.signinSecret, { mode: 0o600 });
      fs.writeFileSync(config, `[signin]\nhs256_secret_file = "${secretFile}"\naudience = "herald"\n`);
      args.push("--config", config);
    }
    const log = fs.openSync(path.join(this.root, "node.log"), "a");
    this.proc = spawn(this.binary, args, {
      env: { ...process.env, HERALD_ADMIN_TOKEN: this.adminToken }, stdio: ["ignore", log, log] });
    fs.closeSync(log);
    await waitFor("the node to serve", kNodeUpMs, async () => {
      if (!this.running) {
        throw new Error(`herald exited with ${this.proc.exitCode ?? this.proc.signalCode}`);
      }
      const r = await fetch(`http://127.0.0.1:${this.client}/v1/health`);
      return r.status === 200;
    }, 50);
  }

  // Stops the node with SIGTERM and resolves once it exited. One still running kNodeStopMs later
  // is killed, and the stop rejects.
  async stop() {
    if (!this.running) return;
    const proc = this.proc;
    let timer = null;
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    const overdue = new Promise((resolve) => { timer = setTimeout(resolve, kNodeStopMs, "overdue"); });
    proc.kill("SIGTERM");
    const outcome = await Promise.race([exited, overdue]);
    clearTimeout(timer);
    if (outcome === "overdue") {
      proc.kill("SIGKILL");
      await exited;
      throw new Error(`herald did not exit within ${kNodeStopMs} ms of SIGTERM`);
    }
  }

  // Kills the node at once, if it runs.
  kill() {
    if (this.running) this.proc.kill("SIGKILL");
  }

  // Calls the admin API; resolves with the answer's JSON (null when empty), throws on a status
  // of 300 or more.
  async admin(method, urlPath, body) {
    const response = await fetch(`http://127.0.0.1:${this.client}${urlPath}`, {
      method,
      headers: { Authorization: `Bearer ${this.adminToken}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(kAdminCallMs),
    });
    const text = await response.text();
    if (response.status >= 300) throw new Error(`${method} ${urlPath}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  // Creates `user` and its web `devices`; resolves with {device id: device secret}.
  async provision(user, devices) {
    await this.admin("POST", "/v1/admin/users", { user_id: user, display_name: user });
    const secrets = {};
    for (const device of devices) {
      secrets[device] = (await this.admin("POST", `/v1/admin/users/${user}/devices`,
        { device_id: device, platform: "web" })).token;
    }
    return secrets;
  }
}
