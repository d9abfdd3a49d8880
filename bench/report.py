"""Tables for bench/run, from the numbers bench/measure.py wrote.

    python3 bench/report.py stage bench/data/sf1/datagen.stats   # one stage's line
    python3 bench/report.py table SF FORMAT    # one comparison (bench/out/sf$SF/$FORMAT/times.tsv)
    python3 bench/report.py results            # the whole results file, to stdout

`results` reads SFS, FORMATS, PEERS, REPS, DATE and BIN from the environment
(bench/run exports them).
"""

import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from importlib import metadata

LABELS = {
    "floor-gzip": "floor: `gzip -dc`, both files at once",
    "floor-parse": "floor: decompress + parse, both files at once",
}
FLOOR_PARQUET = "floor: read + decode, both files at once"
STAGES = ["datagen", "extract-csv.gz", "extract-parquet"]


def mib(kib):
    return f"{kib / 1024:.0f}"


def read_stats(path):
    """wall_s cpu_s max_rss_kib tail_s [date [note...]] -> dict."""
    with open(path) as f:
        fields = f.read().split()
    return {
        "wall": float(fields[0]), "cpu": float(fields[1]), "rss": int(fields[2]),
        "when": " ".join(fields[4:]) if len(fields) > 4 else "",
    }


def stage_line(path):
    s = read_stats(path)
    return f"{s['wall']:.2f} s wall, {s['cpu']:.2f} s CPU, peak RSS {mib(s['rss'])} MiB"


def read_times(sf, fmt):
    runs = {}
    with open(f"bench/out/sf{sf}/{fmt}/times.tsv") as f:
        for line in f:
            system, _rep, wall, cpu, rss, _tail = line.rstrip("\n").split("\t")
            runs.setdefault(system, []).append((float(wall), float(cpu), int(rss)))
    return runs


def table(sf, fmt):
    runs = read_times(sf, fmt)
    medians = {system: statistics.median(r[0] for r in rs) for system, rs in runs.items()}
    ours = medians["shelfline"]
    lines = [
        "| system | median wall s | min–max s | CPU s | peak RSS MiB | shelfline ÷ system |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for system, rs in runs.items():
        walls = [r[0] for r in rs]
        label = LABELS.get(system, system)
        if system == "floor-parse" and fmt == "parquet":
            label = FLOOR_PARQUET
        ratio = "—" if system == "shelfline" else f"{ours / medians[system]:.3g}"
        lines.append(
            f"| {label} | {medians[system]:.2f} | {min(walls):.2f}–{max(walls):.2f} "
            f"| {statistics.median(r[1] for r in rs):.2f} | {mib(max(r[2] for r in rs))} | {ratio} |"
        )
    return "\n".join(lines)


def run(*command):
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unavailable"
    return (done.stdout or done.stderr).strip().splitlines()[0]


def version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine():
    with open("/proc/meminfo") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    load = os.environ.get("LOAD_AT_START", "unknown")
    return (
        f"{run('nproc')} CPUs ({cpu_model()}), {kib / 1024 ** 2:.1f} GiB RAM, {platform.system()} {platform.release()}; "
        f"load average {load} when the bench started"
    )


def java_version():
    line = run("java", "-version")
    match = re.search(r'"([^"]+)"', line)
    return f"Java {match.group(1)}" if match else line


def cpu_model():
    done = subprocess.run(["lscpu"], capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def raw_sizes(sf):
    """'sales N rows, inventory M rows; csv.gz X MB, parquet Y MB' from the manifests."""
    parts, rows = [], None
    for fmt, folder in (("csv.gz", "raw"), ("parquet", "raw-parquet")):
        path = f"bench/data/sf{sf}/{folder}/_manifests/{os.environ['DATE']}.json"
        if not os.path.exists(path):
            continue
        with open(path) as f:
            tables = json.load(f)["tables"]
        rows = f"sales {tables['sales']['rows']:,} rows, inventory {tables['inventory']['rows']:,} rows"
        size = tables["sales"]["bytes"] + tables["inventory"]["bytes"]
        parts.append(f"{size / 1e6:.1f} MB as {fmt}")
    return f"{rows} ({', '.join(parts)})" if rows else ""


def results():
    env = os.environ
    sfs, formats, peers = env["SFS"].split(), env["FORMATS"].split(), env["PEERS"].split()
    binary = env["BIN"]
    commit = run("git", "rev-parse", "--short", "HEAD")
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"], capture_output=True, text=True
    ).stdout.strip()
    reps = env["REPS"].split()
    if len(reps) == 1:
        rounds = "1 round" if reps[0] == "1" else f"{reps[0]} rounds"
    else:
        rounds = "rounds (" + ", ".join(f"{r} at SF {sf}" for sf, r in zip(sfs, reps)) + ")"
    knobs = f'SFS="{env["SFS"]}" REPS="{env["REPS"]}" PEERS="{env["PEERS"]}" FORMATS="{env["FORMATS"]}"'
    out = [
        "# shelfline benchmark: transform against peers",
        "",
        f"Produced by `{knobs} bash bench/run` on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        f"- Machine: {machine()}.",
        f"- shelfline: {run(binary, '--version')} (`{binary}`), commit {commit}"
        + (" with uncommitted changes to src/ or Cargo files" if dirty else "") + ".",
        f"- Peers: Python {platform.python_version()}, duckdb {version('duckdb')}, polars {version('polars')}, "
        f"pyspark {version('pyspark')} on {java_version()}; floor with pyarrow {version('pyarrow')}.",
        f"- Logical date {env['DATE']}; datagen's default range (365 days from 2025-01-01).",
        "",
        "Each system reads the same raw files and writes its own output: shelfline",
        "`transform` publishes a fresh lake (removed before every run), each peer",
        "(`bench/peers/<peer>_weekly.py`) writes Hive-partitioned Parquet. Every peer's",
        "output agreed with shelfline's table row for row (`bench/peers/agree.py`:",
        "decimals exact, floats within 1e-9) before any run was timed. After one warm-up",
        f"run of each (files in the page cache), {rounds} ran shelfline and then each peer",
        "and the floor in turn. Wall: median and min–max over the rounds; CPU: median user +",
        "system seconds of the whole process tree; peak RSS: the largest single process",
        "(the JVM for Spark), highest over the rounds; shelfline ÷ system: ratio of the",
        "median walls (below 1: shelfline is faster). Measured by `bench/measure.py`, which",
        "also catches processes left running by their parent (PySpark's JVM).",
        "",
        "The floor: just decompressing (`gzip -dc`) and parsing the sales and inventory files,",
        "both at once. Parsing is pyarrow's CSV reader with the contract's explicit types",
        "(every column, into memory, `bench/floor.py`; includes Python's start-up and",
        "pyarrow's import, about 0.1 s); for Parquet raw files, pyarrow reading and decoding",
        "every column.",
    ]
    stage_rows = []
    for sf in sfs:
        for stage in STAGES:
            path = f"bench/data/sf{sf}/{stage}.stats"
            if os.path.exists(path):
                s = read_stats(path)
                stage_rows.append(
                    f"| {sf} | {stage.replace('-', ' ')} | {s['wall']:.2f} | {s['cpu']:.2f} | {mib(s['rss'])} | {s['when']} |"
                )
    if stage_rows:
        out += [
            "",
            "## Datagen and extract",
            "",
            "Run only when the cached files in `bench/data/sf$SF` are missing; the numbers are",
            "from the run that made them.",
            "",
            "| SF | stage | wall s | CPU s | peak RSS MiB | measured on |",
            "|---|---|--:|--:|--:|---|",
            *stage_rows,
        ]
    for sf in sfs:
        out += ["", f"## SF {sf}", "", f"Raw files: {raw_sizes(sf)}."]
        for fmt in formats:
            out += ["", f"### {fmt} raw files", "", table(sf, fmt)]
    if not peers:
        out += ["", "(No peers: PEERS was empty.)"]
    return "\n".join(out) + "\n"


def main(argv):
    if argv[:1] == ["stage"] and len(argv) == 2:
        print(f"   {stage_line(argv[1])}")
    elif argv[:1] == ["table"] and len(argv) == 3:
        print(f"SF {argv[1]}, {argv[2]} raw files:")
        print(table(argv[1], argv[2]))
    elif argv == ["results"]:
        sys.stdout.write(results())
    else:
        sys.exit(__doc__.split("\n\n")[1])


if __name__ == "__main__":
    main(sys.argv[1:])
