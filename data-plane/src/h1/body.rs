//! Message bodies: where one ends (RFC 9112 section 6), and streaming one from a reader to a
//! writer without buffering it whole.
//!
//! A chunked body is passed through as it came (the chunk framing is checked, not rebuilt),
//! or decoded for an HTTP/1.0 client that cannot read chunks.

use std::{io, time::Duration};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the sender closes the connection (responses only).
    UntilClose,
}

/// Why a body could not be relayed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("the sender's chunked framing is invalid: {0}")]
    Chunked(&'static str),
    /// The chunks add up to more than the body limit (checked at each chunk's size line,
    /// before its data is passed on).
    #[error("the body is over its size limit")]
    TooLarge,
    #[error("the sender closed the connection before the body's end")]
    Truncated,
    #[error("reading the body: no progress within {0:?}")]
    ReadTimeout(Duration),
    #[error("writing the body: no progress within {0:?}")]
    WriteTimeout(Duration),
    #[error("reading the body")]
    Read(#[source] io::Error),
    #[error("writing the body")]
    Write(#[source] io::Error),
}

/// Read size while streaming a body.
pub(crate) const CHUNK: usize = 16 * 1024;

/// The longest chunk-size line (with extensions) and trailer section accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 16 * 1024;

/// The part of a body not yet relayed.
#[derive(Debug)]
pub(crate) struct Body {
    left: Left,
    /// Strip the chunk framing (for a client that cannot read it).
    decode: bool,
}

#[derive(Debug)]
enum Left {
    Bytes(u64),
    Chunked(Chunked),
    UntilClose,
}

// === impl Body ===

impl Body {
    pub(crate) fn new(framing: Framing, decode: bool) -> Self {
        Self::limited(framing, decode, u64::MAX)
    }

    /// A body whose chunked payload may not add up to more than `limit` bytes (a declared
    /// length over the limit is refused before the body is read at all).
    pub(crate) fn limited(framing: Framing, decode: bool, limit: u64) -> Self {
        let left = match framing {
            Framing::Empty => Left::Bytes(0),
            Framing::Length(n) => Left::Bytes(n),
            Framing::Chunked => Left::Chunked(Chunked {
                limit,
                ..Chunked::default()
            }),
            Framing::UntilClose => Left::UntilClose,
        };
        Self { left, decode }
    }

    pub(crate) fn is_done(&self) -> bool {
        match &self.left {
            Left::Bytes(n) => *n == 0,
            Left::Chunked(c) => c.is_done(),
            Left::UntilClose => false,
        }
    }

    /// Takes the front of `input` that belongs to this body and returns its length. When
    /// decoding, the payload is appended to `decoded`; otherwise the taken bytes are what to send.
    pub(crate) fn take(&mut self, input: &[u8], decoded: &mut Vec<u8>) -> Result<usize, BodyError> {
        match &mut self.left {
            Left::Bytes(n) => {
                let used = input.len().min(usize::try_from(*n).unwrap_or(usize::MAX));
                *n -= used as u64;
                if self.decode {
                    decoded.extend_from_slice(&input[..used]);
                }
                Ok(used)
            }
            Left::Chunked(chunked) if self.decode => {
                chunked.feed(input, &mut |data| decoded.extend_from_slice(data))
            }
            Left::Chunked(chunked) => chunked.feed(input, &mut |_| {}),
            Left::UntilClose => {
                if self.decode {
                    decoded.extend_from_slice(input);
                }
                Ok(input.len())
            }
        }
    }

    /// Takes what `buf` holds of the body, appends the bytes to send to `out`, and leaves in
    /// `buf` only what follows the body.
    pub(crate) fn take_into(
        &mut self,
        buf: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), BodyError> {
        let used = if self.decode {
            self.take(buf, out)?
        } else {
            let used = self.take(buf, &mut Vec::new())?;
            out.extend_from_slice(&buf[..used]);
            used
        };
        buf.drain(..used);
        Ok(())
    }

    /// Streams the rest of the body from `src` to `dst`, reading into `buf` (which must be
    /// empty) and writing decoded bytes through `scratch`. On return `buf` holds what followed
    /// the body, if the sender had already sent more.
    pub(crate) async fn relay<R, W>(
        &mut self,
        src: &mut R,
        dst: &mut W,
        buf: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        idle: Duration,
    ) -> Result<(), BodyError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        while !self.is_done() {
            buf.clear();
            buf.reserve(CHUNK);
            let n = tokio::time::timeout(idle, src.read_buf(buf))
                .await
                .map_err(|_| BodyError::ReadTimeout(idle))?
                .map_err(BodyError::Read)?;
            if n == 0 {
                return match self.left {
                    Left::UntilClose => Ok(()),
                    _ => Err(BodyError::Truncated),
                };
            }
            scratch.clear();
            let used = self.take(buf, scratch)?;
            let bytes = if self.decode {
                &scratch[..]
            } else {
                &buf[..used]
            };
            if !bytes.is_empty() {
                write_all(dst, bytes, idle).await?;
            }
            buf.drain(..used);
        }
        Ok(())
    }
}

/// Writes all of `bytes`, failing when no progress is made within `idle`.
pub(crate) async fn write_all<W>(dst: &mut W, bytes: &[u8], idle: Duration) -> Result<(), BodyError>
where
    W: AsyncWrite + Unpin,
{
    tokio::time::timeout(idle, dst.write_all(bytes))
        .await
        .map_err(|_| BodyError::WriteTimeout(idle))?
        .map_err(BodyError::Write)
}

/// Where a chunked body is: a strict parser of the chunk framing that follows it byte by byte
/// without buffering, so that the end of the body is known exactly (bare LFs, overlong sizes and
/// oversized lines are refused: they are how requests get smuggled).
#[derive(Debug)]
pub(crate) struct Chunked {
    state: ChunkState,
    /// Bytes in the current size line, or in the trailer section.
    line: usize,
    /// Payload announced so far, and the most allowed.
    total: u64,
    limit: u64,
}

impl Default for Chunked {
    fn default() -> Self {
        Self {
            state: ChunkState::default(),
            line: 0,
            total: 0,
            limit: u64::MAX,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    SizeStart,
    Size(u64),
    /// Whitespace after the size, before `;` or the line's end.
    SizeSpace(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

// === impl Chunked ===

impl Chunked {
    pub(crate) fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Follows `input` until the body's end or the input's; returns the bytes consumed and
    /// hands every piece of payload to `data`.
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        data: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, BodyError> {
        use ChunkState::*;
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                Done => break,
                Data(left) => {
                    let take = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    data(&input[i..i + take]);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 { DataCr } else { Data(left) };
                    continue;
                }
                SizeStart => {
                    self.line = 0;
                    Size(u64::from(
                        hex(b).ok_or(BodyError::Chunked("chunk size is not hex"))?,
                    ))
                }
                Size(n) => match (b, hex(b)) {
                    (_, Some(d)) => {
                        // `line` counts the digits so far: 16 hex digits fill a u64.
                        if self.line >= 16 {
                            return Err(BodyError::Chunked("chunk size over 16 hex digits"));
                        }
                        Size(n << 4 | u64::from(d))
                    }
                    (b' ' | b'\t', _) => SizeSpace(n),
                    (b';', _) => Extension(n),
                    (b'\r', _) => SizeLf(n),
                    _ => return Err(BodyError::Chunked("invalid chunk size line")),
                },
                SizeSpace(n) => match b {
                    b' ' | b'\t' => SizeSpace(n),
                    b';' => Extension(n),
                    b'\r' => SizeLf(n),
                    _ => return Err(BodyError::Chunked("invalid chunk size line")),
                },
                Extension(n) => match b {
                    b'\r' => SizeLf(n),
                    b'\t' | b' '..=b'~' | 0x80.. => Extension(n),
                    _ => return Err(BodyError::Chunked("invalid chunk extension")),
                },
                SizeLf(n) => match b {
                    b'\n' => {
                        self.total = self.total.saturating_add(n);
                        if self.total > self.limit {
                            return Err(BodyError::TooLarge);
                        }
                        // The limits count the trailers, or the next size line, afresh.
                        self.line = 0;
                        i += 1;
                        self.state = if n == 0 { TrailerStart } else { Data(n) };
                        continue;
                    }
                    _ => return Err(BodyError::Chunked("chunk size line without CRLF")),
                },
                DataCr => match b {
                    b'\r' => DataLf,
                    _ => return Err(BodyError::Chunked("chunk data longer than its size")),
                },
                DataLf => match b {
                    b'\n' => SizeStart,
                    _ => return Err(BodyError::Chunked("chunk data without CRLF")),
                },
                TrailerStart => match b {
                    b'\r' => EndLf,
                    b'\t' | b' '..=b'~' | 0x80.. => Trailer,
                    _ => return Err(BodyError::Chunked("invalid byte in trailers")),
                },
                Trailer => match b {
                    b'\r' => TrailerLf,
                    b'\t' | b' '..=b'~' | 0x80.. => Trailer,
                    _ => return Err(BodyError::Chunked("invalid byte in trailers")),
                },
                TrailerLf => match b {
                    b'\n' => TrailerStart,
                    _ => return Err(BodyError::Chunked("trailer line without CRLF")),
                },
                EndLf => match b {
                    b'\n' => {
                        self.state = Done;
                        i += 1;
                        break;
                    }
                    _ => return Err(BodyError::Chunked("chunked body without final CRLF")),
                },
            };
            i += 1;
            self.line += 1;
            let limit = match self.state {
                TrailerStart | Trailer | TrailerLf | EndLf => MAX_TRAILERS,
                _ => MAX_CHUNK_LINE,
            };
            if self.line > limit && !matches!(self.state, Data(_)) {
                return Err(BodyError::Chunked("chunk size line or trailers too long"));
            }
        }
        Ok(i)
    }
}

fn hex(b: u8) -> Option<u8> {
    // A hex digit's value is below 16, so it fits.
    char::from(b).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests;
