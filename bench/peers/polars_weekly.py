"""The contract's job (DATA_CONTRACT.md sections 3.1 and 4) written for Polars:
raw csv.gz (explicit schemas) or Parquet files in, Hive-partitioned zstd
Parquet out. Same checks and metric as duckdb_weekly.py.

    python3 bench/peers/polars_weekly.py RAW_DIR DATE OUT_DIR
"""

import os
import shutil
import sys

import polars as pl

MONEY = pl.Decimal(38, 2)
SCHEMAS = {
    "sales": {
        "trans_id": pl.Int64, "prod_key": pl.Int32, "store_key": pl.Int32,
        "trans_dt": pl.Date, "trans_time": pl.Int32, "sales_qty": MONEY,
        "sales_price": MONEY, "sales_amt": MONEY, "discount": MONEY,
        "sales_cost": MONEY, "sales_mgrn": MONEY, "ship_cost": MONEY,
    },
    "inventory": {
        "cal_dt": pl.Date, "store_key": pl.Int32, "prod_key": pl.Int32,
        "inventory_on_hand_qty": MONEY, "inventory_on_order_qty": MONEY,
        "out_of_stock_flg": pl.Int32, "waste_qty": MONEY,
        "promotion_flg": pl.Boolean, "next_delivery_dt": pl.Date,
    },
    "calendar": {
        "cal_dt": pl.Date, "cal_type_desc": pl.String, "day_of_wk_num": pl.String,
        "day_of_wk_desc": pl.String, "yr_num": pl.Int32, "wk_num": pl.Int32,
        "yr_wk_num": pl.Int32, "mnth_num": pl.Int32, "yr_mnth_num": pl.Int32,
        "qtr_num": pl.Int32, "yr_qtr_num": pl.Int32,
    },
}
# Only these columns are read (the CSV reader skips parsing the others).
NEEDED = {
    "sales": ["trans_id", "trans_dt", "store_key", "prod_key", "sales_qty", "sales_amt", "sales_cost"],
    "inventory": ["cal_dt", "store_key", "prod_key", "inventory_on_hand_qty",
                  "inventory_on_order_qty", "out_of_stock_flg"],
    "calendar": ["cal_dt", "yr_num", "wk_num", "mnth_num"],
}


def scan(raw, date, table):
    path = f"{raw}/{table}/{table}_{date}"
    if os.path.exists(f"{path}.parquet"):
        frame = pl.scan_parquet(f"{path}.parquet")
    else:
        frame = pl.scan_csv(f"{path}.csv.gz", schema=SCHEMAS[table])
    return frame.select(NEEDED[table])


def checks(sales, inventory, calendar):
    """Each rule as the offending rows, one frame per table it looks at."""
    def duplicated(frame, keys):
        return frame.group_by(keys).len().filter(pl.col("len") > 1)

    def null_in(frame, keys):
        return frame.filter(pl.any_horizontal(pl.col(keys).is_null()))

    def not_in_calendar(frame, column):
        return frame.join(calendar, left_on=column, right_on="cal_dt", how="anti")

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
    key = ["dt", "store_key", "prod_key"]
    daily_sales = sales.group_by(pl.col("trans_dt").alias("dt"), "store_key", "prod_key").agg(
        qty=pl.col("sales_qty").sum(), amt=pl.col("sales_amt").sum(), cost=pl.col("sales_cost").sum(),
    )
    snapshots = inventory.select(
        pl.col("cal_dt").alias("dt"), "store_key", "prod_key", inv_dt="cal_dt",
        on_hand="inventory_on_hand_qty", on_order="inventory_on_order_qty", flag="out_of_stock_flg",
    )
    has_inv = pl.col("inv_dt").is_not_null()
    daily = (
        daily_sales.join(snapshots, on=key, how="full", coalesce=True)
        .with_columns(pl.col("qty", "amt", "cost").fill_null(0))
        .with_columns(
            oos=has_inv & (pl.col("flag").fill_null(0) != 0),
            # A NULL on-hand is not low: NULL < qty is not true.
            low=(has_inv & (pl.col("on_hand") < pl.col("qty"))).fill_null(False),
        )
    )
    week_month = calendar.group_by("yr_num", "wk_num").agg(pl.col("mnth_num").max_by("cal_dt"))
    qty, amt = pl.col("total_sales_qty"), pl.col("total_sales_amt")
    days, oos = pl.col("inventory_days"), pl.col("no_stock_instances")
    return (
        daily.join(calendar.select("cal_dt", "yr_num", "wk_num"), left_on="dt", right_on="cal_dt")
        .group_by("yr_num", "wk_num", "store_key", "prod_key")
        .agg(
            total_sales_qty=pl.col("qty").sum(),
            total_sales_amt=pl.col("amt").sum(),
            total_cost_amt=pl.col("cost").sum(),
            inventory_days=pl.col("inv_dt").count().cast(pl.Int32),
            eow_date=pl.col("inv_dt").max(),
            # The snapshot at eow_date, NULL on-hand included (max_by ignores only NULL dates).
            stock_on_hand_qty=pl.col("on_hand").max_by("inv_dt"),
            stock_on_order_qty=pl.col("on_order").max_by("inv_dt"),
            no_stock_instances=pl.col("oos").sum().cast(pl.Int32),
            low_stock_instances=pl.col("low").sum().cast(pl.Int32),
            # Polars keeps the larger operand scale in a decimal product (38,2 * 38,2 ->
            # 38,2, rounded), so widen one side to keep amt * (qty - on_hand) exact.
            potential_low_stock_impact=pl.when(pl.col("low") & (pl.col("qty") > 0))
            .then(
                (pl.col("amt").cast(pl.Decimal(38, 4)) * (pl.col("qty") - pl.col("on_hand"))).cast(pl.Float64)
                / pl.col("qty").cast(pl.Float64)
            )
            .otherwise(0.0)
            .sum(),
            no_stock_impact=pl.col("amt").filter("oos").sum(),
        )
        .join(week_month, on=["yr_num", "wk_num"])
        .select(
            "yr_num", "wk_num", "store_key", "prod_key", "mnth_num",
            "total_sales_qty", "total_sales_amt", "total_cost_amt",
            pl.when(qty != 0).then(amt.cast(pl.Float64) / qty.cast(pl.Float64)).alias("avg_sales_price"),
            "inventory_days", "eow_date", "stock_on_hand_qty", "stock_on_order_qty",
            "no_stock_instances", "low_stock_instances",
            pl.when(days != 0).then(100.0 * (days - oos).cast(pl.Float64) / days.cast(pl.Float64)).alias("in_stock_pct"),
            (oos + pl.col("low_stock_instances")).alias("total_low_stock_impact"),
            "potential_low_stock_impact", "no_stock_impact",
            pl.when(qty != 0).then(pl.col("stock_on_hand_qty").cast(pl.Float64) / qty.cast(pl.Float64))
            .alias("weeks_of_supply"),
        )
    )


def main(raw, date, out):
    # Read each file once (a gzip CSV cannot be re-scanned cheaply); checks and job share it.
    tables = [frame.lazy() for frame in pl.collect_all([scan(raw, date, t) for t in SCHEMAS])]
    rules = checks(*tables)
    counts = pl.collect_all([pl.concat([f.select(pl.len()) for f in frames]).sum() for frames in rules.values()])
    failures = [rule for rule, count in zip(rules, counts) if count.item() > 0]
    if failures:
        sys.exit(f"data quality check failed: {', '.join(failures)}")
    shutil.rmtree(out, ignore_errors=True)
    weekly(*tables).sink_parquet(
        pl.PartitionBy(out, key=["yr_num", "wk_num"], include_key=False), compression="zstd", mkdir=True,
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
