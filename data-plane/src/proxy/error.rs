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
        source: Box<hyper_util::client::legacy::Error>,
    },
    /// The upstream did not accept a connection within its connect timeout.
    #[error("upstream {upstream:?} endpoint {endpoint}: no connection in time")]
    ConnectTimeout {
        upstream: Arc<str>,
        endpoint: Box<str>,
        #[source]
        source: Box<hyper_util::client::legacy::Error>,
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
}

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
                    source: Box::new(error),
                };
            }
            source = e.source();
        }
        Self::UpstreamUnavailable {
            upstream,
            endpoint: endpoint.into(),
            source: Box::new(error),
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
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
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
            Self::BadRequest { .. } => "bad_request",
        }
    }

    /// The message a client sees: fixed text, no internal detail.
    fn public_message(&self) -> &'static str {
        match self {
            Self::NotReady => "the gateway has no configuration yet",
            Self::RouteNotFound => "no route matches the request",
            Self::NoHealthyUpstream { .. } => "no healthy upstream is available",
            Self::UpstreamUnavailable { .. } => "the upstream service is unavailable",
            Self::ConnectTimeout { .. } | Self::UpstreamTimeout { .. } => {
                "the upstream service did not answer in time"
            }
            Self::BadRequest { .. } => "the request cannot be forwarded",
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
    let body = serde_json::json!({
        "error": {
            "status": status.as_u16(),
            "code": code,
            "message": message,
            "request_id": request_id.to_str().unwrap_or(""),
        }
    });
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body.to_string()))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
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
