//! One HTTP/2 server connection (RFC 9113), driven by a single task: frames in, the pipeline
//! for each new stream, the streams' exchanges polled in place (no task per stream), their
//! response bodies sent as the windows allow, and every frame out through one buffer, so a
//! small response is one write.

mod frames;
mod streams;

use std::{
    future::{Future, poll_fn},
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::{
    StreamExt,
    future::{AbortHandle, Abortable},
    stream::FuturesUnordered,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::watch,
    time::{Instant, Sleep},
};

use self::streams::Streams;
use super::{
    frame::{self, DEFAULT_WINDOW, HEADER_LEN, Reason},
    hpack::{self, Decoder},
    request::Fields,
};
use crate::{
    limits::{MAX_CONCURRENT_STREAMS, MAX_HEADER_BYTES},
    pipeline::Connection,
};

/// The window we give each stream, and the connection, for request bodies.
const STREAM_WINDOW: i64 = 256 * 1024;
const CONNECTION_WINDOW: i64 = 1024 * 1024;

/// Window given back once this much has been consumed (fewer WINDOW_UPDATE frames).
const WINDOW_CREDIT_AT: i64 = 64 * 1024;

/// Output past this stops reading and body pumping until the client takes some.
const OUT_LIMIT: usize = 64 * 1024;

/// The read buffer: one largest frame and its header, twice.
const READ_BUFFER: usize = 2 * (frame::DEFAULT_MAX_FRAME + HEADER_LEN);

/// A header block (HEADERS and CONTINUATION frames, still encoded) larger than this ends the
/// connection: it cannot be decoded without being held whole (the CONTINUATION flood).
const MAX_BLOCK: usize = 2 * MAX_HEADER_BYTES;

/// How often liveness is checked: a tick with nothing read sends a PING; a second one with
/// nothing read closes the connection. A connection with no streams for `IDLE_TICKS` ticks is
/// closed with GOAWAY, as is a client that takes no output (or gives no window) for as long.
const TICK: Duration = Duration::from_secs(20);
const IDLE_TICKS: u8 = 3;

/// Streams a client may reset before their answer, beyond the ones it let finish (the
/// rapid-reset flood, CVE-2023-44487), and frames that carry nothing (empty DATA, CVE-2019-9518).
const RESET_BUDGET: i64 = 100;
const EMPTY_FRAME_BUDGET: i64 = 1000;

/// Serves an HTTP/2 connection whose first bytes (the preface, perhaps more) were already read
/// into `read`, until the client leaves, an error ends it, or `shutdown` turns true and its
/// streams are done.
pub(crate) async fn serve<S>(
    io: S,
    read: Vec<u8>,
    conn: Arc<Connection>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Some(mut driver) = Driver::new(io, &read, conn) else {
        return;
    };
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    let mut stop = std::pin::pin!(stop);
    let mut stopped = false;
    poll_fn(|cx| {
        if !stopped && stop.as_mut().poll(cx).is_ready() {
            stopped = true;
            driver.go_away(Reason::NoError);
        }
        driver.poll(cx)
    })
    .await;
}

/// Why the connection ends at once.
#[derive(Debug)]
enum Fatal {
    /// A connection error: GOAWAY with this code, then close.
    Error(Reason, &'static str),
    /// The client closed or the socket failed: nothing more can be said.
    Gone,
}

struct Driver<S> {
    io: S,
    conn: Arc<Connection>,
    read: Box<[u8]>,
    start: usize,
    end: usize,
    /// The preface still to be checked, then whether the client's SETTINGS came first.
    preface_left: usize,
    settings_seen: bool,
    out: Vec<u8>,
    written: usize,
    decoder: Decoder,
    fields: Fields,
    /// A header block waiting for its CONTINUATION frames: stream, END_STREAM, the block.
    continuation: Option<(u32, bool, Vec<u8>)>,
    streams: Streams,
    running: FuturesUnordered<Tagged>,
    /// The highest stream the client opened.
    last_stream: u32,
    /// Set once GOAWAY is sent: streams above it are not served.
    goaway: Option<u32>,
    /// The client sent GOAWAY: it opens no more streams.
    peer_gone: bool,
    /// The client's settings that matter to us.
    peer_max_frame: usize,
    peer_initial_window: i64,
    /// How much we may send on the connection, and the client may send us.
    send_window: i64,
    recv_window: i64,
    /// Consumed request body bytes not yet given back on the connection.
    recv_credit: i64,
    reset_budget: i64,
    empty_budget: i64,
    tick: Pin<Box<Sleep>>,
    read_since_tick: bool,
    wrote_since_tick: bool,
    ping_sent: bool,
    idle_ticks: u8,
    stalled_ticks: u8,
    /// Streams whose response the last pump finished, kept for its allocation.
    finished: Vec<(u32, Option<Reason>)>,
    /// Close once the output is written.
    closing: bool,
    /// Close now: the client is gone or will not read.
    dead: bool,
}

/// A stream's exchange (already boxed), tagged with the stream, abortable when the client
/// resets it: `None` once aborted.
struct Tagged {
    id: u32,
    exchange: Abortable<super::Exchange>,
}

impl Future for Tagged {
    type Output = Option<(u32, super::Reply)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let id = self.id;
        Pin::new(&mut self.exchange)
            .poll(cx)
            .map(|done| done.ok().map(|reply| (id, reply)))
    }
}

fn tagged(id: u32, exchange: super::Exchange) -> (Tagged, AbortHandle) {
    let (handle, registration) = AbortHandle::new_pair();
    let exchange = Abortable::new(exchange, registration);
    (Tagged { id, exchange }, handle)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    fn new(io: S, read: &[u8], conn: Arc<Connection>) -> Option<Self> {
        let mut buf = vec![0u8; READ_BUFFER.max(read.len())].into_boxed_slice();
        buf[..read.len()].copy_from_slice(read);
        let mut driver = Self {
            io,
            conn,
            read: buf,
            start: 0,
            end: read.len(),
            preface_left: frame::PREFACE.len(),
            settings_seen: false,
            out: Vec::with_capacity(16 * 1024),
            written: 0,
            decoder: Decoder::default(),
            fields: Fields::default(),
            continuation: None,
            streams: Streams::default(),
            running: FuturesUnordered::new(),
            last_stream: 0,
            goaway: None,
            peer_gone: false,
            peer_max_frame: frame::DEFAULT_MAX_FRAME,
            peer_initial_window: DEFAULT_WINDOW,
            send_window: DEFAULT_WINDOW,
            recv_window: CONNECTION_WINDOW,
            recv_credit: 0,
            reset_budget: RESET_BUDGET,
            empty_budget: EMPTY_FRAME_BUDGET,
            tick: Box::pin(tokio::time::sleep(TICK)),
            read_since_tick: false,
            wrote_since_tick: false,
            ping_sent: false,
            idle_ticks: 0,
            stalled_ticks: 0,
            finished: Vec::new(),
            closing: false,
            dead: false,
        };
        frame::settings(
            &mut driver.out,
            &[
                (
                    frame::setting::MAX_CONCURRENT_STREAMS,
                    MAX_CONCURRENT_STREAMS,
                ),
                (frame::setting::INITIAL_WINDOW_SIZE, STREAM_WINDOW as u32),
                (
                    frame::setting::MAX_HEADER_LIST_SIZE,
                    MAX_HEADER_BYTES as u32,
                ),
                (frame::setting::HEADER_TABLE_SIZE, hpack::TABLE_SIZE as u32),
            ],
        );
        frame::window_update(
            &mut driver.out,
            0,
            (CONNECTION_WINDOW - DEFAULT_WINDOW) as u32,
        );
        Some(driver)
    }

    /// Sends GOAWAY (once) and stops taking new streams; the connection closes when the
    /// streams it has are done.
    fn go_away(&mut self, reason: Reason) {
        if self.goaway.is_none() {
            frame::goaway(&mut self.out, self.last_stream, reason);
            self.goaway = Some(self.last_stream);
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Bounded, so that one busy connection cannot starve the worker's others.
        for _ in 0..32 {
            let mut progress = self.poll_tick(cx);
            if self.dead {
                return Poll::Ready(());
            }
            match self.read_frames(cx) {
                Ok(read) => progress |= read,
                Err(Fatal::Gone) => return Poll::Ready(()),
                Err(Fatal::Error(reason, why)) => {
                    tracing::debug!(?reason, why, "HTTP/2 connection error");
                    self.fail(reason);
                }
            }
            progress |= self.poll_exchanges(cx);
            progress |= self.pump(cx);
            self.give_back_window();
            match self.flush(cx) {
                Ok(wrote) => progress |= wrote,
                Err(_) => return Poll::Ready(()),
            }
            let done = self.closing
                || ((self.goaway.is_some() || self.peer_gone) && self.streams.is_empty());
            if done && self.written == self.out.len() {
                return match Pin::new(&mut self.io).poll_shutdown(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(_) => Poll::Ready(()),
                };
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// A connection error: GOAWAY, every stream dropped, and close once the output is out.
    fn fail(&mut self, reason: Reason) {
        self.goaway = None;
        self.go_away(reason);
        self.streams.abort_all();
        self.closing = true;
    }

    /// Reads what the socket has and handles every complete frame. True if anything was read.
    fn read_frames(&mut self, cx: &mut Context<'_>) -> Result<bool, Fatal> {
        let mut progress = false;
        loop {
            self.handle_buffered()?;
            if self.closing || self.out.len() - self.written >= OUT_LIMIT {
                return Ok(progress);
            }
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            } else if self.end == self.read.len() {
                self.read.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let mut buf = ReadBuf::new(&mut self.read[self.end..]);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => {
                    let n = buf.filled().len();
                    if n == 0 {
                        return Err(Fatal::Gone);
                    }
                    self.end += n;
                    self.read_since_tick = true;
                    progress = true;
                }
                Poll::Ready(Err(_)) => return Err(Fatal::Gone),
                Poll::Pending => return Ok(progress),
            }
        }
    }

    /// Handles the complete frames in the read buffer.
    fn handle_buffered(&mut self) -> Result<(), Fatal> {
        // Out of `self` while frames borrow from it; an empty box costs nothing.
        let read = std::mem::take(&mut self.read);
        let handled = self.handle_frames(&read);
        self.read = read;
        handled
    }

    fn handle_frames(&mut self, read: &[u8]) -> Result<(), Fatal> {
        if self.preface_left > 0 {
            let have = (self.end - self.start).min(self.preface_left);
            let expected = &frame::PREFACE[frame::PREFACE.len() - self.preface_left..][..have];
            if &read[self.start..self.start + have] != expected {
                return Err(Fatal::Gone);
            }
            self.start += have;
            self.preface_left -= have;
            if self.preface_left > 0 {
                return Ok(());
            }
        }
        while !self.closing && self.end - self.start >= HEADER_LEN {
            let mut raw = [0; HEADER_LEN];
            raw.copy_from_slice(&read[self.start..self.start + HEADER_LEN]);
            let head = frame::Head::parse(&raw);
            if head.len > frame::DEFAULT_MAX_FRAME {
                return Err(Fatal::Error(
                    Reason::FrameSize,
                    "frame over SETTINGS_MAX_FRAME_SIZE",
                ));
            }
            if self.end - self.start < HEADER_LEN + head.len {
                break;
            }
            let payload = self.start + HEADER_LEN..self.start + HEADER_LEN + head.len;
            self.start = payload.end;
            self.handle_frame(head, &read[payload])?;
        }
        Ok(())
    }

    /// Polls the streams' exchanges; each one done becomes its response.
    fn poll_exchanges(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while let Poll::Ready(Some(done)) = self.running.poll_next_unpin(cx) {
            progress = true;
            if let Some((id, reply)) = done {
                self.respond(id, reply);
            }
        }
        progress
    }

    fn poll_tick(&mut self, cx: &mut Context<'_>) -> bool {
        if self.tick.as_mut().poll(cx).is_pending() {
            return false;
        }
        if self.read_since_tick {
            self.ping_sent = false;
        } else if self.ping_sent {
            tracing::debug!("HTTP/2 client answers nothing; closing");
            self.dead = true;
        } else {
            frame::ping(&mut self.out, 0, &[0; 8]);
            self.ping_sent = true;
        }
        self.idle_ticks = if self.streams.is_empty() {
            self.idle_ticks.saturating_add(1)
        } else {
            0
        };
        let stalled = self.written < self.out.len() && !self.wrote_since_tick;
        self.stalled_ticks = if stalled {
            self.stalled_ticks.saturating_add(1)
        } else {
            0
        };
        if self.idle_ticks >= IDLE_TICKS {
            self.go_away(Reason::NoError);
        }
        if self.stalled_ticks >= IDLE_TICKS {
            tracing::debug!("HTTP/2 client takes no output; closing");
            self.dead = true;
        }
        for id in self.streams.tick_blocked(IDLE_TICKS) {
            self.reset(id, Reason::Cancel);
        }
        self.read_since_tick = false;
        self.wrote_since_tick = false;
        let next = Instant::now() + TICK;
        self.tick.as_mut().reset(next);
        true
    }

    /// Writes out what is buffered. True if anything was written.
    fn flush(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        let mut progress = false;
        while self.written < self.out.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.out[self.written..]) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    self.wrote_since_tick = true;
                    progress = true;
                }
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => return Ok(progress),
            }
        }
        if progress {
            self.out.clear();
            self.written = 0;
            // A TLS stream holds what it was given until flushed; TCP flushes at once.
            if let Poll::Ready(Err(error)) = Pin::new(&mut self.io).poll_flush(cx) {
                return Err(error);
            }
        }
        Ok(progress)
    }
}
