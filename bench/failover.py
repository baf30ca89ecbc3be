#!/usr/bin/env python3
"""Leader-failover benchmark for a 3-node Herald cluster on loopback (standard library only).

Starts three `herald serve` nodes, keeps a steady write load on them (WRITERS threads, one
keep-alive connection per thread and node, unique keys, each write sent to a random live node),
and KILLS times: waits INTERVAL seconds, finds the leader, SIGKILLs it, measures the
unavailability window, restarts the killed node on its data directory and waits until it has
caught up. At the end every acknowledged write is read back with a linearizable GET.

Unavailability of one kill = time from the kill until the acknowledgement (200) of the first
write attempt that was issued after the kill. A write attempt that fails (connection error,
timeout after CLIENT_TIMEOUT_MS, non-200 answer) is retried, with the same key and value, on a
different live node.

Besides the client-side window, the node logs give the cluster-side breakdown per kill:
  election_ms  kill -> the new leader logs "leader is now N (leader)"
  first_ack_ms kill -> first acknowledgement of any write after the new leader was elected
(log timestamps have millisecond resolution and are wall-clock; the kill instant is recorded on
both the monotonic and the wall clock).

Usage: failover.py --binary PATH --work-dir DIR [options]; see --help. Normally run through
bench/failover.sh. Prints per-kill lines and one final line:
  FAILOVER_RESULT kills=K unavail_p50_ms=.. unavail_p99_ms=.. unavail_max_ms=.. election_p50_ms=..
  election_max_ms=.. acked_writes=N lost=L mismatched=M ok=0|1
Exit status: 0 if every acknowledged write reads back with its value, 1 otherwise (or on error).
"""

import argparse
import http.client
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (the helper beside this script)

HOST = "127.0.0.1"


log = benchlib.make_logger("failover")


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


request = benchlib.request


def cluster_view(port, timeout=1.0):
    """GET /v1/cluster of one node as a dict, or None."""
    try:
        status, body = request(port, "GET", "/v1/cluster", timeout=timeout)
    except OSError:
        return None
    if status != 200:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


class Node:
    def __init__(self, node_id, binary, data_dir, client_port, peer_port, peers, log_path, extra):
        self.id = node_id
        self.binary = binary
        self.data_dir = data_dir
        self.client_port = client_port
        self.peer_port = peer_port
        self.peers = peers
        self.log_path = log_path
        self.extra = extra
        self.proc = None

    def start(self):
        os.makedirs(self.data_dir, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "serve", "--id", str(self.id), "--data", self.data_dir,
                 "--client", f"{HOST}:{self.client_port}", "--peer", f"{HOST}:{self.peer_port}",
                 "--peers", self.peers] + self.extra,
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        # The pid file lets the calling script clean up even if this helper dies.
        with open(self.log_path[:-len(".log")] + ".pid", "w") as f:
            f.write(f"{self.proc.pid}\n")

    def kill(self):
        """SIGKILLs the node; returns (monotonic, wall) instants taken just before the signal."""
        mono, wall = time.monotonic(), time.time()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None
        return mono, wall

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None


class Writers:
    """WRITERS threads writing unique keys to random live nodes until stopped."""

    def __init__(self, nodes, count, client_timeout_s, retry_sleep_s, value_bytes):
        self.nodes = {n.id: n for n in nodes}
        self.live = set(self.nodes)          # node ids writers may choose; replaced, not mutated
        self.count = count
        self.timeout = client_timeout_s
        self.retry_sleep = retry_sleep_s
        self.value_bytes = value_bytes
        self.stopping = threading.Event()
        self.threads = []
        # Per writer: list of (issue_mono, ack_mono) of acknowledged attempts and list of
        # (key, value) of acknowledged writes. Appended by the owning thread only.
        self.acks = [[] for _ in range(count)]
        self.acked = [[] for _ in range(count)]
        self.failed_attempts = [0] * count
        self.failures = [[] for _ in range(count)]   # (issue_mono, end_mono, kind)

    def set_live(self, ids):
        self.live = frozenset(ids)

    def start(self):
        for w in range(self.count):
            t = threading.Thread(target=self._run, args=(w,), daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=self.timeout + 5)

    def _run(self, w):
        rng = random.Random(w * 7919 + int(time.time()))
        conns = {}
        seq = 0
        pad = "x" * self.value_bytes
        while not self.stopping.is_set():
            key = f"fo-{w}-{seq}"
            value = (f"{w}:{seq}:" + pad)[: self.value_bytes].encode()
            seq += 1
            path = "/v1/kv/" + key
            last = None
            while not self.stopping.is_set():
                live = list(self.live)
                if last is not None and len(live) > 1 and last in live:
                    live.remove(last)        # retry on a different node
                node_id = rng.choice(live)
                conn = conns.get(node_id)
                if conn is None:
                    conn = http.client.HTTPConnection(
                        HOST, self.nodes[node_id].client_port, timeout=self.timeout)
                    conns[node_id] = conn
                issued = time.monotonic()
                ok = False
                try:
                    conn.request("PUT", path, body=value,
                                 headers={"Content-Type": "application/octet-stream",
                                          **benchlib.AUTH})
                    resp = conn.getresponse()
                    resp.read()
                    ok = resp.status == 200
                    kind = f"http-{resp.status}"
                except socket.timeout:
                    kind = "timeout"
                    conn.close()
                    conns.pop(node_id, None)
                except (OSError, http.client.HTTPException):
                    kind = "conn-error"
                    conn.close()
                    conns.pop(node_id, None)
                if ok:
                    self.acks[w].append((issued, time.monotonic()))
                    self.acked[w].append((key, value))
                    break
                self.failed_attempts[w] += 1
                self.failures[w].append((issued, time.monotonic(), kind))
                last = node_id
                if self.retry_sleep > 0:
                    time.sleep(self.retry_sleep)
        for conn in conns.values():
            conn.close()

    def all_acks(self):
        out = []
        for a in self.acks:
            out.extend(a)
        return out

    def failures_between(self, start, end):
        """Counts by kind of failed attempts that ended in [start, end]."""
        counts = {}
        for per in self.failures:
            for (_, ended, kind) in list(per):
                if start <= ended <= end:
                    counts[kind] = counts.get(kind, 0) + 1
        return counts

    def acked_count(self):
        return sum(len(a) for a in self.acked)




def leader_elected_wall(log_path, node_id, after_wall):
    """Wall time at which node_id logged that it became leader, first after after_wall."""
    needle = f"replica {node_id}: leader is now {node_id} (leader)"
    try:
        with open(log_path, "r", errors="replace") as f:
            for line in f:
                if needle not in line:
                    continue
                t = benchlib.log_line_wall(line)
                if t is None:
                    continue
                if t >= after_wall - 0.001:
                    return t
    except OSError:
        return None
    return None


def find_leader(nodes, live_ids, deadline):
    """Leader id agreed by every live node (and claimed by the leader itself), or None."""
    while time.monotonic() < deadline:
        seen = set()
        claims = set()
        for n in nodes:
            if n.id not in live_ids:
                continue
            view = cluster_view(n.client_port)
            if view is None:
                seen.add(None)
                continue
            seen.add(view.get("leader"))
            if view.get("leader") == view.get("id"):
                claims.add(view["id"])
        if len(seen) == 1 and None not in seen and seen == claims:
            return seen.pop()
        time.sleep(0.02)
    return None


def wait_rejoined(node, leader, deadline):
    """Waits until the restarted node knows a leader and has applied everything the leader had
    committed when the wait began, and the leader reports it. Returns True on success."""
    target = None
    while time.monotonic() < deadline and target is None:
        view = cluster_view(leader.client_port)
        if view is not None:
            target = next((n["commit"] for n in view["nodes"] if n["id"] == leader.id), None)
        if target is None:
            time.sleep(0.05)
    while time.monotonic() < deadline:
        own = cluster_view(node.client_port)
        lv = cluster_view(leader.client_port)
        if own is not None and lv is not None and own.get("leader") is not None:
            me = next((n for n in own["nodes"] if n["id"] == node.id), None)
            seen = next((n for n in lv["nodes"] if n["id"] == node.id), None)
            if me is not None and seen is not None and me["applied"] >= target \
                    and seen["applied"] >= target:
                return True
        time.sleep(0.05)
    return False


def verify(nodes, live_ids, acked, threads):
    """Reads every acknowledged write back (linearizable GET, spread over live nodes).
    Returns (lost, mismatched, examples)."""
    chunks = [acked[i::threads] for i in range(threads)]
    results = [None] * threads
    ports = [n.client_port for n in nodes if n.id in live_ids]

    def check(i):
        lost = mismatched = 0
        examples = []
        conn = None
        port = ports[i % len(ports)]
        for key, value in chunks[i]:
            for attempt in range(5):
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(HOST, port, timeout=10)
                    conn.request("GET", "/v1/kv/" + key, headers=benchlib.AUTH)
                    resp = conn.getresponse()
                    body = resp.read()
                    status = resp.status
                    break
                except (OSError, http.client.HTTPException):
                    if conn is not None:
                        conn.close()
                    conn = None
                    status, body = -1, b""
                    time.sleep(0.2)
            if status == 404:
                lost += 1
                if len(examples) < 5:
                    examples.append(f"{key}: missing")
            elif status != 200:
                lost += 1
                if len(examples) < 5:
                    examples.append(f"{key}: GET answered {status}")
            elif body != value:
                mismatched += 1
                if len(examples) < 5:
                    examples.append(f"{key}: read {body[:20]!r}..., wrote {value[:20]!r}...")
        if conn is not None:
            conn.close()
        results[i] = (lost, mismatched, examples)

    ts = [threading.Thread(target=check, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    lost = sum(r[0] for r in results)
    mismatched = sum(r[1] for r in results)
    examples = [e for r in results for e in r[2]][:5]
    return lost, mismatched, examples


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--client-ports", required=True, help="three comma-separated ports")
    ap.add_argument("--peer-ports", required=True, help="three comma-separated ports")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--interval", type=float, default=2.0, help="seconds of load before a kill")
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--client-timeout-ms", type=int, default=1000)
    ap.add_argument("--retry-sleep-ms", type=float, default=2.0)
    ap.add_argument("--value-bytes", type=int, default=64)
    ap.add_argument("--rejoin-timeout", type=float, default=60.0)
    ap.add_argument("--measure-timeout", type=float, default=30.0,
                    help="longest accepted unavailability window, seconds")
    ap.add_argument("--serve-arg", action="append", default=[],
                    help="extra argument for `herald serve` (repeatable)")
    args = ap.parse_args()

    cports = [int(p) for p in args.client_ports.split(",")]
    pports = [int(p) for p in args.peer_ports.split(",")]
    if len(cports) != 3 or len(pports) != 3:
        sys.exit("need three client and three peer ports")
    peers = ",".join(f"{i + 1}={HOST}:{p}" for i, p in enumerate(pports))
    serve_args = ["--cluster-secret-file",
                  benchlib.write_cluster_secret(args.work_dir)] + args.serve_arg
    nodes = [Node(i + 1, args.binary, os.path.join(args.work_dir, f"n{i + 1}"), cports[i],
                  pports[i], peers, os.path.join(args.work_dir, f"n{i + 1}.log"), serve_args)
             for i in range(3)]
    writers = None
    try:
        for n in nodes:
            n.start()
        leader_id = find_leader(nodes, {1, 2, 3}, time.monotonic() + 30)
        if leader_id is None:
            log("no leader within 30 s")
            return 1
        log(f"cluster up, leader {leader_id}; serve args: {' '.join(args.serve_arg) or '(defaults)'}")

        writers = Writers(nodes, args.writers, args.client_timeout_ms / 1000.0,
                          args.retry_sleep_ms / 1000.0, args.value_bytes)
        writers.start()
        live = {1, 2, 3}
        windows, elections, first_acks, rejoins = [], [], [], []
        started = time.monotonic()
        for k in range(1, args.kills + 1):
            time.sleep(args.interval)
            leader_id = find_leader(nodes, live, time.monotonic() + 30)
            if leader_id is None:
                log("no agreed leader before a kill")
                return 1
            victim = nodes[leader_id - 1]
            live = live - {leader_id}
            writers.set_live(live)
            kill_mono, kill_wall = victim.kill()

            # Unavailability: first acknowledged attempt issued after the kill.
            window = None
            deadline = kill_mono + args.measure_timeout
            while time.monotonic() < deadline:
                after = [ack for (issued, ack) in writers.all_acks() if issued > kill_mono]
                if after:
                    window = min(after) - kill_mono
                    break
                time.sleep(0.01)
            if window is None:
                log(f"kill {k}: no write acknowledged within {args.measure_timeout:.0f} s")
                return 1
            new_leader = find_leader(nodes, live, time.monotonic() + 30)
            if new_leader is None:
                log(f"kill {k}: no new leader agreed")
                return 1
            elected = leader_elected_wall(nodes[new_leader - 1].log_path, new_leader, kill_wall)
            election_ms = (elected - kill_wall) * 1000 if elected is not None else float("nan")
            first_ack_ms = float("nan")
            if elected is not None:
                elected_mono = kill_mono + (elected - kill_wall)
                later = [ack for (_, ack) in writers.all_acks() if ack >= elected_mono]
                if later:
                    first_ack_ms = (min(later) - kill_mono) * 1000

            fails = writers.failures_between(kill_mono, kill_mono + window)
            fails_text = " ".join(f"{k}={v}" for k, v in sorted(fails.items())) or "none"

            # Restart the victim on its data and wait until it has caught up.
            restart_mono = time.monotonic()
            victim.start()
            if not wait_rejoined(victim, nodes[new_leader - 1],
                                 time.monotonic() + args.rejoin_timeout):
                log(f"kill {k}: node {victim.id} did not catch up within {args.rejoin_timeout:.0f} s")
                return 1
            rejoin_ms = (time.monotonic() - restart_mono) * 1000
            live = live | {victim.id}
            writers.set_live(live)

            windows.append(window * 1000)
            elections.append(election_ms)
            first_acks.append(first_ack_ms)
            rejoins.append(rejoin_ms)
            print(f"kill {k:2d}: leader {leader_id} killed, new leader {new_leader}, "
                  f"unavailable {window * 1000:7.1f} ms, election {election_ms:6.0f} ms, "
                  f"first ack after election {first_ack_ms:7.1f} ms, "
                  f"rejoin {rejoin_ms:6.0f} ms; failed attempts in the window: {fails_text}",
                  flush=True)

        time.sleep(0.5)
        writers.stop()
        elapsed = time.monotonic() - started
        acked = [kv for per in writers.acked for kv in per]
        failed = sum(writers.failed_attempts)
        log(f"load stopped: {len(acked)} acknowledged writes in {elapsed:.1f} s "
            f"({len(acked) / elapsed:.0f}/s), {failed} failed attempts (retried)")

        if find_leader(nodes, live, time.monotonic() + 30) is None:
            log("no leader for the read-back")
            return 1
        t0 = time.monotonic()
        lost, mismatched, examples = verify(nodes, live, acked, 8)
        log(f"read back {len(acked)} writes in {time.monotonic() - t0:.1f} s: "
            f"{lost} lost, {mismatched} with a different value")
        for e in examples:
            log(f"  {e}")

        ok = lost == 0 and mismatched == 0
        valid_elections = [e for e in elections if not math.isnan(e)]
        valid_first = [e for e in first_acks if not math.isnan(e)]

        def fmt(values, p):
            return f"{percentile(values, p):.1f}" if values else "nan"

        print(f"unavailability over {len(windows)} kills (ms): p50 {fmt(windows, 50)}, "
              f"p99 {fmt(windows, 99)}, max {max(windows):.1f}, min {min(windows):.1f}")
        print(f"election (kill -> new leader logs it, ms): p50 {fmt(valid_elections, 50)}, "
              f"max {fmt(valid_elections, 100)}; first ack after election (from kill, ms): "
              f"p50 {fmt(valid_first, 50)}, max {fmt(valid_first, 100)}; "
              f"rejoin (ms): p50 {fmt(rejoins, 50)}, max {fmt(rejoins, 100)}")
        print(f"FAILOVER_RESULT kills={len(windows)} unavail_p50_ms={fmt(windows, 50)} "
              f"unavail_p99_ms={fmt(windows, 99)} unavail_max_ms={fmt(windows, 100)} "
              f"election_p50_ms={fmt(valid_elections, 50)} "
              f"election_max_ms={fmt(valid_elections, 100)} "
              f"first_ack_after_election_p50_ms={fmt(valid_first, 50)} "
              f"acked_writes={len(acked)} failed_attempts={failed} lost={lost} "
              f"mismatched={mismatched} ok={1 if ok else 0}", flush=True)
        return 0 if ok else 1
    finally:
        if writers is not None:
            writers.stopping.set()
        for n in nodes:
            n.stop()


def on_term(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_term)
    sys.exit(main())
