"""The report of bench/sql: checks that every system gave the same rows for
every query, then prints the latencies and throughput as Markdown.

    python3 bench/sql_report.py WORK_DIR

WORK_DIR holds shelfline.json, duckdb.json and postgres.json
(bench/peers/sql_dashboard.py). The run's settings come from the
environment (SF, RUNS, DURATION, CLIENTS, PEAK_KIB, BIN). Exits 1 naming
the query and the systems when two answers differ.
"""

import json
import os
import pathlib
import sys

SYSTEMS = [
    ("shelfline", "shelfline sql-server (over the wire)"),
    ("duckdb", "DuckDB, in process, over the Parquet files"),
    ("postgres", "PostgreSQL (over the wire, index on store_key, prod_key)"),
]


def load(work):
    return {name: json.loads((work / f"{name}.json").read_text()) for name, _ in SYSTEMS}


def check_agreement(results):
    reference = results["shelfline"]
    for name, _ in SYSTEMS[1:]:
        for query, answer in reference["queries"].items():
            theirs = results[name]["queries"][query]["rows"]
            if theirs != answer["rows"]:
                first = next(
                    (i for i, (a, b) in enumerate(zip(answer["rows"], theirs)) if a != b),
                    min(len(theirs), len(answer["rows"])),
                )
                sys.exit(
                    f"error: {query!r}: shelfline and {name} differ at row {first} "
                    f"({len(answer['rows'])} against {len(theirs)} rows)"
                )


def main():
    work = pathlib.Path(sys.argv[1])
    results = load(work)
    check_agreement(results)
    env = os.environ
    clients = env.get("CLIENTS", "8")
    print(f"# bench/sql: a dashboard over the wire at SF {env.get('SF')}\n")
    print(
        f"Each query {env.get('RUNS')} times after a warm-up, one client; then the five "
        f"in a loop for {env.get('DURATION')} s by 1 and by {clients} clients. Every "
        f"system returned the same rows for every query. shelfline binary: "
        f"`{pathlib.Path(env.get('BIN', '?')).name}` ({env.get('BIN', '?')}); its "
        f"peak memory: {int(env.get('PEAK_KIB') or 0) / 1024:.0f} MiB.\n"
    )
    header = "| query | " + " | ".join(f"{name} median / p95 ms" for name, _ in SYSTEMS) + " |"
    print(header)
    print("|---" * (len(SYSTEMS) + 1) + "|")
    for query in results["shelfline"]["queries"]:
        cells = []
        for name, _ in SYSTEMS:
            timing = results[name]["queries"][query]
            cells.append(f"{timing['median_ms']:.1f} / {timing['p95_ms']:.1f}")
        rows = len(results["shelfline"]["queries"][query]["rows"])
        print(f"| {query} ({rows} rows) | " + " | ".join(cells) + " |")
    for phase in ["1", clients]:
        cells = [f"{results[name]['qps'][phase]:.0f}" for name, _ in SYSTEMS]
        print(f"| queries per second, {phase} client(s) | " + " | ".join(cells) + " |")
    print()
    for name, description in SYSTEMS:
        print(f"- {name}: {description}")


if __name__ == "__main__":
    main()
