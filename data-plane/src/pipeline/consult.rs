//! The one phase that waits on the network: `externalAuth`. The pipeline stays synchronous.
//! When a request needs an auth service's answer that is not kept, [`decide`](super::decide)
//! stops with a [`Consult`]: the question, written out. The front end asks it, turns what it
//! heard into [`Consulted`] ([`Consult::conclude`], which also keeps the answer), and runs the
//! pipeline again with it. Every phase before this one is pure, so running them twice changes
//! nothing; none after it has run yet.

use std::{net::IpAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

use super::{Connection, Head, Local, LocalResponse, Plan, ProxyError, Stop};
use crate::{
    side::auth_answers::AuthAnswer,
    table::{Upstream, external_auth::ExternalAuth},
};

/// A question for an auth service, ready to send.
#[derive(Debug)]
pub(crate) struct Consult {
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) endpoint: usize,
    /// The auth request's head, but for its request id and the blank line that ends it.
    pub(crate) head: Vec<u8>,
    pub(crate) timeout: Duration,
    policy: Arc<ExternalAuth>,
    key: [u8; 32],
}

/// What the front end heard from the auth service.
#[derive(Debug)]
pub(crate) enum Heard {
    Answer {
        status: StatusCode,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Bytes,
    },
    /// No answer: the service is unreachable, too slow, or spoke no HTTP.
    Failed(String),
}

/// The auth service's answer, for the pipeline's second run over the request.
#[derive(Debug)]
pub(crate) struct Consulted {
    policy: Arc<ExternalAuth>,
    answer: Result<Arc<AuthAnswer>, String>,
}

/// Response headers of the auth service never relayed: they frame its own message.
const FRAMING: [HeaderName; 5] = [
    http::header::CONNECTION,
    http::header::CONTENT_LENGTH,
    http::header::TRANSFER_ENCODING,
    http::header::TE,
    http::header::UPGRADE,
];

static X_FORWARDED_METHOD: &[u8] = b"x-forwarded-method: ";

/// Runs an `externalAuth` policy: its answer (given, or kept) decides; without one, the
/// request stops to ask.
pub(super) fn external_auth(
    conn: &Connection,
    head: &Head<'_>,
    auth: &Arc<ExternalAuth>,
    client: Option<IpAddr>,
    consulted: Option<&Consulted>,
    plan: &mut Plan<'_>,
) -> Result<(), Stop> {
    let answer = match consulted.filter(|c| Arc::ptr_eq(&c.policy, auth)) {
        Some(consulted) => consulted.answer.clone(),
        None => {
            let question = question(conn, head, auth, client, &plan.path);
            let key = gateway_proto::api_key::digest(&question);
            let now = std::time::Instant::now();
            match auth.ttl.and_then(|_| auth.answers.get(&key, now)) {
                Some(kept) => Ok(kept),
                None => match ask(conn, auth, &question, key) {
                    Ok(consult) => return Err(Stop::Consult(Box::new(consult))),
                    Err(reason) => Err(reason),
                },
            }
        }
    };
    match answer {
        Ok(answer) => match &*answer {
            AuthAnswer::Allow(headers) => {
                plan.request_extra.extend(headers.iter().cloned());
                Ok(())
            }
            AuthAnswer::Deny {
                status,
                headers,
                body,
            } => Err(Stop::Answer(Local::Relayed(LocalResponse {
                status: *status,
                headers: headers.to_vec(),
                body: body.clone(),
            }))),
        },
        Err(reason) if auth.fail_open => {
            tracing::warn!(%reason, "the auth service did not answer; the request passes (failOpen)");
            Ok(())
        }
        Err(reason) => Err(Stop::Answer(Local::Error(ProxyError::AuthUnavailable {
            reason: reason.into(),
        }))),
    }
}

/// Everything the auth request says about the request: what its answer is kept by.
fn question(
    conn: &Connection,
    head: &Head<'_>,
    auth: &ExternalAuth,
    client: Option<IpAddr>,
    path: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(X_FORWARDED_METHOD);
    out.extend_from_slice(head.method.as_str().as_bytes());
    // The normalised path: the one routes matched, so that `/a/../admin` is asked as `/admin`.
    out.extend_from_slice(b"\r\nx-forwarded-uri: ");
    out.extend_from_slice(path.as_bytes());
    if let Some(query) = head.query {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    if let Some(host) = head.host {
        out.extend_from_slice(b"\r\nx-forwarded-host: ");
        out.extend_from_slice(host.as_bytes());
    }
    out.extend_from_slice(b"\r\nx-forwarded-proto: ");
    out.extend_from_slice(if conn.tls { b"https" } else { b"http" });
    if let Some(client) = client {
        out.extend_from_slice(b"\r\nx-forwarded-for: ");
        out.extend_from_slice(client.to_string().as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    for name in auth.to_auth.iter() {
        head.headers.any_value(name, &mut |value| {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
            false
        });
    }
    out
}

/// The auth request for `question`, to the auth service's next endpoint; `Err`: there is
/// none to ask.
fn ask(
    conn: &Connection,
    auth: &Arc<ExternalAuth>,
    question: &[u8],
    key: [u8; 32],
) -> Result<Consult, String> {
    // Validation keeps the Upstream; it may have no endpoint up.
    let no_endpoint = || format!("the auth service {:?} has no endpoint", auth.upstream);
    let upstream = conn
        .state
        .load()
        .as_ref()
        .and_then(|table| table.upstream(&auth.upstream).cloned())
        .ok_or_else(no_endpoint)?;
    let endpoint = upstream.pick().ok_or_else(no_endpoint)?;
    let address = upstream.endpoints()[endpoint].address();
    let mut head =
        Vec::with_capacity(auth.request_line.len() + address.len() + question.len() + 64);
    head.extend_from_slice(&auth.request_line);
    head.extend_from_slice(b"host: ");
    head.extend_from_slice(address.as_bytes());
    head.extend_from_slice(b"\r\n");
    head.extend_from_slice(question);
    Ok(Consult {
        upstream,
        endpoint,
        head,
        timeout: auth.timeout,
        policy: auth.clone(),
        key,
    })
}

// === impl Consult ===

impl Consult {
    /// The auth request, whole: the question with the request's id.
    pub(crate) fn request(&self, request_id: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + request_id.len() + 20);
        out.extend_from_slice(&self.head);
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(request_id);
        out.extend_from_slice(b"\r\n\r\n");
        out
    }

    /// Makes what was heard the answer (kept for the policy's `cacheTtl` when the service
    /// answered at all).
    pub(crate) fn conclude(self, heard: Heard) -> Consulted {
        let auth = &self.policy;
        let answer = match heard {
            Heard::Failed(reason) => Err(reason),
            Heard::Answer {
                status,
                headers,
                body,
            } => {
                let answer = if status.is_success() {
                    AuthAnswer::Allow(
                        headers
                            .into_iter()
                            .filter(|(name, _)| auth.from_auth.contains(name))
                            .collect(),
                    )
                } else {
                    AuthAnswer::Deny {
                        status,
                        headers: headers
                            .into_iter()
                            .filter(|(name, _)| !FRAMING.contains(name))
                            .collect(),
                        body,
                    }
                };
                let answer = Arc::new(answer);
                if let Some(ttl) = auth.ttl {
                    let now = std::time::Instant::now();
                    auth.answers.put(
                        self.key,
                        answer.clone(),
                        now.checked_add(ttl).unwrap_or(now),
                        now,
                    );
                }
                Ok(answer)
            }
        };
        Consulted {
            policy: self.policy,
            answer,
        }
    }
}
