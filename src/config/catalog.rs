//! The `[catalog]` table: where `serve` registers the lake after each
//! publication (`shelfline catalog sync` without `--glue-database`). Plain
//! data; `catalog` writes the entries.

use serde::{Deserialize, Serialize};

/// The `[catalog]` table of the config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// The AWS Glue database that holds the lake's tables; when set,
    /// `serve` creates or updates them after each successful publication.
    pub glue_database: Option<String>,
    /// The Glue API's URL; default `https://glue.<s3.region>.amazonaws.com`.
    pub glue_endpoint: Option<String>,
}

impl CatalogConfig {
    /// The problems of this table, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(name) = &self.glue_database
            && !is_database_name(name)
        {
            problems.push(format!(
                "catalog.glue_database = {:?}: use lowercase letters, digits and underscores, starting with a letter",
                crate::text::excerpt(name.as_bytes(), 40)
            ));
        }
        if let Some(endpoint) = &self.glue_endpoint
            && url::Url::parse(endpoint)
                .map_or(true, |url| !matches!(url.scheme(), "http" | "https"))
        {
            problems.push("catalog.glue_endpoint: give an http:// or https:// URL".into());
        }
        problems
    }
}

/// Whether `name` is a database name every catalog accepts (Glue's rule,
/// which Athena, Trino, Spark and DuckDB accept as it is).
pub fn is_database_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 255
}
