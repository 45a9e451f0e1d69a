//! An HTTP/2 stream's request over an HTTP/2 upstream (H2C, H2): the head the codec wrote for
//! HTTP/1.1 turned into the upstream request, the body forwarded frame by frame as both windows
//! allow (while the response head is awaited; after it, by a task of its own, so that a
//! bidirectional gRPC stream keeps flowing both ways), and the response head rewritten into
//! HPACK. A gRPC call's `grpc-timeout` bounds the wait for the head (with the upstream's
//! timeout) and the whole response.

use bytes::Bytes;
use h2::SendStream;
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::{HpackFields, limited::Limited};
use crate::{
    h1::{self, Asked, Failure, Framing, Sink},
    h2_client::{self, Opened, ResponseBody},
    limits,
    table::{Endpoint, Upstream},
};

/// How long the exchange may take, and whether it is a gRPC call (whose end is a status, and
/// whose streams may be quiet for long).
#[derive(Clone, Copy, Debug)]
pub(super) struct Call {
    pub(super) grpc: bool,
    /// When the response must have ended: the rule's timeouts or a gRPC call's
    /// `grpc-timeout`, whichever comes first.
    pub(super) deadline: Option<Instant>,
}

/// A response head from an HTTP/2 upstream: its HPACK block, status, and the body to come
/// (none when the head ended the stream, as a gRPC trailers-only response does).
pub(super) struct Answered {
    pub(super) block: Vec<u8>,
    pub(super) status: u16,
    pub(super) body: Option<ResponseBody>,
}

pub(super) async fn exchange(
    endpoint: &Endpoint,
    upstream: &Upstream,
    head: &[u8],
    body: Option<Limited>,
    framing: Framing,
    asked: Asked<'_>,
    call: Call,
) -> Result<Answered, Failure> {
    let https = endpoint.pool().connector().is_tls();
    let (request, _) = h2_client::request(head, https, endpoint.address())
        .map_err(|reason| Failure::Unavailable(reason.into()))?;
    let now = Instant::now();
    let upstream_deadline = limits::deadline(now, upstream.timeout());
    let head_deadline = call
        .deadline
        .map_or(upstream_deadline, |d| d.min(upstream_deadline));
    // A head that does not come in time is logged with the limit that ran out.
    let timed_out = |error: h2_client::Error| match Failure::from(error) {
        Failure::TimedOut if head_deadline < upstream_deadline => {
            Failure::Deadline(head_deadline.saturating_duration_since(now))
        }
        other => other,
    };
    let body = body.filter(|_| framing != Framing::Empty);
    let Opened {
        response,
        send,
        slot,
    } = h2_client::open(endpoint, upstream, request, body.is_none()).await?;
    let response = match body {
        None => h2_client::response(response, head_deadline)
            .await
            .map_err(timed_out)?,
        Some(body) => {
            let mut forward = Box::pin(forward(send, body));
            let receive = h2_client::response(response, head_deadline);
            tokio::pin!(receive);
            let mut forwarded = false;
            loop {
                tokio::select! {
                    biased;
                    received = &mut receive => {
                        let response = received.map_err(timed_out)?;
                        if !forwarded {
                            // The rest of the body goes on after the head, on its own.
                            tokio::spawn(async move {
                                let _ = forward.await;
                            });
                        }
                        break response;
                    }
                    result = &mut forward, if !forwarded => match result {
                        Ok(()) => forwarded = true,
                        Err(Forward::TooLarge) => return Err(Failure::TooLarge),
                        Err(Forward::Client(error)) => {
                            return Err(Failure::Cut(h1::BodyError::Read(std::io::Error::other(error))));
                        }
                        // The upstream stopped taking the body (it may be answering early).
                        Err(Forward::Upstream) => forwarded = true,
                    },
                }
            }
        }
    };
    let (parts, recv) = response.into_parts();
    let status = parts.status.as_u16();
    // A status the rule retries is caught before anything is relayed.
    if asked.retry_on.contains(&status) {
        return Err(Failure::Status(status));
    }
    let mut block = Vec::with_capacity(256);
    h1::rewrite_parts(
        status,
        &parts.headers,
        asked,
        Sink::Fields(&mut HpackFields(&mut block)),
    );
    let idle = (!call.grpc).then(|| upstream.timeout());
    let body = (!recv.is_end_stream())
        .then(|| ResponseBody::new(recv, slot, call.deadline, call.grpc, idle));
    Ok(Answered {
        block,
        status,
        body,
    })
}

/// Why forwarding a request body stopped.
enum Forward {
    /// Over the route's body limit.
    TooLarge,
    /// The client's body failed (reset, cut short).
    Client(crate::pipeline::BoxError),
    /// The upstream stream would take no more.
    Upstream,
}

/// Forwards the client's body frames (data and trailers) to the upstream stream. When the
/// client's side fails, the upstream stream is reset so the upstream does not wait for more.
async fn forward(mut send: SendStream<Bytes>, mut body: Limited) -> Result<(), Forward> {
    loop {
        let Some(frame) = body.frame().await else {
            return h2_client::send_data(&mut send, Bytes::new(), true)
                .await
                .map_err(|_| Forward::Upstream);
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                send.send_reset(h2::Reason::CANCEL);
                return Err(if Limited::caused(&*error) {
                    Forward::TooLarge
                } else {
                    Forward::Client(error)
                });
            }
        };
        match frame.into_data() {
            Ok(data) => {
                let end = body.is_end_stream();
                h2_client::send_data(&mut send, data, end)
                    .await
                    .map_err(|_| Forward::Upstream)?;
                if end {
                    return Ok(());
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    return send.send_trailers(trailers).map_err(|_| Forward::Upstream);
                }
            }
        }
    }
}
