//! The data-plane program, on free ports, fed by control planes or a standalone `--config`.

use std::{
    ffi::OsString,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitStatus,
};

use tempfile::TempDir;

use crate::{
    bins::{self, DATA_PLANE},
    eventually::eventually,
    http::{self, HttpResponse},
    process::Process,
    util::{random_suffix, write_file},
};

/// How to start a data plane.
#[derive(Clone, Debug, Default)]
pub struct DataPlaneOpts {
    /// `--control-plane URL,URL...` (fail over in this order).
    pub control_planes: Vec<String>,
    /// Written to a file and passed as `--dataplane-token-file`.
    pub token: Option<String>,
    /// `--config FILE`: standalone mode.
    pub config: Option<PathBuf>,
    /// `--cache-dir`; default: a directory in the data plane's own temp dir (kept across
    /// restarts of the same handle).
    pub cache_dir: Option<PathBuf>,
    /// `--id`; default `dp-<random>`.
    pub id: Option<String>,
    /// Appended to the command line.
    pub extra_args: Vec<String>,
    /// `--tls-listen 127.0.0.1:0`.
    pub tls: bool,
}

// === impl DataPlaneOpts ===

impl DataPlaneOpts {
    /// Fed by these control planes (gRPC URLs).
    pub fn control_planes<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        DataPlaneOpts {
            control_planes: urls.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    /// With a TLS listener too (see [`DataPlane::tls_addr`]).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Standalone, serving `file`.
    pub fn standalone(file: impl Into<PathBuf>) -> Self {
        DataPlaneOpts {
            config: Some(file.into()),
            ..Default::default()
        }
    }

    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }
}

/// A running data plane; killed when dropped.
#[derive(Debug)]
pub struct DataPlane {
    process: Process,
    http: SocketAddr,
    admin: SocketAddr,
    tls: Option<SocketAddr>,
    id: String,
    cache_dir: PathBuf,
    // Dropped after the process.
    _dir: TempDir,
}

// === impl DataPlane ===

impl DataPlane {
    /// Starts a data plane on `127.0.0.1:0` (traffic and admin) and reads its addresses from
    /// its `listening` line. It does not wait for a config: see [`DataPlane::wait_ready`].
    pub async fn start(opts: DataPlaneOpts) -> DataPlane {
        DataPlane::try_start(opts)
            .await
            .unwrap_or_else(|e| panic!("data plane did not start: {e:#}"))
    }

    /// Like [`DataPlane::start`], returning the error (with the logs) instead of panicking.
    pub async fn try_start(opts: DataPlaneOpts) -> anyhow::Result<DataPlane> {
        let dir = tempfile::Builder::new()
            .prefix("gateway-test-dp-")
            .tempdir()?;
        let id = opts
            .id
            .clone()
            .unwrap_or_else(|| format!("dp-{}", random_suffix()));
        let cache_dir = opts
            .cache_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("cache"));
        let mut args: Vec<String> = vec![
            "--id".into(),
            id.clone(),
            "--cache-dir".into(),
            cache_dir.display().to_string(),
            "--workers".into(),
            "2".into(),
        ];
        if !opts.control_planes.is_empty() {
            args.extend(["--control-plane".into(), opts.control_planes.join(",")]);
        }
        if let Some(token) = &opts.token {
            let file = dir.path().join("dataplane-token");
            write_file(&file, token);
            args.extend(["--dataplane-token-file".into(), file.display().to_string()]);
        }
        if let Some(config) = &opts.config {
            args.extend(["--config".into(), config.display().to_string()]);
        }
        if opts.tls {
            args.extend(["--tls-listen".into(), "127.0.0.1:0".into()]);
        }
        args.extend(opts.extra_args.iter().cloned());
        let mut process = Process::new(&id, bins::bin(DATA_PLANE), with_listen(&args, None));
        process.start().await?;
        let parse = |key: &str| -> anyhow::Result<SocketAddr> {
            process
                .listening(key)
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "data plane's `listening` line has no {key}=ADDR\n{}",
                        process.log_tail()
                    )
                })
        };
        let (http, admin) = (parse("http")?, parse("admin")?);
        let tls = if opts.tls { Some(parse("tls")?) } else { None };
        // Restarts keep the ports, so that the test's URLs stay valid.
        process.set_args(with_listen(&args, Some((http, admin))));
        Ok(DataPlane {
            process,
            http,
            admin,
            tls,
            id,
            cache_dir,
            _dir: dir,
        })
    }

    /// The TLS listener (started with [`DataPlaneOpts::tls`]; its port changes on a restart).
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls
    }

    /// A URL on the traffic listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// A URL on the admin listener (`/ready`, `/config`, `/metrics`).
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// GET `path` through the data plane.
    pub async fn get(&self, path: &str) -> anyhow::Result<HttpResponse> {
        http::get(&self.url(path), &[]).await
    }

    /// The status of `/ready` (200 once a config is loaded).
    pub async fn ready_status(&self) -> anyhow::Result<u16> {
        Ok(http::get(&self.admin_url("/ready"), &[]).await?.status)
    }

    /// Waits until `/ready` answers 200.
    pub async fn wait_ready(&self) {
        eventually(&format!("data plane {} to be ready", self.id), || async {
            let status = self.ready_status().await?;
            anyhow::ensure!(status == 200, "/ready: {status}");
            Ok(())
        })
        .await;
    }

    /// Waits until the disk cache holds the version the data plane serves (the cache is
    /// written shortly after a change is swapped in).
    pub async fn wait_cached(&self) {
        eventually(
            &format!("data plane {} to cache what it serves", self.id),
            || async {
                let json = self.config().await?.json()?;
                let (serving, cached) = (json.get("version"), json.get("cached_version"));
                anyhow::ensure!(
                    serving.is_some() && serving == cached,
                    "/config: version {serving:?}, cached_version {cached:?}"
                );
                Ok(())
            },
        )
        .await;
    }

    /// The `/config` document.
    pub async fn config(&self) -> anyhow::Result<HttpResponse> {
        http::get(&self.admin_url("/config"), &[]).await
    }

    /// The config version the data plane serves, from `/config` (`None`: no config).
    pub async fn config_version(&self) -> anyhow::Result<Option<i64>> {
        let response = self.config().await?;
        if response.status != 200 {
            return Ok(None);
        }
        let json = response.json()?;
        let version = match json.get("version") {
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        Ok(version.filter(|v| *v > 0))
    }

    /// Waits until `GET path` through the data plane answers `status`, and returns it.
    pub async fn wait_status(&self, path: &str, status: u16) -> HttpResponse {
        eventually(
            &format!("GET {path} on data plane {} to answer {status}", self.id),
            || async {
                let response = self.get(path).await?;
                anyhow::ensure!(
                    response.status == status,
                    "status {}: {}",
                    response.status,
                    response.text()
                );
                Ok(response)
            },
        )
        .await
    }

    /// SIGKILL.
    pub async fn kill(&mut self) {
        self.process.kill().await;
    }

    /// SIGTERM, and the exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.process
            .terminate()
            .await
            .unwrap_or_else(|e| panic!("data plane did not exit on SIGTERM: {e:#}"))
    }

    /// Starts it again (killing it first if it runs), same ports, id and cache dir.
    pub async fn restart(&mut self) {
        if let Err(error) = self.process.restart().await {
            panic!("data plane did not restart: {error:#}");
        }
    }

    pub fn process(&self) -> &Process {
        &self.process
    }

    pub fn process_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

fn with_listen(args: &[String], addrs: Option<(SocketAddr, SocketAddr)>) -> Vec<OsString> {
    let (http, admin) = match addrs {
        Some((http, admin)) => (http.to_string(), admin.to_string()),
        None => ("127.0.0.1:0".to_owned(), "127.0.0.1:0".to_owned()),
    };
    let mut all: Vec<OsString> = vec![
        "--listen".into(),
        http.into(),
        "--admin-listen".into(),
        admin.into(),
    ];
    all.extend(args.iter().map(OsString::from));
    all
}
