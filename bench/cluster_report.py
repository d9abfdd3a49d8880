"""The tables of bench/cluster, from the numbers it gathered:

    python3 bench/cluster_report.py WORK_DIR > bench/CLUSTER.md

Per setup key (`FORMAT-SETUP`, e.g. `csv.gz-ballista-2`) in WORK_DIR:
- times.txt: one line per timed run, `key rep wall_s cpu_s max_rss_kib
  tail_s` (bench/measure.py's numbers for the client);
- KEY.procs: one line per cluster process (scheduler first, then the
  executors), `peak_rss_kib cpu_s disk_write_bytes` at the end of the
  setup's runs, then the same just before its first timed run;
- KEY.steps: the steps' times of its last run;
- FORMAT.sizes: raw bytes, the fact's Parquet bytes and rows.
SF, FORMATS, REPS and BIN come from the environment.
"""

import datetime
import os
import platform
import statistics
import subprocess
import sys

SETUPS = [
    ("local", "local engine (one process)"),
    ("ballista-1", "Ballista: scheduler + 1 executor"),
    ("ballista-2", "Ballista: scheduler + 2 executors"),
]


def mib(kib):
    return f"{kib / 1024:.0f}"


def main(work):
    runs = {}
    with open(os.path.join(work, "times.txt")) as f:
        for line in f:
            key, _, wall, cpu, rss, _ = line.split()
            runs.setdefault(key, []).append((float(wall), float(cpu), int(rss)))
    sf, reps, binary = os.environ["SF"], os.environ["REPS"], os.environ["BIN"]
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print("# shelfline on a Ballista cluster against the local engine\n")
    print(f"Produced by `SF={sf} REPS={reps} bash bench/cluster` on "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.\n")
    print(f"- Machine: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
          f"every process of the cluster on this one machine, over loopback; each executor "
          "runs up to 2 tasks at once.")
    print(f"- shelfline: {version} (`{binary}`), commit {commit}.")
    print(f"- Raw files: bench/run's SF {sf} cache, logical date 2025-12-31; "
          f"{reps} timed runs per setup after one warm-up run whose lake was checked "
          "equal to the local engine's (`bench/peers/agree.py`).\n")
    print("Wall and client CPU: median (wall also min–max) of the `shelfline transform` "
          "process; cluster CPU: user + system seconds of the scheduler and the executors "
          "over all timed runs, divided by the runs; peak RSS: the highest resident set of "
          "each process over its whole life (warm-up included).\n")
    for fmt in os.environ["FORMATS"].split():
        print_format(work, fmt, runs)


def print_format(work, fmt, runs):
    print(f"## {fmt} raw files\n")
    print("| setup | median wall s | min–max s | client CPU s | cluster CPU s per run "
          "| peak RSS MiB: client | scheduler | executors |")
    print("|---|--:|--:|--:|--:|--:|--:|---|")
    for setup, label in SETUPS:
        key = f"{fmt}-{setup}"
        if key not in runs:
            continue
        walls = [r[0] for r in runs[key]]
        cpus = [r[1] for r in runs[key]]
        client_rss = max(r[2] for r in runs[key])
        procs = read_procs(os.path.join(work, f"{key}.procs"))
        cluster_cpu = sum(p[1] - p[2] for p in procs) / len(walls)
        scheduler = mib(procs[0][0]) if procs else "—"
        executors = ", ".join(mib(p[0]) for p in procs[1:]) or "—"
        cluster = f"{cluster_cpu:.2f}" if procs else "—"
        print(f"| {label} | {statistics.median(walls):.2f} | {min(walls):.2f}–{max(walls):.2f} "
              f"| {statistics.median(cpus):.2f} | {cluster} | {mib(client_rss)} | {scheduler} | {executors} |")
    print_volumes(work, fmt)


def print_volumes(work, fmt):
    """What moves where: the steps' times, the shuffle, the result."""
    raw_bytes, fact_bytes, fact_rows = read_words(os.path.join(work, f"{fmt}.sizes"))
    print(f"\nRaw files {int(raw_bytes) / 2**20:.0f} MiB; the fact: {fact_rows} rows, "
          f"{int(fact_bytes) / 2**20:.1f} MiB as zstd Parquet in the lake (on the cluster, "
          "sent from the executors to the client as Arrow).\n")
    print("| setup | steps of the last run (as `transform` reports them) "
          "| written to disk by the executors per run (shuffle files, final results included) |")
    print("|---|---|--:|")
    for setup, label in SETUPS:
        key = f"{fmt}-{setup}"
        steps = read_words(os.path.join(work, f"{key}.steps"))
        if not steps:
            continue
        executors = read_procs(os.path.join(work, f"{key}.procs"))[1:]
        runs = int(os.environ["REPS"])
        written = sum(p[4] - p[3] for p in executors) / runs
        volume = f"{written / 2**20:.0f} MiB" if executors else "—"
        print(f"| {label} | {' '.join(steps)} | {volume} |")
    print()


def read_words(path):
    """The whitespace-separated words of a file, or [] if it is missing."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().split()


def read_procs(path):
    """[(peak_rss_kib, cpu_after_s, cpu_before_s, written_before, written_after)]
    per process."""
    if not os.path.exists(path):
        return []
    procs = []
    with open(path) as f:
        for line in f:
            hwm, cpu_after, written_after, _, cpu_before, written_before = line.split()
            procs.append((int(hwm), float(cpu_after), float(cpu_before),
                          int(written_before), int(written_after)))
    return procs


if __name__ == "__main__":
    main(sys.argv[1])
