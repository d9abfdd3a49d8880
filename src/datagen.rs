//! Deterministic, realistic retail data at a scale factor.
//!
//! SF 1 is 50 stores × 400 products × 365 days: one inventory snapshot per
//! (day, store, product) — 7.3 M rows — and about 11 M sales lines. The row
//! count is linear in SF: stores grow with SF, and below SF 0.02 (one store)
//! the product range shrinks instead.
//!
//! The data behaves like a shop's: product popularity is heavy-tailed
//! (Zipf-like), weekends sell more, on-hand stock falls with sales and is
//! refilled by deliveries some days after a reorder, so some days run out of
//! stock or sell more than the shelf holds. The calendar is a retail
//! calendar: weeks run Sunday to Saturday, and retail year Y starts on the
//! Sunday on or before 1 January of Y.

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::record_batch::RecordBatch;

use crate::batch::{BatchBuilder, Value};
use crate::raw::csv::days_since_epoch;
use crate::schema::Table;

/// Rows per generated batch.
const BATCH_ROWS: usize = 65_536;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DatagenSpec {
    /// Scale factor: 1.0 = 50 stores × 400 products × 365 days.
    pub scale_factor: f64,
    /// Seed of the pseudo-random generator; the same seed gives the same data.
    pub seed: u64,
    /// First day with sales and inventory.
    pub start: NaiveDate,
    /// Number of days.
    pub days: u32,
}

impl Default for DatagenSpec {
    fn default() -> Self {
        DatagenSpec {
            scale_factor: 1.0,
            seed: 42,
            start: NaiveDate::from_ymd_opt(2025, 1, 1).expect("valid date"),
            days: 365,
        }
    }
}

impl DatagenSpec {
    /// Number of stores: 50 × SF, at least one.
    pub fn stores(&self) -> u32 {
        ((50.0 * self.scale_factor).round() as u32).max(1)
    }

    /// Number of products: 400, fewer when one store is already more than
    /// SF asks for, so that rows stay linear in SF.
    pub fn products(&self) -> u32 {
        let wanted = 400.0 * 50.0 * self.scale_factor / f64::from(self.stores());
        (wanted.round() as u32).clamp(1, 400)
    }

    /// The last generated day.
    pub fn end(&self) -> NaiveDate {
        self.start + chrono::Days::new(u64::from(self.days.max(1) - 1))
    }
}

/// Rows generated per table.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DatagenSummary {
    pub stores: u64,
    pub products: u64,
    pub calendar_days: u64,
    pub sales: u64,
    pub inventory: u64,
}

/// Generates the five tables, handing each batch to `sink` (dimensions
/// first, then day by day sales and inventory). `on_day` is called after
/// each generated day, for progress.
pub fn generate<E>(
    spec: &DatagenSpec,
    mut sink: impl FnMut(Table, RecordBatch) -> Result<(), E>,
    mut on_day: impl FnMut(u32),
) -> Result<DatagenSummary, E> {
    let mut rng = Rng::new(spec.seed);
    let stores = make_stores(spec.stores(), &mut rng);
    let products = make_products(spec.products(), &mut rng);
    let mut summary = DatagenSummary {
        stores: stores.len() as u64,
        products: products.len() as u64,
        ..Default::default()
    };
    sink(Table::Store, store_batch(&stores))?;
    sink(Table::Product, product_batch(&products))?;
    let calendar = calendar_batch(spec.start, spec.end());
    summary.calendar_days = calendar.num_rows() as u64;
    sink(Table::Calendar, calendar)?;

    let mut shop = Shop::new(&stores, &products, &mut rng);
    let mut sales = BatchBuilder::new(Table::Sales, BATCH_ROWS);
    let mut inventory = BatchBuilder::new(Table::Inventory, BATCH_ROWS);
    for day in 0..spec.days {
        let date = spec.start + chrono::Days::new(day.into());
        shop.simulate_day(date, &mut rng, &mut sales, &mut inventory);
        for (table, builder, count) in [
            (Table::Sales, &mut sales, &mut summary.sales),
            (Table::Inventory, &mut inventory, &mut summary.inventory),
        ] {
            let last_day = day + 1 == spec.days;
            if builder.len() >= BATCH_ROWS - 1000 || (last_day && !builder.is_empty()) {
                *count += builder.len() as u64;
                sink(table, builder.finish())?;
            }
        }
        on_day(day + 1);
    }
    Ok(summary)
}

/// SplitMix64: tiny, fast and stable across versions, so a seed always
/// gives the same data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.next_u64() as usize % items.len()]
    }

    /// A Poisson draw (Knuth for small means, normal approximation above).
    fn poisson(&mut self, mean: f64) -> u32 {
        if mean > 30.0 {
            let z = (-2.0 * self.unit().max(1e-12).ln()).sqrt()
                * (std::f64::consts::TAU * self.unit()).cos();
            return (mean + z * mean.sqrt()).round().max(0.0) as u32;
        }
        let limit = (-mean).exp();
        let mut product = self.unit();
        let mut count = 0;
        while product > limit {
            product *= self.unit();
            count += 1;
        }
        count
    }
}

struct Store {
    key: i32,
    num: String,
    desc: String,
    addr: String,
    city: &'static City,
    type_cd: &'static str,
    type_desc: &'static str,
    franchise: bool,
    size_milli: i128,
    submarket: i32,
    lat_micro: i128,
    lon_micro: i128,
    /// Relative sales volume of the store.
    traffic: f64,
}

struct City {
    name: &'static str,
    region: &'static str,
    country: (&'static str, &'static str),
    state: (&'static str, &'static str),
    postal: &'static str,
    lat: f64,
    lon: f64,
}

const fn city(
    name: &'static str,
    region: &'static str,
    country: (&'static str, &'static str),
    state: (&'static str, &'static str),
    postal: &'static str,
    lat: f64,
    lon: f64,
) -> City {
    City {
        name,
        region,
        country,
        state,
        postal,
        lat,
        lon,
    }
}

const CA: (&str, &str) = ("CA", "Canada");
const US: (&str, &str) = ("US", "United States");

const CITIES: &[City] = &[
    city(
        "Toronto",
        "Central",
        CA,
        ("Ontario", "ON"),
        "M5V",
        43.6532,
        -79.3832,
    ),
    city(
        "Ottawa",
        "Central",
        CA,
        ("Ontario", "ON"),
        "K1P",
        45.4215,
        -75.6972,
    ),
    city(
        "Montreal",
        "East",
        CA,
        ("Quebec", "QC"),
        "H3B",
        45.5019,
        -73.5674,
    ),
    city(
        "Halifax",
        "East",
        CA,
        ("Nova Scotia", "NS"),
        "B3H",
        44.6488,
        -63.5752,
    ),
    city(
        "Winnipeg",
        "Prairies",
        CA,
        ("Manitoba", "MB"),
        "R3C",
        49.8951,
        -97.1384,
    ),
    city(
        "Calgary",
        "Prairies",
        CA,
        ("Alberta", "AB"),
        "T2P",
        51.0447,
        -114.0719,
    ),
    city(
        "Vancouver",
        "West",
        CA,
        ("British Columbia", "BC"),
        "V6B",
        49.2827,
        -123.1207,
    ),
    city(
        "Seattle",
        "Pacific NW",
        US,
        ("Washington", "WA"),
        "98101",
        47.6062,
        -122.3321,
    ),
    city(
        "Chicago",
        "Midwest",
        US,
        ("Illinois", "IL"),
        "60601",
        41.8781,
        -87.6298,
    ),
    city(
        "Boston",
        "Northeast",
        US,
        ("Massachusetts", "MA"),
        "02108",
        42.3601,
        -71.0589,
    ),
];

const STORE_TYPES: &[(&str, &str, f64)] = &[
    ("FLG", "Flagship", 1.8),
    ("MAL", "Mall", 1.2),
    ("STD", "Standard", 1.0),
    ("EXP", "Express", 0.6),
];

const STREETS: &[&str] = &[
    "King St W",
    "Queen St E",
    "Main St",
    "Bloor St W",
    "Yonge St",
    "Elm Ave",
    "Park Rd",
    "Lakeshore Blvd",
    "Broadway",
    "Market St",
];

/// Stores with varied traffic, normalized to a mean of 1 so that the
/// number of sales lines does not depend on which store types were drawn.
fn make_stores(count: u32, rng: &mut Rng) -> Vec<Store> {
    let mut stores: Vec<Store> = (1..=count as i32)
        .map(|key| {
            let city = rng.pick(CITIES);
            let &(type_cd, type_desc, traffic) = rng.pick(STORE_TYPES);
            let street = rng.pick(STREETS);
            let number = rng.range(1, 2999);
            let addr = if type_cd == "MAL" {
                format!("Unit {}, {number} {street}", rng.range(1, 40))
            } else {
                format!("{number} {street}")
            };
            let city_index = CITIES
                .iter()
                .position(|c| std::ptr::eq(c, city))
                .unwrap_or(0) as i32;
            Store {
                key,
                num: format!("S{key:03}"),
                desc: format!("{} {type_desc} #{key}", city.name),
                addr,
                city,
                type_cd,
                type_desc,
                franchise: rng.chance(0.3),
                size_milli: i128::from(rng.range(4_000_000, 60_000_000)),
                submarket: (city_index + 1) * 10 + (key % 3),
                lat_micro: ((city.lat + (rng.unit() - 0.5) * 0.2) * 1e6).round() as i128,
                lon_micro: ((city.lon + (rng.unit() - 0.5) * 0.2) * 1e6).round() as i128,
                traffic: traffic * (0.7 + 0.6 * rng.unit()),
            }
        })
        .collect();
    let mean = stores.iter().map(|s| s.traffic).sum::<f64>() / stores.len() as f64;
    for store in &mut stores {
        store.traffic /= mean;
    }
    stores
}

fn store_batch(stores: &[Store]) -> RecordBatch {
    let mut builder = BatchBuilder::new(Table::Store, stores.len());
    for s in stores {
        let market_key = (s.submarket / 10) as i64;
        let submarket_name = format!("{} Zone {}", s.city.name, s.submarket % 10);
        builder.push(&[
            Value::Int(s.key.into()),
            Value::Text(&s.num),
            Value::Text(&s.desc),
            Value::Text(&s.addr),
            Value::Text(s.city.name),
            Value::Text(s.city.region),
            Value::Text(s.city.country.0),
            Value::Text(s.city.country.1),
            Value::Text(s.city.postal),
            Value::Text(s.city.state.0),
            Value::Text(s.city.state.1),
            Value::Text(s.type_cd),
            Value::Text(s.type_desc),
            Value::Bool(s.franchise),
            Value::Decimal(s.size_milli),
            Value::Int(market_key),
            Value::Text(&format!("Greater {}", s.city.name)),
            Value::Int(s.submarket.into()),
            Value::Text(&submarket_name),
            Value::Decimal(s.lat_micro),
            Value::Decimal(s.lon_micro),
        ]);
    }
    builder.finish()
}

struct Product {
    key: i32,
    name: String,
    brand: &'static str,
    category: (i32, &'static str),
    subcategory: (i32, &'static str),
    active: bool,
    vol_cents: i128,
    wgt_cents: i128,
    /// Sold by weight: fractional quantities.
    by_weight: bool,
    price_cents: i128,
    cost_cents: i128,
    /// Mean sales lines per store and day.
    popularity: f64,
}

const CATEGORIES: &[(&str, &[&str], &[&str])] = &[
    (
        "Dairy",
        &["Milk", "Cheese", "Yogurt"],
        &["Dairy Fresh", "Meadow Gold"],
    ),
    (
        "Bakery",
        &["Bread", "Pastry"],
        &["Baker's Best", "Golden Crust"],
    ),
    (
        "Beverages",
        &["Coffee", "Juice", "Soda"],
        &["Roast Co", "Sunny Press"],
    ),
    (
        "Produce",
        &["Fruit", "Vegetables"],
        &["Farm Direct", "Green Valley"],
    ),
    (
        "Household",
        &["Cleaning", "Paper"],
        &["Sparkle", "HomeCare"],
    ),
    (
        "Snacks",
        &["Chips", "Cookies"],
        &["Crunchy, Inc.", "Nana's"],
    ),
];

const VARIANTS: &[&str] = &[
    "Classic",
    "Organic",
    "Family Size",
    "Lite",
    "Premium",
    "Value",
];

/// Mean sales lines per (store, product, day) over all products, so that
/// SF 1 makes about 11 M lines from 7.3 M snapshots.
const MEAN_LINES_PER_DAY: f64 = 1.5;

fn make_products(count: u32, rng: &mut Rng) -> Vec<Product> {
    let harmonic: f64 = (1..=count).map(|rank| f64::from(rank).powf(-0.8)).sum();
    let mut products: Vec<Product> = (1..=count as i32)
        .map(|key| {
            let c = (key as usize - 1) % CATEGORIES.len();
            let (category, subcategories, brands) = CATEGORIES[c];
            let s = rng.next_u64() as usize % subcategories.len();
            let brand = *rng.pick(brands);
            let by_weight = matches!(category, "Produce") || (category == "Beverages" && s == 0);
            let price_cents = i128::from(rng.range(99, 2499));
            Product {
                key,
                name: format!("{brand} {} {} #{key}", subcategories[s], rng.pick(VARIANTS)),
                brand,
                category: (c as i32 + 1, category),
                subcategory: ((c as i32 + 1) * 10 + s as i32 + 1, subcategories[s]),
                active: rng.chance(0.95),
                vol_cents: i128::from(rng.range(10, 400)),
                wgt_cents: i128::from(rng.range(10, 500)),
                by_weight,
                price_cents,
                cost_cents: price_cents * i128::from(rng.range(45, 75)) / 100,
                popularity: 0.0,
            }
        })
        .collect();
    // Popularity follows the rank in a shuffled order: heavy-tailed, but not
    // tied to the key.
    let mut ranks: Vec<usize> = (1..=products.len()).collect();
    for i in (1..ranks.len()).rev() {
        ranks.swap(i, rng.next_u64() as usize % (i + 1));
    }
    for (product, rank) in products.iter_mut().zip(ranks) {
        product.popularity =
            MEAN_LINES_PER_DAY * f64::from(count) * (rank as f64).powf(-0.8) / harmonic;
    }
    products
}

fn product_batch(products: &[Product]) -> RecordBatch {
    let mut builder = BatchBuilder::new(Table::Product, products.len());
    for p in products {
        let (status, status_name) = if p.active {
            (1, "Active")
        } else {
            (2, "Discontinued")
        };
        builder.push(&[
            Value::Int(p.key.into()),
            Value::Text(&p.name),
            Value::Decimal(p.vol_cents),
            Value::Decimal(p.wgt_cents),
            Value::Text(p.brand),
            Value::Int(status),
            Value::Text(status_name),
            Value::Int(p.category.0.into()),
            Value::Text(p.category.1),
            Value::Int(p.subcategory.0.into()),
            Value::Text(p.subcategory.1),
        ]);
    }
    builder.finish()
}

/// The retail calendar from the Sunday on or before `start` to the Saturday
/// on or after `end`.
fn calendar_batch(start: NaiveDate, end: NaiveDate) -> RecordBatch {
    let first = start - chrono::Days::new(start.weekday().num_days_from_sunday().into());
    let last = end + chrono::Days::new((6 - end.weekday().num_days_from_sunday()).into());
    let days = (last - first).num_days() as usize + 1;
    let mut builder = BatchBuilder::new(Table::Calendar, days);
    for date in first.iter_days().take(days) {
        let (year, week) = retail_week(date);
        let month = date.month() as i64;
        let quarter = (month - 1) / 3 + 1;
        let weekday = date.weekday().num_days_from_sunday();
        let year_g = i64::from(date.year());
        builder.push(&[
            Value::Date(days_since_epoch(date)),
            Value::Text("RETAIL"),
            Value::Text(&weekday.to_string()),
            Value::Text(&date.format("%A").to_string()),
            Value::Int(year.into()),
            Value::Int(week.into()),
            Value::Int(i64::from(year) * 100 + i64::from(week)),
            Value::Int(month),
            Value::Int(year_g * 100 + month),
            Value::Int(quarter),
            Value::Int(year_g * 10 + quarter),
        ]);
    }
    builder.finish()
}

/// The retail year and week of `date`: year Y starts on the Sunday on or
/// before 1 January of Y; weeks run Sunday to Saturday.
pub fn retail_week(date: NaiveDate) -> (i32, i32) {
    let year_start = |year: i32| {
        let jan1 = NaiveDate::from_ymd_opt(year, 1, 1).expect("valid date");
        jan1 - chrono::Days::new(jan1.weekday().num_days_from_sunday().into())
    };
    let year = if date >= year_start(date.year() + 1) {
        date.year() + 1
    } else {
        date.year()
    };
    let week = (date - year_start(year)).num_days() / 7 + 1;
    (year, week as i32)
}

/// The stock of one product in one store.
#[derive(Clone, Copy)]
struct Shelf {
    /// Hundredths of a unit.
    on_hand: i128,
    on_order: i128,
    next_delivery: Option<NaiveDate>,
    reorder_point: i128,
    order_up_to: i128,
    lead_days: u64,
}

/// The simulation state: every shelf of every store.
struct Shop<'a> {
    stores: &'a [Store],
    products: &'a [Product],
    shelves: Vec<Shelf>,
    next_trans_id: i64,
}

impl<'a> Shop<'a> {
    fn new(stores: &'a [Store], products: &'a [Product], rng: &mut Rng) -> Self {
        let mut shelves = Vec::with_capacity(stores.len() * products.len());
        for store in stores {
            for product in products {
                let daily = product.popularity * store.traffic * 1.6;
                // Most shelves are reordered in time; those with a cover
                // below their lead time run out now and then.
                let lead_days = rng.range(2, 5) as u64;
                let cover = 0.8 + 0.7 * rng.unit();
                let reorder_point = (daily * (lead_days + 1) as f64 * cover * 100.0).ceil() as i128;
                let order_up_to = reorder_point + (daily * 8.0 * 100.0).ceil() as i128 + 100;
                shelves.push(Shelf {
                    on_hand: order_up_to,
                    on_order: 0,
                    next_delivery: None,
                    reorder_point,
                    order_up_to,
                    lead_days,
                });
            }
        }
        Shop {
            stores,
            products,
            shelves,
            next_trans_id: 1,
        }
    }

    fn simulate_day(
        &mut self,
        date: NaiveDate,
        rng: &mut Rng,
        sales: &mut BatchBuilder,
        inventory: &mut BatchBuilder,
    ) {
        let day = days_since_epoch(date);
        let weekday_factor = match date.weekday().num_days_from_sunday() {
            0 | 6 => 1.35,
            5 => 1.15,
            _ => 0.85,
        };
        let season = 1.0 + 0.15 * (f64::from(date.ordinal()) / 365.0 * std::f64::consts::TAU).cos();
        for (s, store) in self.stores.iter().enumerate() {
            for (p, product) in self.products.iter().enumerate() {
                let shelf = &mut self.shelves[s * self.products.len() + p];
                receive_delivery(shelf, date);
                let mean = product.popularity * store.traffic * weekday_factor * season;
                let sold = sell(
                    rng,
                    mean,
                    shelf.on_hand,
                    (store, product),
                    day,
                    &mut self.next_trans_id,
                    sales,
                );
                shelf.on_hand = (shelf.on_hand - sold).max(0);
                let waste = if rng.chance(0.01) && shelf.on_hand > 100 {
                    100
                } else {
                    0
                };
                shelf.on_hand -= waste;
                reorder(shelf, date);
                let promotion = rng.chance(0.05);
                inventory.push(&[
                    Value::Date(day),
                    Value::Int(store.key.into()),
                    Value::Int(product.key.into()),
                    Value::Decimal(shelf.on_hand),
                    Value::Decimal(shelf.on_order),
                    Value::Int(i64::from(shelf.on_hand <= 0)),
                    Value::Decimal(waste),
                    Value::Bool(promotion),
                    shelf
                        .next_delivery
                        .map_or(Value::Null, |d| Value::Date(days_since_epoch(d))),
                ]);
            }
        }
    }
}

fn receive_delivery(shelf: &mut Shelf, date: NaiveDate) {
    if shelf.next_delivery == Some(date) {
        shelf.on_hand += shelf.on_order;
        shelf.on_order = 0;
        shelf.next_delivery = None;
    }
}

fn reorder(shelf: &mut Shelf, date: NaiveDate) {
    if shelf.next_delivery.is_none() && shelf.on_hand < shelf.reorder_point {
        shelf.on_order = shelf.order_up_to - shelf.on_hand;
        shelf.next_delivery = Some(date + chrono::Days::new(shelf.lead_days));
    }
}

/// Generates the day's sales lines of one shelf; returns the quantity sold
/// (hundredths). An empty shelf still sells now and then: stock records are
/// not perfect, which is what low-stock and out-of-stock metrics catch.
fn sell(
    rng: &mut Rng,
    mean: f64,
    on_hand: i128,
    (store, product): (&Store, &Product),
    day: i32,
    next_trans_id: &mut i64,
    sales: &mut BatchBuilder,
) -> i128 {
    let lines = rng.poisson(mean);
    let mut sold = 0;
    for _ in 0..lines {
        if on_hand <= 0 && !rng.chance(0.2) {
            continue;
        }
        let qty = if rng.chance(0.005) {
            -100
        } else if product.by_weight {
            i128::from(rng.range(2, 50)) * 5
        } else {
            100 * i128::from(1 + u8::from(rng.chance(0.25)) + u8::from(rng.chance(0.05)))
        };
        let discount = if rng.chance(0.08) {
            (cents(qty, product.price_cents) / 10).max(1) * qty.signum()
        } else {
            0
        };
        let amt = cents(qty, product.price_cents) - discount;
        let cost = cents(qty, product.cost_cents);
        let time = rng.range(8, 21) * 10_000 + rng.range(0, 59) * 100 + rng.range(0, 59);
        sales.push(&[
            Value::Int(*next_trans_id),
            Value::Int(product.key.into()),
            Value::Int(store.key.into()),
            Value::Date(day),
            Value::Int(time),
            Value::Decimal(qty),
            Value::Decimal(product.price_cents),
            Value::Decimal(amt),
            Value::Decimal(discount),
            Value::Decimal(cost),
            Value::Decimal(amt - cost),
            Value::Decimal(0),
        ]);
        *next_trans_id += 1;
        sold += qty;
    }
    sold
}

/// `qty` (hundredths) × `price` (cents), in cents, rounded half away from zero.
fn cents(qty: i128, price: i128) -> i128 {
    let product = qty * price;
    (product + 50 * product.signum()) / 100
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn retail_weeks_match_the_golden_calendar() {
        assert_eq!(retail_week(date(2025, 12, 24)), (2025, 52));
        assert_eq!(retail_week(date(2025, 12, 27)), (2025, 52));
        assert_eq!(retail_week(date(2025, 12, 28)), (2026, 1));
        assert_eq!(retail_week(date(2026, 1, 3)), (2026, 1));
        assert_eq!(retail_week(date(2026, 1, 4)), (2026, 2));
        assert_eq!(retail_week(date(2026, 1, 10)), (2026, 2));
    }

    #[test]
    fn scale_is_linear() {
        let spec = |sf| DatagenSpec {
            scale_factor: sf,
            ..Default::default()
        };
        assert_eq!((spec(1.0).stores(), spec(1.0).products()), (50, 400));
        assert_eq!((spec(0.1).stores(), spec(0.1).products()), (5, 400));
        assert_eq!((spec(0.01).stores(), spec(0.01).products()), (1, 200));
        assert_eq!((spec(3.0).stores(), spec(3.0).products()), (150, 400));
    }

    #[test]
    fn same_seed_same_data_and_consistent_counts() {
        let spec = DatagenSpec {
            scale_factor: 0.01,
            days: 30,
            ..Default::default()
        };
        let run = || {
            let mut batches: Vec<(Table, RecordBatch)> = Vec::new();
            let summary = generate::<()>(
                &spec,
                |t, b| {
                    batches.push((t, b));
                    Ok(())
                },
                |_| {},
            )
            .unwrap();
            (summary, batches)
        };
        let (summary, first) = run();
        let (_, second) = run();
        assert_eq!(first, second);
        assert_eq!(summary.inventory, 30 * 200);
        let lines_per_snapshot = summary.sales as f64 / summary.inventory as f64;
        assert!(
            (1.0..2.0).contains(&lines_per_snapshot),
            "{lines_per_snapshot}"
        );
    }

    #[test]
    fn cents_round_half_away_from_zero() {
        assert_eq!(cents(150, 499), 749);
        assert_eq!(cents(-100, 549), -549);
        assert_eq!(cents(125, 2400), 3000);
    }
}
