//! Key sets of identity providers, fetched over HTTP(S) in the background: a `jwt` provider
//! with `jwksUri` (or `oidcDiscovery`) reads its keys from here and never waits for a fetch.
//!
//! One task per URL fetches the set as soon as a table names it, again when it goes stale
//! (its `Cache-Control: max-age`, bounded to [`MIN_REFRESH`]..[`MAX_REFRESH`], or
//! [`DEFAULT_REFRESH`]), and early when a token names a `kid` the set lacks, at most once per
//! [`KID_REFRESH`] so that a flood of made-up kids cannot hammer the identity provider. A
//! failed fetch keeps the last good set and is retried with a growing back-off; how long a
//! stale set may still be used is the provider's business (its grace period). The entry lives
//! in the side tables, so every worker and every table swap shares it; its task ends once no
//! table holds it.

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use gateway_proto::{jwt, v1};
use http_body_util::{BodyExt as _, Empty, Limited};
use tokio::{sync::Notify, time::Instant};

use crate::connect::{Connector, TlsClient};

pub const MIN_REFRESH: Duration = Duration::from_secs(1);
pub const MAX_REFRESH: Duration = Duration::from_secs(3600);
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// The least time between two fetches asked for by unknown kids.
pub const KID_REFRESH: Duration = Duration::from_secs(5);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where a set comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    Uri(String),
    /// The issuer's `/.well-known/openid-configuration` names it.
    Discovery(String),
}

impl Origin {
    /// The origin of a provider's keys, unless they are inline.
    pub fn of(provider: &v1::JwtProvider) -> Option<Self> {
        if !provider.jwks_uri.is_empty() {
            Some(Self::Uri(provider.jwks_uri.clone()))
        } else if provider.oidc_discovery {
            Some(Self::Discovery(provider.issuer.clone()))
        } else {
            None
        }
    }
}

/// A set as fetched.
#[derive(Debug)]
pub struct KeySet {
    pub keys: Box<[jwt::Key]>,
    /// Changes whenever the keys do (tokens verified with older keys are not trusted again).
    pub generation: u64,
    /// When the set is stale: its max-age after it was fetched.
    pub stale_at: Instant,
}

/// One origin's keys, and the handle on its fetching task.
#[derive(Debug)]
pub struct RemoteKeys {
    origin: Origin,
    current: ArcSwapOption<KeySet>,
    wake: Arc<Notify>,
    base: std::time::Instant,
    /// Milliseconds after `base` of the last fetch an unknown kid asked for.
    last_kid_refresh: AtomicU64,
    fetches: AtomicU64,
}

impl RemoteKeys {
    /// A new entry for `origin`, its task started on the current runtime (none outside one:
    /// a table compiled by a tool or a benchmark has no requests to serve).
    pub fn start(origin: Origin) -> Arc<Self> {
        let keys = Arc::new(Self {
            origin,
            current: ArcSwapOption::empty(),
            wake: Arc::new(Notify::new()),
            base: std::time::Instant::now(),
            last_kid_refresh: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(run(Arc::downgrade(&keys), keys.wake.clone()));
        }
        keys
    }

    /// The last good set, if one was ever fetched.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    /// Asks for a fetch now, because a token named a kid the set lacks; at most once per
    /// [`KID_REFRESH`].
    pub fn refresh_for_kid(&self) {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_kid_refresh.load(Ordering::Relaxed);
        let gap = u64::try_from(KID_REFRESH.as_millis()).unwrap_or(u64::MAX);
        if (last == 0 || now.saturating_sub(last) >= gap)
            && self
                .last_kid_refresh
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.wake.notify_one();
        }
    }

    /// Fetches made so far, good or not.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

/// Fetches until no table holds the entry.
async fn run(keys: Weak<RemoteKeys>, wake: Arc<Notify>) {
    let mut backoff = MIN_REFRESH;
    let mut last_text = None;
    let mut generation = 0;
    loop {
        let Some(entry) = keys.upgrade() else { return };
        entry.fetches.fetch_add(1, Ordering::Relaxed);
        let wait = match fetch(&entry.origin).await {
            Ok((text, max_age)) => {
                backoff = MIN_REFRESH;
                let refresh = max_age
                    .unwrap_or(DEFAULT_REFRESH)
                    .clamp(MIN_REFRESH, MAX_REFRESH);
                match jwt::keys_of_jwks(&text) {
                    Ok(parsed) => {
                        if last_text.as_ref() != Some(&text) {
                            generation += 1;
                            last_text = Some(text);
                        }
                        entry.current.store(Some(Arc::new(KeySet {
                            keys: parsed.into(),
                            generation,
                            stale_at: Instant::now() + refresh,
                        })));
                    }
                    Err(reason) => tracing::warn!(
                        origin = ?entry.origin, %reason,
                        "the identity provider's key set does not parse; the last good one stays"
                    ),
                }
                refresh
            }
            Err(reason) => {
                tracing::warn!(
                    origin = ?entry.origin, %reason,
                    "fetching the identity provider's keys failed; the last good set stays"
                );
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        drop(entry);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
        }
    }
}

/// The JWKS text and its max-age.
async fn fetch(origin: &Origin) -> Result<(String, Option<Duration>), String> {
    let uri = match origin {
        Origin::Uri(uri) => uri.clone(),
        Origin::Discovery(issuer) => {
            let url = format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            );
            let (document, _) = get(&url).await?;
            let document: serde_json::Value =
                serde_json::from_str(&document).map_err(|e| format!("{url}: not JSON: {e}"))?;
            document["jwks_uri"]
                .as_str()
                .ok_or_else(|| format!("{url}: no jwks_uri"))?
                .to_owned()
        }
    };
    get(&uri).await
}

/// `GET url`: the body as text and the response's max-age.
async fn get(url: &str) -> Result<(String, Option<Duration>), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let address = format!("{host}:{port}");
    let connector = if https {
        let tls = TlsClient::compile(
            v1::upstream_spec::Protocol::Http1,
            Some(&v1::UpstreamTls::default()),
            None,
        )?;
        Connector::new(tls)
    } else {
        Connector::default()
    };
    let exchange = async {
        let stream = connector
            .connect(&address, FETCH_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let authority = uri.authority().map_or(host, |a| a.as_str());
        let request = http::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("answered {}", response.status()));
        }
        let max_age = response
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let text = String::from_utf8(body.to_vec()).map_err(|_| "not UTF-8".to_owned())?;
        Ok((text, max_age))
    };
    tokio::time::timeout(FETCH_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{url}: no answer within {FETCH_TIMEOUT:?}"))?
        .map_err(|e| format!("{url}: {e}"))
}

/// `max-age=N` of a Cache-Control value (`no-store`/`no-cache`: refresh as soon as allowed).
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').map(str::trim).find_map(|directive| {
        if directive.eq_ignore_ascii_case("no-store") || directive.eq_ignore_ascii_case("no-cache")
        {
            return Some(Duration::ZERO);
        }
        let (name, seconds) = directive.split_once('=')?;
        name.trim().eq_ignore_ascii_case("max-age").then(|| {
            seconds
                .trim()
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs)
        })?
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_max_age() {
        use std::time::Duration;
        assert_eq!(
            super::max_age("public, max-age=60"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(super::max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(super::max_age("public"), None);
        assert_eq!(super::max_age("max-age=x"), None);
    }
}
