//! Running `gatewayctl` and collecting what it did; `gatewayctl register` as a long-running
//! child ([`Registered`]).

use std::{
    fmt,
    path::Path,
    process::{ExitStatus, Stdio},
};

use tokio::io::AsyncWriteExt as _;

use crate::{
    bins::{self, GATEWAYCTL},
    eventually::patience,
    process::{Process, SCRUBBED_ENV},
};

/// What one `gatewayctl` run did.
#[derive(Clone, Debug)]
pub struct CtlOutput {
    /// The command line, for messages.
    pub command: String,
    /// The exit code (-1: killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

// === impl CtlOutput ===

impl CtlOutput {
    /// Panics (showing everything) unless the exit code is 0.
    #[track_caller]
    pub fn success(&self) -> &Self {
        self.code(0)
    }

    /// Panics (showing everything) unless the exit code is `code`.
    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }

    /// Panics unless stderr contains `needle`.
    #[track_caller]
    pub fn stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr does not contain {needle:?}\n{self}"
        );
        self
    }

    /// stdout parsed as JSON; panics if it is not.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{self}"))
    }
}

impl fmt::Display for CtlOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "$ {}\nexit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `gatewayctl ARGS` as given (no server or token added), with `stdin` on its standard
/// input, and the environment scrubbed of the gateway's variables (`GATEWAYCTL_SERVER`,
/// `GATEWAY_ADMIN_TOKEN`, ...).
pub async fn gatewayctl(args: &[&str], stdin: Option<&str>) -> CtlOutput {
    let mut command = tokio::process::Command::new(bins::bin(GATEWAYCTL));
    for key in SCRUBBED_ENV {
        command.env_remove(key);
    }
    command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let line = format!("gatewayctl {}", args.join(" "));
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn `{line}`: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(input.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("write stdin of `{line}`: {e}"));
        drop(pipe);
    }
    // `apply --wait` waits up to 60 s by default; a hung CLI must still fail the test.
    let limit = patience() * 2 + std::time::Duration::from_secs(60);
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`{line}` did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("wait for `{line}`: {e}"));
    CtlOutput {
        command: line,
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `gatewayctl` bound to one server (and token).
#[derive(Clone, Debug)]
pub struct Gatewayctl {
    server: String,
    token: Option<String>,
}

// === impl Gatewayctl ===

impl Gatewayctl {
    pub fn new(server: impl Into<String>) -> Self {
        Gatewayctl {
            server: server.into(),
            token: None,
        }
    }

    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Runs `gatewayctl --server S [--token T] ARGS`.
    pub async fn run(&self, args: &[&str]) -> CtlOutput {
        self.run_with_stdin(args, None).await
    }

    /// Like [`Gatewayctl::run`], with `stdin` on its standard input.
    pub async fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> CtlOutput {
        let mut all = vec!["--server", self.server.as_str()];
        if let Some(token) = &self.token {
            all.extend(["--token", token.as_str()]);
        }
        all.extend_from_slice(args);
        gatewayctl(&all, stdin).await
    }

    /// Starts `gatewayctl register --service S --address A --ttl T EXTRA...` as a child
    /// process and waits for it to print what it registered. Panics (with its output) if it
    /// does not.
    pub async fn register(
        &self,
        service: &str,
        address: &str,
        ttl: &str,
        extra: &[&str],
    ) -> Registered {
        let mut args: Vec<std::ffi::OsString> = vec!["--server".into(), self.server.clone().into()];
        if let Some(token) = &self.token {
            args.extend(["--token".into(), token.into()]);
        }
        for arg in [
            "register",
            "--service",
            service,
            "--address",
            address,
            "--ttl",
            ttl,
        ] {
            args.push(arg.into());
        }
        args.extend(extra.iter().map(Into::into));
        let mut process = Process::new(
            &format!("register-{service}-{address}"),
            bins::bin(GATEWAYCTL),
            args,
        );
        let line = match process.spawn() {
            Ok(()) => process.wait_stdout_line("registered ").await,
            Err(error) => Err(error),
        };
        let line = line.unwrap_or_else(|e| panic!("gatewayctl register did not register: {e:#}"));
        let key = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        Registered { process, key }
    }

    /// `apply -f FILE`, plus `extra` flags (e.g. `--wait`).
    pub async fn apply(&self, file: &Path, extra: &[&str]) -> CtlOutput {
        let file = file.display().to_string();
        let mut args = vec!["apply", "-f", file.as_str()];
        args.extend_from_slice(extra);
        self.run(&args).await
    }

    /// `apply -f -` with `yaml` on stdin, plus `extra` flags.
    pub async fn apply_yaml(&self, yaml: &str, extra: &[&str]) -> CtlOutput {
        let mut args = vec!["apply", "-f", "-"];
        args.extend_from_slice(extra);
        self.run_with_stdin(&args, Some(yaml)).await
    }

    /// `get KIND -o json`, which must succeed, parsed.
    pub async fn get_json(&self, kind: &str) -> serde_json::Value {
        self.run(&["get", kind, "-o", "json"])
            .await
            .success()
            .json()
    }

    /// `dataplanes -o json`, which must succeed: `{"version": N, "dataPlanes": [...]}`.
    pub async fn dataplanes(&self) -> serde_json::Value {
        self.run(&["dataplanes", "-o", "json"])
            .await
            .success()
            .json()
    }

    /// The names in `get KIND -o json`, sorted.
    pub async fn names(&self, kind: &str) -> Vec<String> {
        let mut names: Vec<String> = resource_list(&self.get_json(kind).await)
            .iter()
            .filter_map(|r| r.get("name").and_then(|n| n.as_str()).map(str::to_owned))
            .collect();
        names.sort();
        names
    }
}

/// The version in `apply`'s last line, `applied version N`.
pub fn applied_version(output: &CtlOutput) -> Option<i64> {
    output
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("applied version "))
        .and_then(|v| v.trim().parse().ok())
}

/// The resources of a `get -o json` answer: a list, or `{"resources": [...]}`, or (for one
/// resource) the resource itself.
pub fn resource_list(json: &serde_json::Value) -> Vec<serde_json::Value> {
    match json {
        serde_json::Value::Array(items) => items.clone(),
        serde_json::Value::Object(map) => match map.get("resources").or_else(|| map.get("items")) {
            Some(serde_json::Value::Array(items)) => items.clone(),
            _ => vec![json.clone()],
        },
        serde_json::Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// A running `gatewayctl register`; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Registered {
    process: Process,
    key: String,
}

// === impl Registered ===

impl Registered {
    /// The registry key it printed, e.g. `/gateway/v1/registry/users/127.0.0.1:9001`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// SIGTERM (it deregisters), and its exit status.
    pub async fn stop(&mut self) -> ExitStatus {
        self.process
            .terminate()
            .await
            .unwrap_or_else(|e| panic!("gatewayctl register did not exit on SIGTERM: {e:#}"))
    }

    /// SIGKILL: it deregisters nothing; its lease runs out.
    pub async fn kill(&mut self) {
        self.process.kill().await;
    }

    /// Whether it still runs (holds its registration).
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Its output so far, for assertions and messages.
    pub fn process(&self) -> &Process {
        &self.process
    }
}
