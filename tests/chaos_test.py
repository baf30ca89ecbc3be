"""Chaos on real processes: three `herald serve` nodes in network namespaces of their own
(tests/netns_cluster.py), devices of several users sending, acknowledging and reading over real
WebSockets, and a seeded nemesis that cuts links (both ways and one way), takes interfaces down,
SIGKILLs, SIGTERMs and restarts nodes, and pauses them with SIGSTOP for a bounded time. Then it
heals everything, lets the clients finish, and checks the invariants of tests/chaos_checks.py
from the clients' records and from each node's state, again after every node was SIGTERMed and
restarted, and again after every node was SIGKILLed and restarted (docs/reliability.md, "Chaos
on real processes").

Usage: chaos_test.py BINARY [--duration S] [--seed N] [--keep DIR]
Needs root (ip netns) and Debian's python3-websockets. Exits 0 when every check held, 1 when
one failed (the node logs are kept and their directory printed), 77 when it cannot run here.
"""

import argparse
import asyncio
import base64
import collections
import http.client
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time

import chaos_checks
import netns_cluster
from netns_cluster import CLIENT_PORT, Node, Topology

SKIP = 77
NODES = 3
USERS = 4
DEVICES_PER_USER = 2
# Bound on opening a WebSocket (TCP and the upgrade); a paused node accepts but never answers.
CONNECT_TIMEOUT_S = 2.0
# Pause between two polls of a condition that is waited for.
POLL_GAP_S = 0.2
# Bound on closing a WebSocket; a paused node never answers the close.
CLOSE_TIMEOUT_S = 1.0
# Largest frame a device accepts: above the server's 256 KiB pages (docs/protocol.md, "Limits").
MAX_FRAME_BYTES = 2 * 1024 * 1024
# Bound on an admin request retried through every node, and the pause between two rounds.
ADMIN_DEADLINE_S = 30.0
ADMIN_RETRY_GAP_S = 0.2
# Bound on one request's answer; the server answers `timeout` itself after 5 s (a `read` after
# 10 s, kReadAnswerTimeoutMs).
REQUEST_TIMEOUT_S = 12.0
# Pause between a device's operations, drawn uniformly.
OP_GAP_S = (0.03, 0.15)
# Pause before a device retries after an error or a lost connection.
RETRY_GAP_S = 0.2
# After the nemesis healed everything: how long the clients may take to get every pending send
# acknowledged and every device to the end of its user's stream.
SETTLE_S = 45.0
# Silence that counts as "the devices received everything".
QUIET_S = 2.0
# Bound on one page of a full sync from cursor 0, once the device is authenticated.
SYNC_PAGE_BOUND_S = 2.0
SYNC_PAGE_LIMIT = 50
# Tries of one sync page answered with a retryable error (`unavailable` when the leader changed
# during the read), within the page's bound.
SYNC_PAGE_ATTEMPTS = 5
# Bound on a whole restart: every node started until each answered the first page of a full sync
# of every user (the pages after it are bounded one by one).
RESTART_SYNC_BOUND_S = 30.0
# Bound on the cluster electing a leader at the start.
LEADER_TIMEOUT_S = 20.0
# Messages per conversation whose delivery workflows are read: the newest, and as many drawn.
DELIVERY_SAMPLE = 20
# Bound on one admin HTTP request.
HTTP_TIMEOUT_S = 5.0
# Bound on the nodes reporting one applied index once the run is quiet.
AGREE_TIMEOUT_S = 20.0
# Nemesis: how long a fault holds and the gap between two faults, drawn uniformly.
FAULT_HOLD_S = (0.5, 4.0)
FAULT_GAP_S = (0.3, 2.0)
# A SIGKILLed or SIGTERMed node stays down this long before its restart.
DOWN_S = (0.1, 2.5)
FAULTS = {  # name: weight
    "kill": 3, "term": 1, "pause": 2, "isolate": 2, "one_way": 2, "bridge": 1, "link_down": 1,
    "quorum_loss": 1, "restart_isolated": 1,
}
# Retryable errors in a row after which a device tries another node (its own may be cut off).
SWITCH_AFTER_ERRORS = 2
RETRYABLE = {"timeout", "outcome_unknown", "unavailable", "overloaded", "rate_limited", "internal"}


class Disconnected(Exception):
    pass


def log(start, text):
    print(f"[{time.monotonic() - start:7.2f}s] {text}", flush=True)


def http_request(address, method, path, body=None):
    conn = http.client.HTTPConnection(address, CLIENT_PORT, timeout=HTTP_TIMEOUT_S)
    try:
        headers = {"Authorization": "Bearer " + os.environ["HERALD_ADMIN_TOKEN"]}
        if body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(body)
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def admin(nodes, method, path, body=None, deadline_s=ADMIN_DEADLINE_S):
    """An admin request retried on every node until one answers 2xx (or the deadline)."""
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        for node in nodes:
            try:
                status, data = http_request(node.address, method, path, body)
            except OSError as e:
                last = str(e)
                continue
            if 200 <= status < 300:
                return json.loads(data)
            last = f"{status} {data[:200]!r}"
            if status == 409:  # created by an earlier try whose answer was lost
                return None
        time.sleep(ADMIN_RETRY_GAP_S)
    raise RuntimeError(f"{method} {path}: {last}")


class Device:
    """One device's WebSocket session, reconnecting through the nodes in its own order, and its
    records: sends, ack and read answers, every change received live."""

    def __init__(self, run, user, device_id, token, first_node):
        self.run = run
        self.user = user
        self.id = device_id
        self.token = token
        self.node_index = first_node
        self.ws = None
        self.reader = None
        self.pending = {}
        self.request_no = 0
        self.cursor = 0
        self.received = []
        self.max_seq = {}
        self.acked = {}
        self.read = {}
        self.sent = 0
        self.reconnects = 0
        self.last_change_at = time.monotonic()

    async def connect(self):
        import websockets
        while self.ws is None:
            if self.run.stop_clients:
                raise Disconnected("stopped")
            node = self.run.nodes[self.node_index % NODES]
            url = f"ws://{node.address}:{CLIENT_PORT}/v1/ws"
            try:
                ws = await asyncio.wait_for(
                    websockets.connect(url, open_timeout=CONNECT_TIMEOUT_S, ping_interval=None,
                                       close_timeout=CLOSE_TIMEOUT_S, max_size=MAX_FRAME_BYTES),
                    CONNECT_TIMEOUT_S + 1)
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException):
                self.node_index += 1
                await asyncio.sleep(RETRY_GAP_S)
                continue
            self.ws = ws
            self.reader = asyncio.ensure_future(self.read_frames(ws))
            try:
                answer = await self.request("auth", user_id=self.user, device_id=self.id,
                                            token=self.token, since=self.cursor)
            except Disconnected:
                answer = None
            if answer is None or answer.get("type") != "ok":
                if answer is not None and answer.get("code") not in RETRYABLE:
                    self.run.problem(f"{self.id}: auth answered {answer}")
                await self.drop()
                self.node_index += 1
                await asyncio.sleep(RETRY_GAP_S)
                continue
            if answer.get("resync_required"):
                self.run.problem(f"{self.id}: auth since {self.cursor} needs a resync")
            self.reconnects += 1

    async def drop(self):
        ws, self.ws = self.ws, None
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT_S + 1)
            except Exception:  # the node may be paused or gone; the socket is closed regardless
                pass
        for fut in self.pending.values():
            if not fut.done():
                fut.set_result(None)  # the request raises Disconnected
        self.pending = {}

    async def read_frames(self, ws):
        try:
            async for raw in ws:
                if self.ws is not ws:
                    break  # dropped: the next session resumes from self.cursor
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "change":
                    self.on_change(frame["change"])
                elif kind in ("ok", "error"):
                    fut = self.pending.pop(frame.get("re"), None)
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
                elif kind == "resync_required":
                    self.run.problem(f"{self.id}: resync_required event {frame}")
        except Exception:  # a closed or reset connection ends the reader; the owner reconnects
            pass
        if self.ws is ws:
            asyncio.ensure_future(self.drop())

    def on_change(self, change):
        self.last_change_at = time.monotonic()
        self.received.append(change)
        self.cursor = max(self.cursor, change.get("cursor", 0))
        if change.get("kind") == "message_new":
            conv = change["conversation_id"]
            self.max_seq[conv] = max(self.max_seq.get(conv, 0), change["seq"])

    async def request(self, kind, **fields):
        if self.ws is None:
            raise Disconnected("not connected")
        self.request_no += 1
        rid = f"r{self.request_no}"
        fut = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        try:
            await self.ws.send(json.dumps({"type": kind, "id": rid, **fields}))
            answer = await asyncio.wait_for(fut, REQUEST_TIMEOUT_S)
        except Exception as e:  # unanswered in time or the socket failed: try another node
            self.pending.pop(rid, None)
            await self.drop()
            self.node_index += 1
            raise Disconnected(str(e)) from e
        if answer is None:
            raise Disconnected("connection lost")
        return answer

    async def send_until_acknowledged(self, conv, cmid):
        key = (conv, self.id, cmid)
        self.run.sends.setdefault(key, [])
        errors = 0
        while not self.run.stop_clients:
            try:
                await self.connect()
                answer = await self.request("send", conversation_id=conv, client_message_id=cmid,
                                            body=f"{cmid} from {self.id}")
            except Disconnected:
                self.run.errors["send lost"] += 1
                await asyncio.sleep(RETRY_GAP_S)
                continue
            if answer["type"] == "ok":
                self.run.sends[key].append(answer["seq"])
                self.run.existed += bool(answer.get("existed"))
                return
            if answer.get("code") not in RETRYABLE:
                self.run.problem(f"{self.id}: send {cmid} answered {answer}")
                return
            errors += 1
            self.run.errors[answer.get("code")] += 1
            if errors >= SWITCH_AFTER_ERRORS:
                errors = 0
                await self.drop()
                self.node_index += 1
            await asyncio.sleep(RETRY_GAP_S)

    async def mark(self, kind, conv, seq):
        """One `ack` or `read` up to `seq`; its answer is recorded, a retryable error is not."""
        try:
            await self.connect()
            answer = await self.request(kind, conversation_id=conv, seq=seq)
        except Disconnected:
            return
        if answer["type"] == "ok":
            mark = answer["acked_up_to"] if kind == "ack" else answer["cursor"]
            answers = self.run.acks if kind == "ack" else self.run.reads
            answers.setdefault((self.id, conv), []).append((seq, mark))
        elif answer.get("code") not in RETRYABLE:
            self.run.problem(f"{self.id}: {kind} {conv} {seq} answered {answer}")

    async def work(self, rng, conversations):
        while not self.run.stop_new:
            self.sent += 1
            await self.send_until_acknowledged(rng.choice(conversations), f"{self.id}-m{self.sent}")
            for conv, seq in list(self.max_seq.items()):
                if self.acked.get(conv, 0) < seq:
                    await self.mark("ack", conv, seq)
                    self.acked[conv] = seq
                if rng.random() < 0.3 and self.read.get(conv, 0) < seq:
                    target = rng.randint(self.read.get(conv, 0) + 1, seq)
                    await self.mark("read", conv, target)
                    self.read[conv] = target
            await asyncio.sleep(rng.uniform(*OP_GAP_S))

    async def finish(self):
        """After the run: ack and read everything received, so the user's devices converge."""
        for conv, seq in list(self.max_seq.items()):
            await self.mark("ack", conv, seq)
            await self.mark("read", conv, seq)


class Run:
    def __init__(self, args, topology, root):
        self.args = args
        self.topology = topology
        self.root = root
        self.start = time.monotonic()
        self.problems = []
        self.sends = {}
        self.acks = {}
        self.reads = {}
        self.existed = 0
        self.errors = collections.Counter()  # retryable error answers and lost requests
        self.sync_retries = collections.Counter()  # sync pages tried again, by error
        self.faults = []
        self.stop_new = False
        self.stop_clients = False
        secret = os.path.join(root, "cluster-secret")
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(os.urandom(32)).decode() + "\n")
        self.nodes = [Node(topology, n, args.binary, root, secret, dict(os.environ))
                      for n in range(1, NODES + 1)]
        self.devices = []
        self.members = {}

    def log(self, text):
        log(self.start, text)

    def problem(self, text):
        self.log("PROBLEM " + text)
        self.problems.append(text)

    def leader(self):
        """The leader a reachable node names, or None."""
        for node in self.nodes:
            if not node.alive() or node.paused:
                continue
            try:
                status, data = http_request(node.address, "GET", "/v1/cluster")
            except OSError:
                continue
            if status == 200 and json.loads(data).get("leader"):
                return json.loads(data)["leader"]
        return None

    def wait_for_leader(self, timeout_s):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            leader = self.leader()
            if leader:
                return leader
            time.sleep(POLL_GAP_S)
        raise RuntimeError(f"no leader within {timeout_s} s")

    def check_crashes(self):
        for node in self.nodes:
            status = node.exited_on_its_own()
            if status is not None:
                self.problem(f"node {node.id} exited on its own with status {status}"
                             f" (log {node.log_path})")
                node.proc = None
                node.start()

    def provision(self):
        users = [f"u{i}" for i in range(1, USERS + 1)]
        for user in users:
            admin(self.nodes, "POST", "/v1/admin/users", {"user_id": user})
        tokens = {}
        for user in users:
            for d in range(DEVICES_PER_USER):
                device = f"{user}-d{d + 1}"
                answer = admin(self.nodes, "POST", f"/v1/admin/users/{user}/devices",
                               {"device_id": device, "platform": "web"})
                tokens[(user, device)] = answer["token"]
        layout = [("group", users, "g-all"), ("group", users[:2] + users[3:], "g-124"),
                  ("direct", users[:2], None), ("direct", users[2:], None)]
        for kind, members, gid in layout:
            body = {"creator": members[0], "kind": kind, "members": members[1:]}
            if gid:
                body["conversation_id"] = gid
            answer = admin(self.nodes, "POST", "/v1/admin/conversations", body)
            conv = answer["conversation"]["conversation_id"] if answer else gid
            self.members[conv] = members
        for i, ((user, device), token) in enumerate(sorted(tokens.items())):
            self.devices.append(Device(self, user, device, token, i % NODES))

    def conversations_of(self, user):
        return sorted(c for c, members in self.members.items() if user in members)


async def nemesis(run, rng, end):
    topology = run.topology
    while time.monotonic() < end:
        await asyncio.to_thread(run.check_crashes)
        fault = rng.choices(list(FAULTS), weights=list(FAULTS.values()))[0]
        leader = await asyncio.to_thread(run.leader)
        ids = [n.id for n in run.nodes]
        target = leader if leader and rng.random() < 0.5 else rng.choice(ids)
        others = [i for i in ids if i != target]
        hold = rng.uniform(*(DOWN_S if fault in ("kill", "term") else FAULT_HOLD_S))
        node = run.nodes[target - 1]
        run.faults.append(fault)
        run.log(f"nemesis: {fault} node {target} (leader {leader}) for {hold:.2f} s")
        if fault in ("kill", "term"):
            if fault == "kill":
                node.kill()
            else:
                status = await asyncio.to_thread(node.terminate)
                if status != 0:
                    run.problem(f"SIGTERM of node {target} ended with status {status}")
            await asyncio.sleep(hold)
            node.start()
        elif fault == "pause":
            node.pause()
            await asyncio.sleep(hold)
            node.resume()
        elif fault == "quorum_loss":
            for i in others:
                await asyncio.to_thread(topology.link, i, False)
            await asyncio.sleep(hold)
            await asyncio.to_thread(topology.heal)
        elif fault == "restart_isolated":
            for o in others:
                await asyncio.to_thread(topology.cut, target, o)
                await asyncio.to_thread(topology.cut, o, target)
            await asyncio.sleep(hold / 2)
            node.kill()
            node.start()
            await asyncio.sleep(hold / 2)
            await asyncio.to_thread(topology.heal)
        else:
            pairs = {"isolate": [(target, o) for o in others] + [(o, target) for o in others],
                     "one_way": [(target, rng.choice(others))],
                     "bridge": [(others[0], others[1]), (others[1], others[0])]}.get(fault, [])
            for a, b in pairs:
                await asyncio.to_thread(topology.cut, a, b)
            if fault == "link_down":
                await asyncio.to_thread(topology.link, target, False)
            await asyncio.sleep(hold)
            await asyncio.to_thread(topology.heal)
        await asyncio.sleep(rng.uniform(*FAULT_GAP_S))
    await asyncio.to_thread(topology.heal)
    for node in run.nodes:
        node.resume()
        if node.proc is None:
            node.start()


async def full_sync(run, device, node, max_pages=None):
    """The user's whole stream through `node` by a fresh session of `device`: `sync` from 0,
    page by page, each page within SYNC_PAGE_BOUND_S (the first `max_pages` only, when given);
    and the user's chats."""
    probe = Device(run, device.user, device.id, device.token, node.id - 1)
    probe.node_index = node.id - 1
    import websockets
    url = f"ws://{node.address}:{CLIENT_PORT}/v1/ws"
    end = time.monotonic() + RESTART_SYNC_BOUND_S
    while True:
        try:
            probe.ws = await websockets.connect(url, open_timeout=CONNECT_TIMEOUT_S,
                                                ping_interval=None, close_timeout=CLOSE_TIMEOUT_S,
                                                max_size=MAX_FRAME_BYTES)
            probe.reader = asyncio.ensure_future(probe.read_frames(probe.ws))
            answer = await probe.request("auth", user_id=device.user, device_id=device.id,
                                         token=device.token)
            if answer["type"] == "ok":
                break
        except (OSError, asyncio.TimeoutError, Disconnected, websockets.WebSocketException):
            pass
        await probe.drop()
        if time.monotonic() > end:
            raise RuntimeError(f"{device.id} could not authenticate on node {node.id}")
        await asyncio.sleep(RETRY_GAP_S)
    stream, since, pages, slowest = [], 0, 0, 0.0
    try:
        while True:
            began = time.monotonic()
            for attempt in range(SYNC_PAGE_ATTEMPTS):
                answer = await probe.request("sync", since=since, limit=SYNC_PAGE_LIMIT)
                if answer["type"] == "ok" or answer.get("code") not in RETRYABLE:
                    break
                run.sync_retries[answer.get("code")] += 1  # a client retries the same page
                await asyncio.sleep(RETRY_GAP_S)
            took = time.monotonic() - began
            slowest = max(slowest, took)
            pages += 1
            if answer["type"] != "ok":
                raise RuntimeError(f"sync page {pages} on node {node.id}: {answer}")
            if took > SYNC_PAGE_BOUND_S:
                run.problem(f"sync page {pages} of {device.user} on node {node.id} took"
                            f" {took:.2f} s")
            stream.extend(answer["changes"])
            since = answer["cursor"]
            if not answer["has_more"] or pages == max_pages:
                break
        chats = await probe.request("chats", limit=100)
    finally:
        await probe.drop()
    summary = sorted((c["conversation_id"], c["last_seq"], c["unread"]) for c in chats["chats"])
    return stream, summary, pages, slowest


async def read_state(run, phase):
    """Every user's stream and chats through every node; checks that the nodes agree."""
    began = time.monotonic()
    first_device = {}
    for device in run.devices:
        first_device.setdefault(device.user, device)
    streams, chats, pages, slowest = {}, {}, 0, 0.0
    for user, device in sorted(first_device.items()):
        for node in run.nodes:
            try:
                stream, summary, n, s = await full_sync(run, device, node)
            except (RuntimeError, Disconnected, KeyError) as e:
                run.problem(f"{phase}: full sync of {user} on node {node.id} failed: {e!r}")
                stream, summary, n, s = [], [], 0, 0.0
            streams[(user, node.id)] = stream
            chats[(user, node.id)] = summary
            pages, slowest = pages + n, max(slowest, s)
    took = time.monotonic() - began
    run.log(f"{phase}: {len(first_device)} users x {NODES} nodes synced from 0 in {pages} pages,"
            f" slowest page {slowest * 1000:.0f} ms, all in {took:.1f} s")
    for user in first_device:
        for problem in chaos_checks.check_same(
                f"{phase}: {user}'s stream", {n.id: streams[(user, n.id)] for n in run.nodes}):
            run.problem(problem)
        for problem in chaos_checks.check_same(
                f"{phase}: {user}'s chats", {n.id: chats[(user, n.id)] for n in run.nodes}):
            run.problem(problem)
    return ({user: streams[(user, 1)] for user in first_device},
            {user: chats[(user, 1)] for user in first_device})


def last_seqs(run):
    seqs = {}
    for conv in run.members:
        views = {}
        for node in run.nodes:
            answer = admin([node], "GET", f"/v1/admin/conversations/{conv}")
            views[node.id] = answer["conversation"]["last_seq"]
        for problem in chaos_checks.check_same(f"last seq of {conv}", views):
            run.problem(problem)
        seqs[conv] = views[1]
    return seqs


def wait_for_agreement(run):
    """Waits until the three nodes report one commit and applied index (the run is quiet)."""
    end = time.monotonic() + AGREE_TIMEOUT_S
    seen = None
    while time.monotonic() < end:
        seen = {}
        for node in run.nodes:
            try:
                status, data = http_request(node.address, "GET", "/v1/cluster")
                own = json.loads(data)["nodes"][0]
                seen[node.id] = (own["commit"], own["applied"])
            except (OSError, ValueError, KeyError):
                seen[node.id] = None
        if len(set(seen.values())) == 1 and None not in seen.values():
            run.log(f"the nodes agree: commit and applied index {seen[1]}")
            return
        time.sleep(POLL_GAP_S)
    run.problem(f"the nodes did not reach one applied index within {AGREE_TIMEOUT_S} s: {seen}")


def check_deliveries(run, seqs):
    """The delivery workflows of a sample of messages (the newest and some drawn by the seed in
    each conversation), read through every node in turn, waiting up to SETTLE_S for the last
    signals to apply."""
    rng = random.Random(f"{run.args.seed}-deliveries")
    sample = []
    for conv, last in sorted(seqs.items()):
        picked = set(range(max(1, last - DELIVERY_SAMPLE + 1), last + 1))
        picked |= set(rng.sample(range(1, last + 1), min(last, DELIVERY_SAMPLE)))
        sample += [(conv, seq) for seq in sorted(picked)]
    end = time.monotonic() + SETTLE_S
    while True:
        timelines = {}
        for i, (conv, seq) in enumerate(sample):
            node = run.nodes[i % NODES]
            timelines[(conv, seq)] = admin([node], "GET",
                                           f"/v1/admin/conversations/{conv}/messages/{seq}")
        problems = chaos_checks.check_deliveries(timelines, run.members)
        if not problems or time.monotonic() > end:
            break
        time.sleep(POLL_GAP_S)
    run.log(f"delivery workflows of {len(sample)} messages read")
    for problem in problems:
        run.problem(problem)


def check_history(run, streams, chats):
    seqs = last_seqs(run)
    for user, stream in sorted(streams.items()):
        mine = {c: s for c, s in seqs.items() if user in run.members[c]}
        for problem in chaos_checks.check_stream(user, stream, mine):
            run.problem(problem)
        for problem in chaos_checks.check_chats(user, chats[user], stream, mine):
            run.problem(problem)
    unanswered = [k for k, v in run.sends.items() if not v]
    for problem in chaos_checks.check_sends(run.sends, streams, run.members, unanswered):
        run.problem(problem)
    for problem in chaos_checks.check_send_order(run.sends):
        run.problem(problem)
    for problem in chaos_checks.check_marks("ack", run.acks):
        run.problem(problem)
    for problem in chaos_checks.check_marks("read", run.reads):
        run.problem(problem)
    received = {d.id: d.received for d in run.devices}
    for device in run.devices:
        for problem in chaos_checks.check_live(device.id, device.received, streams[device.user]):
            run.problem(problem)
    for user, stream in sorted(streams.items()):
        devices = [d.id for d in run.devices if d.user == user]
        for problem in chaos_checks.check_read_convergence(user, devices, received, stream,
                                                           run.reads):
            run.problem(problem)
    return seqs


async def settle(run, workers):
    """Lets every device finish its pending send, then ack and read what it has, and waits until
    no change arrived for QUIET_S."""
    run.stop_new = True
    done, pending = await asyncio.wait(workers, timeout=SETTLE_S)
    if pending:
        run.problem(f"{len(pending)} devices still had a send unacknowledged {SETTLE_S} s after"
                    f" the heal")
        run.stop_clients = True
        await asyncio.wait(pending, timeout=REQUEST_TIMEOUT_S + 1)
    for task in done:
        if task.exception():
            run.problem(f"a device failed: {task.exception()!r}")
    await asyncio.gather(*(d.finish() for d in run.devices))
    end = time.monotonic() + SETTLE_S
    while time.monotonic() < end:
        if all(time.monotonic() - d.last_change_at > QUIET_S for d in run.devices):
            break
        await asyncio.sleep(POLL_GAP_S)
    run.stop_clients = True
    for device in run.devices:
        await device.drop()


async def restart_all(run, how, previous):
    """Stops every node (SIGTERM: a clean exit is expected; SIGKILL), starts them again, and
    times a full sync of every user through every node."""
    for node in run.nodes:
        if how == "SIGTERM":
            status = await asyncio.to_thread(node.terminate)
            if status != 0:
                run.problem(f"SIGTERM of node {node.id} ended with status {status}")
        else:
            node.kill()
    began = time.monotonic()
    for node in run.nodes:
        node.start()
    firsts = await asyncio.gather(*(full_sync(run, run.devices[0], node, max_pages=1)
                                    for node in run.nodes), return_exceptions=True)
    serving = time.monotonic() - began
    for node, first in zip(run.nodes, firsts):
        if isinstance(first, Exception):
            run.problem(f"after {how}: node {node.id} answered no sync page: {first!r}")
    streams, _ = await read_state(run, f"after {how} of every node")
    run.log(f"after {how}: from the restart to every node's first sync page {serving:.1f} s,"
            f" to the last page {time.monotonic() - began:.1f} s")
    if serving > RESTART_SYNC_BOUND_S:
        run.problem(f"after {how} of every node the first sync pages took {serving:.1f} s")
    for user, stream in sorted(streams.items()):
        for problem in chaos_checks.check_prefix(f"{user}'s stream after {how}", previous[user],
                                                 stream):
            run.problem(problem)
        if len(stream) != len(previous[user]):
            run.problem(f"{user}'s stream grew from {len(previous[user])} to {len(stream)}"
                        f" changes across a restart with no traffic")
    return streams


async def drive(run):
    for node in run.nodes:
        node.start()
    leader = await asyncio.to_thread(run.wait_for_leader, LEADER_TIMEOUT_S)
    run.log(f"leader {leader}")
    await asyncio.to_thread(run.provision)
    rng = random.Random(run.args.seed)
    workers = []
    for device in run.devices:
        device_rng = random.Random(f"{run.args.seed}-{device.id}")
        workers.append(asyncio.ensure_future(
            device.work(device_rng, run.conversations_of(device.user))))
    end = time.monotonic() + run.args.duration
    await nemesis(run, rng, end)
    run.log(f"nemesis done after {len(run.faults)} faults; healed; settling")
    await asyncio.to_thread(run.check_crashes)
    await asyncio.to_thread(run.wait_for_leader, LEADER_TIMEOUT_S)
    await settle(run, workers)
    await asyncio.to_thread(wait_for_agreement, run)
    streams, chats = await read_state(run, "after the run")
    seqs = await asyncio.to_thread(check_history, run, streams, chats)
    await asyncio.to_thread(check_deliveries, run, seqs)
    streams = await restart_all(run, "SIGTERM", streams)
    await restart_all(run, "SIGKILL", streams)
    await asyncio.to_thread(run.check_crashes)
    acked = sum(1 for v in run.sends.values() if v)
    counts = {f: run.faults.count(f) for f in FAULTS}
    run.log(f"summary: seed {run.args.seed}, {run.args.duration:.0f} s, faults {counts},"
            f" {acked} sends acknowledged ({run.existed} answered existed: true after a retry),"
            f" {sum(d.reconnects for d in run.devices)} connections,"
            f" {sum(len(v) for v in run.acks.values())} acks,"
            f" {sum(len(v) for v in run.reads.values())} reads, messages per conversation {seqs};"
            f" send retries after {dict(run.errors)}, sync page retries after"
            f" {dict(run.sync_retries)}")
    if acked == 0:
        run.problem("no send was acknowledged")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", default=None, help="copy the node logs here on failure")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 2 ** 31)
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("chaos: needs root and ip (iproute2) for network namespaces; skipped")
        return SKIP
    try:
        import websockets  # noqa: F401  (Debian's python3-websockets)
    except ImportError:
        print("chaos: needs python3-websockets (bash scripts/install-deps.sh); skipped")
        return SKIP
    os.environ.setdefault("HERALD_ADMIN_TOKEN", base64.b16encode(os.urandom(16)).decode())
    print(f"chaos: seed {args.seed}, duration {args.duration:.0f} s", flush=True)
    netns_cluster.remove_stale()
    topology = Topology(NODES)
    root = tempfile.mkdtemp(prefix="herald-chaos-")
    run = None
    ok = False

    def terminated(signum, frame):
        raise SystemExit(f"signal {signum}")
    signal.signal(signal.SIGTERM, terminated)
    try:
        topology.create()
        topology.enter_hub()
        run = Run(args, topology, root)
        asyncio.run(drive(run))
        ok = not run.problems
    finally:
        if run is not None:
            for node in run.nodes:
                node.resume()
                node.kill()
        topology.destroy()
        if ok:
            shutil.rmtree(root, ignore_errors=True)
        else:
            if args.keep:
                shutil.copytree(root, args.keep, dirs_exist_ok=True)
                shutil.rmtree(root, ignore_errors=True)
            print(f"chaos: node logs kept in {args.keep or root}")
    problems = len(run.problems) if run else 1
    print(f"chaos: seed {args.seed}: " + ("1 passed, 0 failed" if ok else
                                          f"0 passed, 1 failed ({problems} problems)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
