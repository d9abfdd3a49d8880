"""The contract's job (DATA_CONTRACT.md sections 3.1 and 4) written for DuckDB:
raw csv.gz (explicit schemas) or Parquet files in, Hive-partitioned zstd
Parquet out.

    python3 bench/peers/duckdb_weekly.py RAW_DIR DATE OUT_DIR
"""

import os
import sys

import duckdb

MONEY = "DECIMAL(38,2)"
SCHEMAS = {
    "sales": {
        "trans_id": "BIGINT", "prod_key": "INTEGER", "store_key": "INTEGER",
        "trans_dt": "DATE", "trans_time": "INTEGER", "sales_qty": MONEY,
        "sales_price": MONEY, "sales_amt": MONEY, "discount": MONEY,
        "sales_cost": MONEY, "sales_mgrn": MONEY, "ship_cost": MONEY,
    },
    "inventory": {
        "cal_dt": "DATE", "store_key": "INTEGER", "prod_key": "INTEGER",
        "inventory_on_hand_qty": MONEY, "inventory_on_order_qty": MONEY,
        "out_of_stock_flg": "INTEGER", "waste_qty": MONEY,
        "promotion_flg": "BOOLEAN", "next_delivery_dt": "DATE",
    },
    "calendar": {
        "cal_dt": "DATE", "cal_type_desc": "VARCHAR", "day_of_wk_num": "VARCHAR",
        "day_of_wk_desc": "VARCHAR", "yr_num": "INTEGER", "wk_num": "INTEGER",
        "yr_wk_num": "INTEGER", "mnth_num": "INTEGER", "yr_mnth_num": "INTEGER",
        "qtr_num": "INTEGER", "yr_qtr_num": "INTEGER",
    },
}

CHECKS = {
    "duplicate trans_id": "SELECT count(*) FROM (SELECT trans_id FROM sales GROUP BY 1 HAVING count(*) > 1)",
    "duplicate inventory key": "SELECT count(*) FROM (SELECT 1 FROM inventory GROUP BY cal_dt, store_key, prod_key HAVING count(*) > 1)",
    "duplicate cal_dt": "SELECT count(*) FROM (SELECT cal_dt FROM calendar GROUP BY 1 HAVING count(*) > 1)",
    "NULL yr_num/wk_num": "SELECT count(*) FROM calendar WHERE yr_num IS NULL OR wk_num IS NULL",
    "NULL key": """SELECT (SELECT count(*) FROM sales WHERE trans_id IS NULL OR trans_dt IS NULL OR store_key IS NULL OR prod_key IS NULL)
                 + (SELECT count(*) FROM inventory WHERE cal_dt IS NULL OR store_key IS NULL OR prod_key IS NULL)""",
    "date missing from calendar": """SELECT (SELECT count(*) FROM sales s ANTI JOIN calendar c ON c.cal_dt = s.trans_dt)
                                   + (SELECT count(*) FROM inventory i ANTI JOIN calendar c ON c.cal_dt = i.cal_dt)""",
}

WEEKLY = """
WITH daily_sales AS (
    SELECT trans_dt AS dt, store_key, prod_key,
           SUM(sales_qty) AS qty, SUM(sales_amt) AS amt, SUM(sales_cost) AS cost
    FROM sales GROUP BY ALL
),
daily AS (
    SELECT COALESCE(s.dt, i.cal_dt) AS dt,
           COALESCE(s.store_key, i.store_key) AS store_key,
           COALESCE(s.prod_key, i.prod_key) AS prod_key,
           COALESCE(s.qty, 0) AS qty, COALESCE(s.amt, 0) AS amt, COALESCE(s.cost, 0) AS cost,
           i.cal_dt AS inv_dt, i.inventory_on_hand_qty AS on_hand, i.inventory_on_order_qty AS on_order,
           CASE WHEN i.cal_dt IS NOT NULL AND COALESCE(i.out_of_stock_flg, 0) <> 0 THEN 1 ELSE 0 END AS oos,
           CASE WHEN i.cal_dt IS NOT NULL AND i.inventory_on_hand_qty < COALESCE(s.qty, 0) THEN 1 ELSE 0 END AS low
    FROM daily_sales s FULL OUTER JOIN inventory i
      ON s.dt = i.cal_dt AND s.store_key = i.store_key AND s.prod_key = i.prod_key
),
week_month AS (
    SELECT yr_num, wk_num, arg_max_null(mnth_num, cal_dt) AS mnth_num FROM calendar GROUP BY ALL
),
weekly AS (
    SELECT c.yr_num, c.wk_num, d.store_key, d.prod_key,
           SUM(d.qty) AS total_sales_qty, SUM(d.amt) AS total_sales_amt, SUM(d.cost) AS total_cost_amt,
           COUNT(d.inv_dt) AS inventory_days, MAX(d.inv_dt) AS eow_date,
           -- arg_max_null: the snapshot at eow_date even when its value is NULL
           -- (arg_max would skip it and take an earlier day's value).
           arg_max_null(d.on_hand, d.inv_dt) AS stock_on_hand_qty,
           arg_max_null(d.on_order, d.inv_dt) AS stock_on_order_qty,
           SUM(d.oos) AS no_stock_instances, SUM(d.low) AS low_stock_instances,
           SUM(CASE WHEN d.low = 1 AND d.qty > 0
                    THEN CAST(d.amt * (d.qty - d.on_hand) AS DOUBLE) / CAST(d.qty AS DOUBLE)
                    ELSE 0.0 END) AS potential_low_stock_impact,
           SUM(CASE WHEN d.oos = 1 THEN d.amt ELSE 0 END) AS no_stock_impact
    FROM daily d JOIN calendar c ON c.cal_dt = d.dt
    GROUP BY ALL
)
SELECT w.yr_num, w.wk_num, w.store_key, w.prod_key, m.mnth_num,
       CAST(total_sales_qty AS DECIMAL(38,2)) AS total_sales_qty,
       CAST(total_sales_amt AS DECIMAL(38,2)) AS total_sales_amt,
       CAST(total_cost_amt AS DECIMAL(38,2)) AS total_cost_amt,
       CASE WHEN total_sales_qty = 0 THEN NULL
            ELSE CAST(total_sales_amt AS DOUBLE) / CAST(total_sales_qty AS DOUBLE) END AS avg_sales_price,
       CAST(inventory_days AS INTEGER) AS inventory_days, eow_date,
       CAST(stock_on_hand_qty AS DECIMAL(38,2)) AS stock_on_hand_qty,
       CAST(stock_on_order_qty AS DECIMAL(38,2)) AS stock_on_order_qty,
       CAST(no_stock_instances AS INTEGER) AS no_stock_instances,
       CAST(low_stock_instances AS INTEGER) AS low_stock_instances,
       CASE WHEN inventory_days = 0 THEN NULL
            ELSE 100.0 * (inventory_days - no_stock_instances) / inventory_days END AS in_stock_pct,
       CAST(no_stock_instances + low_stock_instances AS INTEGER) AS total_low_stock_impact,
       potential_low_stock_impact,
       CAST(no_stock_impact AS DECIMAL(38,2)) AS no_stock_impact,
       CASE WHEN total_sales_qty = 0 THEN NULL
            ELSE CAST(stock_on_hand_qty AS DOUBLE) / CAST(total_sales_qty AS DOUBLE) END AS weeks_of_supply
FROM weekly w JOIN week_month m USING (yr_num, wk_num)
"""


def main(raw, date, out):
    con = duckdb.connect()
    for table, columns in SCHEMAS.items():
        path = f"{raw}/{table}/{table}_{date}"
        if os.path.exists(f"{path}.parquet"):
            source = f"read_parquet('{path}.parquet')"
        else:
            spec = ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items())
            source = f"read_csv('{path}.csv.gz', header = true, auto_detect = false, columns = {{{spec}}})"
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM {source}")
    failures = [rule for rule, sql in CHECKS.items() if con.execute(sql).fetchone()[0] > 0]
    if failures:
        sys.exit(f"data quality check failed: {', '.join(failures)}")
    con.execute(
        f"COPY ({WEEKLY}) TO '{out}' (FORMAT parquet, COMPRESSION zstd, "
        "PARTITION_BY (yr_num, wk_num), OVERWRITE_OR_IGNORE)"
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
