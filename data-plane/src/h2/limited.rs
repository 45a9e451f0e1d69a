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
    /// `None` for a body kept whole ([`Limited::kept`]).
    inner: Option<RecvBody>,
    left: u64,
    /// The body read ahead whole ([`Limited::read_whole`]), sent before anything else.
    ahead: Option<Bytes>,
}

/// The body went past its limit.
#[derive(Debug, thiserror::Error)]
#[error("the request body is over the route's limit")]
pub(crate) struct TooLarge;

// === impl Limited ===

impl Limited {
    pub(crate) fn new(inner: RecvBody, limit: u64) -> Self {
        Self {
            inner: Some(inner),
            left: limit,
            ahead: None,
        }
    }

    /// A body read whole before (by [`Limited::read_whole`]), to send again.
    pub(crate) fn kept(whole: Bytes) -> Self {
        Self {
            inner: None,
            left: whole.len() as u64,
            ahead: (!whole.is_empty()).then_some(whole),
        }
    }

    /// Reads the whole body (at most `max` bytes; `Err(true)` past it, `Err(false)` when it is
    /// cut short) and keeps it to send as it would have been.
    pub(crate) async fn read_whole(&mut self, max: u64) -> Result<Bytes, bool> {
        use http_body_util::BodyExt as _;

        let mut whole = bytes::BytesMut::new();
        while let Some(frame) = self.frame().await {
            let frame = frame.map_err(|error| Self::caused(&*error))?;
            if let Ok(data) = frame.into_data() {
                if (whole.len() + data.len()) as u64 > max {
                    return Err(true);
                }
                whole.extend_from_slice(&data);
            }
        }
        let whole = whole.freeze();
        self.ahead = Some(whole.clone());
        Ok(whole)
    }

    /// Reads the body whole if it ends within `max` bytes: `Some` of it then, `None` when it
    /// goes on past them (what was read is sent first, as it would have been); `Err` as for
    /// [`Limited::read_whole`].
    pub(crate) async fn read_up_to(&mut self, max: u64) -> Result<Option<Bytes>, bool> {
        use http_body_util::BodyExt as _;

        let mut whole = bytes::BytesMut::new();
        while let Some(frame) = self.frame().await {
            let frame = frame.map_err(|error| Self::caused(&*error))?;
            if let Ok(data) = frame.into_data() {
                whole.extend_from_slice(&data);
                if whole.len() as u64 > max {
                    self.ahead = Some(whole.freeze());
                    return Ok(None);
                }
            }
        }
        let whole = whole.freeze();
        self.ahead = (!whole.is_empty()).then(|| whole.clone());
        Ok(Some(whole))
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
        if let Some(ahead) = this.ahead.take() {
            return Poll::Ready(Some(Ok(Frame::data(ahead))));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
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
        self.ahead.is_none() && self.inner.as_ref().is_none_or(RecvBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.ahead {
            Some(ahead) => SizeHint::with_exact(ahead.len() as u64),
            None => self
                .inner
                .as_ref()
                .map_or_else(|| SizeHint::with_exact(0), RecvBody::size_hint),
        }
    }
}
