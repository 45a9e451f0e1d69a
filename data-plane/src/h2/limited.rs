//! A request body cut off once it passes the route's `maxBodyBytes`: the upstream request
//! fails with [`TooLarge`] in its chain, which the front end answers with 413.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use super::recv::RecvBody;
use crate::pipeline::BoxError;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// The client's body with a size limit.
#[derive(Debug)]
pub(crate) struct Limited {
    inner: RecvBody,
    left: u64,
}

/// The body went past its limit.
#[derive(Debug, thiserror::Error)]
#[error("the request body is over the route's limit")]
pub(crate) struct TooLarge;

// === impl Limited ===

impl Limited {
    pub(crate) fn new(inner: RecvBody, limit: u64) -> Self {
        Self { inner, left: limit }
    }

    /// Whether an upstream client error was this body going over its limit.
    pub(crate) fn caused(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut source = Some(error);
        while let Some(e) = source {
            if e.is::<TooLarge>() {
                return true;
            }
            source = e.source();
        }
        false
    }
}

impl Body for Limited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.left {
                        return Poll::Ready(Some(Err(Box::new(TooLarge))));
                    }
                    this.left -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
