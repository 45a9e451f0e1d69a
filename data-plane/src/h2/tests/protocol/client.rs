//! A raw HTTP/2 client: frames go out exactly as a test builds them (so that it can send what
//! no well-behaved client would) and come back one by one, CONTINUATIONs joined to their HEADERS
//! and header blocks decoded.

use std::{fmt, net::SocketAddr, time::Duration};

use bytes::{Buf, BytesMut};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};

use crate::h2::hpack::Decoder;

pub(super) const PATIENCE: Duration = Duration::from_secs(10);

// RFC 9113's numbers, written out rather than taken from the server's `frame` module: a wrong
// constant there must not be able to hide behind the same constant here.
pub(super) const DATA: u8 = 0x0;
pub(super) const HEADERS: u8 = 0x1;
pub(super) const RST_STREAM: u8 = 0x3;
pub(super) const SETTINGS: u8 = 0x4;
pub(super) const PING: u8 = 0x6;
pub(super) const GOAWAY: u8 = 0x7;
pub(super) const WINDOW_UPDATE: u8 = 0x8;
pub(super) const CONTINUATION: u8 = 0x9;

pub(super) const END_STREAM: u8 = 0x1;
pub(super) const ACK: u8 = 0x1;
pub(super) const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

pub(super) const NO_ERROR: u32 = 0x0;
pub(super) const PROTOCOL_ERROR: u32 = 0x1;
pub(super) const FRAME_SIZE_ERROR: u32 = 0x6;
pub(super) const CANCEL: u32 = 0x8;
pub(super) const COMPRESSION_ERROR: u32 = 0x9;
pub(super) const ENHANCE_YOUR_CALM: u32 = 0xb;

pub(super) const INITIAL_WINDOW_SIZE: u16 = 0x4;
/// SETTINGS_MAX_FRAME_SIZE's initial value: what either side may send before any SETTINGS.
pub(super) const MAX_FRAME: usize = 16_384;
const DEFAULT_WINDOW: i64 = 65_535;

pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub(super) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub(super) fn settings(values: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in values {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &payload)
}

pub(super) fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    frame(WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

/// A header block as HEADERS and as many CONTINUATIONs as it needs, each within MAX_FRAME.
pub(super) fn header_frames(stream: u32, block: &[u8], end_stream: bool) -> Vec<u8> {
    let chunks: Vec<&[u8]> = block.chunks(MAX_FRAME).collect();
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut flags = if i + 1 == chunks.len() {
            END_HEADERS
        } else {
            0
        };
        let kind = if i == 0 {
            flags |= if end_stream { END_STREAM } else { 0 };
            HEADERS
        } else {
            CONTINUATION
        };
        out.extend(frame(kind, flags, stream, chunk));
    }
    out
}

/// An HPACK header block built by hand (RFC 7541): no Huffman, no dynamic table.
#[derive(Clone, Debug, Default)]
pub(super) struct Block(pub(super) Vec<u8>);

impl Block {
    /// `:method GET`, `:scheme http`, `path`, `:authority gw.test`.
    pub(super) fn get(path: &str) -> Self {
        Self::default()
            .indexed(2)
            .indexed(6)
            .named(4, path.as_bytes())
            .named(1, b"gw.test")
    }

    pub(super) fn post(path: &str) -> Self {
        Self::default()
            .indexed(3)
            .indexed(6)
            .named(4, path.as_bytes())
            .named(1, b"gw.test")
    }

    /// An indexed field from the static table.
    pub(super) fn indexed(mut self, index: usize) -> Self {
        integer(&mut self.0, 0x80, 7, index);
        self
    }

    /// A literal without indexing whose name is static entry `index`.
    pub(super) fn named(mut self, index: usize, value: &[u8]) -> Self {
        integer(&mut self.0, 0, 4, index);
        string(&mut self.0, value);
        self
    }

    /// A literal without indexing with a new name.
    pub(super) fn field(mut self, name: &[u8], value: &[u8]) -> Self {
        self.0.push(0);
        string(&mut self.0, name);
        string(&mut self.0, value);
        self
    }
}

fn integer(out: &mut Vec<u8>, flags: u8, prefix: u8, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.push(value as u8);
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    integer(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// A frame from the server; `payload` is without padding, `len` the frame's whole length (what
/// flow control counts).
pub(super) struct Frame {
    pub(super) kind: u8,
    pub(super) flags: u8,
    pub(super) stream: u32,
    pub(super) len: usize,
    pub(super) payload: Vec<u8>,
    /// A header block's fields, decoded.
    pub(super) fields: Vec<(String, String)>,
}

impl Frame {
    pub(super) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    pub(super) fn is(&self, kind: u8, stream: u32) -> bool {
        self.kind == kind && self.stream == stream
    }

    /// The error code of a RST_STREAM or GOAWAY.
    pub(super) fn code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }

    /// A WINDOW_UPDATE's increment, or GOAWAY's last stream id.
    pub(super) fn u31(&self) -> u32 {
        u32::from_be_bytes(self.payload[..4].try_into().unwrap()) & 0x7fff_ffff
    }
}

// Not the payload: a DATA frame's 16 KiB would bury a failure's message.
impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            "DATA",
            "HEADERS",
            "PRIORITY",
            "RST_STREAM",
            "SETTINGS",
            "PUSH_PROMISE",
            "PING",
            "GOAWAY",
            "WINDOW_UPDATE",
            "CONTINUATION",
        ];
        let kind = names.get(usize::from(self.kind)).unwrap_or(&"unknown");
        write!(
            f,
            "{kind}(stream {}, flags {:#x}, {} bytes",
            self.stream, self.flags, self.len
        )?;
        match self.kind {
            RST_STREAM if self.payload.len() >= 4 => write!(f, ", code {:#x}", self.code())?,
            GOAWAY if self.payload.len() >= 8 => write!(f, ", code {:#x}", self.code())?,
            HEADERS => write!(f, ", {:?}", self.fields)?,
            _ => {}
        }
        write!(f, ")")
    }
}

/// A stream's response, read to its END_STREAM.
#[derive(Debug)]
pub(super) struct Response {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
    /// Kind and flags of each of the stream's frames, in order.
    pub(super) frames: Vec<(u8, u8)>,
}

#[derive(Debug)]
pub(super) struct Client {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    buf: BytesMut,
    decoder: Decoder,
    /// The server's SETTINGS_INITIAL_WINDOW_SIZE, and what it let us send on the connection,
    /// as `open` left them.
    pub(super) initial_window: i64,
    pub(super) conn_window: i64,
    /// What `response` and `goaway` read that was not theirs.
    pub(super) stray: Vec<Frame>,
}

impl Client {
    /// A connection with nothing sent yet.
    pub(super) async fn connect(addr: SocketAddr) -> Self {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        Self {
            read,
            write,
            buf: BytesMut::with_capacity(64 * 1024),
            decoder: Decoder::default(),
            initial_window: DEFAULT_WINDOW,
            conn_window: DEFAULT_WINDOW,
            stray: Vec::new(),
        }
    }

    /// The preface and `values`; returns once the server's SETTINGS has been acknowledged and
    /// ours has been.
    pub(super) async fn open(addr: SocketAddr, values: &[(u16, u32)]) -> Self {
        let mut client = Self::connect(addr).await;
        let mut hello = PREFACE.to_vec();
        hello.extend(settings(values));
        client.send(&hello).await;
        let first = client.expect().await;
        assert!(
            first.is(SETTINGS, 0) && !first.has(ACK),
            "the server's preface is a SETTINGS frame (RFC 9113 §3.4): {first:?}"
        );
        for entry in first.payload.chunks_exact(6) {
            if u16::from_be_bytes([entry[0], entry[1]]) == INITIAL_WINDOW_SIZE {
                client.initial_window =
                    i64::from(u32::from_be_bytes(entry[2..6].try_into().unwrap()));
            }
        }
        client.send(&frame(SETTINGS, ACK, 0, &[])).await;
        loop {
            let next = client.expect().await;
            match (next.kind, next.stream) {
                (SETTINGS, 0) if next.has(ACK) => return client,
                (WINDOW_UPDATE, 0) => client.conn_window += i64::from(next.u31()),
                _ => panic!("before the SETTINGS ACK: {next:?}"),
            }
        }
    }

    pub(super) async fn send(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.unwrap();
    }

    /// A request without a body, on `stream`.
    pub(super) async fn get(&mut self, stream: u32, path: &str) {
        let block = Block::get(path);
        self.send(&header_frames(stream, &block.0, true)).await;
    }

    /// The next frame; `None` once the server has closed the connection.
    pub(super) async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(
            PATIENCE,
            read_frame(&mut self.read, &mut self.buf, &mut self.decoder),
        )
        .await
        .expect("a frame or the connection's end in time")
    }

    pub(super) async fn expect(&mut self) -> Frame {
        self.next()
            .await
            .expect("a frame, not the connection's end")
    }

    /// Sends a PING and returns what came before its ACK: the server handles frames in order,
    /// so whatever it did in answer to what was sent before the PING has been sent by then.
    pub(super) async fn ping(&mut self, data: [u8; 8]) -> Vec<Frame> {
        self.send(&frame(PING, 0, 0, &data)).await;
        let mut before = Vec::new();
        loop {
            let next = self.expect().await;
            if next.is(PING, 0) && next.has(ACK) && next.payload == data {
                return before;
            }
            before.push(next);
        }
    }

    /// Reads `stream`'s response to its end; other streams' frames go to `stray`.
    pub(super) async fn response(&mut self, stream: u32) -> Response {
        let mut response = Response {
            status: 0,
            body: Vec::new(),
            frames: Vec::new(),
        };
        loop {
            let next = self.next().await;
            let next = next.unwrap_or_else(|| panic!("closed before stream {stream} ended"));
            // Window for the request body is no part of the response.
            if next.stream != stream || next.kind == WINDOW_UPDATE {
                self.stray.push(next);
                continue;
            }
            response.frames.push((next.kind, next.flags));
            match next.kind {
                HEADERS if response.status == 0 => {
                    let (name, value) = &next.fields[0];
                    assert_eq!(name, ":status", "{next:?}");
                    response.status = value.parse().unwrap();
                }
                DATA if response.status != 0 => response.body.extend_from_slice(&next.payload),
                _ => panic!("stream {stream}: {next:?} after {:?}", response.frames),
            }
            if next.has(END_STREAM) {
                return response;
            }
        }
    }

    /// Reads to the next GOAWAY; what came before goes to `stray`.
    pub(super) async fn goaway(&mut self) -> Frame {
        loop {
            let next = self.next().await;
            let next = next.unwrap_or_else(|| panic!("closed without GOAWAY: {:?}", self.stray));
            if next.kind == GOAWAY {
                return next;
            }
            self.stray.push(next);
        }
    }

    /// Writes `bytes` while reading to GOAWAY, for floods the server stops reading part way.
    pub(super) async fn flood_to_goaway(&mut self, bytes: &[u8]) -> Frame {
        let Self {
            read,
            write,
            buf,
            decoder,
            stray,
            ..
        } = self;
        let reading = async {
            loop {
                let next = tokio::time::timeout(PATIENCE, read_frame(read, buf, decoder))
                    .await
                    .expect("GOAWAY in time")
                    .expect("GOAWAY before the connection's end");
                if next.kind == GOAWAY {
                    return next;
                }
                stray.push(next);
            }
        };
        // The write may fail once the server closes: the GOAWAY is what is tested.
        let (goaway, _) = tokio::join!(reading, write.write_all(bytes));
        goaway
    }

    /// After a connection error's GOAWAY, the server closes (RFC 9113 §5.4.1) and says nothing
    /// more.
    pub(super) async fn expect_closed(&mut self) {
        let next = self.next().await;
        assert!(next.is_none(), "after GOAWAY: {next:?}");
    }
}

async fn read_frame(
    read: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    decoder: &mut Decoder,
) -> Option<Frame> {
    let (kind, flags, stream, mut payload) = raw_frame(read, buf).await?;
    let len = payload.len();
    let mut start = 0;
    let mut end = len;
    if matches!(kind, DATA | HEADERS) && flags & PADDED != 0 {
        start = 1;
        end -= usize::from(payload[0]);
    }
    if kind == HEADERS && flags & PRIORITY != 0 {
        start += 5;
    }
    payload = payload[start..end].to_vec();
    let mut flags = flags;
    if kind == HEADERS {
        while flags & END_HEADERS == 0 {
            let (next, more, on, rest) = raw_frame(read, buf).await?;
            assert!(
                next == CONTINUATION && on == stream,
                "a header block is contiguous (RFC 9113 §6.10), not kind {next} on {on}"
            );
            payload.extend_from_slice(&rest);
            flags |= more & END_HEADERS;
        }
    }
    let mut fields = Vec::new();
    if kind == HEADERS {
        decoder
            .decode(&payload, |name, value| {
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                fields.push((text(name), text(value)));
            })
            .expect("the server's header block decodes");
    }
    Some(Frame {
        kind,
        flags,
        stream,
        len,
        payload,
        fields,
    })
}

async fn raw_frame(read: &mut OwnedReadHalf, buf: &mut BytesMut) -> Option<(u8, u8, u32, Vec<u8>)> {
    fill(read, buf, 9).await?;
    let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
    fill(read, buf, 9 + len).await?;
    let (kind, flags) = (buf[3], buf[4]);
    let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
    buf.advance(9);
    let payload = buf.split_to(len).to_vec();
    Some((kind, flags, stream, payload))
}

/// `None` if the connection ends (or is reset) first.
async fn fill(read: &mut OwnedReadHalf, buf: &mut BytesMut, n: usize) -> Option<()> {
    while buf.len() < n {
        buf.reserve(n - buf.len());
        match read.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    Some(())
}
