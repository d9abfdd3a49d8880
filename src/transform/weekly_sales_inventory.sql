-- weekly_sales_inventory: the weekly fact of DATA_CONTRACT.md section 3.1.
--
-- Input tables (contract section 1, already checked by the section 4 rules):
-- sales, inventory, calendar. One output row per (yr_num, wk_num, store_key,
-- prod_key) with at least one sales row or inventory snapshot in that week.
--
-- Money and quantities stay DECIMAL(38,2) in every SUM; a value becomes
-- DOUBLE only where the contract asks for a ratio (Float64 columns).

WITH
-- §3.1 step 1: sales at the daily grain. SUM skips NULLs, so a NULL
-- sales_qty/sales_amt/sales_cost counts as 0 (a day of only NULLs gives NULL,
-- made 0 in step 2).
daily_sales AS (
    SELECT trans_dt          AS dt,
           store_key,
           prod_key,
           SUM(sales_qty)    AS qty,
           SUM(sales_amt)    AS amt,
           SUM(sales_cost)   AS cost
    FROM sales
    GROUP BY trans_dt, store_key, prod_key
),

-- §3.1 step 2: daily sales FULL OUTER JOIN the end-of-day inventory snapshot.
-- inv_dt is the snapshot's date, NULL when the day has none (has_inv = 0).
daily AS (
    SELECT COALESCE(s.dt, i.cal_dt)               AS dt,
           COALESCE(s.store_key, i.store_key)     AS store_key,
           COALESCE(s.prod_key, i.prod_key)       AS prod_key,
           COALESCE(s.qty, 0)                     AS qty,
           COALESCE(s.amt, 0)                     AS amt,
           COALESCE(s.cost, 0)                    AS cost,
           i.cal_dt                               AS inv_dt,
           i.inventory_on_hand_qty                AS on_hand,
           i.inventory_on_order_qty               AS on_order,
           -- oos: any non-zero flag counts as 1; NULL counts as 0; no snapshot, 0.
           CASE WHEN i.cal_dt IS NOT NULL AND COALESCE(i.out_of_stock_flg, 0) <> 0
                THEN 1 ELSE 0 END                 AS oos,
           -- low: the day sold more than the shelf held. A negative on-hand
           -- with no sales is low; a NULL on-hand is not (NULL < x is not true).
           CASE WHEN i.cal_dt IS NOT NULL AND i.inventory_on_hand_qty < COALESCE(s.qty, 0)
                THEN 1 ELSE 0 END                 AS low
    FROM daily_sales s
    FULL OUTER JOIN inventory i
      ON s.dt = i.cal_dt AND s.store_key = i.store_key AND s.prod_key = i.prod_key
),

-- mnth_num of a week: the month of the latest calendar date of that
-- (yr_num, wk_num), not of eow_date nor of the first day.
week_month AS (
    SELECT yr_num, wk_num, last_value(mnth_num ORDER BY cal_dt) AS mnth_num
    FROM calendar
    GROUP BY yr_num, wk_num
),

-- §3.1 steps 3 and 4: the calendar decides the week; aggregate per week,
-- store and product. (The small calendar comes first: the engine builds
-- its hash table on the join's left side.)
weekly AS (
    SELECT c.yr_num,
           c.wk_num,
           d.store_key,
           d.prod_key,
           SUM(d.qty)                               AS total_sales_qty,
           SUM(d.amt)                               AS total_sales_amt,
           SUM(d.cost)                              AS total_cost_amt,
           COUNT(d.inv_dt)                          AS inventory_days,
           MAX(d.inv_dt)                            AS eow_date,
           -- The snapshot at eow_date: the value on the row with the latest
           -- snapshot date; days without a snapshot (inv_dt NULL) never
           -- count. shelfline's own aggregate (src/engine/latest.rs), what
           -- last_value(x ORDER BY inv_dt ASC NULLS FIRST) means here, much
           -- faster.
           value_at_latest(d.on_hand, d.inv_dt)     AS stock_on_hand_qty,
           value_at_latest(d.on_order, d.inv_dt)    AS stock_on_order_qty,
           SUM(d.oos)                               AS no_stock_instances,
           SUM(d.low)                               AS low_stock_instances,
           -- Sales value beyond the stock on hand, on low days that sold.
           -- A ratio (DOUBLE, as the contract's column): computed in DOUBLE
           -- from the exact decimals, so that no input can make the
           -- product overflow a DECIMAL.
           SUM(CASE WHEN d.low = 1 AND d.qty > 0
                    THEN CAST(d.amt AS DOUBLE)
                         * (CAST(d.qty AS DOUBLE) - CAST(d.on_hand AS DOUBLE))
                         / CAST(d.qty AS DOUBLE)
                    ELSE 0.0 END)                   AS potential_low_stock_impact,
           -- Sales made while flagged out of stock.
           SUM(CASE WHEN d.oos = 1 THEN d.amt ELSE 0 END) AS no_stock_impact
    FROM calendar c
    JOIN daily d ON d.dt = c.cal_dt
    GROUP BY c.yr_num, c.wk_num, d.store_key, d.prod_key
)

SELECT w.yr_num,
       w.wk_num,
       w.store_key,
       w.prod_key,
       m.mnth_num,
       CAST(w.total_sales_qty AS DECIMAL(38, 2))               AS total_sales_qty,
       CAST(w.total_sales_amt AS DECIMAL(38, 2))               AS total_sales_amt,
       CAST(w.total_cost_amt AS DECIMAL(38, 2))                AS total_cost_amt,
       CASE WHEN w.total_sales_qty = 0 THEN NULL
            ELSE CAST(w.total_sales_amt AS DOUBLE) / CAST(w.total_sales_qty AS DOUBLE)
       END                                                     AS avg_sales_price,
       CAST(w.inventory_days AS INT)                           AS inventory_days,
       w.eow_date,
       CAST(w.stock_on_hand_qty AS DECIMAL(38, 2))             AS stock_on_hand_qty,
       CAST(w.stock_on_order_qty AS DECIMAL(38, 2))            AS stock_on_order_qty,
       CAST(w.no_stock_instances AS INT)                       AS no_stock_instances,
       CAST(w.low_stock_instances AS INT)                      AS low_stock_instances,
       CASE WHEN w.inventory_days = 0 THEN NULL
            ELSE 100.0 * CAST(w.inventory_days - w.no_stock_instances AS DOUBLE)
                       / CAST(w.inventory_days AS DOUBLE)
       END                                                     AS in_stock_pct,
       CAST(w.no_stock_instances + w.low_stock_instances AS INT) AS total_low_stock_impact,
       w.potential_low_stock_impact,
       CAST(w.no_stock_impact AS DECIMAL(38, 2))               AS no_stock_impact,
       -- NULL when stock_on_hand_qty is NULL or nothing sold.
       CASE WHEN w.total_sales_qty = 0 THEN NULL
            ELSE CAST(w.stock_on_hand_qty AS DOUBLE) / CAST(w.total_sales_qty AS DOUBLE)
       END                                                     AS weeks_of_supply
FROM weekly w
JOIN week_month m ON m.yr_num = w.yr_num AND m.wk_num = w.wk_num
