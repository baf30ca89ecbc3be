#!/usr/bin/env python3
"""Workflow crash-recovery benchmark for a single-node Herald cluster on loopback.

1. Starts one `herald serve` node (a one-voter cluster) and waits until it leads.
2. Starts N "demo.sleep" workflows (wrk, bench/wrk/herald-wf-start.lua, unique ids sl-<n>) with
   input "@T": every one has a durable USER timer due at the same wall time T = start of the
   load + --lead-s seconds. The load must end --margin-s before T (else the run is invalid).
3. Counts the workflows in state "sleeping" through the visibility list (must be N, none
   "done"), then SIGKILLs the node — before T, so N timers are pending.
4. Waits until T + --overdue-ms, restarts the node on its data directory and takes the wall
   clock just before the exec (E). Then:
   - polls GET /v1/workflows?type=demo.sleep&state=done&limit=1 until it lists a workflow
     (first fired and applied) and ...&state=sleeping&limit=1 until it lists none (all fired
     and applied), every --poll-ms on one keep-alive connection (a request with no answer within
     --poll-timeout-ms is abandoned and re-issued on a fresh connection). The times are upper
     bounds: a poll answered at t saw the state at some instant before t.
   - afterwards reads the visibility list of state "done": each entry's updated_ms is the wall
     time the leader stamped on the FireTimer command when it proposed it (the engine never
     reads a clock). min - E and max - E are the proposal times of the first and last fire:
     lower bounds on when they became durable.
   - the node log gives exec -> "replica 1 open" and -> "leader is now" (1 ms resolution).

Prints one line per phase and a final line:
  WORKFLOW_RECOVERY_RESULT workflows=N load_s=.. open_ms=.. leader_ms=.. first_fired_ms=..
  all_fired_ms=.. first_stamped_ms=.. last_stamped_ms=.. ok=0|1
"""

import argparse
import functools
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (the helper beside this script)

HOST = "127.0.0.1"
SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))


log = benchlib.make_logger("workflow-recovery")


request = functools.partial(benchlib.request, timeout=5.0)


def is_leader(port):
    try:
        status, body = request(port, "GET", "/v1/cluster", timeout=2)
    except OSError:
        return False
    if status != 200:
        return False
    v = json.loads(body)
    return v.get("leader") not in (None, 0) and v.get("leader") == v.get("id")


def applied(port):
    """The node's applied index, or None."""
    try:
        status, body = request(port, "GET", "/v1/cluster", timeout=2)
    except OSError:
        return None
    if status != 200:
        return None
    v = json.loads(body)
    return next(x for x in v["nodes"] if x["id"] == v["id"])["applied"]


def list_all(port, state):
    """Every visibility entry of demo.sleep in `state`."""
    c = http.client.HTTPConnection(HOST, port, timeout=60)
    token, out = "", []
    try:
        while True:
            path = f"/v1/workflows?type=demo.sleep&state={state}&limit=1000"
            if token:
                path += f"&page_token={token}"
            c.request("GET", path, headers=benchlib.AUTH)
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                raise RuntimeError(f"list: HTTP {r.status} {body[:200]!r}")
            page = json.loads(body)
            out += page["workflows"]
            token = page.get("next_page_token") or ""
            if not page["workflows"] or not token:
                return out
    finally:
        c.close()




def log_times(log_path, offset):
    opened = leader = None
    with open(log_path, "r", errors="replace") as f:
        f.seek(offset)
        for line in f:
            t = benchlib.log_line_wall(line)
            if t is None:
                continue
            if opened is None and re.search(r"replica \d+ open:", line):
                opened = t
            elif leader is None and "leader is now" in line:
                leader = t
    return opened, leader


class Node:
    def __init__(self, args):
        self.args = args
        self.data_dir = os.path.join(args.work_dir, "n1")
        self.log_path = os.path.join(args.work_dir, "n1.log")
        self.proc = None

    def start(self):
        os.makedirs(self.data_dir, exist_ok=True)
        out = open(self.log_path, "ab")
        offset = out.tell()
        cmd = [self.args.binary, "serve", "--id", "1", "--data", self.data_dir,
               "--client", f"{HOST}:{self.args.client_port}",
               "--peer", f"{HOST}:{self.args.peer_port}",
               "--peers", f"1={HOST}:{self.args.peer_port}"]
        if self.args.raft_log:
            config = os.path.join(self.args.work_dir, "herald.toml")
            with open(config, "w") as f:
                f.write(f'[storage]\nraft_log = "{self.args.raft_log}"\n')
            cmd += ["--config", config]
        wall = time.time()
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        out.close()
        with open(os.path.join(self.args.work_dir, "n1.pid"), "w") as f:
            f.write(f"{self.proc.pid}\n")
        return wall, offset

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Poller:
    """Polls one list query on a keep-alive connection; re-opens after errors or timeouts."""

    def __init__(self, port, path, timeout_s):
        self.port, self.path, self.timeout_s, self.c = port, path, timeout_s, None

    def entries(self):
        """The listed workflows, or None when the node gave no answer in time."""
        try:
            if self.c is None:
                self.c = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout_s)
            self.c.request("GET", self.path, headers=benchlib.AUTH)
            r = self.c.getresponse()
            body = r.read()
            if r.status != 200:
                return None
            return json.loads(body)["workflows"]
        except (OSError, http.client.HTTPException, ValueError):
            if self.c is not None:
                self.c.close()
            self.c = None
            return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--client-port", type=int, required=True)
    ap.add_argument("--peer-port", type=int, required=True)
    ap.add_argument("--workflows", type=int, default=100000)
    ap.add_argument("--lead-s", type=float, default=60)
    ap.add_argument("--margin-s", type=float, default=2)
    ap.add_argument("--overdue-ms", type=int, default=1000)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--wrk-conns", type=int, default=64)
    ap.add_argument("--raft-log", choices=["rocksdb", "segments"], default=None,
                    help="the node's [storage] raft_log (default: Herald's own)")
    ap.add_argument("--poll-ms", type=float, default=2)
    ap.add_argument("--poll-timeout-ms", type=float, default=100)
    ap.add_argument("--fire-timeout-s", type=float, default=120)
    ap.add_argument("--keep-data", default=None,
                    help="copy the killed node's data directory here before the restart")
    args = ap.parse_args()
    n, threads = args.workflows, args.wrk_threads
    if n % threads:
        raise SystemExit("--workflows must be a multiple of --wrk-threads")
    port = args.client_port

    node = Node(args)
    node.start()
    try:
        deadline = time.monotonic() + 60
        while not is_leader(port):
            if time.monotonic() > deadline:
                raise RuntimeError("the node did not lead within 60 s")
            time.sleep(0.1)

        # --- Load ---
        load_start = time.time()
        due_ms = int((load_start + args.lead_s) * 1000)
        log(f"starting {n} demo.sleep workflows due at wall {due_ms} ms "
            f"({args.lead_s:.0f} s ahead) with wrk ({threads} threads, {args.wrk_conns} conns)")
        out_path = os.path.join(args.work_dir, "wrk.out")
        budget = max(1, int(args.lead_s - args.margin_s))
        base = applied(port)
        # wrk runs for its whole duration even when every thread has sent its quota, so it is
        # interrupted (SIGINT: it prints its summary) once the node has applied N more entries.
        with open(out_path, "wb") as out:
            wrk = subprocess.Popen(
                ["wrk", "-t", str(threads), "-c", str(args.wrk_conns), "-d", f"{budget}s",
                 "--timeout", "10s", "-s", os.path.join(SCRIPT_DIR, "wrk", "herald-wf-start.lua"),
                 f"http://{HOST}:{port}", "--", str(threads), "demo.sleep", f"@{due_ms}", "sl-",
                 str(n // threads)],
                stdout=out, stderr=subprocess.STDOUT)
        with open(os.path.join(args.work_dir, "wrk.pid"), "w") as f:
            f.write(f"{wrk.pid}\n")
        try:
            while wrk.poll() is None:
                a = applied(port)
                if a is not None and a >= base + n:
                    time.sleep(0.3)  # let the last answers arrive
                    wrk.send_signal(signal.SIGINT)
                    break
                time.sleep(0.1)
            wrk.wait(timeout=budget + 30)
        finally:
            if wrk.poll() is None:
                wrk.kill()
                wrk.wait()
        load_s = time.time() - load_start
        wrk_line = next((l for l in open(out_path) if l.startswith("WRK_RESULT")), "")
        log(f"load took {load_s:.1f} s: {wrk_line.strip()}")
        sleeping = len(list_all(port, "sleeping"))
        done = len(list_all(port, "done"))
        left_ms = due_ms - time.time() * 1000
        log(f"{sleeping} sleeping, {done} done; {left_ms:.0f} ms before the due time")
        if sleeping != n or done != 0:
            raise RuntimeError(f"expected {n} sleeping and 0 done workflows")
        if left_ms < args.margin_s * 1000:
            raise RuntimeError("the load ended too close to the due time: raise --lead-s")

        # --- Kill before the due time ---
        kill_wall = time.time()
        node.kill()
        log(f"SIGKILLed the node {due_ms - kill_wall * 1000:.0f} ms before the due time; "
            f"load average {' '.join(open('/proc/loadavg').read().split()[:3])}")
        if args.keep_data:
            shutil.copytree(node.data_dir, args.keep_data, symlinks=True)
            log(f"copied the killed node's data directory to {args.keep_data}")
        wait_s = (due_ms + args.overdue_ms) / 1000 - time.time()
        if wait_s > 0:
            time.sleep(wait_s)

        # --- Restart and observe ---
        exec_wall, offset = node.start()
        log(f"restarted {exec_wall * 1000 - due_ms:.0f} ms after the due time")
        first_done = Poller(port, "/v1/workflows?type=demo.sleep&state=done&limit=1",
                            args.poll_timeout_ms / 1000)
        any_sleeping = Poller(port, "/v1/workflows?type=demo.sleep&state=sleeping&limit=1",
                              args.poll_timeout_ms / 1000)
        first_fired = all_fired = None
        abandoned = 0
        deadline = time.monotonic() + args.fire_timeout_s
        while all_fired is None and time.monotonic() < deadline:
            if first_fired is None:
                e = first_done.entries()
                if e:
                    first_fired = time.time()
                elif e is None:
                    abandoned += 1
            else:
                e = any_sleeping.entries()
                if e == []:
                    all_fired = time.time()
                elif e is None:
                    abandoned += 1
            if all_fired is None:
                time.sleep(args.poll_ms / 1000)
        if all_fired is None:
            raise RuntimeError(f"not all timers fired within {args.fire_timeout_s} s")
        opened, leader = log_times(node.log_path, offset)
        done_entries = list_all(port, "done")
        sleeping_left = len(list_all(port, "sleeping"))
        # The visibility entry's state_since_ms: when the fire that closed it was stamped.
        stamps = sorted(e["state_since_ms"] for e in done_entries)
        overdue = [s for s in stamps if s < due_ms]
        ok = len(done_entries) == n and sleeping_left == 0 and not overdue
        ms = lambda t: (t - exec_wall) * 1000 if t is not None else float("nan")
        first_stamped = stamps[0] - exec_wall * 1000
        last_stamped = stamps[-1] - exec_wall * 1000
        # Rate of fires by stamp, in 100 ms buckets from the first.
        buckets = {}
        for s in stamps:
            buckets[(s - stamps[0]) // 100] = buckets.get((s - stamps[0]) // 100, 0) + 1
        log("fires per 100 ms after the first (by stamp): " +
            " ".join(str(buckets.get(i, 0)) for i in range(int(max(buckets)) + 1)))
        log(f"exec -> open {ms(opened):.0f} ms, -> leader {ms(leader):.0f} ms, "
            f"-> first fired (polled) {ms(first_fired):.1f} ms, -> all fired (polled) "
            f"{ms(all_fired):.1f} ms; stamped first {first_stamped:.0f} ms, last "
            f"{last_stamped:.0f} ms; {len(done_entries)} done, {sleeping_left} sleeping, "
            f"{len(overdue)} stamped before the due time, {abandoned} polls unanswered")
        print(f"WORKFLOW_RECOVERY_RESULT workflows={n} load_s={load_s:.1f} "
              f"open_ms={ms(opened):.0f} leader_ms={ms(leader):.0f} "
              f"first_fired_ms={ms(first_fired):.1f} all_fired_ms={ms(all_fired):.1f} "
              f"first_stamped_ms={first_stamped:.0f} last_stamped_ms={last_stamped:.0f} "
              f"polls_unanswered={abandoned} ok={int(ok)}", flush=True)
        return 0 if ok else 1
    finally:
        node.stop()


if __name__ == "__main__":
    sys.exit(main())
