//! Active health checks: one checker per endpoint of an upstream, on each data plane, however
//! many routes use it. Every interval (with up to 10 % jitter, so that a fleet's checks do not
//! arrive together) it asks `GET path` over a new connection, made the way the upstream's
//! requests are (TLS included, over HTTP/2 for H2C and H2 upstreams), and reads the status. `unhealthyThreshold` failures in a
//! row mark the endpoint down, `healthyThreshold` good answers up again. A checker lives while
//! an upstream holds it: tables that keep the upstream share it (the side tables find it), and
//! its task ends at the first tick after the last holder is gone.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use gateway_proto::{duration, v1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::EndpointState;
use crate::connect::Connector;

/// An active check's settings, resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Settings {
    pub path: Box<str>,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// Empty: 200 to 399.
    pub expected: Box<[u16]>,
    /// Checks speak HTTP/2, as the upstream's requests do (H2C, H2).
    pub h2: bool,
}

impl Settings {
    /// The settings of `active` on an upstream spoken to over HTTP/2 (`h2`) or HTTP/1.1.
    pub fn of(active: &v1::ActiveHealthCheck, h2: bool) -> Self {
        Self {
            path: active.path.as_str().into(),
            interval: active
                .interval
                .as_ref()
                .and_then(duration::from_proto)
                .unwrap_or(Duration::from_secs(5)),
            timeout: active
                .timeout
                .as_ref()
                .and_then(duration::from_proto)
                .unwrap_or(Duration::from_secs(1)),
            healthy_threshold: active.healthy_threshold.unwrap_or(2),
            unhealthy_threshold: active.unhealthy_threshold.unwrap_or(3),
            expected: active
                .expected_statuses
                .iter()
                .filter_map(|&s| u16::try_from(s).ok())
                .collect(),
            h2,
        }
    }

    fn passes(&self, status: u16) -> bool {
        if self.expected.is_empty() {
            (200..400).contains(&status)
        } else {
            self.expected.contains(&status)
        }
    }

    /// The side tables' key of a checker with these settings.
    pub fn key(&self, address: &str) -> String {
        format!("{address} {self:?}")
    }
}

/// A running checker (its task holds it weakly).
#[derive(Debug)]
pub struct Checker {
    address: Box<str>,
    /// The `Host` of its requests: the endpoint as listed (a DNS name's, for an address it
    /// resolved to).
    authority: Box<str>,
    connector: Connector,
    state: Arc<EndpointState>,
    settings: Settings,
}

impl Checker {
    pub fn start(
        address: &str,
        authority: &str,
        connector: Connector,
        state: Arc<EndpointState>,
        settings: Settings,
    ) -> Arc<Self> {
        let checker = Arc::new(Self {
            address: address.into(),
            authority: authority.into(),
            connector,
            state,
            settings,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(run(Arc::downgrade(&checker)));
        }
        checker
    }

    /// One check: whether the endpoint answered with an expected status in time.
    async fn probe(&self) -> Result<(), String> {
        let status = tokio::time::timeout(self.settings.timeout, async {
            let stream = self
                .connector
                .connect(&self.address, self.settings.timeout)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            if self.settings.h2 {
                self.status_over_h2(stream).await
            } else {
                self.status_over_h1(stream).await
            }
        })
        .await
        .map_err(|_| format!("no answer within {:?}", self.settings.timeout))??;
        if self.settings.passes(status) {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    }

    /// The status of `GET path` over HTTP/2 on a connection of its own.
    async fn status_over_h2(&self, stream: crate::connect::UpstreamStream) -> Result<u16, String> {
        let (client, connection) = h2::client::handshake(stream)
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        let scheme = if self.connector.is_tls() {
            "https"
        } else {
            "http"
        };
        let request = http::Request::get(format!(
            "{scheme}://{}{}",
            self.authority, self.settings.path
        ))
        .header(http::header::USER_AGENT, "gateway-health-check")
        .body(())
        .map_err(|e| format!("the check's request: {e}"))?;
        let asked = async {
            let mut client = client.ready().await.map_err(|e| format!("HTTP/2: {e}"))?;
            let (response, _) = client
                .send_request(request, true)
                .map_err(|e| format!("HTTP/2 request: {e}"))?;
            let response = response.await.map_err(|e| format!("HTTP/2 answer: {e}"))?;
            Ok(response.status().as_u16())
        };
        // The connection is driven here, and closed when the answer is in.
        tokio::select! {
            status = asked => status,
            ended = connection => Err(format!("HTTP/2 connection ended: {ended:?}")),
        }
    }

    /// The status line's code of `GET path` over HTTP/1.1 (`connection: close`).
    async fn status_over_h1(
        &self,
        mut stream: crate::connect::UpstreamStream,
    ) -> Result<u16, String> {
        let request = format!(
            "GET {} HTTP/1.1\r\nhost: {}\r\nuser-agent: gateway-health-check\r\nconnection: close\r\n\r\n",
            self.settings.path, self.authority
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut head = Vec::with_capacity(256);
        while !head.windows(2).any(|w| w == b"\r\n") {
            if head.len() > 4096 {
                return Err("no status line".to_owned());
            }
            head.reserve(256);
            if stream
                .read_buf(&mut head)
                .await
                .map_err(|e| format!("read: {e}"))?
                == 0
            {
                return Err("closed before answering".to_owned());
            }
        }
        head.split(|&b| b == b' ')
            .nth(1)
            .and_then(|code| std::str::from_utf8(code).ok())
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| "not an HTTP/1.1 answer".to_owned())
    }
}

async fn run(checker: Weak<Checker>) {
    // Counts of passes and failures in a row.
    let (mut passes, mut failures) = (0u32, 0u32);
    loop {
        let Some(interval) = checker.upgrade().map(|c| c.settings.interval) else {
            return;
        };
        let jitter = interval.mul_f64(fastrand::f64() * 0.1);
        tokio::time::sleep(interval + jitter).await;
        let Some(checker) = checker.upgrade() else {
            return;
        };
        match checker.probe().await {
            Ok(()) => {
                (passes, failures) = (passes.saturating_add(1), 0);
                if passes >= checker.settings.healthy_threshold && checker.state.set_up(true) {
                    tracing::info!(endpoint = &*checker.address, "endpoint healthy again");
                }
            }
            Err(reason) => {
                (passes, failures) = (0, failures.saturating_add(1));
                if failures >= checker.settings.unhealthy_threshold && checker.state.set_up(false) {
                    tracing::warn!(endpoint = &*checker.address, %reason, "endpoint unhealthy");
                }
            }
        }
    }
}
