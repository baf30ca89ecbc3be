"""Process-level test harness: real `herald serve` processes on loopback.

Starts N nodes with distinct client and peer ports and data directories, finds the leader via
GET /v1/cluster, kills nodes with SIGKILL and restarts them on the same data. Only 127.0.0.1.
"""

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse


def write_cluster_secret(directory):
    """Writes a fresh random cluster secret (32 bytes, base64) readable only by its owner."""
    path = os.path.join(directory, "cluster-secret")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    return path


# The operator credential every node of a test cluster is started with (HERALD_ADMIN_TOKEN, which
# the nodes inherit) and every operator request carries.
ADMIN_TOKEN = os.environ.setdefault("HERALD_ADMIN_TOKEN", base64.b16encode(os.urandom(16)).decode())
AUTH = {"Authorization": "Bearer " + ADMIN_TOKEN}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, node_id, binary, data_dir, client_port, peer_port, peers_spec, log_path,
                 secret_file, config_file=None):
        self.id = node_id
        self.binary = binary
        self.data_dir = data_dir
        self.client_port = client_port
        self.peer_port = peer_port
        self.peers_spec = peers_spec
        self.log_path = log_path
        self.secret_file = secret_file
        self.config_file = config_file
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--id", str(self.id), "--data", self.data_dir,
             "--client", f"127.0.0.1:{self.client_port}",
             "--peer", f"127.0.0.1:{self.peer_port}", "--peers", self.peers_spec,
             "--cluster-secret-file", self.secret_file]
            + (["--config", self.config_file] if self.config_file else []),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def terminate(self, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    def __init__(self, binary, size=3, config_text=None):
        """config_text: TOML every node also reads (--config), e.g. a [storage] table."""
        self.root = tempfile.mkdtemp(prefix="herald-cluster-")
        ports = [(free_port(), free_port()) for _ in range(size)]
        spec = ",".join(f"{i + 1}=127.0.0.1:{p[1]}" for i, p in enumerate(ports))
        secret = write_cluster_secret(self.root)
        config_file = None
        if config_text:
            config_file = os.path.join(self.root, "herald.toml")
            with open(config_file, "w") as f:
                f.write(config_text)
        self.nodes = [
            Node(i + 1, binary, os.path.join(self.root, f"n{i + 1}"), c, p, spec,
                 os.path.join(self.root, f"n{i + 1}.log"), secret, config_file)
            for i, (c, p) in enumerate(ports)]

    def start(self):
        for n in self.nodes:
            n.start()

    def stop(self, keep=False):
        for n in self.nodes:
            n.kill()
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def node(self, node_id):
        return self.nodes[node_id - 1]

    def leader(self, timeout=10.0):
        """Returns the id of the leader that every live node agrees on, or raises."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = set()
            for n in self.nodes:
                if not n.alive():
                    continue
                try:
                    status, body, _ = request(n.client_port, "GET", "/v1/cluster", timeout=1)
                except OSError:
                    continue
                if status == 200:
                    seen.add(json.loads(body)["leader"])
            if len(seen) == 1 and None not in seen:
                return seen.pop()
            time.sleep(0.05)
        raise TimeoutError("no agreed leader")


def request(port, method, path, body=None, timeout=5.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=AUTH)
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


def kv_path(key):
    return "/v1/kv/" + urllib.parse.quote(key, safe="")
