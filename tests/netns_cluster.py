"""Real `herald serve` processes, each in a network namespace of its own, for fault injection.

Topology (all of it inside namespaces this module creates; nothing is configured on the host):

    <prefix>-n1 (eth0 10.77.0.1) --veth--+
    <prefix>-n2 (eth0 10.77.0.2) --veth--+-- br0 (10.77.0.254) in <prefix>-hub
    <prefix>-n3 (eth0 10.77.0.3) --veth--+

The driver joins the hub namespace (enter_hub) and reaches every node's client port at
10.77.0.N:7400; peers talk over 10.77.0.N:7401. Names carry the driver's pid, so parallel runs
cannot collide, and `remove_stale` deletes what a killed driver left behind.

Faults: `cut(a, b)` drops every packet node a sends to node b (a blackhole route in a's namespace;
one way: b's packets still reach a), `link(n, up)` takes node n's interface down or up (cut off
from peers and clients alike), and the process signals on Node (SIGKILL, SIGTERM, SIGSTOP,
SIGCONT). `heal` removes every cut and brings every link up.

Requires root (ip netns). Every wait is bounded.
"""

import ctypes
import os
import re
import signal
import subprocess
import time

SUBNET_PREFIX = "10.77.0."
HUB_ADDRESS = SUBNET_PREFIX + "254"
CLIENT_PORT = 7400
PEER_PORT = 7401
# Bound on one `ip` command.
IP_TIMEOUT_S = 10
# Bound on a SIGTERM'd node's exit before it is SIGKILLed.
STOP_TIMEOUT_S = 10
NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
NAME_PATTERN = re.compile(r"^hchaos(\d+)-")

_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args, check=True):
    """Runs `ip ARGS`; raises with its stderr when it fails and `check` is set."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def remove_stale():
    """Deletes the namespaces of earlier runs whose driver process no longer exists."""
    if not os.path.isdir(NETNS_DIR):
        return
    for name in os.listdir(NETNS_DIR):
        match = NAME_PATTERN.match(name)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            ip("netns", "del", name, check=False)


def node_address(node_id):
    return SUBNET_PREFIX + str(node_id)


def _die_with_parent():
    # Runs in the child between fork and exec: a driver that dies takes its nodes with it.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Topology:
    """The hub namespace with its bridge and one namespace per node, joined by veth pairs."""

    def __init__(self, size):
        self.prefix = f"hchaos{os.getpid()}"
        self.hub = f"{self.prefix}-hub"
        self.size = size
        self.created = []
        self.cuts = set()  # (from, to) node ids
        self.down = set()  # node ids whose link is down

    def ns(self, node_id):
        return f"{self.prefix}-n{node_id}"

    def create(self):
        ip("netns", "add", self.hub)
        self.created.append(self.hub)
        ip("-n", self.hub, "link", "set", "lo", "up")
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hub, "addr", "add", HUB_ADDRESS + "/24", "dev", "br0")
        ip("-n", self.hub, "link", "set", "br0", "up")
        for n in range(1, self.size + 1):
            ns = self.ns(n)
            ip("netns", "add", ns)
            self.created.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", self.hub, "link", "add", f"v{n}", "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            ip("-n", self.hub, "link", "set", f"v{n}", "master", "br0")
            ip("-n", self.hub, "link", "set", f"v{n}", "up")
            ip("-n", ns, "addr", "add", node_address(n) + "/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")

    def enter_hub(self):
        """Moves the calling thread (call it before starting any other) into the hub namespace."""
        fd = os.open(os.path.join(NETNS_DIR, self.hub), os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, "setns: " + os.strerror(err))
        finally:
            os.close(fd)

    def destroy(self):
        for name in reversed(self.created):
            ip("netns", "del", name, check=False)
        self.created = []

    def cut(self, a, b):
        """Node a's packets to node b are dropped from now on (b's to a still arrive)."""
        if (a, b) not in self.cuts:
            ip("-n", self.ns(a), "route", "add", "blackhole", node_address(b) + "/32")
            self.cuts.add((a, b))

    def link(self, node_id, up):
        ip("-n", self.ns(node_id), "link", "set", "eth0", "up" if up else "down")
        if up:
            self.down.discard(node_id)
        else:
            self.down.add(node_id)

    def heal(self):
        for a, b in sorted(self.cuts):
            ip("-n", self.ns(a), "route", "del", "blackhole", node_address(b) + "/32", check=False)
        self.cuts.clear()
        for n in sorted(self.down):
            ip("-n", self.ns(n), "link", "set", "eth0", "up", check=False)
        self.down.clear()


class Node:
    """One `herald serve` process in its namespace; its data directory outlives restarts."""

    def __init__(self, topology, node_id, binary, root, secret_file, env):
        self.topology = topology
        self.id = node_id
        self.binary = binary
        self.data_dir = os.path.join(root, f"n{node_id}")
        self.log_path = os.path.join(root, f"n{node_id}.log")
        self.secret_file = secret_file
        self.env = env
        self.proc = None
        self.paused = False
        self.starts = 0

    @property
    def address(self):
        return node_address(self.id)

    def start(self):
        assert self.proc is None, f"node {self.id} is running"
        peers = ",".join(f"{n}={node_address(n)}:{PEER_PORT}"
                         for n in range(1, self.topology.size + 1))
        with open(self.log_path, "ab") as log:
            log.write(f"=== start {self.starts + 1} at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.topology.ns(self.id), self.binary, "serve",
                 "--id", str(self.id), "--data", self.data_dir,
                 "--client", f"{self.address}:{CLIENT_PORT}",
                 "--peer", f"{self.address}:{PEER_PORT}", "--peers", peers,
                 "--cluster-secret-file", self.secret_file],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                preexec_fn=_die_with_parent)
        self.starts += 1
        self.paused = False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def exited_on_its_own(self):
        """The exit status when the process ended without being told to; None while it runs."""
        if self.proc is None:
            return None
        return self.proc.poll()

    def kill(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.proc = None
        self.paused = False

    def terminate(self):
        """SIGTERM and a bounded wait; returns the exit status (None when it had to be killed)."""
        if self.proc is None:
            return None
        if self.paused:
            self.resume()
        self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            status = None
        self.kill()
        return status

    def pause(self):
        if self.alive():
            self.proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self):
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False
