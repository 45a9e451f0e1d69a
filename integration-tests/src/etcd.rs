//! A throw-away single-member etcd for one test.
//!
//! etcd cannot report a port it bound to `:0`, so its two ports are picked free just before
//! it starts; if one was taken in between, it is started again on others.

use std::{ffi::OsString, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use etcd_client::{Client, CompactionOptions, ConnectOptions};
use tempfile::TempDir;

use crate::{
    eventually::{patience, try_eventually},
    process::Process,
    util::free_port,
};

/// The message when no etcd binary can be found.
pub const INSTALL_ETCD: &str =
    "install etcd (Debian/Ubuntu: apt-get install etcd-server) or set ETCD_BIN";

/// A running etcd; killed when dropped, its data directory removed.
#[derive(Debug)]
pub struct Etcd {
    process: Process,
    client_port: u16,
    // Dropped after the process.
    data: TempDir,
}

// === impl Etcd ===

impl Etcd {
    /// Starts etcd on free ports with a fresh data directory and waits until it answers.
    pub async fn start() -> Etcd {
        let program = etcd_bin();
        let mut data = tempfile::Builder::new()
            .prefix("gateway-test-etcd-")
            .tempdir()
            .expect("a temp dir for etcd");
        let mut last_error = None;
        for _ in 0..5 {
            let client_port = free_port();
            let peer_port = free_port();
            if client_port == peer_port {
                continue;
            }
            let args = etcd_args(&data, client_port, peer_port);
            let mut process = Process::new("etcd", &program, args);
            // etcd logs a lot of JSON; its last lines are enough to see why it failed.
            process.set_tail_lines(15);
            let mut etcd = Etcd {
                process,
                client_port,
                data,
            };
            match etcd.spawn_and_wait().await {
                Ok(()) => return etcd,
                Err(error) => {
                    let port_taken = etcd.process.stderr().contains("address already in use");
                    etcd.process.kill().await;
                    if !port_taken {
                        panic!("etcd did not start: {error:#}");
                    }
                    last_error = Some(error);
                    // Keep the data dir, start over with fresh ports.
                    let Etcd { data: d, .. } = etcd;
                    data = d;
                    let _ = std::fs::remove_dir_all(data.path().join("member"));
                }
            }
        }
        panic!("etcd did not start on free ports: {last_error:?}");
    }

    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        self.process.spawn()?;
        let endpoint = self.endpoint();
        let process = &mut self.process;
        try_eventually(patience(), || {
            let running = process.is_running();
            let endpoint = endpoint.clone();
            async move {
                if !running {
                    bail!("etcd exited");
                }
                let mut client = connect(&endpoint).await?;
                client.status().await.context("etcd status")?;
                Ok(())
            }
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", self.process.log_tail()))
    }

    /// The client URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client address, `127.0.0.1:<port>` (e.g. as a [`crate::TcpProxy`] target).
    pub fn client_addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.client_port).into()
    }

    /// A client of this etcd.
    pub async fn client(&self) -> Client {
        connect(&self.endpoint())
            .await
            .expect("connect to the test etcd")
    }

    /// Kills etcd (SIGKILL); its ports and data directory are kept for [`Etcd::restart`].
    pub async fn stop(&mut self) {
        self.process.kill().await;
    }

    /// Starts etcd again on the same ports and data directory and waits until it answers.
    pub async fn restart(&mut self) {
        self.process.kill().await;
        self.spawn_and_wait()
            .await
            .unwrap_or_else(|e| panic!("etcd did not restart: {e:#}"));
    }

    /// The current store revision.
    pub async fn revision(&self) -> i64 {
        let mut client = self.client().await;
        let response = client.get("/", None).await.expect("etcd get");
        response.header().expect("a response header").revision()
    }

    /// Compacts (physically) at the current revision and returns it: a watch from any older
    /// revision fails with "compacted" afterwards.
    pub async fn compact(&self) -> i64 {
        let revision = self.revision().await;
        let mut client = self.client().await;
        client
            .compact(revision, Some(CompactionOptions::new().with_physical()))
            .await
            .expect("etcd compact");
        revision
    }

    /// The underlying process, for its logs.
    pub fn process(&self) -> &Process {
        &self.process
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.data.path()
    }
}

async fn connect(endpoint: &str) -> anyhow::Result<Client> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5));
    Client::connect([endpoint], Some(options))
        .await
        .with_context(|| format!("connect to etcd at {endpoint}"))
}

/// `ETCD_BIN`, or `etcd` on `PATH`; panics with how to install it otherwise.
pub fn etcd_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ETCD_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "ETCD_BIN={} is not a file: {INSTALL_ETCD}",
            bin.display()
        );
        return bin;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("etcd not found on PATH: {INSTALL_ETCD}"))
}

fn etcd_args(data: &TempDir, client_port: u16, peer_port: u16) -> Vec<OsString> {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let mut args: Vec<OsString> = Vec::new();
    for (flag, value) in [
        ("--name", "test".to_owned()),
        ("--data-dir", data.path().join("data").display().to_string()),
        ("--listen-client-urls", client.clone()),
        ("--advertise-client-urls", client),
        ("--listen-peer-urls", peer.clone()),
        ("--initial-advertise-peer-urls", peer.clone()),
        ("--initial-cluster", format!("test={peer}")),
        ("--initial-cluster-state", "new".to_owned()),
        ("--logger", "zap".to_owned()),
        ("--log-outputs", "stderr".to_owned()),
    ] {
        args.push(flag.into());
        args.push(value.into());
    }
    args
}
