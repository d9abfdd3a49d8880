//! shelfline: a daily batch pipeline for retail sales and inventory.
//!
//! Data moves down this list, one module per stage:
//!
//! ```text
//! source ──extract──▶ raw ──transform (quality gate)──▶ lake ──▶ query
//! ```
//!
//! - [`schema`]: the tables of the data contract, the only place columns are listed;
//! - [`datagen`]: deterministic synthetic retail data at a scale factor;
//! - [`source`]: transactional databases (embedded SQLite);
//! - [`extract`]: source → raw zone, streaming, with a manifest;
//! - [`raw`]: the raw zone's layout, formats, manifest and completeness check;
//! - [`window`]: the date windows of incremental nights, in calendar weeks;
//! - [`transform`]: raw → weekly fact with DataFusion, behind the quality rules;
//! - [`lake`]: atomic publication as Delta Lake tables;
//! - [`reconcile`]: the source and the lake compared week by week, for repairs;
//! - [`query`]: SQL over the lake;
//! - [`sql_server`]: the lake over PostgreSQL's wire protocol, read-only;
//! - [`catalog`]: the lake's tables registered in Athena, Glue, Trino, Spark
//!   or DuckDB.
//!
//! [`pipeline`] strings the stages together (`run`, `demo`); [`config`] holds
//! every setting; [`storage`] maps URLs to object stores ([`hmac`] signs). [`orchestrator`]
//! runs the pipeline as a DAG on schedules, with retries, a sensor, run
//! history and notifications; [`server`] is its HTTP API.

pub mod batch;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod datagen;
pub mod demo;
pub mod engine;
pub mod extract;
pub mod hmac;
pub mod lake;
pub mod orchestrator;
pub mod pipeline;
pub mod query;
pub mod raw;
pub mod reconcile;
pub mod schema;
pub mod server;
pub mod source;
pub mod sql_server;
pub mod storage;
pub mod text;
pub mod transform;
pub mod window;
