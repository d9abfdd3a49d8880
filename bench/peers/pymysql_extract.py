"""The original pipeline's extractor: for each table, a pymysql `SELECT *`
written with the `csv` module into a gzip file, one table after another.

    python3 bench/peers/pymysql_extract.py HOST PORT USER DATABASE OUT_DIR

The password comes from SHELFLINE_SOURCE_PASSWORD. Like the Lambda it
stands for, it uses pymysql's default (buffered) cursor, which holds a
whole result set in memory; `--stream` uses the unbuffered SSCursor
instead. Prints one line per table: name, rows, bytes written, seconds.
"""

import csv
import gzip
import os
import sys
import time

import pymysql
import pymysql.cursors

TABLES = ["store", "product", "calendar", "sales", "inventory"]


def extract_table(connection, table, out_dir):
    path = os.path.join(out_dir, f"{table}.csv.gz")
    started = time.monotonic()
    rows = 0
    with connection.cursor() as cursor, gzip.open(path, "wt", newline="", compresslevel=6) as f:
        cursor.execute(f"SELECT * FROM `{table}`")
        writer = csv.writer(f)
        writer.writerow([d[0] for d in cursor.description])
        for row in cursor:
            writer.writerow(row)
            rows += 1
    return rows, os.path.getsize(path), time.monotonic() - started


def main(argv):
    stream = "--stream" in argv
    host, port, user, database, out_dir = [a for a in argv[1:] if a != "--stream"]
    os.makedirs(out_dir, exist_ok=True)
    connection = pymysql.connect(
        host=host,
        port=int(port),
        user=user,
        password=os.environ["SHELFLINE_SOURCE_PASSWORD"],
        database=database,
        cursorclass=pymysql.cursors.SSCursor if stream else pymysql.cursors.Cursor,
    )
    for table in TABLES:
        rows, size, seconds = extract_table(connection, table, out_dir)
        print(f"{table} {rows} {size} {seconds:.3f}", flush=True)
    connection.close()


if __name__ == "__main__":
    main(sys.argv)
