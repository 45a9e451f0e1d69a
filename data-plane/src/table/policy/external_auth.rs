//! `externalAuth`, compiled: the auth request's fixed parts written once, the header names
//! parsed, the kept answers found in the side tables. The pipeline asks the question
//! (`pipeline::consult`); a front end carries it to the service.

use std::{sync::Arc, time::Duration};

use gateway_proto::{duration, v1};
use http::HeaderName;

use crate::side::{SideTables, auth_answers::AuthAnswers};

/// The auth service's default time to answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// The most answers one policy keeps.
const MAX_KEPT: usize = 10_000;

#[derive(Debug)]
pub struct ExternalAuth {
    /// The auth service's Upstream, found in the current table when it is asked (so that an
    /// endpoint change reaches it without recompiling the policy).
    pub upstream: Arc<str>,
    /// `GET {path} HTTP/1.1\r\n`.
    pub request_line: Box<[u8]>,
    pub to_auth: Box<[HeaderName]>,
    pub from_auth: Box<[HeaderName]>,
    pub timeout: Duration,
    pub fail_open: bool,
    /// How long an answer is kept; `None`: not at all.
    pub ttl: Option<Duration>,
    pub answers: Arc<AuthAnswers>,
}

impl ExternalAuth {
    pub(crate) fn compile(name: &str, spec: &v1::ExternalAuthPolicy, side: &SideTables) -> Self {
        let path = if spec.path.is_empty() {
            "/"
        } else {
            &spec.path
        };
        let names = |list: &[String]| -> Box<[HeaderName]> {
            list.iter()
                .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
                .collect()
        };
        let ttl = spec.cache_ttl.as_ref().and_then(duration::from_proto);
        Self {
            upstream: spec
                .backend_ref
                .as_ref()
                .map_or_else(|| "".into(), |b| b.name.as_str().into()),
            request_line: format!("GET {path} HTTP/1.1\r\n").into_bytes().into(),
            to_auth: names(&spec.headers_to_auth),
            from_auth: names(&spec.headers_from_auth),
            timeout: spec
                .timeout
                .as_ref()
                .and_then(duration::from_proto)
                .unwrap_or(DEFAULT_TIMEOUT),
            fail_open: spec.fail_open,
            ttl,
            // A changed policy starts afresh: its answers were to other questions.
            answers: side.auth_answers(
                format!("{name} {spec:?}"),
                if ttl.is_some() { MAX_KEPT } else { 1 },
            ),
        }
    }
}
