//! PostgreSQL functions that clients call while they connect and that the
//! engine answers otherwise or not at all.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};
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

/// `pg_get_serial_sequence(table, column)`: the sequence behind a serial
/// column, which no lake column has: NULL, as PostgreSQL answers for a
/// column without one. SQLAlchemy's column reflection asks it.
pub(super) fn pg_get_serial_sequence() -> ScalarUDF {
    create_udf(
        "pg_get_serial_sequence",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))),
    )
}

/// `pg_collation_is_visible(oid)`: whether a collation is on the search
/// path; every collation the server lists is in `pg_catalog`, which is.
pub(super) fn pg_collation_is_visible() -> ScalarUDF {
    create_udf(
        "pg_collation_is_visible",
        vec![DataType::Int64],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))),
    )
}

/// `json_build_object(key, value, ...)`: a JSON object of the pairs, as
/// text. SQLAlchemy's column reflection builds identity and collation
/// details with it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct JsonBuildObject {
    signature: Signature,
}

impl JsonBuildObject {
    pub(super) fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(JsonBuildObject {
            signature: Signature::variadic_any(Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return plan_err!("json_build_object takes pairs of keys and values");
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let objects: StringArray = (0..args.number_rows)
            .map(|row| {
                let mut object = serde_json::Map::new();
                for pair in arrays.chunks(2) {
                    let key = ScalarValue::try_from_array(&pair[0], row)?;
                    let value = ScalarValue::try_from_array(&pair[1], row)?;
                    object.insert(key.to_string(), json_value(&value));
                }
                Ok(Some(serde_json::Value::Object(object).to_string()))
            })
            .collect::<datafusion::error::Result<_>>()?;
        Ok(ColumnarValue::Array(Arc::new(objects)))
    }
}

/// `value` as JSON: numbers, booleans and NULL as themselves, anything
/// else as its text.
fn json_value(value: &ScalarValue) -> serde_json::Value {
    use serde_json::Value;
    if value.is_null() {
        return Value::Null;
    }
    match value {
        ScalarValue::Boolean(Some(b)) => Value::Bool(*b),
        ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::Int64(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_)
        | ScalarValue::UInt64(_)
        | ScalarValue::Float32(_)
        | ScalarValue::Float64(_) => {
            serde_json::from_str(&value.to_string()).unwrap_or(Value::Null)
        }
        other => Value::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::AsArray;

    use super::*;

    #[tokio::test]
    async fn json_build_object_builds_an_object_of_the_pairs() {
        let ctx = SessionContext::new();
        ctx.register_udf(JsonBuildObject::udf());
        let sql = "SELECT json_build_object('a', 1, 'b', 'x', 'c', true, 'd', NULL, 'e', 2.5)";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = batches[0].column(0).as_string::<i32>().value(0).to_string();
        assert_eq!(text, r#"{"a":1,"b":"x","c":true,"d":null,"e":2.5}"#);
        let odd = ctx.sql("SELECT json_build_object('a')").await;
        let error = match odd {
            Ok(frame) => frame.collect().await.unwrap_err(),
            Err(error) => error,
        };
        assert!(error.to_string().contains("pairs"), "{error}");
    }
}
