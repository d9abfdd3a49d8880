//! `shelfline catalog sync`: the lake's four tables in the AWS Glue Data
//! Catalog, as Athena reads Delta tables: an external table whose location
//! is the Delta table's folder, `table_type = DELTA`, its columns with the
//! contract's types and its partition keys (Athena itself reads the Delta
//! log; Lake Formation and other Glue readers read the columns).
//!
//! A sync creates the database if it is missing and each table if it is
//! missing, updates a table whose entry differs (without archiving a Glue
//! table version), and leaves an equal one alone, so running it again
//! changes nothing. Requests go to Glue's JSON API, signed with AWS
//! Signature Version 4 using `[s3]`'s region and credentials.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use object_store::aws::AwsCredential;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use super::{CatalogError, LakeTable, hive_type, lake_tables, table_url};
use crate::config::Config;
use crate::hmac::hmac_sha256;
use crate::storage::StorageError;

/// A Glue request that failed.
#[derive(Debug, thiserror::Error)]
pub enum GlueError {
    #[error(
        "cannot reach Glue at {endpoint} ({reason}): check catalog.glue_endpoint and the network"
    )]
    Unreachable { endpoint: String, reason: String },
    #[error("Glue refused {operation}: {code}: {message}")]
    Refused {
        operation: &'static str,
        code: String,
        message: String,
    },
    #[error("Glue's answer to {operation} is not what its API says ({reason})")]
    Answer {
        operation: &'static str,
        reason: String,
    },
    #[error("catalog.glue_endpoint {endpoint}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error(transparent)]
    Credentials(#[from] StorageError),
}

/// A client of one region's Glue API.
pub struct Glue {
    http: reqwest::Client,
    endpoint: Url,
    region: String,
    credential: Arc<AwsCredential>,
}

/// What a sync did to each entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

/// What a sync did: the database's change, then each table's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub database: (String, Change),
    pub tables: Vec<(String, Change)>,
}

impl fmt::Display for SyncReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (database, change) = &self.database;
        writeln!(f, "glue database {database}: {change:?}")?;
        for (table, change) in &self.tables {
            writeln!(f, "glue table {database}.{table}: {change:?}")?;
        }
        Ok(())
    }
}

impl Glue {
    /// A client for the Glue API that `config` names (`[catalog]
    /// glue_endpoint`, else the `[s3]` region's), with `[s3]`'s credentials.
    pub async fn connect(config: &Config) -> Result<Glue, GlueError> {
        let s3 = &config.s3;
        let text = config
            .catalog
            .glue_endpoint
            .clone()
            .unwrap_or_else(|| format!("https://glue.{}.amazonaws.com", s3.region));
        let endpoint_error = |reason: &str| GlueError::Endpoint {
            endpoint: text.clone(),
            reason: reason.to_string(),
        };
        let endpoint = Url::parse(&text).map_err(|e| endpoint_error(&e.to_string()))?;
        if endpoint.query().is_some() || endpoint.fragment().is_some() {
            return Err(endpoint_error(
                "a query string has no place in it: give the API's base URL",
            ));
        }
        if endpoint.scheme() == "http" && !s3.allow_http {
            return Err(endpoint_error(
                "plain http: set allow_http = true in [s3] if the network is trusted, or use https",
            ));
        }
        let credential = crate::storage::aws_credential(s3, "AWS Glue").await?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| endpoint_error(&e.to_string()))?;
        Ok(Glue {
            http,
            endpoint,
            region: s3.region.clone(),
            credential,
        })
    }

    /// Calls `operation` with `body`: its answer, or `Ok(None)` when Glue
    /// says the entity does not exist.
    async fn call(
        &self,
        operation: &'static str,
        body: &Value,
    ) -> Result<Option<Value>, GlueError> {
        let body = serde_json::to_vec(body).expect("a JSON value serializes");
        let request = SignedRequest {
            target: format!("AWSGlue.{operation}"),
            endpoint: &self.endpoint,
            body: &body,
        };
        let headers = request.headers(&self.credential, &self.region, Utc::now());
        let unreachable = |e: reqwest::Error| GlueError::Unreachable {
            endpoint: self.endpoint.to_string(),
            reason: crate::text::excerpt(e.to_string().as_bytes(), 200),
        };
        let mut http = self.http.post(self.endpoint.clone()).body(body.clone());
        for (name, value) in headers {
            http = http.header(name, value);
        }
        let response = http.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Some(answer));
        }
        let code = answer["__type"].as_str().unwrap_or(status.as_str());
        let code = code.rsplit('#').next().unwrap_or(code).to_string();
        if code == "EntityNotFoundException" {
            return Ok(None);
        }
        let message = answer["message"].as_str().or(answer["Message"].as_str());
        Err(GlueError::Refused {
            operation,
            code,
            message: crate::text::excerpt(message.unwrap_or("").as_bytes(), 200),
        })
    }

    /// Creates `database` unless it exists.
    async fn ensure_database(&self, database: &str) -> Result<Change, GlueError> {
        if self
            .call("GetDatabase", &json!({ "Name": database }))
            .await?
            .is_some()
        {
            return Ok(Change::Unchanged);
        }
        let input = json!({
            "DatabaseInput": {
                "Name": database,
                "Description": "shelfline's lake: the weekly sales and inventory fact and the dimension snapshots",
            }
        });
        self.call("CreateDatabase", &input).await?;
        Ok(Change::Created)
    }

    /// Creates, updates or leaves `wanted` in `database`.
    async fn ensure_table(&self, database: &str, wanted: &TableInput) -> Result<Change, GlueError> {
        let found = self
            .call(
                "GetTable",
                &json!({ "DatabaseName": database, "Name": wanted.name }),
            )
            .await?;
        let body = json!({ "DatabaseName": database, "TableInput": wanted });
        let Some(found) = found else {
            self.call("CreateTable", &body).await?;
            return Ok(Change::Created);
        };
        let found: TableInput =
            serde_json::from_value(found["Table"].clone()).map_err(|e| GlueError::Answer {
                operation: "GetTable",
                reason: e.to_string(),
            })?;
        if &found == wanted {
            return Ok(Change::Unchanged);
        }
        let mut body = body;
        body["SkipArchive"] = Value::Bool(true);
        self.call("UpdateTable", &body).await?;
        Ok(Change::Updated)
    }
}

/// Registers the lake at `lake` (an `s3://` URL) in Glue's `database`.
pub async fn sync(glue: &Glue, lake: &Url, database: &str) -> Result<SyncReport, CatalogError> {
    let database = super::database_name(database)?;
    if lake.scheme() != "s3" {
        return Err(CatalogError::NotOnS3 {
            engine: "Athena (through Glue)",
            lake: lake.to_string(),
        });
    }
    let created = glue.ensure_database(database).await?;
    let mut tables = Vec::new();
    for table in lake_tables() {
        let input = TableInput::of(lake, &table);
        tables.push((table.name, glue.ensure_table(database, &input).await?));
    }
    Ok(SyncReport {
        database: (database.to_string(), created),
        tables,
    })
}

/// A Glue table entry: what CreateTable and UpdateTable take, and the part
/// of GetTable's answer a sync compares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TableInput {
    name: String,
    #[serde(default)]
    table_type: String,
    #[serde(default)]
    parameters: BTreeMap<String, String>,
    storage_descriptor: StorageDescriptor,
    #[serde(default)]
    partition_keys: Vec<GlueColumn>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StorageDescriptor {
    #[serde(default)]
    columns: Vec<GlueColumn>,
    #[serde(default)]
    location: String,
    #[serde(default)]
    input_format: String,
    #[serde(default)]
    output_format: String,
    #[serde(default)]
    serde_info: SerdeInfo,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SerdeInfo {
    #[serde(default)]
    serialization_library: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GlueColumn {
    name: String,
    #[serde(rename = "Type")]
    kind: String,
}

impl TableInput {
    /// The entry of `table` of the lake at `lake`.
    fn of(lake: &Url, table: &LakeTable) -> TableInput {
        let column = |(name, kind): &(&str, crate::schema::Kind)| GlueColumn {
            name: name.to_string(),
            kind: hive_type(*kind),
        };
        let (partitions, columns): (Vec<_>, Vec<_>) = table
            .columns
            .iter()
            .partition(|(name, _)| table.partitions.contains(name));
        let parameters = [
            ("EXTERNAL", "TRUE"),
            ("table_type", "DELTA"),
            ("classification", "delta"),
            ("spark.sql.sources.provider", "delta"),
        ];
        TableInput {
            name: table.name.clone(),
            table_type: "EXTERNAL_TABLE".to_string(),
            parameters: parameters
                .into_iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
            storage_descriptor: StorageDescriptor {
                columns: columns.into_iter().map(column).collect(),
                location: table_url(lake, table),
                input_format: "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
                    .to_string(),
                output_format: "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
                    .to_string(),
                serde_info: SerdeInfo {
                    serialization_library:
                        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe".to_string(),
                },
            },
            partition_keys: partitions.into_iter().map(column).collect(),
        }
    }
}

/// A POST to an AWS JSON API, to be signed (Signature Version 4).
struct SignedRequest<'a> {
    target: String,
    endpoint: &'a Url,
    body: &'a [u8],
}

impl SignedRequest<'_> {
    /// The request's headers, `Authorization` included, signed at `now`.
    fn headers(
        &self,
        credential: &AwsCredential,
        region: &str,
        now: DateTime<Utc>,
    ) -> Vec<(&'static str, String)> {
        let mut host = self.endpoint.host_str().unwrap_or_default().to_string();
        if let Some(port) = self.endpoint.port() {
            host = format!("{host}:{port}");
        }
        let mut headers = vec![
            ("content-type", "application/x-amz-json-1.1".to_string()),
            ("host", host),
            ("x-amz-date", now.format("%Y%m%dT%H%M%SZ").to_string()),
        ];
        if let Some(token) = &credential.token {
            headers.push(("x-amz-security-token", token.clone()));
        }
        headers.push(("x-amz-target", self.target.clone()));
        let authorization = signature_v4(
            &Signing {
                method: "POST",
                path: self.endpoint.path(),
                query: "",
                headers: &headers,
                payload: self.body,
            },
            credential,
            region,
            "glue",
            now,
        );
        headers.retain(|(name, _)| *name != "host");
        headers.push(("authorization", authorization));
        headers
    }
}

/// What Signature Version 4 signs of a request: every header given is
/// signed (sorted by lowercase name, values trimmed).
struct Signing<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: &'a [(&'static str, String)],
    payload: &'a [u8],
}

/// The `Authorization` header of AWS Signature Version 4 for `request` to
/// `service` in `region` at `now`.
fn signature_v4(
    request: &Signing,
    credential: &AwsCredential,
    region: &str,
    service: &str,
    now: DateTime<Utc>,
) -> String {
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(name, value)| {
            let words: Vec<&str> = value.split_whitespace().collect();
            (name.to_ascii_lowercase(), words.join(" "))
        })
        .collect();
    headers.sort();
    let names: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
    let signed_headers = names.join(";");
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        request.method,
        request.path,
        request.query,
        hex::encode(Sha256::digest(request.payload)),
    );
    let day = now.format("%Y%m%d").to_string();
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        now.format("%Y%m%dT%H%M%SZ"),
        hex::encode(Sha256::digest(canonical.as_bytes())),
    );
    let secret = format!("AWS4{}", credential.secret_key);
    let key = [day.as_str(), region, service, "aws4_request"]
        .iter()
        .fold(secret.into_bytes(), |key, part| {
            hmac_sha256(&key, part.as_bytes()).to_vec()
        });
    let signature = hex::encode(hmac_sha256(&key, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credential.key_id
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn example_credential(token: Option<&str>) -> AwsCredential {
        AwsCredential {
            key_id: "AKIDEXAMPLE".to_string(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string(),
            token: token.map(str::to_string),
        }
    }

    fn example_time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2015, 8, 30, 12, 36, 0).unwrap()
    }

    #[test]
    fn signatures_match_awss_documented_example() {
        // "Create a signed AWS API request" in the IAM user guide.
        let headers = [
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8".to_string(),
            ),
            ("host", "iam.amazonaws.com".to_string()),
            ("x-amz-date", "20150830T123600Z".to_string()),
        ];
        let request = Signing {
            method: "GET",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            headers: &headers,
            payload: b"",
        };
        let authorization = signature_v4(
            &request,
            &example_credential(None),
            "us-east-1",
            "iam",
            example_time(),
        );
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
        // The same headers in another order, one with runs of spaces.
        let mut shuffled = headers.clone();
        shuffled.reverse();
        shuffled[2].1 = "application/x-www-form-urlencoded;   charset=utf-8".to_string();
        let request = Signing {
            headers: &shuffled,
            ..request
        };
        let again = signature_v4(
            &request,
            &example_credential(None),
            "us-east-1",
            "iam",
            example_time(),
        );
        assert_eq!(again, authorization);
    }

    #[test]
    fn glue_requests_are_signed_as_botocore_signs_them() {
        // The Authorization header botocore's SigV4Auth gives the same
        // request (AWSRequest POST, the same headers, body and time).
        let endpoint = Url::parse("http://127.0.0.1:19000/").unwrap();
        let request = SignedRequest {
            target: "AWSGlue.GetDatabase".to_string(),
            endpoint: &endpoint,
            body: br#"{"Name":"retail"}"#,
        };
        let credential = example_credential(Some("TOKEN"));
        let headers = request.headers(&credential, "us-east-1", example_time());
        let authorization = &headers
            .iter()
            .find(|(name, _)| *name == "authorization")
            .unwrap()
            .1;
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/glue/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, \
             Signature=0a4a855ca1a125564fad78680cd5ab27d5ab13f70c233fd33d8028f5c5169eac"
        );
        assert!(headers.contains(&("x-amz-security-token", "TOKEN".to_string())));
    }

    #[test]
    fn a_tables_entry_splits_partition_keys_from_columns() {
        let lake = Url::parse("s3://retail-lake/prod").unwrap();
        let tables = lake_tables();
        let fact = TableInput::of(&lake, &tables[0]);
        let keys: Vec<&str> = fact
            .partition_keys
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(keys, ["yr_num", "wk_num"]);
        let columns = &fact.storage_descriptor.columns;
        assert_eq!(columns.len(), tables[0].columns.len() - 2);
        assert!(columns.contains(&GlueColumn {
            name: "total_sales_amt".to_string(),
            kind: "decimal(38,2)".to_string(),
        }));
        assert_eq!(
            fact.storage_descriptor.location,
            "s3://retail-lake/prod/weekly_sales_inventory/"
        );
        assert_eq!(fact.parameters["table_type"], "DELTA");
        let store = TableInput::of(&lake, &tables[1]);
        assert_eq!(store.partition_keys[0].kind, "date");
        // The JSON Glue takes: PascalCase, the column type as `Type`.
        let json = serde_json::to_value(&store).unwrap();
        assert_eq!(json["StorageDescriptor"]["Columns"][0]["Type"], "int");
        assert_eq!(json["Name"], "store_snapshots");
    }
}
