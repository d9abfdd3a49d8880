"""The contract's job (DATA_CONTRACT.md sections 3.1 and 4) written for PySpark
(local[2]): raw csv.gz (explicit schemas) or Parquet files in,
Hive-partitioned zstd Parquet out. Same checks and metric as duckdb_weekly.py.

    python3 bench/peers/spark_weekly.py RAW_DIR DATE OUT_DIR
"""

import os
import sys
from concurrent.futures import ThreadPoolExecutor

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

MONEY = "DECIMAL(38,2)"
SCHEMAS = {
    "sales": {
        "trans_id": "BIGINT", "prod_key": "INT", "store_key": "INT",
        "trans_dt": "DATE", "trans_time": "INT", "sales_qty": MONEY,
        "sales_price": MONEY, "sales_amt": MONEY, "discount": MONEY,
        "sales_cost": MONEY, "sales_mgrn": MONEY, "ship_cost": MONEY,
    },
    "inventory": {
        "cal_dt": "DATE", "store_key": "INT", "prod_key": "INT",
        "inventory_on_hand_qty": MONEY, "inventory_on_order_qty": MONEY,
        "out_of_stock_flg": "INT", "waste_qty": MONEY,
        "promotion_flg": "BOOLEAN", "next_delivery_dt": "DATE",
    },
    "calendar": {
        "cal_dt": "DATE", "cal_type_desc": "STRING", "day_of_wk_num": "STRING",
        "day_of_wk_desc": "STRING", "yr_num": "INT", "wk_num": "INT",
        "yr_wk_num": "INT", "mnth_num": "INT", "yr_mnth_num": "INT",
        "qtr_num": "INT", "yr_qtr_num": "INT",
    },
}
# Only these columns are read (Spark's CSV parser skips the others).
NEEDED = {
    "sales": ["trans_id", "trans_dt", "store_key", "prod_key", "sales_qty", "sales_amt", "sales_cost"],
    "inventory": ["cal_dt", "store_key", "prod_key", "inventory_on_hand_qty",
                  "inventory_on_order_qty", "out_of_stock_flg"],
    "calendar": ["cal_dt", "yr_num", "wk_num", "mnth_num"],
}


def read(spark, raw, date, table):
    path = f"{raw}/{table}/{table}_{date}"
    if os.path.exists(f"{path}.parquet"):
        return spark.read.parquet(f"{path}.parquet").select(NEEDED[table])
    schema = ", ".join(f"{name} {kind}" for name, kind in SCHEMAS[table].items())
    # RFC 4180 (section 2): "" escapes a quote and quoted fields may span lines.
    frame = spark.read.csv(f"{path}.csv.gz", schema=schema, header=True, mode="FAILFAST",
                           escape='"', multiLine=True)
    # A gzip CSV is one unsplittable, slow-to-parse task: parse it once for checks and
    # job. (Parquet is cheaper to rescan than to cache as decimal(38,2) rows.)
    return frame.select(NEEDED[table]).cache()


def checks(sales, inventory, calendar):
    """Each rule as the offending rows, one frame per table it looks at."""
    def duplicated(frame, keys):
        return frame.groupBy(keys).count().where("count > 1")

    def null_in(frame, keys):
        return frame.where(" OR ".join(f"{key} IS NULL" for key in keys))

    def not_in_calendar(frame, column):
        known = calendar.select(F.col("cal_dt").alias("known_dt"))
        return frame.join(known, F.col(column) == F.col("known_dt"), "left_anti")

    return {
        "duplicate trans_id": [duplicated(sales, ["trans_id"])],
        "duplicate inventory key": [duplicated(inventory, ["cal_dt", "store_key", "prod_key"])],
        "duplicate cal_dt": [duplicated(calendar, ["cal_dt"])],
        "NULL yr_num/wk_num": [null_in(calendar, ["yr_num", "wk_num"])],
        "NULL key": [null_in(sales, ["trans_id", "trans_dt", "store_key", "prod_key"]),
                     null_in(inventory, ["cal_dt", "store_key", "prod_key"])],
        "date missing from calendar": [not_in_calendar(sales, "trans_dt"),
                                       not_in_calendar(inventory, "cal_dt")],
    }


def weekly(sales, inventory, calendar):
    c = F.col
    daily_sales = sales.groupBy(c("trans_dt").alias("dt"), "store_key", "prod_key").agg(
        F.sum("sales_qty").alias("qty"), F.sum("sales_amt").alias("amt"), F.sum("sales_cost").alias("cost"),
    )
    snapshots = inventory.select(
        c("cal_dt").alias("dt"), "store_key", "prod_key", c("cal_dt").alias("inv_dt"),
        c("inventory_on_hand_qty").alias("on_hand"), c("inventory_on_order_qty").alias("on_order"),
        c("out_of_stock_flg").alias("flag"),
    )
    has_inv = c("inv_dt").isNotNull()
    # A join on column names coalesces the keys of a full outer join.
    daily = daily_sales.join(snapshots, ["dt", "store_key", "prod_key"], "full").select(
        "dt", "store_key", "prod_key", "inv_dt", "on_hand", "on_order",
        *(F.coalesce(c(m), F.lit(0).cast(MONEY)).alias(m) for m in ("qty", "amt", "cost")),
        F.when(has_inv & (F.coalesce(c("flag"), F.lit(0)) != 0), 1).otherwise(0).alias("oos"),
        # A NULL on-hand is not low: NULL < qty is not true.
        F.when(has_inv & (c("on_hand") < F.coalesce(c("qty"), F.lit(0))), 1).otherwise(0).alias("low"),
    )
    week_month = calendar.groupBy("yr_num", "wk_num").agg(F.max_by("mnth_num", "cal_dt").alias("mnth_num"))
    weeks = (
        daily.join(calendar.select("cal_dt", "yr_num", "wk_num"), c("dt") == c("cal_dt"))
        .groupBy("yr_num", "wk_num", "store_key", "prod_key")
        .agg(
            F.sum("qty").alias("total_sales_qty"),
            F.sum("amt").alias("total_sales_amt"),
            F.sum("cost").alias("total_cost_amt"),
            F.count("inv_dt").alias("inventory_days"),
            F.max("inv_dt").alias("eow_date"),
            # The snapshot at eow_date, NULL on-hand included (max_by ignores only NULL dates).
            F.max_by("on_hand", "inv_dt").alias("stock_on_hand_qty"),
            F.max_by("on_order", "inv_dt").alias("stock_on_order_qty"),
            F.sum("oos").alias("no_stock_instances"),
            F.sum("low").alias("low_stock_instances"),
            # decimal(38,2) * decimal(38,2) is decimal(38,4) in Spark: the product stays exact.
            F.sum(
                F.when((c("low") == 1) & (c("qty") > 0),
                       (c("amt") * (c("qty") - c("on_hand"))).cast("double") / c("qty").cast("double"))
                .otherwise(0.0)
            ).alias("potential_low_stock_impact"),
            F.sum(F.when(c("oos") == 1, c("amt")).otherwise(F.lit(0).cast(MONEY))).alias("no_stock_impact"),
        )
        .join(week_month, ["yr_num", "wk_num"])
    )
    qty, amt = c("total_sales_qty"), c("total_sales_amt")
    days, oos = c("inventory_days"), c("no_stock_instances")
    return weeks.select(
        "yr_num", "wk_num", "store_key", "prod_key", "mnth_num",
        qty.cast(MONEY).alias("total_sales_qty"),
        amt.cast(MONEY).alias("total_sales_amt"),
        c("total_cost_amt").cast(MONEY).alias("total_cost_amt"),
        F.when(qty != 0, amt.cast("double") / qty.cast("double")).alias("avg_sales_price"),
        days.cast("int").alias("inventory_days"),
        "eow_date",
        c("stock_on_hand_qty").cast(MONEY).alias("stock_on_hand_qty"),
        c("stock_on_order_qty").cast(MONEY).alias("stock_on_order_qty"),
        oos.cast("int").alias("no_stock_instances"),
        c("low_stock_instances").cast("int").alias("low_stock_instances"),
        F.when(days != 0, F.lit(100.0) * (days - oos).cast("double") / days.cast("double")).alias("in_stock_pct"),
        (oos + c("low_stock_instances")).cast("int").alias("total_low_stock_impact"),
        "potential_low_stock_impact",
        c("no_stock_impact").cast(MONEY).alias("no_stock_impact"),
        F.when(qty != 0, c("stock_on_hand_qty").cast("double") / qty.cast("double")).alias("weeks_of_supply"),
    )


def main(raw, date, out):
    spark = (
        SparkSession.builder.master("local[2]").appName("shelfline-peer")
        .config("spark.driver.memory", "8g")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        tables = [read(spark, raw, date, table) for table in SCHEMAS]
        rules = checks(*tables)
        # Concurrent jobs keep both cores busy: fill the CSV caches side by side (one
        # core per gzip file), then run the rules.
        with ThreadPoolExecutor() as pool:
            list(pool.map(DataFrame.count, [frame for frame in tables if frame.is_cached]))
            hits = pool.map(lambda frames: any(not f.isEmpty() for f in frames), rules.values())
            failures = [rule for rule, hit in zip(rules, hits) if hit]
        if failures:
            sys.exit(f"data quality check failed: {', '.join(failures)}")
        # One task per week, so one file per partition folder, as the other peers write.
        (weekly(*tables).repartition("yr_num", "wk_num").write.mode("overwrite")
         .partitionBy("yr_num", "wk_num").option("compression", "zstd").parquet(out))
    finally:
        spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:4])
