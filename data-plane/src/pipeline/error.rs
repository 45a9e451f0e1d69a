//! The one error type of the request path, with its status, stable code and fixed public
//! message in one place ([`super::Local`] turns it into a response). The detail goes to the
//! log with the request id.

use std::{sync::Arc, time::Duration};

use http::{HeaderName, HeaderValue, StatusCode, header};

use crate::{metrics::UpstreamFailure, normalize::PathError};

/// Why a request was not forwarded, or its upstream did not answer.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No configuration has been loaded yet (the data plane is not ready).
    #[error("no configuration loaded yet")]
    NotReady,
    /// No route matches the request (the client's fault; do not retry as is).
    #[error("no route matches the request")]
    RouteNotFound,
    /// Every endpoint of the chosen upstream is drained (weight 0).
    #[error("upstream {upstream:?} has no endpoint with a weight above 0")]
    NoHealthyUpstream { upstream: Arc<str> },
    /// The upstream refused, reset or closed the connection, or sent something unusable.
    #[error("upstream {upstream:?} endpoint {endpoint} failed")]
    UpstreamUnavailable {
        upstream: Arc<str>,
        endpoint: Box<str>,
        #[source]
        source: BoxError,
    },
    /// The upstream did not accept a connection within its connect timeout.
    #[error("upstream {upstream:?} endpoint {endpoint}: no connection in time")]
    ConnectTimeout {
        upstream: Arc<str>,
        endpoint: Box<str>,
        #[source]
        source: BoxError,
    },
    /// The upstream did not send response headers within its timeout.
    #[error("upstream {upstream:?} endpoint {endpoint} did not answer within {timeout:?}")]
    UpstreamTimeout {
        upstream: Arc<str>,
        endpoint: Box<str>,
        timeout: Duration,
    },
    /// The request cannot be turned into an upstream request.
    #[error("the request cannot be forwarded")]
    BadRequest {
        #[source]
        source: http::Error,
    },
    /// The request breaks HTTP/1.1's grammar or framing rules; the connection is closed.
    #[error("malformed request: {reason}")]
    Malformed { reason: &'static str },
    /// The request head is over the size or header-count limit.
    #[error("the request head is over {limit}")]
    HeadTooLarge { limit: &'static str },
    /// The client did not send a complete request head in time.
    #[error("no complete request head within {0:?}")]
    RequestTimeout(Duration),
    /// A transfer coding other than chunked.
    #[error("unsupported transfer-encoding")]
    UnsupportedTransferEncoding,
    /// An `Expect` other than `100-continue`.
    #[error("unsupported expectation")]
    ExpectationFailed,
    /// A path that normalisation refuses (it could mean something else to the backend).
    #[error("refused path: {0}")]
    BadPath(#[source] PathError),
    /// A header name with an underscore, and the data plane set to refuse them.
    #[error("a header name contains an underscore")]
    UnderscoreHeader,
    /// An `ipAccess` policy does not let the client in.
    #[error("the client address is not allowed")]
    Forbidden,
    /// The body is over the route's `maxBodyBytes`.
    #[error("the request body is over the route's limit")]
    BodyTooLarge,
    /// The target is over the route's `maxUriBytes`.
    #[error("the request target is over the route's limit")]
    UriTooLong,
    /// A rule with nowhere to send the request (validation refuses such rules).
    #[error("route {route:?} has no backend")]
    NoBackend { route: Arc<str> },
    /// Over `--max-requests` in flight, or `--max-connections`.
    #[error("the data plane is at its request or connection limit")]
    Overloaded,
    /// The upstream's circuit breaker: its `maxRequests` are in flight.
    #[error("upstream {upstream:?} has its circuit breaker's requests in flight")]
    UpstreamOverloaded { upstream: Arc<str> },
    /// An identity policy found no acceptable credential (`challenge`: `WWW-Authenticate`).
    #[error("unauthorized: {reason}")]
    Unauthorized {
        challenge: http::HeaderValue,
        reason: std::borrow::Cow<'static, str>,
    },
    /// A token that cannot be checked now: its identity provider's keys were never obtained,
    /// or are stale past their grace period.
    #[error("the credentials cannot be checked: {reason}")]
    AuthUnavailable {
        reason: std::borrow::Cow<'static, str>,
    },
    /// A `requestValidation` policy refuses the request; `field` says what of it.
    #[error("the request's {field} is refused by the route's request validation")]
    InvalidRequest {
        field: std::borrow::Cow<'static, str>,
    },
    /// An `authorization` policy does not let the identity in.
    #[error("the identity is not allowed by the route's authorization")]
    Denied,
    /// A `rateLimit` policy's limit is used up.
    #[error("over the rate limit")]
    RateLimited {
        retry_after: u64,
        policy: http::HeaderValue,
        limit: http::HeaderValue,
    },
}

/// The source of an upstream failure, from whichever client met it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

// === impl ProxyError ===

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotReady
            | Self::NoHealthyUpstream { .. }
            | Self::Overloaded
            | Self::UpstreamOverloaded { .. }
            | Self::AuthUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadPath(_) | Self::UnderscoreHeader | Self::InvalidRequest { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::Forbidden | Self::Denied => StatusCode::FORBIDDEN,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::NoBackend { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::UpstreamUnavailable { .. } => StatusCode::BAD_GATEWAY,
            Self::ConnectTimeout { .. } | Self::UpstreamTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Self::BadRequest { .. } | Self::Malformed { .. } => StatusCode::BAD_REQUEST,
            Self::HeadTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedTransferEncoding => StatusCode::NOT_IMPLEMENTED,
            Self::ExpectationFailed => StatusCode::EXPECTATION_FAILED,
        }
    }

    /// The stable code in the error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotReady => "not_ready",
            Self::BadPath(_) => "bad_path",
            Self::UnderscoreHeader => "bad_request",
            Self::Forbidden | Self::Denied => "forbidden",
            Self::Unauthorized { .. } => "unauthorized",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::AuthUnavailable { .. } => "auth_unavailable",
            Self::RateLimited { .. } => "rate_limited",
            Self::BodyTooLarge => "body_too_large",
            Self::UriTooLong => "uri_too_long",
            Self::NoBackend { .. } => "internal_error",
            Self::Overloaded => "overloaded",
            Self::UpstreamOverloaded { .. } => "upstream_overloaded",
            Self::RouteNotFound => "route_not_found",
            Self::NoHealthyUpstream { .. } => "no_healthy_upstream",
            Self::UpstreamUnavailable { .. } => "upstream_unavailable",
            Self::ConnectTimeout { .. } | Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::BadRequest { .. } | Self::Malformed { .. } => "bad_request",
            Self::HeadTooLarge { .. } => "request_header_too_large",
            Self::RequestTimeout(_) => "request_timeout",
            Self::UnsupportedTransferEncoding => "not_implemented",
            Self::ExpectationFailed => "expectation_failed",
        }
    }

    /// The message a client sees: fixed text, no internal detail.
    pub(crate) fn public_message(&self) -> &'static str {
        match self {
            Self::NotReady => "the gateway has no configuration yet",
            Self::BadPath(_) => "the request path is not allowed",
            Self::UnderscoreHeader => "header names with underscores are not allowed",
            Self::Forbidden | Self::Denied => "access is not allowed",
            Self::Unauthorized { .. } => "valid credentials are required",
            Self::InvalidRequest { .. } => "the request is not allowed",
            Self::AuthUnavailable { .. } => "credentials cannot be checked right now; retry later",
            Self::RateLimited { .. } => "too many requests; retry later",
            Self::BodyTooLarge => "the request body is too large",
            Self::UriTooLong => "the request target is too long",
            Self::NoBackend { .. } => "the gateway failed to handle the request",
            Self::Overloaded => "the gateway is overloaded; retry later",
            Self::UpstreamOverloaded { .. } => "the service is overloaded; retry later",
            Self::RouteNotFound => "no route matches the request",
            Self::NoHealthyUpstream { .. } => "no healthy upstream is available",
            Self::UpstreamUnavailable { .. } => "the upstream service is unavailable",
            Self::ConnectTimeout { .. } | Self::UpstreamTimeout { .. } => {
                "the upstream service did not answer in time"
            }
            Self::BadRequest { .. } => "the request cannot be forwarded",
            Self::Malformed { .. } => "the request is malformed",
            Self::HeadTooLarge { .. } => "the request headers are too large",
            Self::RequestTimeout(_) => "the request was not received in time",
            Self::UnsupportedTransferEncoding => "the request's transfer-encoding is not supported",
            Self::ExpectationFailed => "only the 100-continue expectation is supported",
        }
    }

    /// The gRPC code in the `google.rpc.Status` body of this error on a transcoding route, whose
    /// clients speak REST: a path that no binding serves is NOT_FOUND (as its 404 says), not
    /// the UNIMPLEMENTED a gRPC client gets for a method nobody serves, and a request the
    /// gateway cannot read is INVALID_ARGUMENT, as its 400 says.
    pub fn transcoded_status(&self) -> u8 {
        match self {
            Self::RouteNotFound => 5, // NOT_FOUND
            Self::BadPath(_)
            | Self::UnderscoreHeader
            | Self::BadRequest { .. }
            | Self::Malformed { .. } => 3, // INVALID_ARGUMENT
            other => other.grpc_status(),
        }
    }

    /// The gRPC status code a gRPC client gets for this error, by gRPC's mapping of HTTP
    /// statuses (doc/http-grpc-status-mapping.md), with the gateway's timeouts as
    /// DEADLINE_EXCEEDED and its limits as RESOURCE_EXHAUSTED.
    pub fn grpc_status(&self) -> u8 {
        const INTERNAL: u8 = 13;
        const UNAVAILABLE: u8 = 14;
        match self {
            Self::RouteNotFound | Self::UnsupportedTransferEncoding => 12, // UNIMPLEMENTED
            Self::Forbidden | Self::Denied => 7,                           // PERMISSION_DENIED
            Self::Unauthorized { .. } => 16,                               // UNAUTHENTICATED
            Self::RateLimited { .. } => 8,                                 // RESOURCE_EXHAUSTED
            Self::ConnectTimeout { .. } | Self::UpstreamTimeout { .. } => 4, // DEADLINE_EXCEEDED
            Self::BodyTooLarge | Self::HeadTooLarge { .. } | Self::UriTooLong => 8, // RESOURCE_EXHAUSTED
            Self::NotReady
            | Self::NoHealthyUpstream { .. }
            | Self::Overloaded
            | Self::UpstreamOverloaded { .. }
            | Self::AuthUnavailable { .. }
            | Self::UpstreamUnavailable { .. } => UNAVAILABLE,
            Self::InvalidRequest { .. } => 3, // INVALID_ARGUMENT
            Self::BadPath(_)
            | Self::UnderscoreHeader
            | Self::BadRequest { .. }
            | Self::Malformed { .. }
            | Self::RequestTimeout(_)
            | Self::ExpectationFailed
            | Self::NoBackend { .. } => INTERNAL,
        }
    }

    /// The upstream failure this counts as, if any.
    pub(crate) fn failure(&self) -> Option<UpstreamFailure> {
        match self {
            Self::NoHealthyUpstream { .. } => Some(UpstreamFailure::NoHealthy),
            Self::UpstreamUnavailable { .. } => Some(UpstreamFailure::Unavailable),
            Self::ConnectTimeout { .. } | Self::UpstreamTimeout { .. } => {
                Some(UpstreamFailure::Timeout)
            }
            _ => None,
        }
    }
}

impl ProxyError {
    /// The message in the client's error body: the fixed public one, naming the refused part
    /// of the request for a request validation.
    pub(crate) fn client_message(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Self::InvalidRequest { field } => {
                format!("the request's {field} is not allowed").into()
            }
            other => other.public_message().into(),
        }
    }

    /// The headers an answer with this error carries besides its body's.
    pub(crate) fn response_headers(&self, headers: &mut Vec<(HeaderName, HeaderValue)>) {
        match self {
            Self::Overloaded | Self::UpstreamOverloaded { .. } => {
                headers.push((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            Self::Unauthorized { challenge, .. } => {
                headers.push((header::WWW_AUTHENTICATE, challenge.clone()));
            }
            Self::RateLimited {
                retry_after,
                policy,
                limit,
            } => {
                headers.push((header::RETRY_AFTER, HeaderValue::from(*retry_after)));
                headers.push((HeaderName::from_static("ratelimit-policy"), policy.clone()));
                headers.push((HeaderName::from_static("ratelimit"), limit.clone()));
            }
            _ => {}
        }
    }
}

/// The JSON error body.
pub(crate) fn error_body(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &[u8],
) -> String {
    serde_json::json!({
        "error": {
            "status": status.as_u16(),
            "code": code,
            "message": message,
            "request_id": std::str::from_utf8(request_id).unwrap_or(""),
        }
    })
    .to_string()
}

/// Counts and logs a failed request: server errors at warn, the client's at debug.
pub(crate) fn record(
    state: &crate::state::State,
    error: &ProxyError,
    request_id: &dyn std::fmt::Display,
) {
    if let Some(failure) = error.failure() {
        state.metrics().upstream_failure(failure);
    }
    if error.status().is_server_error() {
        tracing::warn!(%request_id, error = %Chain(error), "request failed");
    } else if let ProxyError::Unauthorized { .. } = error {
        // Why a credential was refused is for operators only: the client hears 401 alone.
        tracing::info!(%request_id, error = %Chain(error), "credential refused");
    } else {
        tracing::debug!(%request_id, error = %Chain(error), "request refused");
    }
}

/// Displays an error with its chain of sources, for the log.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}
