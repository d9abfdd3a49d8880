"""The floor under any transform of the raw set: decompress and parse the two
big files (sales and inventory) into memory, with nothing else done to them.

    python3 bench/floor.py RAW_DIR DATE

csv.gz: pyarrow's CSV reader with the contract's explicit types (every
column, decimals as decimal128(38, 2), dates as date32), gzip decoded on the
fly. Parquet: pyarrow reads and decodes every column. The two files are read
at the same time, one thread each (pyarrow parses each file's blocks on its
own thread pool too). The tables are only counted, never written anywhere.
"""

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.csv as csv
import pyarrow.parquet as pq

MONEY = pa.decimal128(38, 2)
SCHEMAS = {
    "sales": {
        "trans_id": pa.int64(), "prod_key": pa.int32(), "store_key": pa.int32(),
        "trans_dt": pa.date32(), "trans_time": pa.int32(), "sales_qty": MONEY,
        "sales_price": MONEY, "sales_amt": MONEY, "discount": MONEY,
        "sales_cost": MONEY, "sales_mgrn": MONEY, "ship_cost": MONEY,
    },
    "inventory": {
        "cal_dt": pa.date32(), "store_key": pa.int32(), "prod_key": pa.int32(),
        "inventory_on_hand_qty": MONEY, "inventory_on_order_qty": MONEY,
        "out_of_stock_flg": pa.int32(), "waste_qty": MONEY,
        "promotion_flg": pa.bool_(), "next_delivery_dt": pa.date32(),
    },
}


def read(raw, date, table):
    path = f"{raw}/{table}/{table}_{date}"
    if os.path.exists(f"{path}.parquet"):
        return pq.read_table(f"{path}.parquet")
    columns = SCHEMAS[table]
    return csv.read_csv(
        f"{path}.csv.gz",
        convert_options=csv.ConvertOptions(column_types=columns, include_columns=list(columns)),
    )


def main(raw, date):
    with ThreadPoolExecutor(max_workers=len(SCHEMAS)) as pool:
        tables = dict(zip(SCHEMAS, pool.map(lambda table: read(raw, date, table), SCHEMAS)))
    for name, table in tables.items():
        print(f"{name}: {table.num_rows} rows, {table.num_columns} columns, {table.nbytes} bytes in memory")


if __name__ == "__main__":
    main(*sys.argv[1:3])
