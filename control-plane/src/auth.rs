//! Bearer-token interceptors: the admin token for `Admin`, the data-plane token for
//! `Discovery`. Without a configured token, a service is open (only allowed on loopback; see
//! [`Config::check`](crate::Config::check)).

use std::sync::Arc;

use tonic::{Request, Status, service::Interceptor};

use crate::{config::Token, metrics::Metrics};

/// Checks `authorization: Bearer <token>` in constant time.
#[derive(Clone, Debug)]
pub struct BearerAuth {
    expected: Option<Token>,
    service: &'static str,
    metrics: Arc<Metrics>,
}

impl BearerAuth {
    /// An interceptor for `service` (a metric label) requiring `expected`, if any.
    pub fn new(expected: Option<Token>, service: &'static str, metrics: Arc<Metrics>) -> Self {
        Self {
            expected,
            service,
            metrics,
        }
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            });
        match presented {
            Some(token) if constant_time_eq(token.trim().as_bytes(), expected.as_bytes()) => {
                Ok(request)
            }
            _ => {
                self.metrics.auth_failure(self.service);
                Err(Status::unauthenticated(format!(
                    "missing or wrong bearer token for the {} API",
                    self.service
                )))
            }
        }
    }
}

/// Compares without an early exit, so the time taken does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(authorization: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().expect("ascii"));
        }
        request
    }

    #[test]
    fn checks_bearer_tokens() {
        let mut auth = BearerAuth::new(Token::new("s3cret"), "admin", Arc::default());
        assert!(auth.call(request(Some("Bearer s3cret"))).is_ok());
        for bad in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("s3cret"),
            Some("Basic s3cret"),
        ] {
            let status = auth.call(request(bad)).expect_err("refused");
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
        let mut open = BearerAuth::new(None, "admin", Arc::default());
        assert!(open.call(request(None)).is_ok());
    }

    #[test]
    fn compares_in_constant_time_correctly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
