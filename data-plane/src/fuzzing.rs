//! Entry points for the fuzz targets (`fuzz/`) and their corpus replay in `cargo test`: the
//! HTTP/1 request-head parser and the chunked-body parser, reached through the same code the
//! front end runs. Not an API.

use std::{borrow::Cow, sync::Arc};

use gateway_proto::v1::Snapshot;
use prost::Message as _;

use crate::{
    CompileError,
    h1::{Chunked, parse_request},
    normalize::normalize_path,
    pipeline::Connection,
    side::SideTables,
    state::{Settings, State},
    table::{Source, Table},
};

/// A connection of a data plane serving a small table (routes with filters and policies), to
/// parse request heads against.
#[derive(Debug)]
pub struct HeadParser {
    conn: Arc<Connection>,
}

const CONFIG: &str = "
kind: Upstream
name: u
spec: { endpoints: [{ address: 127.0.0.1:9 }] }
---
kind: Policy
name: limits
spec: { requestLimits: { maxBodyBytes: 64, maxUriBytes: 256, maxHeaderBytes: 1024 } }
---
kind: Route
name: r
spec:
  policies: [limits]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /a } }]
      filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: x-a, value: '1' }], remove: [x-b] } }]
      backendRefs: [{ name: u }]
    - matches: [{ path: { type: PathPrefix, value: /r } }]
      filters: [{ type: URLRewrite, urlRewrite: { hostname: h.internal, path: { type: ReplacePrefixMatch, replacePrefixMatch: /x } } }]
      backendRefs: [{ name: u }]
";

/// What parsing a head gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Needs more bytes.
    Partial,
    /// Refused; the client gets this status.
    Refused(u16),
    /// Complete: its length, and the upstream head written when it was routed.
    Complete {
        head_len: usize,
        upstream_head: Option<Vec<u8>>,
    },
}

impl Default for HeadParser {
    fn default() -> Self {
        let state = Arc::new(State::new(Settings::default()));
        // A fixed, valid config: a failure here is a defect of this module, not an input.
        let resources = gateway_proto::document::parse_documents(CONFIG).expect("CONFIG parses");
        let table = Table::compile(1, &resources, Source::File, state.side()).expect("compiles");
        state.install(table);
        let conn = Arc::new(Connection::new(state, ([127, 0, 0, 1], 4000).into()));
        Self { conn }
    }
}

impl HeadParser {
    /// Parses a request head at the front of `bytes`, as the HTTP/1 front end does.
    pub fn parse(&self, bytes: &[u8]) -> Parsed {
        let mut out = Vec::new();
        match parse_request(bytes, &self.conn, &mut out, None) {
            Ok(None) => Parsed::Partial,
            Err(error) => Parsed::Refused(error.status().as_u16()),
            Ok(Some(request)) => Parsed::Complete {
                head_len: request.head_len,
                upstream_head: matches!(request.route, crate::h1::Route::Forward(_)).then_some(out),
            },
        }
    }
}

/// Follows a chunked body fed in pieces cut at `pieces` (each taken modulo the input's
/// length): the bytes consumed, the payload, whether the body ended, or the error. However it
/// is cut, the answer must be the same: the parser keeps no state in the cut.
pub fn chunked(input: &[u8], pieces: &[usize]) -> Result<(usize, Vec<u8>, bool), String> {
    let mut chunked = Chunked::default();
    let mut payload = Vec::new();
    let mut at = 0;
    let mut cuts: Vec<usize> = pieces.iter().map(|p| p % (input.len() + 1)).collect();
    cuts.push(input.len());
    cuts.sort_unstable();
    for cut in cuts {
        if cut <= at {
            continue;
        }
        let piece = &input[at..cut];
        let used = chunked
            .feed(piece, &mut |data| payload.extend_from_slice(data))
            .map_err(|e| e.to_string())?;
        at += used;
        // Less than the piece: the body ended inside it, and the rest follows the body.
        if used < piece.len() || chunked.is_done() {
            break;
        }
    }
    Ok((at, payload, chunked.is_done()))
}

/// Splits a fuzz input into cut positions and a body: the first byte is the number of cuts
/// (at most 16), then two bytes (little-endian) per cut, then the body.
pub fn split_input(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let n = usize::from(n % 17).min(rest.len() / 2);
    let (cuts, body) = rest.split_at(n * 2);
    let cuts = cuts
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    (cuts, body)
}

/// The chunked target's check: cut or whole, the same answer.
pub fn check_chunked(data: &[u8]) -> Result<(), String> {
    let (cuts, body) = split_input(data);
    let whole = chunked(body, &[]);
    let pieces = chunked(body, &cuts);
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) if a != b => return Err(format!("whole {a:?}, cut at {cuts:?}: {b:?}")),
        (Ok(_), Err(_)) | (Err(_), Ok(_)) => {
            return Err(format!("whole {whole:?}, cut at {cuts:?}: {pieces:?}"));
        }
        _ => {}
    }
    if let Ok((used, payload, _)) = &whole
        && (*used > body.len() || payload.len() > *used)
    {
        return Err(format!(
            "consumed {used} of {}, payload {}",
            body.len(),
            payload.len()
        ));
    }
    Ok(())
}

/// The HTTP/2 header-block target's check (see `h2::check_header_blocks`): the input is cut
/// into blocks where its first bytes say, as [`split_input`] does for chunked bodies.
pub fn check_h2_headers(parser: &HeadParser, data: &[u8]) -> Result<(), String> {
    let (cuts, rest) = split_input(data);
    let mut blocks = Vec::new();
    let mut at = 0;
    for cut in cuts {
        let end = if rest.is_empty() {
            0
        } else {
            at + cut % (rest.len() - at + 1)
        };
        blocks.push(&rest[at..end]);
        at = end;
    }
    blocks.push(&rest[at..]);
    crate::h2::check_header_blocks(&parser.conn, &blocks)
}

/// The HTTP/2 connection target's check: a client that sends the preface, an empty SETTINGS
/// and then `data` as raw bytes (frames or not), and closes its side. The connection must end
/// (not hang), whatever it sent back, and nothing may panic. Requests it forwards go to the
/// table's upstream on a closed port (refused at once).
pub fn check_h2_connection(parser: &HeadParser, data: &[u8]) -> Result<(), String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("no runtime: {e}"))?;
    runtime.block_on(async {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let serving = tokio::spawn(crate::h2::serve(
            server,
            Vec::new(),
            parser.conn.clone(),
            stopped,
        ));
        let (mut read, mut write) = tokio::io::split(client);
        let send = async {
            let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
            start.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
            // The server may close first; what it did not read does not matter.
            let _ = write.write_all(&start).await;
            let _ = write.write_all(data).await;
            let _ = write.shutdown().await;
        };
        let receive = async {
            let mut sink = Vec::new();
            let _ = read.read_to_end(&mut sink).await;
        };
        let both = async { tokio::join!(send, receive) };
        if tokio::time::timeout(std::time::Duration::from_secs(10), both)
            .await
            .is_err()
        {
            return Err("the connection did not end within 10 s of the client's close".into());
        }
        match tokio::time::timeout(std::time::Duration::from_secs(10), serving).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("the connection task failed: {e}")),
            Err(_) => Err("the connection task did not end".into()),
        }
    })
}

/// The HTTP/1 head target's check: a complete head ends within the input, and the upstream
/// head written for it is a complete request that parses.
pub fn check_head(parser: &HeadParser, data: &[u8]) -> Result<(), String> {
    if let Parsed::Complete {
        head_len,
        upstream_head,
    } = parser.parse(data)
    {
        if head_len > data.len() {
            return Err(format!("head of {head_len} bytes in {}", data.len()));
        }
        if let Some(head) = upstream_head {
            let mut headers = [httparse::EMPTY_HEADER; 256];
            let mut req = httparse::Request::new(&mut headers);
            if !matches!(req.parse(&head), Ok(httparse::Status::Complete(n)) if n == head.len()) {
                return Err(format!(
                    "the upstream head does not parse: {:?}",
                    String::from_utf8_lossy(&head)
                ));
            }
        }
    }
    Ok(())
}

/// The path normaliser's check: an accepted path is a fixed point, absolute, with no `//`, no
/// dot segment, no backslash or control byte, and only upper-case escapes that are not `%2F`
/// and decode to UTF-8.
pub fn check_normalize_path(data: &[u8]) -> Result<(), String> {
    let Ok(path) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let Ok(out) = normalize_path(path) else {
        return Ok(());
    };
    let fail = |what: &str| Err(format!("{what}: {path:?} -> {out:?}"));
    if matches!(&out, Cow::Owned(owned) if owned == path) {
        return fail("allocated for an unchanged path");
    }
    if !matches!(normalize_path(&out), Ok(Cow::Borrowed(again)) if again == out) {
        return fail("not idempotent");
    }
    if !out.starts_with('/') || out.contains("//") {
        return fail("not absolute, or slashes not merged");
    }
    if out
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return fail("dot segment left");
    }
    if out.bytes().any(|b| b == b'\\' || b < 0x20 || b == 0x7F) {
        return fail("backslash or control byte left");
    }
    let bytes = out.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let escape = out.get(i + 1..i + 3).unwrap_or_default();
            let canonical = escape.len() == 2
                && escape
                    .bytes()
                    .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(&h));
            if !canonical || escape == "2F" {
                return fail("bad, lower-case or slash escape left");
            }
            decoded.push(u8::from_str_radix(escape, 16).unwrap_or_default());
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    if std::str::from_utf8(&decoded).is_err() {
        return fail("escapes do not decode to UTF-8");
    }
    Ok(())
}

/// The snapshot check: validation and compile agree (what validation accepts compiles, what it
/// refuses compile refuses with the same errors).
pub fn check_snapshot_compile(data: &[u8]) -> Result<(), String> {
    let Ok(snapshot) = Snapshot::decode(data) else {
        return Ok(());
    };
    let validated = gateway_proto::validate(&snapshot.resources);
    let compiled = Table::compile(
        snapshot.version,
        &snapshot.resources,
        Source::File,
        &SideTables::default(),
    );
    match (validated, compiled) {
        (Ok(()), Ok(_)) => Ok(()),
        (Err(errors), Err(CompileError::Invalid(again))) if errors == again => Ok(()),
        (Ok(()), Err(error)) => Err(format!("validation accepted what compile refused: {error}")),
        (Err(errors), Ok(_)) => Err(format!(
            "compile accepted what validation refused: {errors}"
        )),
        (Err(errors), Err(error)) => Err(format!(
            "validation refused ({errors}) but compile failed otherwise: {error}"
        )),
    }
}
