//! The request path's fixed limits and timeouts, shared by the front ends and the listener.

use std::time::Duration;

/// Time a client has to send a request's headers (also the idle keep-alive limit).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest request head (HTTP/1.1 head, HTTP/2 header list); larger gets a 431. The same
/// figure bounds a `requestLimits` policy's `maxHeaderBytes` in validation.
pub const MAX_HEADER_BYTES: usize = gateway_proto::validate::MAX_HEAD_BYTES as usize;

/// Header lines accepted in one HTTP/1 head; more gets a 431.
pub const MAX_HEADERS: usize = 128;

/// Time without progress allowed while reading a request body from, or writing a response to,
/// the client.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest request body kept whole on a rule that retries or mirrors: read before the
/// first try, it is sent again on each retry and copied to the shadow. Larger bodies, and
/// bodies of unknown length that have not all arrived with the head, stream as usual and are
/// neither retried once a byte has gone upstream nor mirrored.
pub const KEPT_BODY_BYTES: usize = 64 * 1024;

/// Concurrent HTTP/2 streams per client connection.
pub const MAX_CONCURRENT_STREAMS: u32 = 256;

/// An instant `after` from `now`, saturating: a configured duration of any size meets the
/// clock without overflowing it (a century is as good as forever here).
#[inline]
pub fn deadline(now: tokio::time::Instant, after: Duration) -> tokio::time::Instant {
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// A deadline a body checks while it waits (the rule's timeouts, a gRPC call's): the timer
/// exists only when there is a deadline.
#[derive(Debug)]
pub(crate) struct Deadline(Option<std::pin::Pin<Box<tokio::time::Sleep>>>);

impl Deadline {
    pub(crate) fn new(at: Option<tokio::time::Instant>) -> Self {
        Self(at.map(|at| Box::pin(tokio::time::sleep_until(at))))
    }

    /// Whether it has passed; registers the waker otherwise.
    pub(crate) fn passed(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        self.0
            .as_mut()
            .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
    }
}
