#!/usr/bin/env python3
"""Restart-time benchmark for a single-node Herald cluster on loopback (standard library only).

1. Starts one `herald serve` node (a one-voter cluster) and waits until it leads.
2. Loads it with WRITES writes of 64-byte values to distinct keys r-<n> with wrk
   (bench/wrk/herald-seq-put.lua); wrk is interrupted once GET /v1/cluster shows that the node
   has applied at least WRITES entries more than before the load.
3. Writes one probe key, then SIGKILLs the node and restarts it on its data directory RESTARTS
   times. Each restart is timed from just before the exec to the first successful linearizable
   GET of the probe key (polled every 1 ms on a fresh connection; connection refused, or any
   answer other than 200 with the probe value, means "not yet"; a GET that has no answer
   within --poll-timeout-ms, 20 ms, is abandoned and re-issued, because a read sent before the
   node has elected itself is not answered until its request timeout). The node's log gives the time
   to its "replica ... open: applied A term T, log [F, L]" line and to "leader is now"; their
   timestamps have millisecond resolution.
4. Checks that the log was compacted: L - F + 1 (entries kept in the raft log) must be far
   below WRITES.

Usage: restart.py --binary PATH --work-dir DIR --client-port P --peer-port Q --wrk-script S
Prints one line per restart and a final line:
  RESTART_RESULT writes=N load_s=S restarts=R median_ms=.. max_ms=.. open_median_ms=..
  log_first=F log_last=L applied=A ok=0|1
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (the helper beside this script)

HOST = "127.0.0.1"
PROBE_KEY = "restart-probe"
PROBE_VALUE = (b"probe-" + b"p" * 64)[:64]


log = benchlib.make_logger("restart")


request = benchlib.request


def self_view(port):
    """(leader, applied, commit) of the node, or None."""
    try:
        status, body = request(port, "GET", "/v1/cluster", timeout=2)
    except OSError:
        return None
    if status != 200:
        return None
    v = json.loads(body)
    me = next(n for n in v["nodes"] if n["id"] == v["id"])
    return v.get("leader"), me["applied"], me["commit"]


OPEN_RE = re.compile(r"replica \d+ open: applied (\d+) term (\d+), log \[(\d+), (\d+)\]")


def log_events(log_path, offset):
    """From byte offset on: (wall time of the open line, its match, wall time of 'leader is now',
    wall time of 'serving clients')."""
    opened = match = leader = serving = None
    with open(log_path, "r", errors="replace") as f:
        f.seek(offset)
        for line in f:
            t = benchlib.log_line_wall(line)
            if t is None:
                continue
            om = OPEN_RE.search(line)
            if om and opened is None:
                opened, match = t, om
            elif "leader is now" in line and leader is None:
                leader = t
            elif "serving clients" in line and serving is None:
                serving = t
    return opened, match, leader, serving


class Node:
    def __init__(self, args):
        self.args = args
        self.data_dir = os.path.join(args.work_dir, "n1")
        self.log_path = os.path.join(args.work_dir, "n1.log")
        self.proc = None

    def start(self):
        """Starts the node; returns (monotonic, wall, log offset) taken just before the exec."""
        os.makedirs(self.data_dir, exist_ok=True)
        out = open(self.log_path, "ab")
        offset = out.tell()
        cmd = [self.args.binary, "serve", "--id", "1", "--data", self.data_dir,
               "--client", f"{HOST}:{self.args.client_port}",
               "--peer", f"{HOST}:{self.args.peer_port}",
               "--peers", f"1={HOST}:{self.args.peer_port}"]
        mono, wall = time.monotonic(), time.time()
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        out.close()
        with open(os.path.join(self.args.work_dir, "n1.pid"), "w") as f:
            f.write(f"{self.proc.pid}\n")
        return mono, wall, offset

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None


def wait_leader(port, deadline):
    while time.monotonic() < deadline:
        v = self_view(port)
        if v is not None and v[0] == 1:
            return v
        time.sleep(0.05)
    return None


def load(args, node):
    """Runs wrk until WRITES more entries are applied. Returns (writes applied, seconds, wrk line)."""
    before = wait_leader(args.client_port, time.monotonic() + 60)
    if before is None:
        raise RuntimeError("the node did not become leader within 60 s")
    base = before[1]
    target = base + args.writes
    wrk_out = os.path.join(args.work_dir, "wrk.out")
    cmd = ["wrk", "-t", str(args.wrk_threads), "-c", str(args.wrk_conns),
           "-d", f"{args.load_timeout}s", "--timeout", "10s", "-s", args.wrk_script,
           f"http://{HOST}:{args.client_port}", "--", str(args.wrk_threads)]
    log(f"loading {args.writes} writes: {' '.join(cmd[:9])} ... ({args.wrk_conns} connections)")
    t0 = time.monotonic()
    with open(wrk_out, "wb") as out:
        wrk = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    with open(os.path.join(args.work_dir, "wrk.pid"), "w") as f:
        f.write(f"{wrk.pid}\n")
    applied = base
    last_report = t0
    try:
        while wrk.poll() is None:
            time.sleep(0.5)
            v = self_view(args.client_port)
            if v is not None:
                applied = v[1]
            now = time.monotonic()
            if now - last_report >= 15:
                log(f"  {applied - base} applied after {now - t0:.0f} s "
                    f"({(applied - base) / (now - t0):.0f}/s)")
                last_report = now
            if applied >= target:
                wrk.send_signal(signal.SIGINT)
                break
        wrk.wait(timeout=60)
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    seconds = time.monotonic() - t0
    v = self_view(args.client_port)
    if v is not None:
        applied = v[1]
    with open(wrk_out, "r", errors="replace") as f:
        text = f.read()
    line = next((ln for ln in text.splitlines() if ln.startswith("WRK_RESULT ")), "")
    if applied < target:
        sys.stderr.write(text)
        raise RuntimeError(f"only {applied - base} writes applied after {seconds:.0f} s")
    return applied - base, seconds, line


def time_restart(args, node):
    """Kills and restarts the node once; returns (ms to first GET, open ms, leader ms, match)."""
    node.kill()
    mono, wall, offset = node.start()
    deadline = mono + args.restart_timeout
    served = None
    stuck = 0
    while time.monotonic() < deadline:
        try:
            status, body = request(args.client_port, "GET", "/v1/kv/" + PROBE_KEY,
                                   timeout=args.poll_timeout_ms / 1000.0)
            if status == 200 and body == PROBE_VALUE:
                served = time.monotonic()
                break
        except TimeoutError:
            stuck += 1
        except OSError:
            pass
        time.sleep(0.001)
    if served is None:
        raise RuntimeError(f"the node did not serve the probe key within {args.restart_timeout} s")
    opened, match, leader, _ = log_events(node.log_path, offset)
    open_ms = (opened - wall) * 1000 if opened is not None else float("nan")
    leader_ms = (leader - wall) * 1000 if leader is not None else float("nan")
    return (served - mono) * 1000, open_ms, leader_ms, match, stuck


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--client-port", type=int, required=True)
    ap.add_argument("--peer-port", type=int, required=True)
    ap.add_argument("--wrk-script", required=True)
    ap.add_argument("--writes", type=int, default=1_000_000)
    ap.add_argument("--restarts", type=int, default=5)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--wrk-conns", type=int, default=64)
    ap.add_argument("--load-timeout", type=int, default=1800, help="seconds")
    ap.add_argument("--poll-timeout-ms", type=int, default=20,
                    help="client timeout of one polling GET; a GET that hangs is re-issued")
    ap.add_argument("--restart-timeout", type=float, default=120.0, help="seconds")
    args = ap.parse_args()

    node = Node(args)
    try:
        node.start()
        writes, load_s, wrk_line = load(args, node)
        log(f"loaded {writes} writes in {load_s:.1f} s ({writes / load_s:.0f}/s); {wrk_line}")
        for key in ("r-1", f"r-{args.writes // 2}", f"r-{args.writes - 1}"):
            status, body = request(args.client_port, "GET", "/v1/kv/" + key, timeout=10)
            log(f"  GET {key}: {status}, {len(body)}-byte value")
            if status != 200 or len(body) != 64:
                raise RuntimeError(f"GET {key} after the load answered {status}, {len(body)} bytes")
        status, _ = request(args.client_port, "PUT", "/v1/kv/" + PROBE_KEY, PROBE_VALUE, 10)
        if status != 200:
            raise RuntimeError(f"probe write answered {status}")

        runs = []
        first_match = None
        for r in range(1, args.restarts + 1):
            ms, open_ms, leader_ms, match, stuck = time_restart(args, node)
            if match is None:
                raise RuntimeError("no 'open' line in the node log after a restart")
            first_match = first_match or match
            runs.append((ms, open_ms, leader_ms))
            print(f"restart {r}: serving after {ms:7.1f} ms (open line at {open_ms:5.0f} ms, "
                  f"leader at {leader_ms:5.0f} ms; {stuck} GETs timed out after "
                  f"{args.poll_timeout_ms} ms); {match.group(0)}", flush=True)

        applied = int(first_match.group(1))
        first, last = int(first_match.group(3)), int(first_match.group(4))
        kept = last - first + 1
        compacted = kept < args.writes // 10
        if compacted:
            log(f"log compacted: {kept} entries kept in the raft log, applied {applied}")
        else:
            log(f"log NOT compacted: {kept} entries in the raft log for {writes} writes")
        serve_ms = [r[0] for r in runs]
        open_ms = [r[1] for r in runs]
        leader_ms = [r[2] for r in runs]
        print(f"restart to first linearizable GET over {len(runs)} runs (ms): median "
              f"{statistics.median(serve_ms):.1f}, max {max(serve_ms):.1f}; open line: median "
              f"{statistics.median(open_ms):.0f}; leader line: median "
              f"{statistics.median(leader_ms):.0f}")
        print(f"RESTART_RESULT writes={writes} load_s={load_s:.1f} restarts={len(runs)} "
              f"median_ms={statistics.median(serve_ms):.1f} max_ms={max(serve_ms):.1f} "
              f"open_median_ms={statistics.median(open_ms):.0f} "
              f"leader_median_ms={statistics.median(leader_ms):.0f} "
              f"applied={applied} log_first={first} log_last={last} "
              f"ok={1 if compacted else 0}", flush=True)
        return 0 if compacted else 1
    finally:
        node.kill()


def on_term(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_term)
    sys.exit(main())
