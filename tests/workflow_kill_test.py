"""A node with thousands of in-flight workflows is SIGKILLed and restarted: every workflow must
finish, with every step's effect present exactly once and no step applied twice.

Usage: workflow_kill_test.py BINARY [--workflows N] [--steps S]
"""

import argparse
import concurrent.futures
import http.client
import json
import sys
import time
import urllib.parse

from herald_cluster import AUTH, Cluster

THREADS = 16
SETTLE_TIMEOUT_S = 180


class Client:
    """One keep-alive connection per thread."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def call(self, method, path, body=None):
        for _ in range(50):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                self.conn.request(method, path, body=body, headers=AUTH)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.status in (503, 504):
                    time.sleep(0.05)
                    continue
                return resp.status, data
            except OSError:
                self.conn = None
                time.sleep(0.05)
        raise RuntimeError(f"{method} {path}: no answer")


def count_state(client, state):
    total, token = 0, ""
    while True:
        q = f"type=demo.pipeline&state={state}&limit=1000"
        if token:
            q += "&page_token=" + urllib.parse.quote(token, safe="")
        status, body = client.call("GET", "/v1/workflows?" + q)
        if status != 200:
            raise RuntimeError(f"list: {status} {body[:200]!r}")
        page = json.loads(body)
        total += len(page["workflows"])
        token = page["next_page_token"]
        if not token:
            return total


def start_all(port, ids, steps):
    def start(chunk):
        c = Client(port)
        for wid in chunk:
            body = json.dumps({"type": "demo.pipeline", "id": wid, "input": str(steps)})
            status, data = c.call("POST", "/v1/workflows", body)
            if status != 200:
                raise RuntimeError(f"start {wid}: {status} {data[:200]!r}")
    chunks = [ids[i::THREADS] for i in range(THREADS)]
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(start, chunks))


def verify_one(client, wid, steps):
    """Returns a problem description, or None."""
    status, body = client.call("GET", "/v1/workflows/" + wid)
    if status != 200:
        return f"{wid}: GET {status}"
    record = json.loads(body)
    if record["status"] != "COMPLETED" or record["result"] != str(steps):
        return f"{wid}: {record['status']} result={record['result']!r}"
    status, body = client.call("GET", f"/v1/workflows/{wid}/history?limit=1000")
    events = json.loads(body)["events"]
    if len(events) != record["history_length"]:
        return f"{wid}: history has {len(events)} events, record says {record['history_length']}"
    completed = [e["activity_id"] for e in events if e["kind"] == "activity_completed"]
    if sorted(completed) != list(range(1, steps + 1)):
        return f"{wid}: activities completed {completed}"
    for step in range(1, steps + 1):
        key = urllib.parse.quote(f"effects/{wid}/1/{step}", safe="")
        status, body = client.call("GET", "/v1/kv/" + key)
        if status != 200 or body.decode() != str(step):
            return f"{wid}: effect of step {step}: {status} {body[:60]!r}"
    return None


def verify_all(port, ids, steps):
    def check(chunk):
        c = Client(port)
        return [p for p in (verify_one(c, wid, steps) for wid in chunk) if p]
    chunks = [ids[i::THREADS] for i in range(THREADS)]
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        return [p for problems in pool.map(check, chunks) for p in problems]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--workflows", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    cluster = Cluster(args.binary, size=1)
    cluster.start()
    node = cluster.node(1)
    ok = False
    try:
        cluster.leader(timeout=15)
        ids = [f"wk-{i}" for i in range(args.workflows)]
        start_all(node.client_port, ids, args.steps)
        client = Client(node.client_port)
        in_flight = args.workflows - count_state(client, "completed")
        node.kill()
        print(f"SIGKILL with {in_flight} of {args.workflows} workflows in flight")
        node.start()
        client = Client(node.client_port)
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        done = 0
        while time.monotonic() < deadline:
            done = count_state(client, "completed")
            if done == args.workflows:
                break
            time.sleep(0.5)
        print(f"completed after restart: {done} of {args.workflows}")
        problems = verify_all(node.client_port, ids, args.steps) if done == args.workflows else []
        for p in problems[:10]:
            print("  problem:", p)
        ok = in_flight > 0 and done == args.workflows and not problems
        if in_flight == 0:
            print("  no workflow was in flight at the kill: the test proved nothing")
    finally:
        cluster.stop(keep=not ok)
        if not ok:
            print("logs kept in", cluster.root)
    print("workflow_kill: 1 passed, 0 failed" if ok else "workflow_kill: 0 passed, 1 failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
