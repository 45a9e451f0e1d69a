//! The `demo-backend` echo server of this crate, as a child process.

use std::net::SocketAddr;

use crate::{
    bins::{self, DEMO_BACKEND},
    eventually::eventually,
    process::Process,
};

/// A running echo backend; killed when dropped.
#[derive(Debug)]
pub struct DemoBackend {
    process: Process,
    addr: SocketAddr,
    name: String,
}

// === impl DemoBackend ===

impl DemoBackend {
    /// Starts `demo-backend --name NAME` on a free port.
    pub async fn start(name: &str) -> DemoBackend {
        DemoBackend::start_at(name, ([127, 0, 0, 1], 0).into())
            .await
            .unwrap_or_else(|error| panic!("demo-backend did not start: {error:#}"))
    }

    /// Starts `demo-backend --name NAME --listen ADDR` (another loopback address, say: Linux
    /// routes all of 127.0.0.0/8 to `lo`); port 0 takes a free one. Fails (with its logs)
    /// when the address cannot be bound.
    pub async fn start_at(name: &str, listen: SocketAddr) -> anyhow::Result<DemoBackend> {
        let mut process = Process::new(
            &format!("backend-{name}"),
            bins::bin(DEMO_BACKEND),
            vec![
                "--listen".into(),
                listen.to_string().into(),
                "--name".into(),
                name.into(),
            ],
        );
        process.start().await?;
        let addr: SocketAddr = process
            .listening("http")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("demo-backend printed no http=ADDR"))?;
        // Restarts keep the port: upstreams name it.
        process.set_args(vec![
            "--listen".into(),
            addr.to_string().into(),
            "--name".into(),
            name.into(),
        ]);
        Ok(DemoBackend {
            process,
            addr,
            name: name.to_owned(),
        })
    }

    /// `127.0.0.1:<port>`, for an upstream endpoint.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until the backend has logged a request whose line contains `needle` (e.g.
    /// `GET /slow`): each request is logged on stderr when it arrives.
    pub async fn wait_for_request(&self, needle: &str) {
        eventually(
            &format!("backend {} to receive {needle:?}", self.name),
            || async {
                let log = self.process.stderr();
                anyhow::ensure!(
                    log.lines()
                        .any(|l| l.starts_with("request ") && l.contains(needle)),
                    "not yet"
                );
                Ok(())
            },
        )
        .await;
    }

    /// SIGKILL.
    pub async fn kill(&mut self) {
        self.process.kill().await;
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        if let Err(error) = self.process.restart().await {
            panic!("demo-backend did not restart: {error:#}");
        }
    }

    pub fn process(&self) -> &Process {
        &self.process
    }
}
