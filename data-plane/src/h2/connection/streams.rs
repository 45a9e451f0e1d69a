//! The connection's streams: their state, their responses (headers, then the body as the
//! windows allow), and the window given back as their request bodies are taken.

use std::{
    collections::HashMap,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::future::AbortHandle;
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Driver, OUT_LIMIT, STREAM_WINDOW, WINDOW_CREDIT_AT};
use crate::h2::{Reply, ReplyBody, UpstreamBody, frame, frame::Reason, hpack, recv::Sender};

#[derive(Debug)]
pub(super) struct Stream {
    /// The request body's queue, until the stream ends.
    pub(super) body: Option<Sender>,
    /// The client sent END_STREAM.
    pub(super) ended: bool,
    pub(super) recv_window: i64,
    recv_credit: i64,
    pub(super) content_length: Option<u64>,
    pub(super) received: u64,
    pub(super) send_window: i64,
    sending: Sending,
    abort: Option<AbortHandle>,
    blocked_ticks: u8,
}

// Held in place in the stream map: boxing the body would cost an allocation per response.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Sending {
    /// The exchange is running.
    Waiting,
    /// Headers sent; `rest` of the body, then whatever `source` has.
    Body {
        rest: Bytes,
        source: Option<UpstreamBody>,
    },
}

impl Stream {
    pub(super) fn new(body: Option<Sender>, content_length: Option<u64>, send_window: i64) -> Self {
        Self {
            ended: body.is_none(),
            body,
            recv_window: STREAM_WINDOW,
            recv_credit: 0,
            content_length,
            received: 0,
            send_window,
            sending: Sending::Waiting,
            abort: None,
            blocked_ticks: 0,
        }
    }

    pub(super) fn set_abort(&mut self, abort: AbortHandle) {
        self.abort = Some(abort);
    }

    /// The response has not been fully sent.
    fn cancel(&mut self) {
        if let Some(abort) = self.abort.take() {
            abort.abort();
        }
        if let Some(body) = &self.body {
            body.reset();
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Streams {
    map: HashMap<u32, Stream>,
}

impl Streams {
    pub(super) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn get_mut(&mut self, id: u32) -> Option<&mut Stream> {
        self.map.get_mut(&id)
    }

    pub(super) fn insert(&mut self, id: u32, stream: Stream) {
        self.map.insert(id, stream);
    }

    pub(super) fn abort_all(&mut self) {
        for (_, mut stream) in self.map.drain() {
            stream.cancel();
        }
    }

    /// Adds `delta` to every stream's send window (a new SETTINGS_INITIAL_WINDOW_SIZE); false
    /// if one goes past the largest window.
    pub(super) fn shift_send_windows(&mut self, delta: i64) -> bool {
        self.map.values_mut().all(|s| {
            s.send_window += delta;
            s.send_window <= frame::MAX_WINDOW
        })
    }

    /// Streams whose body has waited for window for `limit` ticks in a row.
    pub(super) fn tick_blocked(&mut self, limit: u8) -> Vec<u32> {
        let mut over = Vec::new();
        for (&id, s) in &mut self.map {
            let blocked = matches!(&s.sending, Sending::Body { rest, .. } if !rest.is_empty());
            s.blocked_ticks = if blocked {
                s.blocked_ticks.saturating_add(1)
            } else {
                0
            };
            if s.blocked_ticks >= limit {
                over.push(id);
            }
        }
        over
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    /// Sends a stream's response headers, and as much of its body as can go now.
    pub(super) fn respond(&mut self, id: u32, reply: Reply) {
        let Some(stream) = self.streams.map.get_mut(&id) else {
            return;
        };
        let (rest, source) = match reply.body {
            ReplyBody::Empty => {
                frame::headers(&mut self.out, id, &reply.block, true, self.peer_max_frame);
                self.finish(id);
                return;
            }
            ReplyBody::Local(body) => (body, None),
            ReplyBody::Upstream(body) => (Bytes::new(), Some(body)),
        };
        frame::headers(&mut self.out, id, &reply.block, false, self.peer_max_frame);
        stream.abort = None;
        stream.sending = Sending::Body { rest, source };
    }

    /// Sends body data for every stream that has some and window for it. True if any went.
    pub(super) fn pump(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        let mut done = std::mem::take(&mut self.finished);
        for (&id, stream) in &mut self.streams.map {
            let Sending::Body { rest, source } = &mut stream.sending else {
                continue;
            };
            loop {
                if self.out.len() - self.written >= OUT_LIMIT {
                    break;
                }
                if rest.is_empty() {
                    let Some(body) = source.as_mut() else {
                        // A local body ends with its last frame; nothing is left to send.
                        done.push((id, None));
                        break;
                    };
                    match Pin::new(body).poll_frame(cx) {
                        Poll::Ready(Some(Ok(frame))) => {
                            match frame.into_data() {
                                Ok(data) => *rest = data,
                                Err(frame) => {
                                    // Trailers end the stream (gRPC's status is in them).
                                    let Ok(trailers) = frame.into_trailers() else {
                                        continue;
                                    };
                                    let mut block = Vec::with_capacity(64);
                                    for (name, value) in &trailers {
                                        hpack::encode_field(
                                            &mut block,
                                            name.as_str().as_bytes(),
                                            value.as_bytes(),
                                            false,
                                        );
                                    }
                                    frame::headers(
                                        &mut self.out,
                                        id,
                                        &block,
                                        true,
                                        self.peer_max_frame,
                                    );
                                    progress = true;
                                    done.push((id, None));
                                    break;
                                }
                            }
                            continue;
                        }
                        Poll::Ready(None) => {
                            frame::data(&mut self.out, id, &[], true);
                            progress = true;
                            done.push((id, None));
                            break;
                        }
                        Poll::Ready(Some(Err(error))) => {
                            tracing::debug!(error = %crate::pipeline::Chain(&*error), "upstream body failed");
                            done.push((id, Some(Reason::Internal)));
                            break;
                        }
                        Poll::Pending => break,
                    }
                }
                let window = stream.send_window.min(self.send_window);
                if window <= 0 {
                    break;
                }
                let n = rest.len().min(window as usize).min(self.peer_max_frame);
                let chunk = rest.split_to(n);
                let end = rest.is_empty() && source.as_ref().is_none_or(|b| b.is_end_stream());
                frame::data(&mut self.out, id, &chunk, end);
                stream.send_window -= n as i64;
                self.send_window -= n as i64;
                stream.blocked_ticks = 0;
                progress = true;
                if end {
                    done.push((id, None));
                    break;
                }
            }
        }
        for (id, reason) in done.drain(..) {
            match reason {
                None => self.finish(id),
                Some(reason) => self.reset(id, reason),
            }
        }
        self.finished = done;
        progress
    }

    /// The response is complete: the stream is forgotten (with a RST_STREAM NO_ERROR if the
    /// client is still sending a body nobody will read, RFC 9113 §8.1).
    fn finish(&mut self, id: u32) {
        let Some(stream) = self.streams.map.remove(&id) else {
            return;
        };
        self.reset_budget = (self.reset_budget + 1).min(super::RESET_BUDGET);
        self.empty_budget = (self.empty_budget + 1).min(super::EMPTY_FRAME_BUDGET);
        if let Some(body) = &stream.body {
            self.recv_credit += body.take_consumed() as i64;
        }
        if !stream.ended {
            frame::rst_stream(&mut self.out, id, Reason::NoError);
        }
    }

    /// Resets a stream from our side.
    pub(super) fn reset(&mut self, id: u32, reason: Reason) {
        frame::rst_stream(&mut self.out, id, reason);
        self.forget(id);
    }

    /// Drops a stream, cancelling its exchange; false if it was not open.
    pub(super) fn forget(&mut self, id: u32) -> bool {
        let Some(mut stream) = self.streams.map.remove(&id) else {
            return false;
        };
        stream.cancel();
        if let Some(body) = &stream.body {
            self.recv_credit += body.take_consumed() as i64;
        }
        true
    }

    /// Gives the client back the window its consumed request bodies freed.
    pub(super) fn give_back_window(&mut self) {
        for (&id, stream) in &mut self.streams.map {
            let Some(body) = &stream.body else {
                continue;
            };
            let n = body.take_consumed() as i64;
            if n == 0 {
                continue;
            }
            self.recv_credit += n;
            stream.recv_credit += n;
            if !stream.ended && stream.recv_credit >= WINDOW_CREDIT_AT {
                frame::window_update(&mut self.out, id, stream.recv_credit as u32);
                stream.recv_window += stream.recv_credit;
                stream.recv_credit = 0;
            }
        }
        if self.recv_credit >= WINDOW_CREDIT_AT {
            frame::window_update(&mut self.out, 0, self.recv_credit as u32);
            self.recv_window += self.recv_credit;
            self.recv_credit = 0;
        }
    }
}
