#!/usr/bin/env python3
"""Durable workflow transition benchmark: Herald (1 node, 3 nodes) against hand-made PostgreSQL.

A "durable state transition" is one applied workflow command that changes a workflow's state and
appends to its history. The load (wrk, WRK_CONNS connections) is, per system:

  signal  K pre-started "demo.inbox" workflows; each request signals one at random
          (POST /v1/workflows/<id>/signals/ping). The node answers after the command is committed
          and applied: record (state even/odd, count), history event `signaled` and visibility
          entry are written in one batch.
  start   each request starts a new "demo.inbox" workflow with a unique id (POST /v1/workflows):
          record, history `started`, visibility entry.
  pg      PostgreSQL (fsync on, synchronous_commit on, otherwise default settings), K workflow
          rows; pgbench runs bench/pg/workflow-signal.sql: one transaction per transition
          (SELECT .. FOR UPDATE, UPDATE state/data/updated_at with a visibility index on
          (type, state, updated_at), INSERT a history row). p50/p99 come from pgbench's
          per-transaction log.

Each system runs alone, one after the other. After each Herald signal run the counts of all K
workflows are read back: their sum must be at least the number of acknowledged signals (and at
most that plus the requests in flight when wrk stopped). After a start run the started workflows
are counted through the visibility list. PostgreSQL's history row count is checked likewise.

Usage: workflow.py --binary PATH --work-dir DIR [--systems "herald1 herald3 pg"] ...
Prints one line per run and a final line:
  WORKFLOW_RESULT conns=C herald1_signal_tps=.. herald1_signal_p50_ms=.. ... pg_tps=.. ok=0|1
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HOST = "127.0.0.1"
SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))

sys.path.insert(0, SCRIPT_DIR)
import benchlib  # noqa: E402  (the helper beside this script)


def log(msg):
    print(f"[workflow] {msg}", file=sys.stderr, flush=True)


class Conn:
    """One keep-alive HTTP connection, reopened after an error."""

    def __init__(self, port, timeout=5.0):
        self.port, self.timeout, self.c = port, timeout, None

    def request(self, method, path, body=None):
        for attempt in range(2):
            if self.c is None:
                self.c = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
            try:
                self.c.request(method, path, body=body, headers=benchlib.AUTH)
                r = self.c.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                self.c.close()
                self.c = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")


def request(port, method, path, body=None, timeout=2.0):
    return Conn(port, timeout).request(method, path, body)


# --- Herald ---------------------------------------------------------------------------------------

class HeraldCluster:
    def __init__(self, args, size):
        self.args, self.size, self.procs = args, size, []
        self.client_ports = [args.base_port + i for i in range(size)]
        self.peer_ports = [args.base_port + 10 + i for i in range(size)]

    def start(self):
        peers = ",".join(f"{i + 1}={HOST}:{p}" for i, p in enumerate(self.peer_ports))
        secret = benchlib.write_cluster_secret(self.args.work_dir)
        for i in range(self.size):
            data = os.path.join(self.args.work_dir, f"herald{self.size}-n{i + 1}")
            os.makedirs(data, exist_ok=True)
            out = open(os.path.join(self.args.work_dir, f"herald{self.size}-n{i + 1}.log"), "ab")
            p = subprocess.Popen(
                [self.args.binary, "serve", "--id", str(i + 1), "--data", data,
                 "--client", f"{HOST}:{self.client_ports[i]}",
                 "--peer", f"{HOST}:{self.peer_ports[i]}", "--peers", peers,
                 "--cluster-secret-file", secret],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            out.close()
            with open(os.path.join(self.args.work_dir, f"herald{self.size}-n{i + 1}.pid"), "w") as f:
                f.write(f"{p.pid}\n")
            self.procs.append(p)

    def leader_port(self, timeout_s=60):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for port in self.client_ports:
                try:
                    status, body = request(port, "GET", "/v1/cluster")
                except OSError:
                    continue
                if status == 200:
                    v = json.loads(body)
                    if v.get("leader") not in (None, 0) and v.get("leader") == v.get("id"):
                        return port
            time.sleep(0.2)
        raise RuntimeError(f"no Herald leader within {timeout_s} s")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


def prestart_inboxes(port, k, prefix):
    def work(chunk):
        c = Conn(port, timeout=10)
        for n in chunk:
            body = json.dumps({"type": "demo.inbox", "id": f"{prefix}{n}", "input": ""})
            status, resp = c.request("POST", "/v1/workflows", body)
            if status != 200:
                raise RuntimeError(f"start {prefix}{n}: HTTP {status} {resp[:200]!r}")
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(work, [range(i, k, 16) for i in range(16)]))


def inbox_count_sum(port, k, prefix):
    def work(chunk):
        c, total = Conn(port, timeout=10), 0
        for n in chunk:
            status, body = c.request("GET", f"/v1/workflows/{prefix}{n}")
            if status != 200:
                raise RuntimeError(f"GET {prefix}{n}: HTTP {status}")
            r = json.loads(body)
            count = int(r["data"])
            expected_state = "even" if count % 2 == 0 else "odd"
            if r["state"] != expected_state or r["history_length"] < count + 1:
                raise RuntimeError(f"{prefix}{n}: state {r['state']} history_length "
                                   f"{r['history_length']} does not match count {count}")
            total += count
        return total
    with ThreadPoolExecutor(8) as pool:
        return sum(pool.map(work, [range(i, k, 8) for i in range(8)]))


def count_listed(port, type_name, state=None, prefix=""):
    c, token, n = Conn(port, timeout=30), "", 0
    while True:
        path = f"/v1/workflows?type={type_name}&limit=1000"
        if state:
            path += f"&state={state}"
        if token:
            path += f"&page_token={token}"
        status, body = c.request("GET", path)
        if status != 200:
            raise RuntimeError(f"list: HTTP {status} {body[:200]!r}")
        page = json.loads(body)
        n += sum(1 for e in page["workflows"] if e["id"].startswith(prefix))
        token = page.get("next_page_token") or ""
        if not page["workflows"] or not token:
            return n


WRK_RE = re.compile(r"^WRK_RESULT (.*)$", re.M)


def run_wrk(args, port, script, script_args, label):
    out_path = os.path.join(args.work_dir, f"wrk-{label}.out")
    cmd = ["wrk", "-t", str(args.threads), "-c", str(args.conns), "-d", f"{args.duration}s",
           "--timeout", "10s", "-s", os.path.join(SCRIPT_DIR, "wrk", script),
           f"http://{HOST}:{port}", "--"] + script_args
    with open(out_path, "wb") as out:
        subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=True,
                       timeout=args.duration + 60)
    text = open(out_path).read()
    m = WRK_RE.search(text)
    if not m:
        raise RuntimeError(f"wrk printed no WRK_RESULT line:\n{text}")
    fields = dict(kv.split("=", 1) for kv in m.group(1).split())
    return {k: float(v) for k, v in fields.items()}


def bench_herald(args, size, results):
    name = f"herald{size}"
    cluster = HeraldCluster(args, size)
    cluster.start()
    try:
        port = cluster.leader_port()
        log(f"{name}: leader on port {port}; starting {args.k} demo.inbox workflows")
        prestart_inboxes(port, args.k, "inbox-")
        if "signal" in args.modes:
            r = run_wrk(args, port, "herald-wf-signal.lua", [str(args.k), "inbox-"],
                        f"{name}-signal")
            acked = int(r["requests"] - r["non2xx"] - r["socket_errors"])
            total = inbox_count_sum(port, args.k, "inbox-")
            ok = acked <= total <= acked + args.conns and r["non2xx"] + r["socket_errors"] == 0
            log(f"{name} signal: {r['rps']:.1f} transitions/s, p50 {r['p50_ms']:.3f} ms, "
                f"p99 {r['p99_ms']:.3f} ms, {int(r['requests'])} requests, "
                f"{int(r['non2xx'])} non-2xx, {int(r['socket_errors'])} socket errors; "
                f"signal counts sum to {total} (acknowledged {acked}): {'ok' if ok else 'MISMATCH'}")
            results[f"{name}_signal"] = (r, ok)
        if "start" in args.modes:
            r = run_wrk(args, port, "herald-wf-start.lua",
                        [str(args.threads), "demo.inbox", "", "s-", "0"], f"{name}-start")
            acked = int(r["requests"] - r["non2xx"] - r["socket_errors"])
            started = count_listed(port, "demo.inbox", prefix="s-")
            ok = acked <= started <= acked + args.conns and r["non2xx"] + r["socket_errors"] == 0
            log(f"{name} start: {r['rps']:.1f} transitions/s, p50 {r['p50_ms']:.3f} ms, "
                f"p99 {r['p99_ms']:.3f} ms, {int(r['requests'])} requests, "
                f"{int(r['non2xx'])} non-2xx, {int(r['socket_errors'])} socket errors; "
                f"{started} workflows listed (acknowledged {acked}): {'ok' if ok else 'MISMATCH'}")
            results[f"{name}_start"] = (r, ok)
    finally:
        cluster.stop()


# --- PostgreSQL -----------------------------------------------------------------------------------

def pg_bin(name):
    for d in ("/usr/lib/postgresql/15/bin",):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    p = shutil.which(name)
    if not p:
        raise RuntimeError(f"{name} missing: bash scripts/install-deps.sh --bench")
    return p


def as_pg_user(cmd):
    """PostgreSQL refuses to run as root: run the server commands as the postgres user then."""
    return (["runuser", "-u", "postgres", "--"] + cmd) if os.geteuid() == 0 else cmd


def bench_pg(args, results):
    pgdir = os.path.join(args.work_dir, "pg")
    os.makedirs(pgdir)
    if os.geteuid() == 0:
        shutil.chown(args.work_dir, user="postgres")
        shutil.chown(pgdir, user="postgres")
    data = os.path.join(pgdir, "data")
    subprocess.run(as_pg_user([pg_bin("initdb"), "-D", data, "-U", "bench", "--auth=trust",
                               "--no-instructions", "-E", "UTF8"]),
                   check=True, stdout=subprocess.DEVNULL, timeout=120)
    port = args.pg_port
    opts = (f"-c listen_addresses={HOST} -p {port} -k {pgdir} -c fsync=on "
            f"-c synchronous_commit=on -c max_connections={args.conns + 20}")
    subprocess.run(as_pg_user([pg_bin("pg_ctl"), "-D", data, "-l", os.path.join(pgdir, "pg.log"),
                               "-o", opts, "-w", "-t", "60", "start"]),
                   check=True, stdout=subprocess.DEVNULL, timeout=90)
    with open(os.path.join(args.work_dir, "pg.started"), "w") as f:
        f.write(data + "\n")
    try:
        psql = [pg_bin("psql"), "-h", HOST, "-p", str(port), "-U", "bench", "-d", "postgres",
                "-v", "ON_ERROR_STOP=1", "-q"]
        settings = subprocess.run(
            psql + ["-At", "-c", "SELECT name || '=' || setting FROM pg_settings WHERE name IN "
                    "('fsync','synchronous_commit','wal_sync_method','full_page_writes',"
                    "'shared_buffers','server_version') ORDER BY name"],
            check=True, capture_output=True, text=True, timeout=30).stdout.split()
        log(f"pg: {' '.join(settings)}")
        subprocess.run(psql + ["-v", f"k={args.k}", "-f", os.path.join(SCRIPT_DIR, "pg", "schema.sql")],
                       check=True, timeout=120)
        logprefix = os.path.join(pgdir, "pgbench")
        out = subprocess.run(
            [pg_bin("pgbench"), "-h", HOST, "-p", str(port), "-U", "bench", "-n",
             "-c", str(args.conns), "-j", str(args.threads), "-T", str(args.duration),
             "-M", "prepared", "-D", f"k={args.k}", "-l", f"--log-prefix={logprefix}",
             "-f", os.path.join(SCRIPT_DIR, "pg", "workflow-signal.sql"), "postgres"],
            check=True, capture_output=True, text=True, timeout=args.duration + 120, cwd=pgdir)
        with open(os.path.join(args.work_dir, "pgbench.out"), "w") as f:
            f.write(out.stdout + out.stderr)
        m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out.stdout)
        failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
        # Per-transaction log: client_id transaction_no time_us script_no epoch_s epoch_us.
        lat = []
        for fn in os.listdir(pgdir):
            if fn.startswith("pgbench."):
                with open(os.path.join(pgdir, fn)) as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) >= 3 and parts[2].isdigit():
                            lat.append(int(parts[2]))
        lat.sort()
        def pct(p):
            return lat[max(0, -(-len(lat) * p // 100) - 1)] / 1000.0
        rows = int(subprocess.run(psql + ["-At", "-c", "SELECT count(*) FROM history"],
                                  check=True, capture_output=True, text=True,
                                  timeout=60).stdout.strip())
        transitions = rows - args.k
        r = {"rps": float(m.group(1)), "p50_ms": pct(50), "p99_ms": pct(99),
             "requests": float(len(lat)), "non2xx": float(failed.group(1) if failed else 0),
             "socket_errors": 0.0}
        ok = transitions == len(lat) and r["non2xx"] == 0
        log(f"pg: {r['rps']:.1f} transitions/s, p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms, "
            f"{len(lat)} transactions logged, {transitions} history rows added: "
            f"{'ok' if ok else 'MISMATCH'}")
        results["pg"] = (r, ok)
    finally:
        subprocess.run(as_pg_user([pg_bin("pg_ctl"), "-D", data, "-m", "fast", "-w", "-t", "60",
                                   "stop"]), stdout=subprocess.DEVNULL, timeout=90)
        os.unlink(os.path.join(args.work_dir, "pg.started"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--systems", default="herald1 herald3 pg")
    ap.add_argument("--modes", default="signal start")
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--base-port", type=int, default=27791)
    ap.add_argument("--pg-port", type=int, default=27432)
    args = ap.parse_args()
    args.modes = args.modes.split()

    results = {}
    for system in args.systems.split():
        log(f"{system}: load average {' '.join(open('/proc/loadavg').read().split()[:3])}")
        if system == "herald1":
            bench_herald(args, 1, results)
        elif system == "herald3":
            bench_herald(args, 3, results)
        elif system == "pg":
            bench_pg(args, results)
        else:
            raise SystemExit(f"unknown system {system}")

    print(f"\n{'run':<16} {'transitions/s':>14} {'p50 ms':>9} {'p99 ms':>9} {'x pg':>7}  check")
    base = results.get("pg", (None, None))[0]
    fields = [f"conns={args.conns}", f"k={args.k}", f"duration_s={args.duration}"]
    all_ok = True
    for key, (r, ok) in results.items():
        ratio = f"{r['rps'] / base['rps']:.1f}" if base and key != "pg" else "-"
        print(f"{key:<16} {r['rps']:>14.1f} {r['p50_ms']:>9.3f} {r['p99_ms']:>9.3f} {ratio:>7}  "
              f"{'ok' if ok else 'FAILED'}")
        fields += [f"{key}_tps={r['rps']:.1f}", f"{key}_p50_ms={r['p50_ms']:.3f}",
                   f"{key}_p99_ms={r['p99_ms']:.3f}"]
        if base and key != "pg":
            fields.append(f"{key}_x_pg={r['rps'] / base['rps']:.2f}")
        all_ok = all_ok and ok
    print("WORKFLOW_RESULT " + " ".join(fields) + f" ok={int(all_ok)}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
