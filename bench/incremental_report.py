"""The results of bench/incremental, as Markdown, from its work folder.

    python3 bench/incremental_report.py WORK_DIR SF BIN

WORK_DIR holds times.tsv (bench/measure.py's numbers per night, named
MODE-SOURCE-DAYS) and SOURCE-DAYS/raw-MODE/_manifests/*.json (the rows each
night extracted).
"""

import glob
import json
import os
import platform
import sys

LABELS = {30: "1 month", 365: "1 year", 1095: "3 years"}


def history(days):
    return LABELS.get(days, f"{days} days")


def rows_extracted(work, source, days, mode):
    total = 0
    for path in glob.glob(os.path.join(work, f"{source}-{days}", f"raw-{mode}", "_manifests", "*.json")):
        with open(path) as f:
            total += sum(entry["rows"] for entry in json.load(f)["tables"].values())
    return total


def main(work, sf, binary):
    nights = {}
    with open(os.path.join(work, "times.tsv")) as f:
        for line in f:
            name, wall, cpu, rss, _ = line.rstrip("\n").split("\t")
            mode, source, days = name.split("-")
            nights[(source, int(days), mode)] = (float(wall), float(cpu), int(rss))
    sources = sorted({key[0] for key in nights}, key=lambda s: (s != "sqlite", s))
    histories = sorted({key[1] for key in nights})
    out = [
        f"# A night against its history, SF {sf}",
        "",
        f"Produced by `SF={sf} bash bench/incremental`: for each source and history, one timed",
        "`shelfline run` (extract + check + transform + publish) on the history's last day, with",
        "`--lookback-days 7` into a lake started the day before, and with `--full` into a lake",
        "of its own; the two fact tables are compared row for row and are equal.",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; MariaDB on the same machine (loopback).",
        f"Binary: `{binary}`.",
        "",
        "| source | history | night | wall s | CPU s | peak RSS MiB | rows extracted |",
        "|---|---|---|--:|--:|--:|--:|",
    ]
    for source in sources:
        for days in histories:
            for mode in ["incremental", "full"]:
                if (source, days, mode) not in nights:
                    continue
                wall, cpu, rss = nights[(source, days, mode)]
                rows = rows_extracted(work, source, days, mode)
                out.append(
                    f"| {source} | {history(days)} | {mode} | {wall:.2f} | {cpu:.2f} | {rss // 1024} | {rows:,} |"
                )
    out += ["", "Ratios (wall time):", ""]
    out += ["| source | incremental, longest / shortest history | full / incremental, longest history |", "|---|--:|--:|"]
    for source in sources:
        wall = lambda days, mode: nights[(source, days, mode)][0]
        longest, shortest = histories[-1], histories[0]
        growth = wall(longest, "incremental") / wall(shortest, "incremental")
        speedup = wall(longest, "full") / wall(longest, "incremental")
        out.append(f"| {source} | {growth:.2f}× | {speedup:.1f}× |")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
