"""The results of bench/extract-mysql, as Markdown, from its work folder.

    python3 bench/extract_report.py WORK_DIR SF REPS

WORK_DIR holds times.tsv (bench/measure.py's numbers per system and round),
logs/ (each run's output) and shelfline/ (shelfline's raw files, whose
manifest gives the rows and whose CSV gives the bytes per table).
"""

import gzip
import json
import os
import platform
import re
import statistics
import subprocess
import sys

TABLES = ["store", "product", "calendar", "sales", "inventory"]
DATE = "2025-12-31"
LABELS = {
    "shelfline": "shelfline extract (gzip CSV, 5 tables in parallel)",
    "pymysql": "pymysql SELECT * + csv + gzip (buffered cursor, the original Lambda)",
    "pymysql-stream": "pymysql SELECT * + csv + gzip (unbuffered SSCursor)",
    "mysql-batch": "mariadb --batch --quick, piped to gzip -6",
    "mysqldump-tab": "mariadb-dump --tab (server writes TSV, uncompressed)",
}


def medians(work):
    runs = {}
    with open(os.path.join(work, "times.tsv")) as f:
        for line in f:
            name, rep, wall, cpu, rss, _ = line.rstrip("\n").split("\t")
            if rep != "0":
                runs.setdefault(name, []).append((float(wall), float(cpu), int(rss)))
    return {
        name: tuple(statistics.median(r[i] for r in rounds) for i in range(3))
        for name, rounds in runs.items()
    }


def table_sizes(work):
    """rows and uncompressed CSV bytes per table, from shelfline's raw files."""
    with open(os.path.join(work, "shelfline", "_manifests", f"{DATE}.json")) as f:
        manifest = json.load(f)
    sizes = {}
    for table in TABLES:
        path = os.path.join(work, "shelfline", table, f"{table}_{DATE}.csv.gz")
        with gzip.open(path, "rb") as f:
            size = sum(len(chunk) for chunk in iter(lambda: f.read(1 << 20), b""))
        sizes[table] = (manifest["tables"][table]["rows"], size)
    return sizes


def seconds(text):
    value = float(re.match(r"[0-9.]+", text).group())
    return value / 1000 if text.endswith("ms") else value


def per_table_seconds(work, reps):
    """Seconds per table in the last round: shelfline's and pymysql's logs."""
    ours, theirs = {}, {}
    with open(os.path.join(work, "logs", f"shelfline-{reps}.log")) as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[0] in TABLES:
                ours[fields[0]] = seconds(fields[5])
    with open(os.path.join(work, "logs", f"pymysql-{reps}.log")) as f:
        for line in f:
            fields = line.split()
            if len(fields) == 4 and fields[0] in TABLES:
                theirs[fields[0]] = float(fields[3])
    return ours, theirs


def rate(amount, secs, spec):
    return format(amount / secs, spec) if secs > 0 else "—"


def main(work, sf, reps):
    times = medians(work)
    sizes = table_sizes(work)
    rows = sum(r for r, _ in sizes.values())
    csv_bytes = sum(b for _, b in sizes.values())
    ours = times["shelfline"][0]
    client = subprocess.run(["mariadb", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"# Extraction from MariaDB, SF {sf}\n")
    print(f"Produced by `SF={sf} REPS={reps} bash bench/extract-mysql`: {reps} timed round(s) after a warm-up; the median.")
    print(f"{rows:,} rows in 5 tables, {csv_bytes / 1e6:,.0f} MB as uncompressed CSV (MB/s is that size over the wall time).")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores; client and server on the same machine (loopback). Client: {client}\n")
    print("| system | wall s | client CPU s | peak RSS MiB | rows/s | MB/s | shelfline is faster by |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for name, label in LABELS.items():
        wall, cpu, rss = times[name]
        ratio = "—" if name == "shelfline" else f"{wall / ours:.1f}×"
        print(f"| {label} | {wall:.2f} | {cpu:.2f} | {rss / 1024:.0f} | {rows / wall:,.0f} | {csv_bytes / 1e6 / wall:.1f} | {ratio} |")
    print("\nClient CPU is the client's process tree; the server's work is not in it. Peak RSS is the client's largest process.")
    ours_t, theirs_t = per_table_seconds(work, reps)
    print("\nPer table, last round. shelfline reads the five tables at once (so each shares the 2 cores), pymysql one after another:\n")
    print("| table | rows | MB (CSV) | shelfline s | shelfline rows/s | shelfline MB/s | pymysql s | pymysql rows/s | pymysql MB/s |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for table in TABLES:
        n, size = sizes[table]
        a, b = ours_t[table], theirs_t[table]
        print(
            f"| {table} | {n:,} | {size / 1e6:.1f} | {a:.2f} | {rate(n, a, ',.0f')} | {rate(size / 1e6, a, '.1f')} "
            f"| {b:.2f} | {rate(n, b, ',.0f')} | {rate(size / 1e6, b, '.1f')} |"
        )


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n\n")[1])
    main(*sys.argv[1:])
