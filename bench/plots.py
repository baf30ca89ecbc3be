#!/usr/bin/env python3
"""Sweeps of the messaging and connection benchmarks, drawn as PNG plots with gnuplot.

Run by bench/plots.sh, which documents the environment. Three sweeps, each a series of runs of
the existing benchmark scripts, one system at a time (the scripts start every system fresh):

1. devices: bench/messaging.sh in direct mode for each PAIRS value (2 devices per pair), for each
   system: acknowledged sends/s and send-to-receipt p99 against connected devices.
2. group: bench/messaging.sh in group mode (one sender) for each GROUP_SIZE: messages/s (every
   recipient's copy) and p99 against group size.
3. memory: bench/connections.sh for each DEVICES value: the node's resident memory with every
   device idle, and per idle device, against connected devices.

Each point is the median of RUNS runs (the LOADGEN_RESULT / CONNBENCH_RESULT lines). A point
whose run failed (a system that cannot set up that many clients, say) is left out of its plot
and reported. Writes OUT_DIR/<sweep>.dat (whitespace-separated, one row per point, `#` header)
and OUT_DIR/<plot>.png.
"""

import argparse
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MESSAGING = os.path.join(REPO, "bench", "messaging.sh")
CONNECTIONS = os.path.join(REPO, "bench", "connections.sh")

# A run that takes longer than this (set-up, warm-up, window and shutdown) has hung.
RUN_TIMEOUT_S = 900


def log(msg):
    print(f"[plots] {msg}", file=sys.stderr, flush=True)


def parse_result(line):
    """`TAG key=value ...` -> {key: value}."""
    fields = {}
    for item in line.split()[1:]:
        key, _, value = item.partition("=")
        fields[key] = value
    return fields


def run_script(script, env_extra, tag):
    """Runs one benchmark script with env_extra; the result dicts of its `tag` lines, or None
    when it failed."""
    env = dict(os.environ, **env_extra)
    log(f"{os.path.basename(script)} {' '.join(f'{k}={v}' for k, v in env_extra.items())}")
    try:
        proc = subprocess.run(["bash", script], env=env, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        log("  timed out")
        return None
    results = [parse_result(l) for l in proc.stdout.splitlines() + proc.stderr.splitlines()
               if l.startswith(tag + " ")]
    if proc.returncode != 0 or not results:
        tail = "\n".join(proc.stderr.splitlines()[-3:])
        log(f"  failed (exit {proc.returncode}): {tail}")
        return None
    return results


def median_of(results, key):
    return statistics.median(float(r[key]) for r in results)


# The x column of each messaging sweep's data file.
X_NAMES = {"devices": "devices", "group": "group_size"}


def sweep_messaging(args, out, name, values, env_key, x_of, rate_key):
    """One messaging sweep: for each system and each value of `values` (passed as env_key), the
    medians of rate_key, p99 and server CPU; writes OUT/<name>.dat with x_of(value) as x."""
    rows = []
    for system in args.systems:
        for value in values:
            results = run_script(MESSAGING, {"SYSTEMS": system, env_key: str(value),
                                             "RUNS": str(args.runs),
                                             "DURATION": str(args.duration)}, "LOADGEN_RESULT")
            if results is None:
                continue
            rows.append((system, x_of(value), median_of(results, rate_key),
                         median_of(results, "p99_ms"),
                         median_of(results, "server_cpu_us_per_msg")))
    with open(os.path.join(out, f"{name}.dat"), "w") as f:
        f.write(f"# system {X_NAMES[name]} {rate_key} p99_ms server_cpu_us_per_msg\n")
        for row in rows:
            f.write("%s %d %.1f %.2f %.1f\n" % row)
    return rows


def sweep_devices(args, out):
    """Direct pairs: x is the connected devices (2 per pair), y the acknowledged sends/s."""
    return sweep_messaging(args, out, "devices", args.pairs, "PAIRS", lambda p: 2 * p,
                           "sends_per_s")


def sweep_group(args, out):
    """One group, one sender: x is the group size, y the messages/s (every recipient's copy)."""
    return sweep_messaging(args, out, "group", args.group_sizes, "GROUP_SIZE", lambda g: g,
                           "msgs_per_s")


def sweep_memory(args, out):
    rows = []
    for devices in args.devices:
        results = run_script(CONNECTIONS, {"DEVICES": str(devices), "RUNS": str(args.runs)},
                             "CONNBENCH_RESULT")
        if results is None:
            continue
        rows.append((devices, median_of(results, "rss_idle_mib"),
                     median_of(results, "bytes_per_device")))
    with open(os.path.join(out, "memory.dat"), "w") as f:
        f.write("# devices rss_idle_mib bytes_per_device\n")
        for row in rows:
            f.write("%d %.1f %.0f\n" % row)
    return rows


def quoted(text):
    """A gnuplot single-quoted string holding text (a quote inside is doubled)."""
    return "'" + text.replace("'", "''") + "'"


def series_plot(png, title, xlabel, ylabel, dat, xcol, ycol, systems, logx, logy):
    """gnuplot commands for one line per system of dat's rows."""
    lines = [
        "set terminal pngcairo size 800,500 font 'DejaVu Sans,10'",
        f"set output {quoted(png)}",
        f"set title {quoted(title)}",
        f"set xlabel {quoted(xlabel)}",
        f"set ylabel {quoted(ylabel)}",
        "set key left top",
        "set grid",
    ]
    if logx:
        lines.append("set logscale x 2")
    if logy:
        lines.append("set logscale y 10")
    plots = [f"{quoted(dat)} using {xcol}:(strcol(1) eq {quoted(s)} ? ${ycol} : 1/0) "
             f"with linespoints title {quoted(s)}" for s in systems]
    lines.append("plot " + ", \\\n  ".join(plots))
    return "\n".join(lines) + "\n"


def draw(args, out, have):
    script = []
    d = os.path.join(out, "devices.dat")
    g = os.path.join(out, "group.dat")
    m = os.path.join(out, "memory.dat")
    if have.get("devices"):
        script.append(series_plot(os.path.join(out, "throughput-vs-devices.png"),
                                  "Acknowledged sends/s against connected devices (direct)",
                                  "connected devices (2 per pair)", "sends/s", d, 2, 3,
                                  args.systems, True, True))
        script.append(series_plot(os.path.join(out, "p99-vs-devices.png"),
                                  "Send-to-receipt p99 against connected devices (direct)",
                                  "connected devices (2 per pair)", "p99 ms", d, 2, 4,
                                  args.systems, True, True))
    if have.get("group"):
        script.append(series_plot(os.path.join(out, "throughput-vs-group.png"),
                                  "Messages/s (every recipient's copy) against group size",
                                  "group members", "messages/s", g, 2, 3, args.systems,
                                  True, True))
        script.append(series_plot(os.path.join(out, "p99-vs-group.png"),
                                  "Send-to-receipt p99 against group size", "group members",
                                  "p99 ms", g, 2, 4, args.systems, True, True))
    if have.get("memory"):
        script.append("\n".join([
            "set terminal pngcairo size 800,500 font 'DejaVu Sans,10'",
            f"set output {quoted(os.path.join(out, 'memory-vs-connections.png'))}",
            "set title 'Herald, one node: resident memory with every device idle'",
            "set xlabel 'connected devices'",
            "set ylabel 'resident MiB'",
            "set y2label 'bytes per idle device'",
            "set ytics nomirror", "set y2tics", "set grid", "set key left top",
            "unset logscale",
            f"plot {quoted(m)} using 1:2 with linespoints title 'resident MiB', \\",
            f"  {quoted(m)} using 1:3 axes x1y2 with linespoints title 'bytes per idle device'",
        ]) + "\n")
    if not script:
        return
    subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--sweeps", nargs="+", default=["devices", "group", "memory"],
                    choices=["devices", "group", "memory"])
    ap.add_argument("--systems", nargs="+", required=True)
    ap.add_argument("--pairs", nargs="+", type=int, required=True)
    ap.add_argument("--group-sizes", nargs="+", type=int, required=True)
    ap.add_argument("--devices", nargs="+", type=int, required=True)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--duration", type=int, default=10)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    have = {}
    sweeps = {"devices": sweep_devices, "group": sweep_group, "memory": sweep_memory}
    for name in args.sweeps:
        rows = sweeps[name](args, args.out)
        have[name] = bool(rows)
        for row in rows:
            print(f"PLOTS_POINT sweep={name} " + " ".join(str(v) for v in row), flush=True)
    draw(args, args.out, have)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
