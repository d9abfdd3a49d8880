//! The raw zone and the lake on a real S3-compatible server (moto, started
//! by `.ci/s3`), driven through the `shelfline` binary:
//! - the whole pipeline on S3 gives the same lake as on local disk, with the
//!   big raw file uploaded in parts;
//! - a missing bucket, refused credentials and an unreachable server are one
//!   line each, and the secret key is never printed, even in debug logs;
//! - two `run`s of a date at once end with one consistent table; a run that finds the
//!   lake busy and may not wait fails saying who holds it;
//! - a proxy that fails every third request with 503 changes nothing.

mod common;

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use common::s3::{self, FaultyProxy};
use object_store::{ObjectStoreExt as _, PutMode, PutOptions};
use shelfline::storage::Location;

/// The last day of `datagen --days 60` from its default start, 2025-01-01.
const DATE: &str = "2025-03-01";

/// `shelfline` in `dir`, reaching the S3 server at `endpoint` through the
/// standard AWS variables, with debug logs of shelfline and its
/// dependencies (which must not show the secret).
fn shelfline(dir: &Path, endpoint: &str) -> Command {
    let mut command = Command::cargo_bin("shelfline").unwrap();
    command
        .current_dir(dir)
        .env_remove("SHELFLINE_SOURCE")
        .env_remove("SHELFLINE_RAW")
        .env_remove("SHELFLINE_LAKE")
        .env("SHELFLINE_LOG", "debug,object_store=debug")
        .envs(s3::env(endpoint));
    command
}

/// Runs `command`; panics with its stderr unless it succeeds. Neither
/// stream may contain the secret.
fn run(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert_no_secret(&output);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Runs `command`, which must fail; returns its stderr without log lines.
fn fails(command: &mut Command) -> String {
    let output = command.env("SHELFLINE_LOG", "off").output().unwrap();
    assert_no_secret(&output);
    assert!(!output.status.success(), "succeeded unexpectedly");
    String::from_utf8(output.stderr).unwrap()
}

fn assert_no_secret(output: &Output) {
    for stream in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(
            !text.contains(s3::SECRET),
            "the secret was printed:\n{text}"
        );
    }
}

/// The fact table and the dimensions' latest snapshots, as CSV.
fn lake_contents(dir: &Path, endpoint: &str, lake: &str) -> String {
    let queries = [
        "SELECT * FROM weekly_sales_inventory ORDER BY yr_num, wk_num, store_key, prod_key",
        "SELECT * FROM store ORDER BY store_key",
        "SELECT * FROM product ORDER BY prod_key",
        "SELECT * FROM calendar ORDER BY cal_dt",
    ];
    queries
        .iter()
        .map(|sql| {
            run(shelfline(dir, endpoint)
                .args(["query", "--format", "csv", "--lake", lake])
                .arg(sql))
        })
        .collect()
}

/// The last day of a year of datagen from its default start.
const YEAR_END: &str = "2025-12-31";

/// A sqlite source in `dir` with a year of SF 0.1 data: a sales file of
/// over 10 MiB, so it goes up in several parts.
fn generate(dir: &Path) {
    run(shelfline(dir, &s3::endpoint()).args(["datagen", "--sf", "0.1"]));
}

/// A folder with a sqlite source of `days` days of SF 0.01 data, and the
/// raw zone and lake URLs in a fresh bucket.
struct Setup {
    dir: tempfile::TempDir,
    endpoint: String,
    raw: String,
    lake: String,
}

fn setup(test: &str, days: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = s3::endpoint();
    run(shelfline(dir.path(), &endpoint).args(["datagen", "--sf", "0.01", "--days", days]));
    let bucket = s3::new_bucket(test);
    Setup {
        dir,
        endpoint,
        raw: format!("s3://{bucket}/raw"),
        lake: format!("s3://{bucket}/lake"),
    }
}

#[test]
fn the_pipeline_on_s3_gives_the_lake_of_a_local_run() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let endpoint = s3::endpoint();
    let bucket = s3::new_bucket("pipeline");
    let (raw, lake) = (format!("s3://{bucket}/raw"), format!("s3://{bucket}/lake"));
    run(shelfline(dir.path(), &endpoint)
        .args(["run", "--date", YEAR_END, "--raw", &raw, "--lake", &lake]));
    run(shelfline(dir.path(), &endpoint).args(["check", "--date", YEAR_END, "--raw", &raw]));
    run(shelfline(dir.path(), &endpoint)
        .args(["run", "--date", YEAR_END, "--raw", "raw", "--lake", "lake"]));

    let on_s3 = lake_contents(dir.path(), &endpoint, &lake);
    assert!(on_s3.lines().count() > 1000, "{on_s3}");
    let local = lake_contents(dir.path(), &endpoint, "lake");
    common::assert_same_csv(&on_s3, &local, "lake on S3 against local lake");

    let config = s3::config(&endpoint, dir.path());
    let raw_zone = Location::parse(&raw, &config).unwrap();
    let sales = shelfline::raw::file_path(
        shelfline::schema::Table::Sales,
        YEAR_END.parse().unwrap(),
        shelfline::raw::RawFormat::CsvGz,
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let head = runtime.block_on(raw_zone.store().head(&sales)).unwrap();
    assert!(head.size > 10 << 20, "{} bytes", head.size);
    // An S3 ETag of a multipart upload ends in -<number of parts>.
    let etag = head.e_tag.unwrap_or_default();
    assert!(etag.contains('-'), "not a multipart upload: {etag}");
}

#[test]
fn a_missing_bucket_refused_keys_and_a_dead_server_are_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("s3://shelfline-missing-{}/raw", std::process::id());
    let err = fails(
        shelfline(dir.path(), &s3::endpoint()).args(["check", "--date", DATE, "--raw", &missing]),
    );
    assert!(err.contains("does not exist at http://127.0.0.1"), "{err}");
    assert!(
        err.contains(&format!("shelfline-missing-{}", std::process::id())),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let err = fails(shelfline(dir.path(), &s3::auth_endpoint()).args([
        "query",
        "--lake",
        "s3://guarded/lake",
        "SELECT 1",
    ]));
    assert!(err.contains("access to bucket 'guarded'"), "{err}");
    assert!(
        err.contains("InvalidAccessKeyId") || err.contains("403"),
        "{err}"
    );
    assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let err = fails(
        shelfline(dir.path(), "http://127.0.0.1:9")
            .env("SHELFLINE_LOG", "off")
            .args(["check", "--date", DATE, "--raw", "s3://anything/raw"]),
    );
    assert!(
        err.contains("cannot reach bucket 'anything' at http://127.0.0.1:9"),
        "{err}"
    );
}

/// `credentials = "chain"` without keys: the instance's role comes from
/// the metadata service (the S3 test server's IMDSv2 endpoints) and the
/// pipeline runs; a web identity token is exchanged with the test server's
/// STS (over https, as clients require) and a run reads the lake; an
/// unreachable service is one line naming the credentials; without opting
/// in, a location on S3 needs keys and no request goes to the service.
#[test]
fn the_credential_chain_takes_a_role_when_chosen() {
    let Setup {
        dir,
        endpoint,
        raw,
        lake,
    } = setup("credential-chain", "60");
    let config = dir.path().join("chain.toml");
    std::fs::write(
        &config,
        "[s3]\ncredentials = \"chain\"\nmax_retries = 1\nretry_timeout_secs = 5\n",
    )
    .unwrap();
    let keyless = |metadata: &str| {
        let mut command = shelfline(dir.path(), &endpoint);
        command
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", metadata)
            .arg("--config")
            .arg(&config);
        command
    };
    run(keyless(&endpoint).args(["run", "--date", DATE, "--raw", &raw, "--lake", &lake]));
    let facts = run(keyless(&endpoint).args([
        "query",
        "--lake",
        &lake,
        "SELECT count(*) AS n FROM weekly_sales_inventory",
    ]));
    assert!(!facts.contains("| 0 "), "{facts}");

    // A web identity token (EKS): STS's answer serves, the metadata
    // service being unreachable.
    let token = dir.path().join("web-identity-token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmVk").unwrap();
    let facts_again = run(keyless("http://127.0.0.1:9")
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token)
        .env("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/shelfline")
        .env("AWS_ENDPOINT_URL_STS", s3::tls_endpoint())
        .env("SSL_CERT_FILE", s3::ca_file())
        .args([
            "query",
            "--lake",
            &lake,
            "SELECT count(*) AS n FROM weekly_sales_inventory",
        ]));
    assert_eq!(facts_again, facts);

    let err = fails(keyless("http://127.0.0.1:9").args(["check", "--date", DATE, "--raw", &raw]));
    assert!(err.to_lowercase().contains("credential"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let err = fails(
        shelfline(dir.path(), &endpoint)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .args(["check", "--date", DATE, "--raw", &raw]),
    );
    assert!(err.contains("credentials = \"chain\""), "{err}");
}

#[test]
fn conditional_writes_are_honoured_by_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = s3::new_bucket("conditional");
    let config = s3::config(&s3::endpoint(), dir.path());
    let location = Location::parse(&format!("s3://{bucket}/lake"), &config).unwrap();
    let path = shelfline::storage::path(&["_delta_log", "00000000000000000000.json"]);
    let create = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = location.store();
        store
            .put_opts(&path, "first".into(), create.clone())
            .await
            .unwrap();
        let second = store.put_opts(&path, "second".into(), create).await;
        assert!(
            matches!(second, Err(object_store::Error::AlreadyExists { .. })),
            "{second:?}"
        );
        let kept = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(&kept[..], b"first");
    });
}

#[test]
fn two_runs_at_once_end_with_one_consistent_table() {
    let Setup {
        dir,
        endpoint,
        raw,
        lake,
    } = setup("concurrent", "60");
    let run_date = || {
        shelfline(dir.path(), &endpoint)
            .env("SHELFLINE_LOG", "shelfline=info")
            .args(["run", "--date", DATE, "--raw", &raw, "--lake", &lake])
            .output()
            .unwrap()
    };
    let outputs: Vec<Output> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..2).map(|_| scope.spawn(run_date)).collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for output in &outputs {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let together = lake_contents(dir.path(), &endpoint, &lake);
    run(shelfline(dir.path(), &endpoint).args(transform(DATE, &raw, &lake)));
    let alone = lake_contents(dir.path(), &endpoint, &lake);
    common::assert_same_csv(&together, &alone, "two runs at once against one run");
    // Every commit of the fact table, the vacuums' included, took the
    // next version: no gap, no overwritten entry.
    let config = s3::config(&endpoint, dir.path());
    let location = Location::parse(&format!("{lake}/weekly_sales_inventory"), &config).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut log: Vec<String> = runtime.block_on(async {
        let listing = location
            .store()
            .list_with_delimiter(Some(&shelfline::storage::path(&["_delta_log"])))
            .await
            .unwrap();
        listing
            .objects
            .iter()
            .filter_map(|o| o.location.filename().map(str::to_string))
            .filter(|name| name.ends_with(".json"))
            .collect()
    });
    log.sort();
    let commits: Vec<u64> = log
        .iter()
        .filter_map(|name| name.trim_end_matches(".json").parse().ok())
        .collect();
    assert_eq!(commits.first(), Some(&0), "{log:?}");
    assert!(
        commits.windows(2).all(|w| w[1] == w[0] + 1),
        "a gap in the log: {log:?}"
    );
}

#[test]
fn a_busy_lake_fails_at_once_naming_the_holder_when_waiting_is_off() {
    let Setup {
        dir,
        endpoint,
        raw,
        lake,
    } = setup("busy", "14");
    let date = "2025-01-14";
    run(shelfline(dir.path(), &endpoint).args(["extract", "--date", date, "--raw", &raw]));
    // This test process holds the lock, as a run in progress would.
    let config = s3::config(&endpoint, dir.path());
    let location = Location::parse(&lake, &config).unwrap();
    let lock = shelfline::storage::path(&["_shelfline", "writer", "00000000000000000001.json"]);
    let holder = serde_json::json!({
        "generation": 1,
        "host": hostname(),
        "pid": std::process::id(),
        "machine": null,
        "acquired": "2026-12-01T00:00:00Z",
        "expires": "2999-01-01T00:00:00Z",
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(location.store().put(&lock, holder.to_string().into()))
        .unwrap();
    std::fs::write(
        dir.path().join("shelfline.toml"),
        "lake_lock_wait_secs = 0\n",
    )
    .unwrap();
    let err = fails(
        shelfline(dir.path(), &endpoint)
            .args(["--config", "shelfline.toml"])
            .args(transform(date, &raw, &lake)),
    );
    assert!(
        err.contains(&format!("process {}", std::process::id())),
        "{err}"
    );
    assert!(err.contains("is publishing to s3://"), "{err}");
    let err = fails(shelfline(dir.path(), &endpoint).args(["query", "--lake", &lake, "SELECT 1"]));
    assert!(
        err.contains("no lake table"),
        "nothing may be published: {err}"
    );

    runtime.block_on(location.store().delete(&lock)).unwrap();
    run(shelfline(dir.path(), &endpoint).args(transform(date, &raw, &lake)));
}

/// The arguments of `shelfline transform` for `date` between `raw` and
/// `lake`.
fn transform<'a>(date: &'a str, raw: &'a str, lake: &'a str) -> [&'a str; 7] {
    ["transform", "--date", date, "--raw", raw, "--lake", lake]
}

#[test]
fn retries_carry_the_pipeline_through_a_server_failing_every_third_request() {
    let Setup {
        dir,
        endpoint,
        raw,
        lake,
    } = setup("faults", "60");
    let proxy = FaultyProxy::start(&endpoint, 3);
    run(shelfline(dir.path(), &proxy.endpoint)
        .args(["run", "--date", DATE, "--raw", &raw, "--lake", &lake]));
    let (seen, failed) = proxy.counts();
    assert!(failed >= 10, "{failed} of {seen} requests failed");
    run(shelfline(dir.path(), &endpoint)
        .args(["run", "--date", DATE, "--raw", "raw", "--lake", "lake"]));
    common::assert_same_csv(
        &lake_contents(dir.path(), &endpoint, &lake),
        &lake_contents(dir.path(), &endpoint, "lake"),
        "lake through the failing proxy against local lake",
    );
}

fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    name.trim().to_string()
}
