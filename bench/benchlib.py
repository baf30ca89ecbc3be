"""Shared pieces of Herald's Python benchmark helpers (standard library only)."""

import base64
import datetime
import http.client
import os
import re
import sys

HOST = "127.0.0.1"

# A Herald log line starts with its local wall time to the millisecond.
_LOG_TS = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}) ")


def make_logger(tag):
    """A log(msg) that writes "[tag] msg" to stderr."""
    def log(msg):
        print(f"[{tag}] {msg}", file=sys.stderr, flush=True)
    return log


# The operator credential: the nodes a benchmark starts inherit HERALD_ADMIN_TOKEN, and every
# operator request (and wrk, through bench/wrk/common.lua) sends it as a bearer token.
ADMIN_TOKEN = os.environ.setdefault("HERALD_ADMIN_TOKEN", base64.b16encode(os.urandom(16)).decode())
AUTH = {"Authorization": "Bearer " + ADMIN_TOKEN}


def write_cluster_secret(directory):
    """Writes a fresh cluster secret (32 random bytes, base64) to directory/cluster-secret,
    readable only by its owner, and returns the path for `herald serve --cluster-secret-file`."""
    path = os.path.join(directory, "cluster-secret")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    return path


def request(port, method, path, body=None, timeout=2.0):
    """One HTTP request on a fresh connection to HOST:port: (status, body bytes)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=AUTH)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def log_line_wall(line):
    """The wall time (epoch seconds) a Herald log line starts with, or None."""
    m = _LOG_TS.match(line)
    if not m:
        return None
    return datetime.datetime.fromisoformat(m.group(1)).timestamp()
