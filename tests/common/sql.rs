//! `shelfline sql-server` as the tests run it: on a free loopback port over
//! a workspace's lake, with psql and the Python clients of
//! `tests/clients/sql.py` pointed at it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::server::spawn_logged;

/// The password the tests give the server (and the clients).
pub const PASSWORD: &str = "wire-s3cret-Pw";

/// A running `shelfline sql-server`, killed on drop.
pub struct SqlServer {
    child: Child,
    pub host: String,
    pub port: u16,
    /// The password clients use (`None`: no password configured).
    pub password: Option<String>,
    log: Arc<Mutex<String>>,
}

impl SqlServer {
    /// Starts `shelfline sql-server` with `config` (a file), its password
    /// (if any) in `SHELFLINE_SQL_PASSWORD`, and `args`; the error is what
    /// it printed if it exited.
    pub fn start(
        config: &Path,
        password: Option<&str>,
        args: &[&str],
    ) -> Result<SqlServer, String> {
        Self::start_command(config, password, &[&["sql-server"], args].concat())
    }

    /// Starts `shelfline COMMAND...` (`sql-server`, or `serve` with the SQL
    /// server enabled) and finds the SQL server's address in what it says.
    pub fn start_command(
        config: &Path,
        password: Option<&str>,
        args: &[&str],
    ) -> Result<SqlServer, String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shelfline"));
        command
            .arg("--config")
            .arg(config)
            .args(args)
            .env_remove("SHELFLINE_SQL_PASSWORD")
            .env_remove("SHELFLINE_API_PASSWORD")
            .env("SHELFLINE_LOG", "info");
        if let Some(password) = password {
            command.env("SHELFLINE_SQL_PASSWORD", password);
        }
        let (mut child, line, log, reader) = spawn_logged(command, "sql-server:");
        // "shelfline sql-server: the lake URL on 127.0.0.1:PORT (...)"
        let address = line
            .split_whitespace()
            .skip_while(|word| *word != "on")
            .nth(1)
            .and_then(|address| address.rsplit_once(':'))
            .and_then(|(host, port)| Some((host.to_string(), port.parse().ok()?)));
        let Some((host, port)) = address else {
            child.wait().unwrap();
            reader.join().unwrap();
            return Err(format!("{line}{}", log.lock().unwrap()));
        };
        Ok(SqlServer {
            child,
            host,
            port,
            password: password.map(str::to_string),
            log,
        })
    }

    /// libpq's variables for this server, as the configured user.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("PGHOST", self.host.clone()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", "shelfline".to_string()),
            ("PGDATABASE", "shelfline".to_string()),
            ("PGCONNECT_TIMEOUT", "10".to_string()),
        ];
        if let Some(password) = &self.password {
            env.push(("PGPASSWORD", password.clone()));
        }
        env
    }

    /// `psql` with `args`, no prompt for a password, no startup file.
    pub fn psql(&self, args: &[&str]) -> Output {
        self.psql_with(args, &[])
    }

    /// `psql` with `args` and libpq's variables overridden by `env`.
    pub fn psql_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new("psql")
            .args(["-X", "-w", "-v", "ON_ERROR_STOP=1"])
            .args(args)
            .env_remove("PGPASSWORD")
            .envs(self.env())
            .envs(env.iter().copied())
            .output()
            .expect("psql runs (postgresql-client)")
    }

    /// `psql -A -t -c sql`, which must succeed; its output.
    pub fn psql_value(&self, sql: &str) -> String {
        let output = self.psql(&["-q", "-A", "-t", "-c", sql]);
        assert!(
            output.status.success(),
            "psql {sql}: {}",
            text(&output.stderr)
        );
        text(&output.stdout).trim().to_string()
    }

    /// `tests/clients/sql.py` with `args`; fails with its output.
    pub fn client(&self, args: &[&str]) -> String {
        let output = self.client_command(args).output().unwrap();
        assert!(
            output.status.success(),
            "sql.py {args:?} failed:\n{}\n{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    fn client_command(&self, args: &[&str]) -> Command {
        let python = std::env::var("SHELFLINE_SQL_PYTHON").unwrap_or_else(|_| {
            panic!("SHELFLINE_SQL_PYTHON is not set: .ci/run installs psycopg and SQLAlchemy in a virtual environment and sets it")
        });
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/sql.py");
        let mut command = Command::new(python);
        command
            .arg(script)
            .args(args)
            .env_remove("PGPASSWORD")
            .envs(self.env());
        command
    }

    /// One psycopg session, kept open (`sql.py session`).
    pub fn session(&self) -> Session {
        let mut child = self
            .client_command(&["session"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        Session {
            child,
            input,
            output,
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::thread::sleep(Duration::from_millis(200));
        self.log.lock().unwrap().clone()
    }
}

impl Drop for SqlServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client session: one statement per line in, one answer per line out
/// (rows `|`-separated, their columns ` `-separated, or `ERROR <SQLSTATE>`).
pub struct Session {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Session {
    pub fn run(&mut self, sql: &str) -> String {
        writeln!(self.input, "{sql}").unwrap();
        self.input.flush().unwrap();
        let mut line = String::new();
        self.output.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "the session ended at {sql}");
        line.trim_end().to_string()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
