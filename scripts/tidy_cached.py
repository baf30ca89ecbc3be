#!/usr/bin/env python3
"""Runs clang-tidy over C++ sources, skipping those already found clean with identical input.

Usage: tidy_cached.py BUILD_DIR [--checks=...] -- FILE...

A source is clean when clang-tidy exits 0 on it (the configuration turns every warning into an
error). Its result depends only on: the clang-tidy build, the .clang-tidy configuration, the extra
arguments, the source's compile command, and the text of every file it includes. The key of a
clean run is the SHA-256 of all of these (paths inside the repository are made relative, so a
clone elsewhere shares the cache); a later run with the same key is skipped. Findings are never
cached, so a source with findings is checked again every time.

The cache lives in $HERALD_TIDY_CACHE (default: ~/.cache/herald/tidy), one empty file per key.
HERALD_TIDY_NO_CACHE=1 checks every file. Parallelism: $JOBS, default the number of cores.
"""

import concurrent.futures
import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "herald" / "tidy"
    return Path(os.environ.get("HERALD_TIDY_CACHE", default))


def compile_commands(build_dir: Path) -> dict:
    with open(build_dir / "compile_commands.json", encoding="utf-8") as f:
        entries = json.load(f)
    return {str(Path(e["file"]).resolve()): e for e in entries}


def dependency_command(entry: dict) -> list:
    """The entry's compile command, changed to list the files the source includes."""
    args = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
    out = []
    skip_next = False
    for arg in args:
        if skip_next:
            skip_next = False
            continue
        if arg == "-o":
            skip_next = True
            continue
        if arg == "-c":
            continue
        out.append(arg)
    return out + ["-M", "-MG"]


class Hasher:
    """SHA-256 of files, each read once per run."""

    def __init__(self, roots):
        self.roots = [str(r) for r in roots]
        self.memo = {}

    def relative(self, text: str) -> str:
        for root in self.roots:
            text = text.replace(root, "<root>")
        return text

    def file(self, path: str) -> str:
        if path not in self.memo:
            try:
                self.memo[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            except OSError:
                self.memo[path] = "missing"
        return self.memo[path]


def key_of(source: str, entry: dict, hasher: Hasher, salt: str) -> str:
    command = dependency_command(entry)
    run = subprocess.run(command, cwd=entry["directory"], capture_output=True, text=True,
                         check=False)
    if run.returncode != 0:
        return ""  # cannot list the dependencies: no key, always check
    deps = run.stdout.replace("\\\n", " ").split(":", 1)[-1].split()
    h = hashlib.sha256(salt.encode())
    h.update(hasher.relative(" ".join(command)).encode())
    for dep in deps:
        path = str((Path(entry["directory"]) / dep).resolve())
        h.update(hasher.relative(path).encode())
        h.update(hasher.file(path).encode())
    return h.hexdigest()


def main() -> int:
    argv = sys.argv[1:]
    if "--" not in argv or len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    split = argv.index("--")
    build_dir = Path(argv[0]).resolve()
    extra = argv[1:split]
    files = argv[split + 1:]
    entries = compile_commands(build_dir)
    version = subprocess.run(["clang-tidy", "--version"], capture_output=True, text=True,
                             check=True).stdout
    config = (REPO / ".clang-tidy").read_text(encoding="utf-8")
    salt = "\0".join([version, config, " ".join(extra)])
    hasher = Hasher([build_dir, REPO])
    use_cache = os.environ.get("HERALD_TIDY_NO_CACHE", "0") != "1"
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)

    def check(name: str):
        source = str((REPO / name).resolve())
        entry = entries.get(source)
        if entry is None:  # not part of this build (a driver whose library is not installed)
            return name, True, False, f"tidy: {name} is not in this build; not checked\n"
        key = key_of(source, entry, hasher, salt) if (entry and use_cache) else ""
        if key and (cache / key).exists():
            return name, True, True, ""
        run = subprocess.run(["clang-tidy", "-p", str(build_dir), "--quiet", *extra, source],
                             capture_output=True, text=True, check=False)
        clean = run.returncode == 0
        if clean and key:
            (cache / key).touch()
        return name, clean, False, run.stdout + run.stderr

    jobs = int(os.environ.get("JOBS", os.cpu_count() or 1))
    failed = []
    cached = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for name, clean, hit, output in pool.map(check, files):
            cached += hit
            if not clean:
                failed.append(name)
            if output and (not clean or output.startswith("tidy: ")):
                sys.stdout.write(output)
    print(f"tidy: {len(files)} files under {build_dir.name}, {cached} unchanged since a clean run")
    if failed:
        print("tidy: findings in " + " ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
