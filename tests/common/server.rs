//! `shelfline serve` as the tests run it: a workspace with the
//! orchestrator's settings, the server on a free loopback port, and curl
//! with the API's credentials.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use shelfline::config::Config;

use super::Workspace;

pub const USER: &str = "airflow";
pub const PASSWORD: &str = "trigger-s3cret";

/// A workspace with the orchestrator's settings: history and secrets in
/// the workspace, one-second pokes, no schedules (runs come from the tests).
pub fn workspace() -> (Workspace, Config) {
    let ws = Workspace::new();
    let mut config = ws.pipeline.config.clone();
    config.serve.history = ws.dir.path().join("history.db");
    config.serve.extract_schedule = String::new();
    config.serve.process_schedule = String::new();
    config.serve.poke_interval_secs = 1;
    config.serve.retry_delay_secs = 1;
    config.serve.auth.username = Some(USER.to_string());
    let password = ws.dir.path().join("api-password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    config.serve.auth.password_file = Some(password);
    (ws, config)
}

/// A workspace whose lake holds the golden fixture's publication, and its
/// config file (with `change` applied).
pub async fn golden_lake(change: impl FnOnce(&mut Config)) -> (Workspace, PathBuf) {
    let ws = Workspace::new();
    ws.write_raw(super::golden_date(), &super::golden_tables());
    ws.pipeline.transform(super::golden_date()).await.unwrap();
    let mut config = ws.pipeline.config.clone();
    change(&mut config);
    let path = write_config(ws.dir.path(), &config);
    (ws, path)
}

pub fn write_config(dir: &Path, config: &Config) -> PathBuf {
    let path = dir.join("shelfline.toml");
    std::fs::write(&path, toml::to_string(config).unwrap()).unwrap();
    path
}

pub fn shelfline(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shelfline"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("SHELFLINE_API_PASSWORD")
        .output()
        .unwrap()
}

/// Starts `command` with its stderr collected (a pipe nobody reads would
/// block it); returns the child, the first line it printed on stdout that
/// contains `wanted` (empty if it ended first), the log so far and the
/// thread collecting it.
pub fn spawn_logged(
    mut command: Command,
    wanted: &str,
) -> (
    Child,
    String,
    Arc<Mutex<String>>,
    std::thread::JoinHandle<()>,
) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let mut stderr = child.stderr.take().unwrap();
    let collected = Arc::clone(&log);
    let reader = std::thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        while let Ok(n @ 1..) = stderr.read(&mut buffer) {
            collected
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 && !line.contains(wanted) {
        line.clear();
    }
    (child, line, log, reader)
}

/// A running `shelfline serve`, killed on drop. Its stderr is collected
/// (a pipe nobody reads would block it).
pub struct Server {
    pub child: Child,
    pub url: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(config: &Path) -> Server {
        Self::start_with(config, &["--bind", "127.0.0.1:0"]).unwrap()
    }

    /// Starts the server with `SHELFLINE_LOG=filter`.
    pub fn start_logging(config: &Path, filter: &str) -> Server {
        Self::spawn(config, &["--bind", "127.0.0.1:0"], Some(filter)).unwrap()
    }

    /// Starts the server; the error is what it printed if it exited.
    pub fn start_with(config: &Path, args: &[&str]) -> Result<Server, String> {
        Self::spawn(config, args, None)
    }

    fn spawn(config: &Path, args: &[&str], log_filter: Option<&str>) -> Result<Server, String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shelfline"));
        command
            .arg("--config")
            .arg(config)
            .arg("serve")
            .args(args)
            .env_remove("SHELFLINE_API_PASSWORD");
        if let Some(filter) = log_filter {
            command.env("SHELFLINE_LOG", filter);
        }
        let (mut child, line, log, reader) = spawn_logged(command, "http://");
        let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) else {
            child.wait().unwrap();
            reader.join().unwrap();
            return Err(log.lock().unwrap().clone());
        };
        Ok(Server {
            url: url.trim_end_matches(',').to_string(),
            child,
            log,
        })
    }

    /// Whether the server process still runs.
    pub fn child_alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Kills the server; returns what it logged.
    pub fn stop_and_read_log(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        self.log.lock().unwrap().clone()
    }

    /// `curl` with the API's credentials (or `auth`); returns status and body.
    pub fn curl(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        auth: Option<&str>,
    ) -> (u16, String) {
        let mut command = Command::new("curl");
        command
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method])
            .arg(format!("{}{path}", self.url));
        if let Some(auth) = auth {
            command.args(["-u", auth]);
        }
        if let Some(body) = body {
            command.args(["-H", "Content-Type: application/json", "-d", body]);
        }
        let output = command.output().expect("curl runs");
        let text = String::from_utf8(output.stdout).unwrap();
        let (body, status) = text.rsplit_once('\n').unwrap();
        (status.parse().unwrap(), body.to_string())
    }

    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.curl("GET", path, None, Some(&format!("{USER}:{PASSWORD}")));
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Polls the run until `until` holds for it; panics after `timeout`.
    pub fn wait_for_run(
        &self,
        run_id: &str,
        timeout: Duration,
        until: impl Fn(&Value) -> bool,
    ) -> Value {
        let started = Instant::now();
        loop {
            let run = self.get(&format!("/api/v1/dags/shelfline/dagRuns/{run_id}"));
            if until(&run) {
                return run;
            }
            assert!(
                started.elapsed() < timeout,
                "run {run_id} after {timeout:?}: {run}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn task_states(&self, run_id: &str) -> Vec<(String, String)> {
        let tasks = self.get(&format!(
            "/api/v1/dags/shelfline/dagRuns/{run_id}/taskInstances"
        ));
        tasks["task_instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["task_id"].as_str().unwrap().to_string(),
                    t["state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
