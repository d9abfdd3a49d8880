"""The dashboard workload of bench/sql against one system, as a BI tool
sends it: five queries, each timed alone, then all of them in a loop by 1
and by N clients at once.

    python sql_dashboard.py SYSTEM LAKE OUT_JSON [--clients N] [--runs R] [--seconds S]

SYSTEM is one of
    shelfline   `shelfline sql-server`, over the wire (psycopg 3; libpq's
                PGHOST, PGPORT, PGUSER, ... name it)
    postgres    a PostgreSQL server holding the same fact and store tables
                (psycopg 3; the URL in SHELFLINE_BENCH_PG_URL)
    duckdb      DuckDB in this process, over the lake's Parquet files under
                LAKE (the folders of the Delta tables, hive-partitioned)

The queries' literals (the last week, the window's start, one store and
product) are read from the system first, so every system answers the same
questions. Writes OUT_JSON: per query its median and p95 latency in ms and
its rows (normalised, for bench/sql to compare across systems), and the
queries per second with 1 and N clients.
"""

import argparse
import datetime
import decimal
import json
import statistics
import threading
import time

QUERIES = {
    "weekly sales by region, last 12 weeks": """
        SELECT s.region, f.yr_num, f.wk_num, SUM(f.total_sales_amt) AS sales
        FROM weekly_sales_inventory f JOIN store s ON f.store_key = s.store_key
        WHERE f.eow_date > DATE '{window_start}'
        GROUP BY s.region, f.yr_num, f.wk_num
        ORDER BY s.region, f.yr_num, f.wk_num""",
    "top 20 products of the last week": """
        SELECT prod_key, SUM(total_sales_amt) AS sales, SUM(total_sales_qty) AS units
        FROM weekly_sales_inventory
        WHERE eow_date = DATE '{last_week}'
        GROUP BY prod_key
        ORDER BY sales DESC, prod_key
        LIMIT 20""",
    "out-of-stock days by store, last 12 weeks": """
        SELECT store_key, SUM(no_stock_instances) AS out_of_stock_days
        FROM weekly_sales_inventory
        WHERE eow_date > DATE '{window_start}'
        GROUP BY store_key
        ORDER BY out_of_stock_days DESC, store_key""",
    "weeks of supply distribution, last week": """
        SELECT CASE
                 WHEN weeks_of_supply IS NULL THEN 'none'
                 WHEN weeks_of_supply < 1 THEN '0-1'
                 WHEN weeks_of_supply < 2 THEN '1-2'
                 WHEN weeks_of_supply < 4 THEN '2-4'
                 WHEN weeks_of_supply < 8 THEN '4-8'
                 ELSE '8+'
               END AS bucket,
               COUNT(*) AS products
        FROM weekly_sales_inventory
        WHERE eow_date = DATE '{last_week}'
        GROUP BY 1
        ORDER BY 1""",
    "one store and product, every week": """
        SELECT yr_num, wk_num, total_sales_qty, total_sales_amt, stock_on_hand_qty, weeks_of_supply
        FROM weekly_sales_inventory
        WHERE store_key = {store_key} AND prod_key = {prod_key}
        ORDER BY yr_num, wk_num""",
}

LITERALS = """
    SELECT max(eow_date) AS last_week, min(store_key) AS store_key, min(prod_key) AS prod_key
    FROM weekly_sales_inventory"""


def connect(system, lake):
    """A function that opens one client connection, and how to run a
    statement on it (a list of row tuples)."""
    if system == "duckdb":
        import duckdb

        database = duckdb.connect()
        fact = f"{lake}/weekly_sales_inventory/**/*.parquet"
        store = f"{lake}/store/**/*.parquet"
        database.execute(
            f"CREATE VIEW weekly_sales_inventory AS "
            f"SELECT * FROM read_parquet('{fact}', hive_partitioning = true)"
        )
        database.execute(
            f"CREATE VIEW store_snapshots AS "
            f"SELECT * FROM read_parquet('{store}', hive_partitioning = true)"
        )
        database.execute(
            "CREATE VIEW store AS SELECT * EXCLUDE (snapshot_date) FROM store_snapshots "
            "WHERE snapshot_date = (SELECT max(snapshot_date) FROM store_snapshots)"
        )

        def open_duckdb():
            return database.cursor()

        return open_duckdb, lambda con, sql: con.execute(sql).fetchall()
    import os

    import psycopg

    url = os.environ["SHELFLINE_BENCH_PG_URL"] if system == "postgres" else ""

    def open_pg():
        return psycopg.connect(url, autocommit=True)

    def run_pg(con, sql):
        with con.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()

    return open_pg, run_pg


def normalise(value):
    """A value as text every system spells the same way."""
    if value is None:
        return None
    if isinstance(value, float):
        return f"{value:.9g}"
    if isinstance(value, decimal.Decimal):
        return str(value.quantize(decimal.Decimal("0.01")))
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()[:10]
    return str(value)


def latencies(con, run, sql, runs):
    run(con, sql)  # warm-up
    timings = []
    rows = None
    for _ in range(runs):
        started = time.perf_counter()
        rows = run(con, sql)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
    return statistics.median(timings), p95, [[normalise(v) for v in row] for row in rows]


def throughput(open_client, run, statements, clients, seconds):
    """Queries per second with `clients` connections, each running the
    statements in turn (from its own starting point) for `seconds`."""
    done = [0] * clients
    failures = []
    start_line = threading.Barrier(clients + 1)

    def client(index):
        try:
            con = open_client()
            start_line.wait()
            deadline = time.perf_counter() + seconds
            turn = index
            while time.perf_counter() < deadline:
                run(con, statements[turn % len(statements)])
                turn += 1
                done[index] += 1
        except Exception as error:  # reported after the run
            failures.append(repr(error))
            start_line.abort()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    try:
        start_line.wait()
        started = time.perf_counter()
    except threading.BrokenBarrierError:
        pass
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"a client failed: {failures[0]}")
    return sum(done) / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("system", choices=["shelfline", "postgres", "duckdb"])
    parser.add_argument("lake")
    parser.add_argument("out")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()

    open_client, run = connect(args.system, args.lake)
    con = open_client()
    last_week, store_key, prod_key = run(con, LITERALS)[0]
    last_week = datetime.date.fromisoformat(normalise(last_week))
    literals = {
        "last_week": last_week.isoformat(),
        "window_start": (last_week - datetime.timedelta(days=84)).isoformat(),
        "store_key": store_key,
        "prod_key": prod_key,
    }
    statements = {name: sql.format(**literals) for name, sql in QUERIES.items()}
    result = {"system": args.system, "literals": literals, "queries": {}}
    for name, sql in statements.items():
        median, p95, rows = latencies(con, run, sql, args.runs)
        result["queries"][name] = {"median_ms": median, "p95_ms": p95, "rows": rows}
    workload = list(statements.values())
    result["qps"] = {
        "1": throughput(open_client, run, workload, 1, args.seconds),
        str(args.clients): throughput(open_client, run, workload, args.clients, args.seconds),
    }
    with open(args.out, "w") as out:
        json.dump(result, out, indent=1)


if __name__ == "__main__":
    main()
