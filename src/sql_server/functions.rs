//! PostgreSQL functions that clients call while they connect and that the
//! engine answers otherwise or not at all.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;

use crate::query::QueryError;

/// `version()`, which clients parse as PostgreSQL's (SQLAlchemy reads the
/// major and minor version from it): the version the protocol reports in
/// `server_version`.
pub(super) fn version() -> ScalarUDF {
    let text = format!(
        "PostgreSQL 16.6 on {}-linux, compiled by shelfline {} (Apache DataFusion, read-only)",
        std::env::consts::ARCH,
        env!("CARGO_PKG_VERSION")
    );
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.clone()))))),
    )
}

/// `to_regtype(name)`: the oid of the type called `name` in the served
/// `pg_type` (`pg_catalog.` prefix and case ignored), NULL when there is
/// none. psycopg asks it for extension types such as `hstore`.
pub(super) async fn to_regtype(ctx: &SessionContext) -> Result<ScalarUDF, QueryError> {
    let batches = ctx
        .sql("SELECT typname, CAST(oid AS BIGINT) FROM pg_catalog.pg_type")
        .await?
        .collect()
        .await?;
    let mut oids = HashMap::new();
    for batch in &batches {
        let names = cast(batch.column(0), &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let values = batch.column(1).as_primitive::<Int64Type>();
        for (name, oid) in names.iter().zip(values.iter()) {
            if let (Some(name), Some(oid)) = (name, oid) {
                oids.insert(name.to_string(), oid);
            }
        }
    }
    let lookup = move |name: &str| {
        let name = name.trim().trim_matches('"').to_lowercase();
        let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
        oids.get(name).copied()
    };
    Ok(create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int64,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| match &args[0] {
            ColumnarValue::Scalar(name) => {
                let oid = match name {
                    ScalarValue::Utf8(Some(name))
                    | ScalarValue::LargeUtf8(Some(name))
                    | ScalarValue::Utf8View(Some(name)) => lookup(name),
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Int64(oid)))
            }
            ColumnarValue::Array(names) => {
                let names = cast(names, &DataType::Utf8)?;
                let oids: Int64Array = names
                    .as_string::<i32>()
                    .iter()
                    .map(|name| name.and_then(&lookup))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(oids)))
            }
        }),
    ))
}
