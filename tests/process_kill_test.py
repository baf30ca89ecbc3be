"""Three `herald serve` processes; the leader is SIGKILLed and restarted several times under a
steady write load. Every acknowledged write must be readable afterwards, with its value.

With --apply-while-writing the nodes run each round's segment-log write on its own thread while
they apply, and the test also requires that some rounds did (herald_raft_log_write_wait_seconds).

Usage: process_kill_test.py BINARY [--rounds N] [--raft-log rocksdb|segments] [--apply-while-writing]
"""

import argparse
import random
import sys
import threading
import time

from herald_cluster import Cluster, kv_path, request

WRITERS = 4
ROUND_SECONDS = 1.5


def writer(cluster, writer_id, acked, stop, errors):
    rng = random.Random(writer_id)
    seq = 0
    while not stop.is_set():
        live = [n for n in cluster.nodes if n.alive()]
        if not live:
            time.sleep(0.01)
            continue
        node = rng.choice(live)
        key = f"w{writer_id}-{seq}"
        value = f"v{writer_id}-{seq}-{rng.random()}"
        seq += 1
        try:
            status, body, _ = request(node.client_port, "PUT", kv_path(key), value, timeout=3)
        except OSError:
            continue  # Outcome unknown: not acknowledged, may or may not exist.
        if status == 200:
            acked[key] = value
        elif status not in (503, 504):
            errors.append(f"PUT {key} -> {status} {body!r}")


def rounds_written_behind_apply(cluster):
    """Sum over the live nodes of the rounds whose log write ran while they applied."""
    total = 0
    for node in cluster.nodes:
        if not node.alive():
            continue
        status, body, _ = request(node.client_port, "GET", "/metrics", timeout=5)
        if status != 200:
            continue
        for line in body.decode().splitlines():
            if line.startswith("herald_raft_log_write_wait_seconds_count "):
                total += int(float(line.split()[1]))
    return total


def verify(cluster, acked):
    missing = []
    port = cluster.node(cluster.leader(timeout=15)).client_port
    for key, value in acked.items():
        status, body, _ = request(port, "GET", kv_path(key), timeout=5)
        if status != 200 or body.decode() != value:
            missing.append((key, status, body[:80]))
    return missing


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--raft-log", choices=("rocksdb", "segments"), default="rocksdb",
                        help="where the nodes keep their raft log ([storage] raft_log)")
    parser.add_argument("--apply-while-writing", action="store_true",
                        help="[storage] apply_while_writing = true (needs segments)")
    args = parser.parse_args()

    config_text = f'[storage]\nraft_log = "{args.raft_log}"\n'
    if args.apply_while_writing:
        config_text += "apply_while_writing = true\n"
    cluster = Cluster(args.binary, config_text=config_text)
    cluster.start()
    ok = False
    try:
        cluster.leader(timeout=15)
        acked, errors, stop = {}, [], threading.Event()
        threads = [threading.Thread(target=writer, args=(cluster, i, acked, stop, errors))
                   for i in range(WRITERS)]
        for t in threads:
            t.start()
        for round_no in range(args.rounds):
            time.sleep(ROUND_SECONDS)
            leader = cluster.leader(timeout=15)
            print(f"round {round_no + 1}: SIGKILL leader {leader} ({len(acked)} acked so far)")
            cluster.node(leader).kill()
            time.sleep(0.5)
            cluster.node(leader).start()
        time.sleep(ROUND_SECONDS)
        stop.set()
        for t in threads:
            t.join()
        missing = verify(cluster, acked)
        print(f"acknowledged writes: {len(acked)}, missing or wrong after kills: {len(missing)}")
        for m in missing[:10]:
            print("  lost:", m)
        for e in errors[:10]:
            print("  error:", e)
        ok = len(acked) > 0 and not missing and not errors
        if args.apply_while_writing:
            behind = rounds_written_behind_apply(cluster)
            print(f"rounds whose log write ran behind their apply: {behind}")
            ok = ok and behind > 0
    finally:
        cluster.stop(keep=not ok)
        if not ok:
            print("logs kept in", cluster.root)
    print("process_kill: 1 passed, 0 failed" if ok else "process_kill: 0 passed, 1 failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
