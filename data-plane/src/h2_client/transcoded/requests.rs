//! A client stream sent as it comes: the body's NDJSON lines, each turned into a message and
//! sent on the call's HTTP/2 stream as soon as its line is complete, as the stream's window
//! allows (so a client cannot make the gateway hold more than a line and a window).

use bytes::Bytes;
use h2::SendStream;
use prost_reflect::MessageDescriptor;

use crate::transcode::{
    Options,
    grpc::{self, MAX_MESSAGE},
    json::{self, BadRequest},
};

/// Why a stream of requests stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    /// A line is not a message of the method: the client's fault.
    #[error(transparent)]
    Bad(#[from] BadRequest),
    /// A line longer than the largest message.
    #[error("a line of the request stream is longer than {MAX_MESSAGE} bytes")]
    TooLarge,
    /// The client's body broke the rules of its framing, or broke off.
    #[error("the request body: {0}")]
    Body(&'static str),
    /// The request body is over the route's limit.
    #[error("the request body is too large")]
    BodyTooLarge,
    /// The upstream stream broke (or the upstream answered and stopped reading).
    #[error("the upstream stream: {0}")]
    Upstream(#[source] h2::Error),
}

/// The sending half of a streamed call.
#[derive(Debug)]
pub(crate) struct Requests {
    send: SendStream<Bytes>,
    input: MessageDescriptor,
    options: Options,
    /// The start of a line whose end has not come yet.
    line: Vec<u8>,
    /// Messages sent so far.
    sent: usize,
}

impl Requests {
    pub(super) fn new(send: SendStream<Bytes>, input: MessageDescriptor, options: Options) -> Self {
        Self {
            send,
            input,
            options,
            line: Vec::new(),
            sent: 0,
        }
    }

    /// Sends the message of every line that `bytes` completes. After an error the caller
    /// [`abandon`](Self::abandon)s the call: the messages before it were sent, and the upstream
    /// must not take a partial stream for a whole one.
    pub(crate) async fn push(&mut self, mut bytes: &[u8]) -> Result<(), StreamError> {
        while let Some(end) = memchr::memchr(b'\n', bytes) {
            let (head, rest) = bytes.split_at(end);
            bytes = &rest[1..];
            if self.line.is_empty() {
                self.send_line(head).await?;
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(head);
                let sent = self.send_line(&line).await;
                line.clear();
                self.line = line;
                sent?;
            }
        }
        if self.line.len() + bytes.len() > MAX_MESSAGE {
            return Err(StreamError::TooLarge);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// Sends the last line (one without a newline) and ends the stream.
    pub(crate) async fn finish(&mut self) -> Result<(), StreamError> {
        let line = std::mem::take(&mut self.line);
        self.send_line(&line).await?;
        super::super::send_data(&mut self.send, Bytes::new(), true)
            .await
            .map_err(StreamError::Upstream)
    }

    /// Ends the call before its stream did (a bad line, the client's body broke off).
    pub(crate) fn abandon(&mut self) {
        self.send.send_reset(h2::Reason::CANCEL);
    }

    async fn send_line(&mut self, line: &[u8]) -> Result<(), StreamError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let message = json::line_request(&self.input, line, self.sent, self.options)?;
        self.sent += 1;
        let mut framed = Vec::new();
        grpc::put_message(&message, &mut framed);
        super::super::send_data(&mut self.send, Bytes::from(framed), false)
            .await
            .map_err(StreamError::Upstream)
    }
}
