//! The one error type of the request path, and the one place that turns it into a response.
//! Clients get a status, a stable code and a fixed message; the detail goes to the log with the
//! request id.

use std::{error::Error as _, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};

use super::ProxyBody;
use crate::metrics::UpstreamFailure;

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
}

/// The source of an upstream failure, from whichever client met it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

// === impl ProxyError ===

impl ProxyError {
    /// Classifies a client error: a connect timeout is a 504, anything else a 502.
    pub(crate) fn upstream(
        upstream: Arc<str>,
        endpoint: &str,
        error: hyper_util::client::legacy::Error,
    ) -> Self {
        let mut source = error.source();
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::TimedOut
            {
                return Self::ConnectTimeout {
                    upstream,
                    endpoint: endpoint.into(),
                    source: error.into(),
                };
            }
            source = e.source();
        }
        Self::UpstreamUnavailable {
            upstream,
            endpoint: endpoint.into(),
            source: error.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotReady | Self::NoHealthyUpstream { .. } => StatusCode::SERVICE_UNAVAILABLE,
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

/// The error as a response: `{"error": {"status", "code", "message", "request_id"}}`.
pub(crate) fn respond(error: &ProxyError, request_id: &HeaderValue) -> Response<ProxyBody> {
    let status = error.status();
    error_response(status, error.code(), error.public_message(), request_id)
}

/// A JSON error response with a status, a code and a message.
pub(crate) fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &HeaderValue,
) -> Response<ProxyBody> {
    let body = error_body(status, code, message, request_id.as_bytes());
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
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
