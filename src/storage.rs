//! Object stores chosen by URL: `file://` (local folder, the default),
//! `s3://bucket/prefix` (AWS S3 or an S3-compatible server, configured by
//! [`S3Config`]) and `memory://` (tests). The raw zone and the lake are each
//! one [`Location`].
//!
//! S3 requests that fail with a 5xx, a throttling reply, a timeout or a
//! dropped connection are retried with exponential backoff (object_store's
//! retry policy, bounded by `max_retries` and `retry_timeout_secs`). The
//! secret key is handed to the S3 client and nowhere else: messages name a
//! location by its URL and endpoint only.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use datafusion::error::DataFusionError;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, AwsCredential, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{BackoffConfig, RetryConfig};
use url::Url;

use crate::config::{S3Config, S3Credentials};

/// A storage URL that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "storage location '{url}' is not supported: use file://DIR (or a plain path), s3://BUCKET/PREFIX or memory://NAME"
    )]
    Unsupported { url: String },
    #[error("cannot create folder {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid storage location '{url}': {reason}")]
    Invalid { url: String, reason: String },
    #[error(
        "S3 endpoint {endpoint} is plain http: set allow_http = true in [s3] (or AWS_ALLOW_HTTP=true) if the network is trusted, or use https"
    )]
    HttpNotAllowed { endpoint: String },
    #[error(
        "no S3 credentials for {url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or access_key_id and secret_access_key_file in [s3]), or credentials = \"chain\" in [s3] for an IAM role"
    )]
    NoCredentials { url: String },
    #[error("cannot read the S3 secret key file {path}: {source}")]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "bucket '{bucket}' does not exist at {endpoint}: create it (e.g. `aws s3 mb s3://{bucket}`) or fix the URL"
    )]
    NoBucket { bucket: String, endpoint: String },
    #[error(
        "access to bucket '{bucket}' at {endpoint} was refused ({reason}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or access_key_id and secret_access_key_file in [s3]) and the bucket's policy"
    )]
    Denied {
        bucket: String,
        endpoint: String,
        reason: String,
    },
    #[error(
        "cannot reach bucket '{bucket}' at {endpoint}: {reason}; check the endpoint (AWS_ENDPOINT_URL or endpoint in [s3]) and that the server is up"
    )]
    Unreachable {
        bucket: String,
        endpoint: String,
        reason: String,
    },
}

/// Whether `host` (a name or an address, IPv6 in brackets or not) is this
/// machine: what is sent there does not cross a network.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A root folder in an object store: the raw zone or the lake.
#[derive(Debug, Clone)]
pub struct Location {
    url: Url,
    store: Arc<dyn ObjectStore>,
    /// The store of the whole bucket (`s3://`) or name (`memory://`), and
    /// its URL: what delta-rs wants, as it finds a table's folder itself.
    base: Option<(Arc<dyn ObjectStore>, Url)>,
    /// Where an `s3://` location's server is, for messages.
    endpoint: Option<String>,
}

impl Location {
    /// Parses `file://DIR`, a plain path, `s3://BUCKET/PREFIX` (reached
    /// as `s3` says) or `memory://NAME`.
    ///
    /// Relative `file://./dir` paths are resolved against the current
    /// directory. A local folder is not created until something is written
    /// into it.
    pub fn parse(text: &str, s3: &S3Config) -> Result<Location, StorageError> {
        if let Some(name) = text.strip_prefix("memory://") {
            return Ok(memory_location(name));
        }
        if let Some(path) = text.strip_prefix("file://") {
            return local_location(path);
        }
        if text.starts_with("s3://") {
            return s3_location(text, s3);
        }
        if text.contains("://") {
            return Err(StorageError::Unsupported {
                url: text.to_string(),
            });
        }
        local_location(text)
    }

    /// The normalized URL of this root (absolute for local folders).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The object store holding this root. Paths are relative to the root.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// A location for a sub-folder (e.g. one lake table).
    pub fn child(&self, name: &str) -> Result<Location, StorageError> {
        let url = self
            .url
            .join(&format!("{name}/"))
            .map_err(|e| StorageError::Invalid {
                url: self.url.to_string(),
                reason: e.to_string(),
            })?;
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::prefix::PrefixStore::new(
            Arc::clone(&self.store),
            name,
        ));
        Ok(Location {
            url,
            store,
            base: self.base.clone(),
            endpoint: self.endpoint.clone(),
        })
    }

    /// Where the file `name` lies in this location's store: a full URL or
    /// a local path under this location, or a path relative to it, gives
    /// this location and the file's path in it; a URL elsewhere in the same
    /// bucket (or in-memory store) gives the bucket's root and the key.
    /// `None` for a file in another store, outside a local folder, or a
    /// path that is not a plain object path (`..`, empty segments).
    pub fn find(&self, name: &str) -> Option<(Location, Path)> {
        let url = if name.contains("://") {
            let url = Url::parse(name).ok()?;
            // Only a plain URL: a query, fragment, user or port would name
            // one object to the checks and fetch another.
            let plain = url.query().is_none()
                && url.fragment().is_none()
                && url.username().is_empty()
                && url.password().is_none()
                && url.port().is_none();
            plain.then_some(url)?
        } else if name.starts_with('/') && self.base.is_none() {
            Url::from_file_path(name).ok()?
        } else {
            return Some((self.clone(), Path::parse(name).ok()?));
        };
        if let Some(inside) = url.as_str().strip_prefix(self.url.as_str()) {
            return Some((self.clone(), Path::from_url_path(inside).ok()?));
        }
        let (store, root) = self.base.as_ref()?;
        let same_store = url.scheme() == root.scheme() && url.host_str() == root.host_str();
        let key = Path::from_url_path(url.path()).ok()?;
        same_store.then(|| {
            let bucket = Location {
                url: root.clone(),
                store: Arc::clone(store),
                base: self.base.clone(),
                endpoint: self.endpoint.clone(),
            };
            (bucket, key)
        })
    }

    /// The store of the whole bucket (or in-memory store) holding this
    /// location, with its URL; `None` for local folders.
    pub fn base(&self) -> Option<&(Arc<dyn ObjectStore>, Url)> {
        self.base.as_ref()
    }

    /// Checks that an `s3://` location can be listed, turning a missing
    /// bucket, refused credentials or an unreachable server into one line
    /// that says what to do. Other locations need no check.
    pub async fn verify(&self) -> Result<(), StorageError> {
        let Some(endpoint) = &self.endpoint else {
            return Ok(());
        };
        let bucket = self.url.host_str().unwrap_or_default().to_string();
        let endpoint = endpoint.clone();
        let Err(error) = self.store.list_with_delimiter(None).await else {
            return Ok(());
        };
        let failure = S3Failure::of(&error);
        let reason = failure.reason;
        Err(match failure.kind {
            S3FailureKind::NoBucket => StorageError::NoBucket { bucket, endpoint },
            S3FailureKind::Denied => StorageError::Denied {
                bucket,
                endpoint,
                reason,
            },
            S3FailureKind::Other => StorageError::Unreachable {
                bucket,
                endpoint,
                reason,
            },
        })
    }

    /// The local folder behind a `file://` location.
    pub fn local_dir(&self) -> Option<std::path::PathBuf> {
        (self.url.scheme() == "file")
            .then(|| self.url.to_file_path().ok())
            .flatten()
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.local_dir() {
            Some(dir) => write!(f, "{}", dir.display()),
            None => write!(f, "{}", self.url),
        }
    }
}

/// The object stores of every process of a cluster (client, scheduler,
/// executors): `file://` and any `s3://BUCKET`, made on first use with the
/// `[s3]` settings. A plan naming raw files thereby resolves the same way
/// wherever it runs, with no store shipped along with it.
#[derive(Debug)]
pub struct StoreRegistry {
    s3: S3Config,
    known: DefaultObjectStoreRegistry,
}

impl StoreRegistry {
    /// A registry that reaches S3 as `s3` says.
    pub fn new(s3: S3Config) -> StoreRegistry {
        StoreRegistry {
            s3,
            known: DefaultObjectStoreRegistry::new(),
        }
    }
}

impl ObjectStoreRegistry for StoreRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.known.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.known.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        let known = self.known.get_store(url);
        if known.is_ok() || url.scheme() != "s3" {
            return known;
        }
        let bucket = url.host_str().unwrap_or_default();
        let location = s3_location(&format!("s3://{bucket}/"), &self.s3)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let store = Arc::clone(location.store());
        self.known.register_store(url, Arc::clone(&store));
        Ok(store)
    }
}

fn local_location(path: &str) -> Result<Location, StorageError> {
    let invalid = |reason: String| StorageError::Invalid {
        url: path.to_string(),
        reason,
    };
    let absolute = std::path::absolute(path).map_err(|e| invalid(e.to_string()))?;
    // A missing folder is not created here (only a write creates it), so a
    // mistyped location leaves nothing behind. The store is rooted at the
    // nearest folder that exists, so that removing a file never removes a
    // folder that was there before shelfline.
    let (existing, missing) = nearest_existing(&absolute);
    let existing = existing
        .canonicalize()
        .map_err(|e| invalid(e.to_string()))?;
    let dir = missing
        .iter()
        .fold(existing.clone(), |dir, part| dir.join(part));
    let url =
        Url::from_directory_path(&dir).map_err(|()| invalid("not an absolute path".to_string()))?;
    let local = LocalFileSystem::new_with_prefix(&existing)
        .map_err(|e| invalid(e.to_string()))?
        .with_automatic_cleanup(true);
    let store: Arc<dyn ObjectStore> = if missing.is_empty() {
        Arc::new(local)
    } else {
        let parts: Vec<&str> = missing.iter().filter_map(|p| p.to_str()).collect();
        Arc::new(object_store::prefix::PrefixStore::new(
            local,
            Path::from_iter(parts),
        ))
    };
    Ok(Location {
        url,
        store,
        base: None,
        endpoint: None,
    })
}

/// The nearest existing ancestor of `path` (or `path` itself), and the
/// names below it that do not exist yet.
fn nearest_existing(path: &std::path::Path) -> (PathBuf, Vec<std::ffi::OsString>) {
    let mut existing = path.to_path_buf();
    let mut missing = Vec::new();
    while !existing.exists() {
        let Some(name) = existing.file_name().map(ToOwned::to_owned) else {
            break;
        };
        missing.push(name);
        existing.pop();
    }
    missing.reverse();
    (existing, missing)
}

/// In-memory stores live for the process, one per name, so that the stages
/// of one test see the same `memory://NAME`.
fn memory_location(name: &str) -> Location {
    static STORES: LazyLock<Mutex<HashMap<String, Arc<InMemory>>>> =
        LazyLock::new(Default::default);
    let name = name.trim_end_matches('/');
    let store = Arc::clone(
        STORES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(name.to_string())
            .or_default(),
    );
    let url = Url::parse(&format!("memory://{name}/"))
        .unwrap_or_else(|_| Url::parse("memory://default/").expect("a constant URL parses"));
    let store: Arc<dyn ObjectStore> = store;
    Location {
        base: Some((Arc::clone(&store), url.clone())),
        url,
        store,
        endpoint: None,
    }
}

/// An `s3://bucket/prefix` location. The secret key comes from
/// `AWS_SECRET_ACCESS_KEY`, else `secret_access_key_file`.
fn s3_location(text: &str, s3: &S3Config) -> Result<Location, StorageError> {
    let invalid = |reason: &str| StorageError::Invalid {
        url: text.to_string(),
        reason: reason.to_string(),
    };
    let url = Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
    let bucket = url
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| invalid("no bucket: write s3://BUCKET/PREFIX"))?
        .to_string();
    let prefix = url.path().trim_matches('/').to_string();
    let endpoint = s3
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", s3.region));
    if endpoint.starts_with("http://") && !s3.allow_http {
        return Err(StorageError::HttpNotAllowed { endpoint });
    }
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&bucket)
        .with_region(&s3.region)
        .with_endpoint(&endpoint)
        .with_allow_http(s3.allow_http)
        .with_virtual_hosted_style_request(s3.virtual_hosted_style)
        // Put-if-absent as `If-None-Match: *`: what the lake's commits need.
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: s3.max_retries,
            retry_timeout: Duration::from_secs(s3.retry_timeout_secs),
        });
    builder = with_credentials(builder, s3, text)?;
    let bucket_store: Arc<dyn ObjectStore> =
        Arc::new(builder.build().map_err(|e| invalid(&s3_reason(&e)))?);
    let bucket_url = Url::parse(&format!("s3://{bucket}/")).map_err(|e| invalid(&e.to_string()))?;
    let whole_bucket = Location {
        url: bucket_url.clone(),
        store: Arc::clone(&bucket_store),
        base: Some((bucket_store, bucket_url)),
        endpoint: Some(endpoint),
    };
    match prefix.as_str() {
        "" => Ok(whole_bucket),
        prefix => whole_bucket.child(prefix),
    }
}

/// `builder` with the credentials `[s3]` gives: its static keys (and a
/// session token from the environment), else AWS's chain when chosen;
/// `what` names the location or service that needs them.
fn with_credentials(
    builder: AmazonS3Builder,
    s3: &S3Config,
    what: &str,
) -> Result<AmazonS3Builder, StorageError> {
    Ok(match (&s3.access_key_id, s3_secret(s3)?, s3.credentials) {
        (Some(key), Some(secret), _) => {
            let builder = builder
                .with_access_key_id(key)
                .with_secret_access_key(secret);
            match std::env::var("AWS_SESSION_TOKEN") {
                Ok(token) if !token.is_empty() => builder.with_token(token),
                _ => builder,
            }
        }
        (_, _, S3Credentials::Chain) => credential_chain(builder),
        // Without keys, the client would ask the instance metadata service,
        // which is no place to send a request unless the user opted in.
        (_, _, S3Credentials::Static) => {
            return Err(StorageError::NoCredentials {
                url: what.to_string(),
            });
        }
    })
}

/// The AWS credentials `[s3]` gives, for signing requests to AWS services
/// other than S3 (`what` names the service in errors).
pub async fn aws_credential(s3: &S3Config, what: &str) -> Result<Arc<AwsCredential>, StorageError> {
    let invalid = |reason: String| StorageError::Invalid {
        url: what.to_string(),
        reason,
    };
    let builder = AmazonS3Builder::new()
        .with_bucket_name("credentials-only")
        .with_region(&s3.region);
    let store = with_credentials(builder, s3, what)?
        .build()
        .map_err(|e| invalid(s3_reason(&e)))?;
    let credential = store.credentials().get_credential().await;
    credential.map_err(|e| invalid(format!("no credentials: {}", s3_reason(&e))))
}

/// The variables of AWS's credential chain, by the builder setting each
/// feeds; the client tries them in the chain's order (see
/// [`S3Credentials::Chain`]).
const CHAIN_VARIABLES: [(&str, AmazonS3ConfigKey); 8] = [
    (
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        AmazonS3ConfigKey::WebIdentityTokenFile,
    ),
    ("AWS_ROLE_ARN", AmazonS3ConfigKey::RoleArn),
    ("AWS_ROLE_SESSION_NAME", AmazonS3ConfigKey::RoleSessionName),
    ("AWS_ENDPOINT_URL_STS", AmazonS3ConfigKey::StsEndpoint),
    (
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        AmazonS3ConfigKey::ContainerCredentialsRelativeUri,
    ),
    (
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        AmazonS3ConfigKey::ContainerCredentialsFullUri,
    ),
    (
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        AmazonS3ConfigKey::ContainerAuthorizationTokenFile,
    ),
    (
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        AmazonS3ConfigKey::MetadataEndpoint,
    ),
];

/// `builder` taking its credentials from AWS's chain, set up from the
/// environment's [`CHAIN_VARIABLES`].
fn credential_chain(mut builder: AmazonS3Builder) -> AmazonS3Builder {
    for (variable, key) in CHAIN_VARIABLES {
        if let Ok(value) = std::env::var(variable).map(|v| v.trim().to_string())
            && !value.is_empty()
        {
            builder = builder.with_config(key, value);
        }
    }
    builder
}

fn s3_secret(s3: &S3Config) -> Result<Option<String>, StorageError> {
    if let Some(secret) = std::env::var("AWS_SECRET_ACCESS_KEY")
        .ok()
        .filter(|s| !s.is_empty())
    {
        return Ok(Some(secret));
    }
    let Some(path) = &s3.secret_access_key_file else {
        return Ok(None);
    };
    crate::config::read_secret_file(path)
        .map(Some)
        .map_err(|source| StorageError::SecretFile {
            path: path.clone(),
            source,
        })
}

/// What an S3 request's failure means for the user, and its gist.
struct S3Failure {
    kind: S3FailureKind,
    reason: String,
}

enum S3FailureKind {
    NoBucket,
    Denied,
    Other,
}

impl S3Failure {
    /// object_store reports a failed list request as a generic error whose
    /// text carries the HTTP status and the server's XML error, so they are
    /// read from there.
    fn of(error: &object_store::Error) -> S3Failure {
        let text = error.to_string();
        let code = between(&text, "<Code>", "</Code>");
        let status = between(&text, "status code: ", ":");
        let kind = match (error, code, status) {
            (object_store::Error::NotFound { .. }, _, _)
            | (_, Some("NoSuchBucket"), _)
            | (_, None, Some("404 Not Found")) => S3FailureKind::NoBucket,
            (
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. },
                _,
                _,
            )
            | (_, _, Some("401 Unauthorized" | "403 Forbidden")) => S3FailureKind::Denied,
            _ => S3FailureKind::Other,
        };
        S3Failure {
            kind,
            reason: s3_reason(error),
        }
    }
}

/// The gist of an S3 error: the server's error code and message, else the
/// HTTP status, else the last cause, without the request's details.
fn s3_reason(error: &object_store::Error) -> String {
    let text = error.to_string();
    if let Some(code) = between(&text, "<Code>", "</Code>") {
        let message = between(&text, "<Message>", "</Message>").unwrap_or_default();
        return format!("{code}: {message}");
    }
    if let Some(status) = between(&text, "status code: ", ":") {
        return status.to_string();
    }
    let last = text.rsplit(" - ").next().unwrap_or(&text);
    last.lines().next().unwrap_or_default().trim().to_string()
}

/// The text between the first `start` and the next `end`.
fn between<'t>(text: &'t str, start: &str, end: &str) -> Option<&'t str> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

/// Joins path segments below a root.
pub fn path(parts: &[&str]) -> Path {
    Path::from_iter(parts.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use object_store::ObjectStoreExt as _;

    /// Files are found by a path relative to the location, or by a full
    /// URL or path under it; in a bucket, anywhere in it; never elsewhere.
    #[test]
    fn files_are_found_under_a_location_or_in_its_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let raw = Location::parse(&root.display().to_string(), &S3Config::default()).unwrap();
        let inside = [
            "sales/sales_2026-01-10.csv.gz".to_string(),
            format!("file://{}/sales/sales_2026-01-10.csv.gz", root.display()),
            format!("{}/sales/sales_2026-01-10.csv.gz", root.display()),
        ];
        for name in inside {
            let (location, path) = raw.find(&name).expect(&name);
            assert_eq!(location.url(), raw.url(), "{name}");
            assert_eq!(path.as_ref(), "sales/sales_2026-01-10.csv.gz", "{name}");
        }
        for outside in [
            "/etc/passwd",
            "file:///etc/passwd",
            "../x.csv.gz",
            "a//b",
            "s3://b/x",
        ] {
            assert!(raw.find(outside).is_none(), "{outside}");
        }
        let memory = Location::parse("memory://find-test", &S3Config::default())
            .unwrap()
            .child("raw")
            .unwrap();
        let (bucket, key) = memory.find("memory://find-test/drop/x.csv.gz").unwrap();
        assert_eq!(bucket.url().as_str(), "memory://find-test/");
        assert_eq!(key.as_ref(), "drop/x.csv.gz");
        let (same, key) = memory.find("memory://find-test/raw/x.csv.gz").unwrap();
        assert_eq!((same.url(), key.as_ref()), (memory.url(), "x.csv.gz"));
        assert!(memory.find("memory://other/x.csv.gz").is_none());
        // A query, fragment, user or port would show one name to the
        // checks and fetch another object.
        for trick in [
            "memory://find-test/x.bin#/sales_2024051.csv.gz",
            "memory://find-test/x.bin?/sales_2024051.csv.gz",
            "memory://other@find-test/x.csv.gz",
            "memory://find-test:1/x.csv.gz",
        ] {
            assert!(memory.find(trick).is_none(), "{trick}");
        }
    }

    #[tokio::test]
    async fn memory_locations_are_shared_by_name() {
        let a = Location::parse("memory://shared-test", &S3Config::default()).unwrap();
        let b = Location::parse("memory://shared-test", &S3Config::default()).unwrap();
        a.store()
            .put(&path(&["x"]), Bytes::from_static(b"1").into())
            .await
            .unwrap();
        assert!(b.store().head(&path(&["x"])).await.is_ok());
    }

    #[test]
    fn relative_file_urls_become_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("file://{}/lake", dir.path().display());
        let location = Location::parse(&text, &S3Config::default()).unwrap();
        assert_eq!(location.url().scheme(), "file");
        assert!(location.local_dir().unwrap().ends_with("lake"));
    }

    #[test]
    fn unknown_schemes_name_the_url() {
        let err = Location::parse("ftp://host/x", &S3Config::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("ftp://host/x"), "{err}");
    }

    /// S3 settings for a server on loopback with a secret in a file.
    fn loopback_s3(dir: &tempfile::TempDir) -> S3Config {
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "do-not-print-me\n").unwrap();
        S3Config {
            endpoint: Some("http://127.0.0.1:1".to_string()),
            allow_http: true,
            access_key_id: Some("AKID".to_string()),
            secret_access_key_file: Some(secret),
            max_retries: 0,
            ..S3Config::default()
        }
    }

    #[test]
    fn s3_locations_keep_the_bucket_store_and_refuse_plain_http_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let mut s3 = S3Config {
            allow_http: false,
            ..loopback_s3(&dir)
        };
        let err = Location::parse("s3://lake/prod", &s3)
            .unwrap_err()
            .to_string();
        assert!(err.contains("allow_http"), "{err}");
        s3.allow_http = true;
        let location = Location::parse("s3://lake/prod/", &s3).unwrap();
        assert_eq!(location.url().as_str(), "s3://lake/prod/");
        let child = location.child("weekly").unwrap();
        assert_eq!(child.url().as_str(), "s3://lake/prod/weekly/");
        assert_eq!(child.base().unwrap().1.as_str(), "s3://lake/");
        let err = Location::parse("s3:///x", &s3).unwrap_err().to_string();
        assert!(err.contains("no bucket"), "{err}");
        s3.access_key_id = None;
        let err = Location::parse("s3://lake", &s3).unwrap_err().to_string();
        assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
    }

    /// The texts object_store gives for a list request that failed, as
    /// seen from moto and from a closed port.
    #[test]
    fn s3_failures_are_read_from_the_status_and_the_server_error() {
        let cases = [
            (
                "Error performing GET http://h/b?list-type=2 in 7ms - Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>",
                "no bucket",
                "NoSuchBucket: The specified bucket does not exist",
            ),
            (
                "Error performing GET http://h/b in 517ms - Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?>\n<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>",
                "denied",
                "InvalidAccessKeyId: The AWS Access Key Id you provided does not exist in our records.",
            ),
            (
                "Error performing GET http://h/b in 1.4s, after 10 retries, max_retries: 10, retry_timeout: 180s  - HTTP error: error sending request",
                "other",
                "HTTP error: error sending request",
            ),
        ];
        for (text, kind, reason) in cases {
            let error = object_store::Error::Generic {
                store: "S3",
                source: text.into(),
            };
            let failure = S3Failure::of(&error);
            let seen = match failure.kind {
                S3FailureKind::NoBucket => "no bucket",
                S3FailureKind::Denied => "denied",
                S3FailureKind::Other => "other",
            };
            assert_eq!((seen, failure.reason.as_str()), (kind, reason), "{text}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_s3_server_is_one_line_naming_bucket_and_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::parse("s3://lake/prod", &loopback_s3(&dir)).unwrap();
        let err = location.verify().await.unwrap_err().to_string();
        assert!(err.contains("bucket 'lake'"), "{err}");
        assert!(err.contains("http://127.0.0.1:1"), "{err}");
        assert!(!err.contains("do-not-print-me"), "{err}");
        assert!(!format!("{location:?}").contains("do-not-print-me"));
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
