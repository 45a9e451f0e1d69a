//! A child process of a test: output captured to files, its `listening ...` line parsed,
//! stopped with SIGTERM or SIGKILL, restarted with the same arguments, killed on drop.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fs::{File, OpenOptions},
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use tempfile::TempDir;
use tokio::time::Instant;

use crate::eventually::patience;

/// Environment variables that would leak the developer's settings into a test's children.
pub(crate) const SCRUBBED_ENV: &[&str] = &[
    "GATEWAY_ADMIN_TOKEN",
    "GATEWAY_DATAPLANE_TOKEN",
    "GATEWAYCTL_SERVER",
    "GATEWAYCTL_TOKEN_FILE",
    "GATEWAYCTL_TIMEOUT",
    "GATEWAYCTL_WAIT_TIMEOUT",
    "GATEWAY_LOG",
];

/// How many lines of each log a failing test prints per process, by default.
const TAIL_LINES: usize = 80;

/// A running (or stopped) child process. Dropping it kills the child.
#[derive(Debug)]
pub struct Process {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    child: Option<Child>,
    runs: u32,
    tail_lines: usize,
    /// Where the current run's output starts in the stdout file.
    stdout_start: u64,
    listening: BTreeMap<String, String>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    log_dir: PathBuf,
    // Dropped last: the log files outlive the child. `None` when kept (GATEWAY_TEST_KEEP_LOGS).
    _logs: Option<TempDir>,
}

// === impl Process ===

impl Process {
    /// Prepares a process; nothing runs until [`Process::spawn`].
    pub fn new(name: &str, program: impl Into<PathBuf>, args: Vec<OsString>) -> Process {
        let logs = tempfile::Builder::new()
            .prefix(&format!("gateway-test-{name}-"))
            .tempdir()
            .expect("a temp dir for logs");
        let (log_dir, logs) = if std::env::var_os("GATEWAY_TEST_KEEP_LOGS").is_some() {
            let dir = logs.keep();
            eprintln!("{name}: logs kept in {}", dir.display());
            (dir, None)
        } else {
            (logs.path().to_owned(), Some(logs))
        };
        Process {
            name: name.to_owned(),
            program: program.into(),
            args,
            envs: vec![
                (
                    "GATEWAY_LOG".into(),
                    std::env::var_os("GATEWAY_TEST_LOG").unwrap_or_else(|| "info".into()),
                ),
                ("RUST_BACKTRACE".into(), "1".into()),
                // Plain logs in the files (tracing-subscriber honours NO_COLOR).
                ("NO_COLOR".into(), "1".into()),
            ],
            child: None,
            runs: 0,
            tail_lines: TAIL_LINES,
            stdout_start: 0,
            listening: BTreeMap::new(),
            stdout_path: log_dir.join("stdout.log"),
            stderr_path: log_dir.join("stderr.log"),
            log_dir,
            _logs: logs,
        }
    }

    /// Adds an environment variable for the child.
    pub fn env(&mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> &mut Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// How many lines of each log [`Process::log_tail`] shows.
    pub fn set_tail_lines(&mut self, lines: usize) -> &mut Self {
        self.tail_lines = lines;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// Replaces the arguments for the next [`Process::spawn`].
    pub fn set_args(&mut self, args: Vec<OsString>) {
        self.args = args;
    }

    /// Starts the child (again); its output is appended to the same log files.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("{} is already running", self.name);
        }
        self.runs += 1;
        let header = format!(
            "=== {} run {}: {} {} ===\n",
            self.name,
            self.runs,
            self.program.display(),
            self.args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let stdout = append(&self.stdout_path)?;
        let stderr = append(&self.stderr_path)?;
        (&stdout).write_all(header.as_bytes())?;
        (&stderr).write_all(header.as_bytes())?;
        self.stdout_start = std::fs::metadata(&self.stdout_path)?.len();
        self.listening.clear();
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for key in SCRUBBED_ENV {
            command.env_remove(key);
        }
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("spawn {}", self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Starts the child and waits for its `listening ...` line.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        self.spawn()?;
        self.wait_listening().await
    }

    /// Waits for the current run's `listening k=v ...` line on stdout.
    pub async fn wait_listening(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + patience();
        loop {
            let stdout = std::fs::read(&self.stdout_path)?;
            let current = String::from_utf8_lossy(&stdout[self.stdout_start as usize..]);
            if let Some(line) = current.lines().find(|l| l.starts_with("listening ")) {
                self.listening = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                return Ok(());
            }
            if let Some(status) = self.try_wait()? {
                bail!(
                    "{} exited ({status}) before printing its `listening` line\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} printed no `listening` line within {:?}\n{}",
                    self.name,
                    patience(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for a line of the current run's stdout that starts with `prefix`, and returns it
    /// (for programs that print something else than `listening`, e.g. `gatewayctl register`).
    pub async fn wait_stdout_line(&mut self, prefix: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + patience();
        loop {
            let stdout = std::fs::read(&self.stdout_path)?;
            let current = String::from_utf8_lossy(&stdout[self.stdout_start as usize..]);
            if let Some(line) = current.lines().find(|l| l.starts_with(prefix)) {
                return Ok(line.to_owned());
            }
            if let Some(status) = self.try_wait()? {
                bail!(
                    "{} exited ({status}) before printing a line starting with {prefix:?}\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} printed no line starting with {prefix:?} within {:?}\n{}",
                    self.name,
                    patience(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// An address from the `listening` line, e.g. `http` or `admin`.
    pub fn listening(&self, key: &str) -> Option<&str> {
        self.listening.get(key).map(String::as_str)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` once the child has exited.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(child) => Ok(child.try_wait()?),
            None => bail!("{} was never started", self.name),
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Waits up to `within` for the child to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("{} still running after {within:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM (through `kill -TERM`, the crate forbids `unsafe`).
    pub fn signal_term(&mut self) -> anyhow::Result<()> {
        let pid = self.pid().context("not started")?;
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .context("run `kill -TERM`")?;
        if !status.success() && self.is_running() {
            bail!("`kill -TERM {pid}` failed: {status}");
        }
        Ok(())
    }

    /// SIGTERM, then waits (with patience) for the exit status.
    pub async fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal_term()?;
        self.wait_exit(patience()).await
    }

    /// SIGKILL, and reaps the child.
    pub async fn kill(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the child if it runs, then starts it again and waits for `listening`.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill().await;
        self.start().await
    }

    /// The length of the stderr log, to look only at what is logged after a point.
    pub fn stderr_mark(&self) -> usize {
        std::fs::metadata(&self.stderr_path).map_or(0, |m| m.len() as usize)
    }

    /// What the child wrote to stderr from `mark` on.
    pub fn stderr_since(&self, mark: usize) -> String {
        let all = std::fs::read(&self.stderr_path).unwrap_or_default();
        String::from_utf8_lossy(all.get(mark..).unwrap_or_default()).into_owned()
    }

    /// Everything the child wrote to stderr, in every run.
    pub fn stderr(&self) -> String {
        self.stderr_since(0)
    }

    /// Everything the child wrote to stdout, in every run.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stdout_path).unwrap_or_default()).into_owned()
    }

    /// The last lines of stdout and stderr, for failure messages.
    pub fn log_tail(&self) -> String {
        format!(
            "--- {name} stdout (tail) ---\n{}\n--- {name} stderr (tail) ---\n{}\n--- end {name} ---",
            tail(&self.stdout(), self.tail_lines),
            tail(&self.stderr(), self.tail_lines),
            name = self.name,
        )
    }

    /// Where the child's `stdout.log` and `stderr.log` are.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}

fn append(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
