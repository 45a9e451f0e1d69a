//! One outcome record per request, filled by whichever front end served it, read once at the
//! end (metrics now; access logs and traces read the same record).

use std::sync::Arc;

use tokio::time::Instant;

use crate::{
    state::State,
    table::{Rule, Upstream},
};

/// What happened to one request.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) started: Instant,
    /// The rule matched (and through it the route), if any.
    pub(crate) rule: Option<Arc<Rule>>,
    /// The upstream and endpoint the request went to, if it went anywhere.
    pub(crate) upstream: Option<(Arc<Upstream>, usize)>,
    /// The status sent to the client (0: none could be sent).
    pub(crate) status: u16,
    /// The gateway's error code, when the gateway answered with an error.
    pub(crate) error: Option<&'static str>,
    /// The request was sent again after a pooled connection failed.
    pub(crate) retried: bool,
}

// === impl Outcome ===

impl Outcome {
    #[inline]
    pub(crate) fn start(started: Instant) -> Self {
        Self {
            started,
            rule: None,
            upstream: None,
            status: 0,
            error: None,
            retried: false,
        }
    }

    /// The logging phase: the record is counted, then dropped.
    #[inline]
    pub(crate) fn finish(self, state: &State) {
        if self.status != 0 {
            state.metrics().response_status(self.status);
        }
        if tracing::enabled!(tracing::Level::TRACE) {
            tracing::trace!(
                route = self.rule.as_ref().map(|r| &**r.route()),
                upstream = self.upstream.as_ref().map(|(u, _)| &**u.name()),
                status = self.status,
                error = self.error,
                retried = self.retried,
                elapsed = ?self.started.elapsed(),
                "request done"
            );
        }
    }
}
