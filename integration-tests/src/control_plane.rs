//! The control-plane program, on free ports, with etcd or the embedded store.

use std::{ffi::OsString, net::SocketAddr, path::PathBuf, process::ExitStatus};

use tempfile::TempDir;

use crate::{
    bins::{self, CONTROL_PLANE},
    eventually::eventually,
    gatewayctl::Gatewayctl,
    http,
    process::Process,
    util::write_file,
};

/// Where a control plane keeps the config.
#[derive(Clone, Debug)]
pub enum Store {
    /// `--etcd-endpoints` and `--etcd-prefix`.
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
    },
    /// `--data-dir`: the given directory, or one of the control plane's own temp dir (kept
    /// across restarts of the same handle).
    Embedded { data_dir: Option<PathBuf> },
}

/// How to start a control plane.
#[derive(Clone, Debug)]
pub struct ControlPlaneOpts {
    pub store: Store,
    /// Written to a file and passed as `--admin-token-file`.
    pub admin_token: Option<String>,
    /// Written to a file and passed as `--dataplane-token-file`.
    pub dataplane_token: Option<String>,
    /// Appended to the command line.
    pub extra_args: Vec<String>,
    /// Wait for `/ready` after `listening` (default true).
    pub wait_ready: bool,
}

// === impl ControlPlaneOpts ===

impl ControlPlaneOpts {
    /// On etcd at `endpoint`, below `prefix` (see [`crate::unique_prefix`]).
    pub fn etcd(endpoint: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self::with_store(Store::Etcd {
            endpoints: vec![endpoint.into()],
            prefix: prefix.into(),
        })
    }

    /// On the embedded store in a temp dir of its own.
    pub fn embedded() -> Self {
        Self::with_store(Store::Embedded { data_dir: None })
    }

    fn with_store(store: Store) -> Self {
        ControlPlaneOpts {
            store,
            admin_token: None,
            dataplane_token: None,
            extra_args: Vec::new(),
            wait_ready: true,
        }
    }

    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
    }

    pub fn dataplane_token(mut self, token: impl Into<String>) -> Self {
        self.dataplane_token = Some(token.into());
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }
}

/// A running control plane; killed when dropped.
#[derive(Debug)]
pub struct ControlPlane {
    process: Process,
    grpc: SocketAddr,
    admin: SocketAddr,
    opts: ControlPlaneOpts,
    // Token files and the embedded store; dropped after the process.
    dir: TempDir,
}

// === impl ControlPlane ===

impl ControlPlane {
    /// Starts a control plane on `127.0.0.1:0` (gRPC and admin), reads its addresses from its
    /// `listening` line and (unless told not to) waits for `/ready`. Panics with its logs if it
    /// does not come up.
    pub async fn start(opts: ControlPlaneOpts) -> ControlPlane {
        let dir = tempfile::Builder::new()
            .prefix("gateway-test-cp-")
            .tempdir()
            .expect("a temp dir");
        let mut args: Vec<String> = Vec::new();
        match &opts.store {
            Store::Etcd { endpoints, prefix } => {
                args.extend(["--etcd-endpoints".into(), endpoints.join(",")]);
                args.extend(["--etcd-prefix".into(), prefix.clone()]);
            }
            Store::Embedded { data_dir } => {
                let data_dir = data_dir.clone().unwrap_or_else(|| dir.path().join("data"));
                args.extend(["--data-dir".into(), data_dir.display().to_string()]);
            }
        }
        if let Some(token) = &opts.admin_token {
            let file = dir.path().join("admin-token");
            write_file(&file, token);
            args.extend(["--admin-token-file".into(), file.display().to_string()]);
        }
        if let Some(token) = &opts.dataplane_token {
            let file = dir.path().join("dataplane-token");
            write_file(&file, token);
            args.extend(["--dataplane-token-file".into(), file.display().to_string()]);
        }
        args.extend(opts.extra_args.iter().cloned());
        let program = bins::bin(CONTROL_PLANE);
        let mut process = Process::new("control-plane", program, with_listen(&args, None));
        if let Err(error) = process.start().await {
            panic!("control plane did not start: {error:#}");
        }
        let (grpc, admin) = addresses(&process);
        // From now on, restarts keep the ports: data planes and gatewayctl know them.
        process.set_args(with_listen(&args, Some((grpc, admin))));
        let control_plane = ControlPlane {
            process,
            grpc,
            admin,
            opts,
            dir,
        };
        if control_plane.opts.wait_ready {
            control_plane.wait_ready().await;
        }
        control_plane
    }

    /// The gRPC URL for `--control-plane` and `gatewayctl --server`.
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    /// A URL on the admin HTTP listener (`/metrics`, `/live`, `/ready`).
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// `gatewayctl` pointed at this control plane, with its admin token.
    pub fn ctl(&self) -> Gatewayctl {
        let ctl = Gatewayctl::new(self.url());
        match &self.opts.admin_token {
            Some(token) => ctl.with_token(token),
            None => ctl,
        }
    }

    /// Waits until `/ready` answers 200.
    pub async fn wait_ready(&self) {
        let url = self.admin_url("/ready");
        eventually("the control plane's /ready to answer 200", || {
            let url = url.clone();
            async move {
                let response = http::get(&url, &[]).await?;
                anyhow::ensure!(response.status == 200, "/ready: {}", response.status);
                Ok(())
            }
        })
        .await;
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
            .unwrap_or_else(|e| panic!("control plane did not exit on SIGTERM: {e:#}"))
    }

    /// Starts it again (killing it first if it runs) on the same ports and store.
    pub async fn restart(&mut self) {
        if let Err(error) = self.process.restart().await {
            panic!("control plane did not restart: {error:#}");
        }
        if self.opts.wait_ready {
            self.wait_ready().await;
        }
    }

    pub fn process(&self) -> &Process {
        &self.process
    }

    pub fn process_mut(&mut self) -> &mut Process {
        &mut self.process
    }

    /// The control plane's own temp dir (token files, embedded store).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

fn with_listen(args: &[String], addrs: Option<(SocketAddr, SocketAddr)>) -> Vec<OsString> {
    let (grpc, admin) = match addrs {
        Some((grpc, admin)) => (grpc.to_string(), admin.to_string()),
        None => ("127.0.0.1:0".to_owned(), "127.0.0.1:0".to_owned()),
    };
    let mut all: Vec<OsString> = vec![
        "--listen".into(),
        grpc.into(),
        "--admin-listen".into(),
        admin.into(),
    ];
    all.extend(args.iter().map(OsString::from));
    all
}

fn addresses(process: &Process) -> (SocketAddr, SocketAddr) {
    let parse = |key: &str| -> SocketAddr {
        process
            .listening(key)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "control plane's `listening` line has no {key}=ADDR\n{}",
                    process.log_tail()
                )
            })
    };
    (parse("grpc"), parse("admin"))
}
