"""Checks that a peer's output agrees with shelfline's table row for row:
decimals, integers and dates exactly, floats within a relative 1e-9.

    python3 bench/peers/agree.py SHELFLINE_TABLE_DIR PEER_OUT_DIR

Both are read as Hive-partitioned Parquet folders (shelfline vacuums removed
files at once, so its folder holds exactly the committed table).
"""

import sys

import duckdb

KEYS = ["yr_num", "wk_num", "store_key", "prod_key"]
EXACT = [
    "mnth_num", "total_sales_qty", "total_sales_amt", "total_cost_amt", "inventory_days",
    "eow_date", "stock_on_hand_qty", "stock_on_order_qty", "no_stock_instances",
    "low_stock_instances", "total_low_stock_impact", "no_stock_impact",
]
FLOATS = ["avg_sales_price", "in_stock_pct", "potential_low_stock_impact", "weeks_of_supply"]


def main(ours, theirs):
    con = duckdb.connect()
    for name, folder in (("ours", ours), ("theirs", theirs)):
        con.execute(
            f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{folder}/**/*.parquet', "
            "hive_partitioning = true, hive_types = {'yr_num': INTEGER, 'wk_num': INTEGER})"
        )
    on = " AND ".join(f"o.{k} = t.{k}" for k in KEYS)
    exact = " OR ".join(f"o.{c} IS DISTINCT FROM t.{c}" for c in EXACT)
    floats = " OR ".join(
        f"(o.{c} IS NULL) <> (t.{c} IS NULL) OR abs(o.{c} - t.{c}) > 1e-9 * greatest(abs(t.{c}), 1e-300)"
        for c in FLOATS
    )
    rows = con.execute("SELECT count(*) FROM ours").fetchone()[0]
    missing = con.execute(f"SELECT count(*) FROM ours o FULL JOIN theirs t ON {on} WHERE o.yr_num IS NULL OR t.yr_num IS NULL").fetchone()[0]
    differing = con.execute(f"SELECT count(*) FROM ours o JOIN theirs t ON {on} WHERE {exact} OR {floats}").fetchone()[0]
    if missing or differing:
        example = con.execute(f"SELECT * FROM ours o JOIN theirs t ON {on} WHERE {exact} OR {floats} LIMIT 1").fetchall()
        sys.exit(f"disagree: {missing} rows on one side only, {differing} rows differ; e.g. {example}")
    print(f"agree: {rows} rows")


if __name__ == "__main__":
    main(*sys.argv[1:3])
