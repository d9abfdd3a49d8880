"""PostgreSQL clients nobody here wrote (psycopg 3 and SQLAlchemy, from
PyPI) against `shelfline sql-server`. The connection comes from libpq's
variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE).

    python sql.py fact EXPECTED_CSV      the whole fact equals the CSV, text and binary
    python sql.py params                 server-side parameters and prepared statements
    python sql.py inspect EXPECTED_CSV   SQLAlchemy's inspect() lists the tables and the
                                         fact's columns (the CSV's header) with their types
    python sql.py concurrent N           N clients at once get the same answer
    python sql.py refused SQL...         each statement fails with SQLSTATE 25006
    python sql.py sqlstate CODE SQL...   the statements, in one session, end with CODE
    python sql.py cancel SQL             the statement, cancelled by the client, fails with 57014
    python sql.py session                one statement per stdin line; per line out, the
                                         rows (columns joined by " ") joined by "|", or
                                         ERROR SQLSTATE

Exits non-zero with the failed check's message.
"""

import csv
import datetime
import os
import sys
import threading
import time
from decimal import Decimal

import psycopg

FACT = "SELECT * FROM weekly_sales_inventory ORDER BY yr_num, wk_num, store_key, prod_key"
FLOATS = {"avg_sales_price", "in_stock_pct", "potential_low_stock_impact", "weeks_of_supply"}


def connect():
    return psycopg.connect(autocommit=True)


def expected_value(column, text, got):
    """The CSV field `text` as the Python type psycopg returned (`got`)."""
    if text == "":
        return None
    if isinstance(got, Decimal):
        return Decimal(text)
    if isinstance(got, float):
        return float(text)
    if isinstance(got, int):
        return int(text)
    if isinstance(got, datetime.date):
        return datetime.date.fromisoformat(text)
    return text


def same(column, want, got):
    if column in FLOATS and want is not None and got is not None:
        return abs(want - got) <= 1e-9 * max(1.0, abs(want))
    return want == got and type(want) is type(got)


def fact(expected_csv):
    with open(expected_csv, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        expected = list(reader)
    for binary in (False, True):
        with connect() as conn, conn.cursor(binary=binary) as cur:
            cur.execute(FACT)
            names = [d.name for d in cur.description]
            assert names == header, f"columns {names} != {header}"
            rows = cur.fetchall()
        assert len(rows) == len(expected), f"{len(rows)} rows, expected {len(expected)}"
        for at, (row, want) in enumerate(zip(rows, expected)):
            for column, got, text in zip(header, row, want):
                value = expected_value(column, text, got)
                assert same(column, value, got), (
                    f"binary={binary} row {at + 1} {column}: got {got!r}, expected {text!r}"
                )
            decimals = [row[header.index(c)] for c in ("total_sales_amt", "total_cost_amt")]
            assert all(d is None or isinstance(d, Decimal) for d in decimals), decimals
    print(f"fact: {len(expected)} rows equal, text and binary")


def params():
    with connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT store_key FROM weekly_sales_inventory ORDER BY store_key LIMIT 1")
        (store,) = cur.fetchone()
        literal = (
            "SELECT count(*), sum(total_sales_amt) FROM weekly_sales_inventory "
            f"WHERE store_key = {store} AND total_sales_amt >= 1.00"
        )
        cur.execute(literal)
        want = cur.fetchone()
        bound = (
            "SELECT count(*), sum(total_sales_amt) FROM weekly_sales_inventory "
            "WHERE store_key = %s AND total_sales_amt >= %s"
        )
        for prepare in (False, True):
            for _ in range(3):
                cur.execute(bound, (store, Decimal("1.00")), prepare=prepare)
                got = cur.fetchone()
                assert got == want, f"prepare={prepare}: {got} != {want}"
        cur.execute("SELECT count(*) FROM store WHERE store_key = %s", (store,))
        assert cur.fetchone() == (1,), f"store {store} is not in store once"
    print(f"params: {want}")


def inspect(expected_csv):
    from sqlalchemy import create_engine
    from sqlalchemy import inspect as sql_inspect

    env = os.environ
    url = (
        f"postgresql+psycopg://{env['PGUSER']}:{env.get('PGPASSWORD', '')}"
        f"@{env['PGHOST']}:{env['PGPORT']}/{env.get('PGDATABASE', 'shelfline')}"
    )
    engine = create_engine(url)
    inspector = sql_inspect(engine)
    tables = set(inspector.get_table_names())
    for table in ("weekly_sales_inventory", "store", "product", "calendar"):
        assert table in tables, f"{table} not in {sorted(tables)}"
    # Every column in the contract's order, with the type its kind maps to.
    kinds = {"INTEGER": "int", "NUMERIC": "decimal", "DOUBLE_PRECISION": "float",
             "DATE": "date", "TEXT": "text"}
    fact = inspector.get_columns("weekly_sales_inventory")
    got = [(c["name"], kinds.get(type(c["type"]).__name__, repr(c["type"]))) for c in fact]
    with open(expected_csv, newline="") as expected:
        header = next(csv.reader(expected))
    assert [name for name, _ in got] == header, f"columns {got} against {header}"
    for name, kind in [("yr_num", "int"), ("total_sales_amt", "decimal"),
                       ("weeks_of_supply", "float"), ("eow_date", "date")]:
        assert (name, kind) in got, f"{name} is not {kind} in {got}"
    store = {c["name"]: type(c["type"]).__name__ for c in inspector.get_columns("store")}
    assert store["store_key"] == "INTEGER" and store["store_desc"] == "TEXT", store
    print(f"inspect: {sorted(tables)}; {len(fact)} fact columns")


def concurrent(n):
    query = (
        "SELECT yr_num, wk_num, sum(total_sales_amt), count(*) FROM weekly_sales_inventory w "
        "JOIN store s ON s.store_key = w.store_key GROUP BY 1, 2 ORDER BY 1, 2"
    )
    answers, pids, errors = [None] * n, [None] * n, []
    start = threading.Barrier(n)

    def client(i):
        try:
            with connect() as conn, conn.cursor() as cur:
                pids[i] = conn.info.backend_pid
                start.wait()
                for _ in range(3):
                    cur.execute(query)
                    answers[i] = cur.fetchall()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"client {i}: {e}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert answers[0], "no rows"
    assert all(a == answers[0] for a in answers), "clients disagree"
    # Each connection has its own process id (its cancel key's half).
    assert len(set(pids)) == n, f"process ids shared: {sorted(pids)}"
    print(f"concurrent: {n} clients, {len(answers[0])} rows each, the same")


def sqlstate(code, statements):
    """Runs `statements` in one session; the last must fail with `code`."""
    with connect() as conn, conn.cursor() as cur:
        for sql in statements[:-1]:
            cur.execute(sql)
        try:
            cur.execute(statements[-1])
            cur.fetchall()
        except psycopg.Error as e:
            assert e.sqlstate == code, f"{statements[-1]!r}: SQLSTATE {e.sqlstate} ({e}), expected {code}"
            print(f"{code}: {str(e).strip()}")
            return
    raise AssertionError(f"{statements[-1]!r} ran; expected SQLSTATE {code}")


def cancel(sql):
    """`sql` runs until the client cancels it 0.3 s later (a cancel
    request on its own connection, as psql's Ctrl-C sends): it fails with
    SQLSTATE 57014 soon after, and the connection goes on."""
    with connect() as conn:
        started = time.monotonic()
        timer = threading.Timer(0.3, conn.cancel_safe)
        timer.start()
        try:
            conn.execute(sql).fetchall()
            raise AssertionError(f"{sql!r} ran to the end; expected it cancelled")
        except psycopg.errors.QueryCanceled as e:
            elapsed = time.monotonic() - started
            assert "user request" in str(e), str(e)
            assert elapsed < 10, f"cancelled after {elapsed:.1f} s"
        finally:
            timer.cancel()
        assert conn.execute("SELECT 1").fetchone() == (1,)
        print(f"57014: cancelled after {elapsed:.1f} s; the connection goes on")


def session():
    with connect() as conn, conn.cursor() as cur:
        for line in sys.stdin:
            try:
                cur.execute(line)
                answer = "|".join(" ".join(map(str, row)) for row in cur.fetchall())
            except psycopg.Error as e:
                answer = f"ERROR {e.sqlstate}"
            print(answer, flush=True)


command, args = sys.argv[1], sys.argv[2:]
if command == "fact":
    fact(args[0])
elif command == "params":
    params()
elif command == "inspect":
    inspect(args[0])
elif command == "concurrent":
    concurrent(int(args[0]))
elif command == "refused":
    for statement in args:
        sqlstate("25006", [statement])
elif command == "sqlstate":
    sqlstate(args[0], args[1:])
elif command == "session":
    session()
elif command == "cancel":
    cancel(args[0])
else:
    raise SystemExit(f"unknown command {command}")
