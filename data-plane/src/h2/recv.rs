//! A stream's request body, handed from the connection (which reads the DATA frames) to the
//! stream's exchange (which writes it upstream). Both run in the connection's task; the lock
//! is never contended. The bytes the exchange takes are counted so that the connection can
//! give the client that much window back.

use std::{
    collections::VecDeque,
    io,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use http_body::{Body, Frame};

use crate::pipeline::BoxError;

#[derive(Debug, Default)]
struct Inner {
    chunks: VecDeque<Bytes>,
    ended: bool,
    reset: bool,
    /// Bytes taken by the exchange (or dropped with it) that the connection has not yet given
    /// back as window.
    consumed: usize,
    /// The body was dropped: whatever arrives from now on is only counted.
    dropped: bool,
    reader: Option<Waker>,
}

#[derive(Debug, Default)]
struct Shared(Mutex<Inner>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the queue half-changed; go on with it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The exchange's end.
#[derive(Debug)]
pub(crate) struct RecvBody(Arc<Shared>);

/// The connection's end.
#[derive(Debug)]
pub(super) struct Sender(Arc<Shared>);

pub(super) fn channel() -> (Sender, RecvBody) {
    let shared = Arc::new(Shared::default());
    (Sender(shared.clone()), RecvBody(shared))
}

impl Sender {
    /// Queues a DATA payload for the exchange (counted as consumed at once if it is gone).
    pub(super) fn push(&self, data: Bytes) {
        let mut inner = self.0.lock();
        if inner.dropped {
            inner.consumed += data.len();
            return;
        }
        inner.chunks.push_back(data);
        if let Some(reader) = inner.reader.take() {
            reader.wake();
        }
    }

    pub(super) fn end(&self) {
        let mut inner = self.0.lock();
        inner.ended = true;
        if let Some(reader) = inner.reader.take() {
            reader.wake();
        }
    }

    /// The client reset the stream: the exchange's next read fails.
    pub(super) fn reset(&self) {
        let mut inner = self.0.lock();
        inner.reset = true;
        if let Some(reader) = inner.reader.take() {
            reader.wake();
        }
    }

    /// Bytes to give back as window since the last call.
    pub(super) fn take_consumed(&self) -> usize {
        std::mem::take(&mut self.0.lock().consumed)
    }
}

impl Drop for RecvBody {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        inner.dropped = true;
        let queued: usize = inner.chunks.drain(..).map(|c| c.len()).sum();
        inner.consumed += queued;
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut inner = self.0.lock();
        if inner.reset {
            let error = io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the client reset the stream",
            );
            return Poll::Ready(Some(Err(error.into())));
        }
        if let Some(data) = inner.chunks.pop_front() {
            inner.consumed += data.len();
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if inner.ended {
            return Poll::Ready(None);
        }
        inner.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        let inner = self.0.lock();
        inner.ended && inner.chunks.is_empty()
    }
}
