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
    /// A transcoded request: the gRPC method, and its status once known.
    pub(crate) grpc: Option<GrpcCall>,
}

/// The gRPC call a transcoded request made.
#[derive(Debug)]
pub(crate) struct GrpcCall {
    pub(crate) method: prost_reflect::MethodDescriptor,
    /// The call's status (none: not ended when the answer started, a stream).
    pub(crate) status: Option<u32>,
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
            grpc: None,
        }
    }

    /// The logging phase: the record is counted, then dropped.
    #[inline]
    pub(crate) fn finish(self, state: &State) {
        if self.status != 0 {
            state.metrics().response_status(self.status);
        }
        if let Some((upstream, endpoint)) = &self.upstream
            && upstream.detects_outliers()
        {
            // The endpoint's own 5xx, or the gateway's failure to reach it in time.
            let failed = self.status >= 500
                && matches!(
                    self.error,
                    None | Some("upstream_unavailable" | "upstream_timeout")
                );
            upstream.record(*endpoint, failed);
        }
        if tracing::enabled!(tracing::Level::TRACE) {
            tracing::trace!(
                route = self.rule.as_ref().map(|r| &**r.route()),
                upstream = self.upstream.as_ref().map(|(u, _)| &**u.name()),
                status = self.status,
                error = self.error,
                retried = self.retried,
                grpc_method = self.grpc.as_ref().map(|g| g.method.full_name()),
                grpc_status = self.grpc.as_ref().and_then(|g| g.status),
                elapsed = ?self.started.elapsed(),
                "request done"
            );
        }
    }
}
