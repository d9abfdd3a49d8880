"""Other engines reading the catalogs `shelfline catalog` writes, with their
own clients (DuckDB with its Delta extension, boto3), all from PyPI.

    python catalog.py duckdb STATEMENTS
        runs the file STATEMENTS (`catalog ddl --engine duckdb`) as it is in
        DuckDB, the delta extension installed from the duckdb-extension-delta
        package; prints the fact ordered by its key as CSV, then
        "VIEW,ROWS" for each registered view
    python catalog.py glue ENDPOINT DATABASE
        prints boto3's get_table of each table in DATABASE as one JSON
        object per line: name, location, table_type, columns, partition keys

Exits non-zero with the failed step's message.
"""

import csv
import json
import pathlib
import sys
import tempfile

FACT_KEY = "yr_num, wk_num, store_key, prod_key"
VIEWS = ["store", "product", "calendar", "store_snapshots", "product_snapshots",
         "calendar_snapshots", "weekly_sales_inventory"]


def duckdb_run(statements_file):
    import duckdb
    import duckdb_extension_delta

    package = pathlib.Path(duckdb_extension_delta.__file__).parent
    extension = next(package.glob("extensions/*/delta.duckdb_extension"))
    with tempfile.TemporaryDirectory() as extensions:
        con = duckdb.connect(config={"extension_directory": extensions})
        # What `INSTALL delta` would download; the statements' own
        # INSTALL then finds it installed.
        con.execute(f"INSTALL '{extension}'")
        con.execute(pathlib.Path(statements_file).read_text())
        out = csv.writer(sys.stdout, lineterminator="\n")
        cursor = con.execute(f"SELECT * FROM shelfline.weekly_sales_inventory ORDER BY {FACT_KEY}")
        out.writerow([column[0] for column in cursor.description])
        for row in cursor.fetchall():
            out.writerow(["" if value is None else value for value in row])
        for view in VIEWS:
            (count,) = con.execute(f"SELECT count(*) FROM shelfline.{view}").fetchone()
            out.writerow([view, count])


def glue_tables(endpoint, database):
    import boto3

    glue = boto3.client("glue", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")
    for listed in glue.get_tables(DatabaseName=database)["TableList"]:
        table = glue.get_table(DatabaseName=database, Name=listed["Name"])["Table"]
        descriptor = table["StorageDescriptor"]
        print(json.dumps({
            "name": table["Name"],
            "location": descriptor["Location"],
            "table_type": table["Parameters"].get("table_type"),
            "columns": [[c["Name"], c["Type"]] for c in descriptor["Columns"]],
            "partition_keys": [[c["Name"], c["Type"]] for c in table.get("PartitionKeys", [])],
        }, sort_keys=True))


def main(args):
    if args[:1] == ["duckdb"] and len(args) == 2:
        duckdb_run(args[1])
    elif args[:1] == ["glue"] and len(args) == 3:
        glue_tables(args[1], args[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
