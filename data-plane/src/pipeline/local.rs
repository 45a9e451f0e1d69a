//! Answers given at the gateway: errors, redirects and CORS preflights, built once into a
//! status, headers and a body that each front end writes with its own framing.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode, header};

use super::{ProxyError, error::error_body};

/// An answer the gateway gives itself.
#[derive(Debug)]
pub(crate) enum Local {
    Error(ProxyError),
    Redirect {
        status: StatusCode,
        location: HeaderValue,
    },
    /// A CORS preflight: 204 with these headers.
    Preflight {
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    /// A transcoded gRPC call's answer, as JSON.
    Transcoded(LocalResponse),
    /// Another service's answer, relayed as it was sent (an auth service's refusal).
    Relayed(LocalResponse),
    /// The gateway's own error on a transcoding route: the same status, with the body in the
    /// shape the route's clients get from the backend (`google.rpc.Status` JSON).
    TranscodedError(ProxyError),
}

/// A local answer, ready for a front end to write.
#[derive(Debug)]
pub(crate) struct LocalResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Bytes,
}

// === impl Local ===

impl Local {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Error(error) => error.status(),
            Self::Redirect { status, .. } => *status,
            Self::Preflight { .. } => StatusCode::NO_CONTENT,
            Self::Transcoded(response) | Self::Relayed(response) => response.status,
            Self::TranscodedError(error) => error.status(),
        }
    }

    /// The answer for a request that `rule` matched: on a transcoding rule, the gateway's errors
    /// take the shape its clients get from the backend.
    pub(crate) fn for_rule(self, rule: Option<&crate::table::Rule>) -> Self {
        match self {
            Self::Error(error) if rule.is_some_and(|r| r.transcoder().is_some()) => {
                Self::TranscodedError(error)
            }
            other => other,
        }
    }

    /// The gateway's error, to count and log.
    pub(crate) fn error(&self) -> Option<&ProxyError> {
        match self {
            Self::Error(error) | Self::TranscodedError(error) => Some(error),
            _ => None,
        }
    }

    /// The error code for the outcome record, if this is an error.
    pub(crate) fn code(&self) -> Option<&'static str> {
        self.error().map(ProxyError::code)
    }

    /// The response. An error's body is the JSON error with the request id; its details go
    /// to the log, never to the client.
    pub(crate) fn into_response(self, request_id: &[u8]) -> LocalResponse {
        match self {
            Self::Error(error) => {
                let status = error.status();
                let body = error_body(status, error.code(), &error.client_message(), request_id);
                let mut headers = vec![(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )];
                error.response_headers(&mut headers);
                LocalResponse {
                    status,
                    headers,
                    body: Bytes::from(body),
                }
            }
            Self::Redirect { status, location } => LocalResponse {
                status,
                headers: vec![(header::LOCATION, location)],
                body: Bytes::new(),
            },
            Self::Preflight { headers } => LocalResponse {
                status: StatusCode::NO_CONTENT,
                headers,
                body: Bytes::new(),
            },
            Self::Transcoded(response) | Self::Relayed(response) => response,
            Self::TranscodedError(error) => {
                let body = serde_json::json!({
                    "code": error.transcoded_status(),
                    "message": error.client_message(),
                    "details": [],
                });
                let mut headers = vec![(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )];
                error.response_headers(&mut headers);
                LocalResponse {
                    status: error.status(),
                    headers,
                    body: Bytes::from(body.to_string()),
                }
            }
        }
    }

    /// The response to a gRPC call: an error is a trailers-only response (200, no body,
    /// `grpc-status` and `grpc-message` with the fixed public message) that every gRPC client
    /// reads as the call's status; the request id is in the headers as always.
    pub(crate) fn into_grpc_response(self, request_id: &[u8]) -> LocalResponse {
        let (code, public, mut headers) = match self {
            Self::Error(error) => {
                let mut headers = Vec::new();
                error.response_headers(&mut headers);
                (error.grpc_status(), error.client_message(), headers)
            }
            // An auth service's refusal, as the status gRPC gives that HTTP answer; its
            // headers (a challenge, say) go with it, its body does not fit a gRPC call.
            Self::Relayed(refused) => {
                let headers = refused
                    .headers
                    .into_iter()
                    .filter(|(name, _)| name != header::CONTENT_TYPE)
                    .collect();
                let code = grpc_status_of(refused.status);
                (code, "refused by the auth service".into(), headers)
            }
            other => return other.into_response(request_id),
        };
        let mut message = Vec::new();
        percent_encode(&public, &mut message);
        headers.push((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        ));
        headers.push((
            HeaderName::from_static("grpc-status"),
            HeaderValue::from(u16::from(code)),
        ));
        if let Ok(message) = HeaderValue::from_bytes(&message) {
            headers.push((HeaderName::from_static("grpc-message"), message));
        }
        LocalResponse {
            status: StatusCode::OK,
            headers,
            body: Bytes::new(),
        }
    }
}

/// The gRPC status a client reads from an HTTP answer (gRPC's HTTP-to-status table).
fn grpc_status_of(status: StatusCode) -> u8 {
    match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

/// gRPC's percent-encoding of `grpc-message`: bytes outside printable ASCII, and `%`.
fn percent_encode(message: &str, out: &mut Vec<u8>) {
    for &b in message.as_bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
}
