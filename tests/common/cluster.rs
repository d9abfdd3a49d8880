//! Ballista clusters for the distributed tests: the one `.ci/cluster`
//! starts (shared, never harmed), and private ones a test starts from the
//! shelfline binary when it must stop or kill their processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shared cluster's scheduler, from `.ci/cluster`'s env file.
pub fn shared_scheduler() -> String {
    super::test_server("SHELFLINE_TEST_SCHEDULER")
}

/// A scheduler and executors started by one test, stopped when dropped.
pub struct TestCluster {
    pub scheduler: String,
    scheduler_process: Child,
    executors: Vec<Child>,
    dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts a scheduler and `executors` executors on free loopback
    /// ports, each executor running up to two tasks, and waits until the
    /// scheduler has seen an executor (unless there is none).
    pub fn start(executors: usize) -> TestCluster {
        TestCluster::start_with_env(executors, &[])
    }

    /// [`TestCluster::start`] with the environment variables `env` set in
    /// every process of the cluster.
    pub fn start_with_env(executors: usize, env: &[(&str, String)]) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let scheduler_process = spawn(
            dir.path(),
            env,
            "scheduler",
            &[
                "cluster",
                "scheduler",
                "--bind",
                &format!("127.0.0.1:{port}"),
            ],
        );
        let mut cluster = TestCluster {
            scheduler: format!("df://127.0.0.1:{port}"),
            scheduler_process,
            executors: Vec::new(),
            dir,
        };
        wait_until("the scheduler answers", || ready_status(port).is_some());
        for n in 0..executors {
            let work = cluster.dir.path().join(format!("work-{n}"));
            std::fs::create_dir_all(&work).unwrap();
            let child = spawn(
                cluster.dir.path(),
                env,
                &format!("executor-{n}"),
                &[
                    "cluster",
                    "executor",
                    "--scheduler",
                    &format!("127.0.0.1:{port}"),
                    "--bind",
                    &format!("127.0.0.1:{}", free_port()),
                    "--concurrency",
                    "2",
                    "--work-dir",
                    work.to_str().unwrap(),
                ],
            );
            cluster.executors.push(child);
        }
        if executors > 0 {
            wait_until("an executor registers", || ready_status(port) == Some(200));
        }
        cluster
    }

    /// What executor `n` logged so far.
    pub fn executor_log(&self, n: usize) -> String {
        std::fs::read_to_string(self.log(&format!("executor-{n}"))).unwrap_or_default()
    }

    /// Kills executor `n` with SIGKILL: no chance to finish anything.
    pub fn kill_executor(&mut self, n: usize) {
        self.executors[n].kill().unwrap();
        self.executors[n].wait().unwrap();
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for child in self
            .executors
            .iter_mut()
            .chain([&mut self.scheduler_process])
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `shelfline ARGS` with `env`, logging at info level into
/// `<dir>/<name>.log`.
fn spawn(dir: &Path, env: &[(&str, String)], name: &str, args: &[&str]) -> Child {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Command::new(env!("CARGO_BIN_EXE_shelfline"))
        .args(args)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .env("SHELFLINE_LOG", "info,ballista_executor=info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The HTTP status of the scheduler's `/readyz` (200 once an executor is
/// alive), or None when nothing answers.
fn ready_status(port: u16) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply.split_whitespace().nth(1)?.parse().ok()
}

/// Polls `done` every 100 ms for up to a minute.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
