//! A server-streaming method's replies as the client reads them: one JSON object a line
//! (`application/x-ndjson`), or Server-Sent Events (`data: {…}` and a blank line) for a client
//! that accepts `text/event-stream`, each written as its message arrives, never gathered. A
//! status other than OK after the first message ends the stream with an error object,
//! `{"error": <google.rpc.Status JSON>}`.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use h2::RecvStream;
use http_body::Frame;
use prost_reflect::{DescriptorPool, MessageDescriptor};
use tokio::time::Instant;

use crate::{
    limits::Deadline,
    pipeline::BoxError,
    pool::multiplexed::StreamSlot,
    transcode::{
        Options,
        grpc::{self, Frames},
        json,
    },
};

/// The streamed replies of one call.
#[derive(Debug)]
pub(crate) struct JsonStream {
    recv: Option<RecvStream>,
    frames: Frames,
    output: MessageDescriptor,
    pool: DescriptorPool,
    options: Options,
    sse: bool,
    data_done: bool,
    deadline: Deadline,
    /// The backend's initial metadata the filter returns as headers.
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    _slot: StreamSlot,
}

impl JsonStream {
    pub(super) fn new(
        recv: RecvStream,
        slot: StreamSlot,
        output: MessageDescriptor,
        pool: DescriptorPool,
        options: Options,
        sse: bool,
        deadline: Option<Instant>,
    ) -> Self {
        Self {
            recv: Some(recv),
            frames: Frames::default(),
            output,
            pool,
            options,
            sse,
            data_done: false,
            deadline: Deadline::new(deadline),
            headers: Vec::new(),
            _slot: slot,
        }
    }

    pub(super) fn with_headers(
        mut self,
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
    ) -> Self {
        self.headers = headers;
        self
    }

    /// Headers for the client's response head, besides the content type.
    pub(crate) fn headers(&self) -> &[(http::HeaderName, http::HeaderValue)] {
        &self.headers
    }

    /// The content type of what it writes.
    pub(crate) fn content_type(&self) -> &'static str {
        if self.sse {
            "text/event-stream"
        } else {
            "application/x-ndjson"
        }
    }

    fn line(&self, json: &[u8]) -> Bytes {
        let mut line = Vec::with_capacity(json.len() + 8);
        if self.sse {
            line.extend_from_slice(b"data: ");
            line.extend_from_slice(json);
            line.extend_from_slice(b"\n\n");
        } else {
            line.extend_from_slice(json);
            line.push(b'\n');
        }
        Bytes::from(line)
    }

    /// The last line, for a call that ended with `code`.
    fn error_line(&mut self, code: u32, message: &str, details: Option<&[u8]>) -> Bytes {
        self.recv = None;
        let status = grpc::status_json(code, message, details, &self.pool);
        let mut json = Vec::with_capacity(status.len() + 12);
        json.extend_from_slice(b"{\"error\":");
        json.extend_from_slice(&status);
        json.push(b'}');
        self.line(&json)
    }
}

impl http_body::Body for JsonStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.recv.is_none() {
                return Poll::Ready(None);
            }
            match this.frames.next_message() {
                Ok(Some(message)) => {
                    let line =
                        match json::response(this.output.clone(), &message, None, this.options) {
                            Ok(json) => this.line(&json),
                            Err(reason) => this.error_line(13, &reason, None),
                        };
                    return Poll::Ready(Some(Ok(Frame::data(line))));
                }
                Ok(None) => {}
                Err(reason) => {
                    let line = this.error_line(13, &reason, None);
                    return Poll::Ready(Some(Ok(Frame::data(line))));
                }
            }
            if this.deadline.passed(cx) {
                let line = this.error_line(4, "deadline exceeded at the gateway", None);
                return Poll::Ready(Some(Ok(Frame::data(line))));
            }
            let Some(recv) = this.recv.as_mut() else {
                return Poll::Ready(None);
            };
            if !this.data_done {
                match ready!(recv.poll_data(cx)) {
                    Some(Ok(data)) => {
                        let _ = recv.flow_control().release_capacity(data.len());
                        this.frames.push(&data);
                        continue;
                    }
                    Some(Err(error)) => {
                        let line = this.error_line(14, &error.to_string(), None);
                        return Poll::Ready(Some(Ok(Frame::data(line))));
                    }
                    None => this.data_done = true,
                }
            }
            let trailers = match ready!(recv.poll_trailers(cx)) {
                Ok(trailers) => trailers.unwrap_or_default(),
                Err(error) => {
                    let line = this.error_line(14, &error.to_string(), None);
                    return Poll::Ready(Some(Ok(Frame::data(line))));
                }
            };
            let code = trailers
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(2);
            if code == 0 && this.frames.is_empty() {
                this.recv = None;
                return Poll::Ready(None);
            }
            let message = trailers
                .get("grpc-message")
                .map(|v| grpc::decode_message(v.as_bytes()))
                .unwrap_or_else(|| "the stream ended in the middle of a message".into());
            let details = trailers
                .get("grpc-status-details-bin")
                .and_then(|v| grpc::base64::decode(v.as_bytes()));
            let line = this.error_line(
                if code == 0 { 13 } else { code },
                &message,
                details.as_deref(),
            );
            return Poll::Ready(Some(Ok(Frame::data(line))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_none()
    }
}
