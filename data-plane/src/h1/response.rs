//! The response head from the upstream: parsed, its framing decided, and rewritten for the
//! client (hop-by-hop headers out, our framing and request id in).

use std::mem::MaybeUninit;

use http::{HeaderName, HeaderValue};

use super::{
    body::Framing,
    head::{
        ConnectionOptions, decimal, is, parse_length, write_content_length, write_decimal,
        write_header,
    },
};
use crate::{
    limits::{MAX_HEADER_BYTES, MAX_HEADERS},
    pipeline::request_id::RequestId,
    table::HeaderEdits,
};

/// What the client asked, which shapes the response it gets.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Asked<'a> {
    pub(crate) is_head: bool,
    pub http10: bool,
    /// The client wants to keep the connection, and we are not draining.
    pub(crate) keep_alive: bool,
    /// The request asked to switch protocols (HTTP/1 only): a 101 is relayed.
    pub(crate) upgrade: bool,
    pub(crate) request_id: &'a RequestId,
    /// The rule's response header edits, and headers a policy adds (CORS).
    pub(crate) edits: &'a HeaderEdits,
    pub(crate) extra: &'a [(HeaderName, HeaderValue)],
    /// Statuses this try gives up on rather than relay (a retry will follow).
    pub(crate) retry_on: &'a [u16],
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) enum Head {
    /// A 1xx other than 101: dropped (we asked for no upgrade and sent no `Expect`).
    Interim {
        head_len: usize,
    },
    Final(Response),
}

/// A final response whose client head is in the caller's buffer.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) head_len: usize,
    pub(crate) status: u16,
    /// How the upstream delimits the body.
    pub(crate) framing: Framing,
    /// Strip the chunk framing for an HTTP/1.0 client.
    pub(crate) decode: bool,
    /// The upstream connection may carry another request afterwards.
    pub(crate) reusable: bool,
    /// The client connection stays open afterwards.
    pub(crate) keep_alive: bool,
    /// A 101 to an upgrade: the two connections are joined from here on.
    pub(crate) upgraded: bool,
}

/// Where the rewritten response head goes: bytes for an HTTP/1 client, or one field at a time
/// for a front end with its own encoding (HTTP/2's HPACK).
pub(crate) enum Sink<'o> {
    Bytes(&'o mut Vec<u8>),
    Fields(&'o mut dyn FieldSink),
}

/// Takes a response head field by field: the status first, then each header. Names come as
/// the upstream spelled them (any case).
pub(crate) trait FieldSink {
    fn status(&mut self, status: u16);
    fn field(&mut self, name: &str, value: &[u8]);
}

/// Parses the response head at the front of `buf`; `Ok(None)` if incomplete. The head for the
/// client is appended to `out`.
pub(crate) fn parse(
    buf: &[u8],
    asked: Asked<'_>,
    out: &mut Vec<u8>,
) -> Result<Option<Head>, &'static str> {
    parse_into(buf, asked, Sink::Bytes(out))
}

/// Like [`parse`], with the rewritten head going to `sink`. The same headers are kept,
/// dropped and added whichever sink it is.
pub(crate) fn parse_into(
    buf: &[u8],
    asked: Asked<'_>,
    sink: Sink<'_>,
) -> Result<Option<Head>, &'static str> {
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEADER_BYTES => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEADER_BYTES => return Ok(None),
        Ok(_) => return Err("response head over 64 KiB"),
        Err(_) => return Err("invalid response head"),
    };
    let (Some(status), Some(version)) = (res.code, res.version) else {
        return Err("incomplete status line");
    };
    if status == 101 {
        return match sink {
            Sink::Bytes(out) if asked.upgrade => {
                switching(out, res.headers, asked);
                Ok(Some(Head::Final(Response {
                    head_len,
                    status,
                    framing: Framing::Empty,
                    decode: false,
                    reusable: false,
                    keep_alive: false,
                    upgraded: true,
                })))
            }
            _ => Err("unexpected 101 Switching Protocols"),
        };
    }
    if (100..200).contains(&status) {
        return Ok(Some(Head::Interim { head_len }));
    }

    let mut length = None;
    let mut chunked = false;
    let mut other_coding = false;
    let mut connection = ConnectionOptions::default();
    for h in res.headers.iter() {
        if is(h.name, "content-length") {
            let n = parse_length(h.value).ok_or("invalid content-length")?;
            if length.is_some_and(|m| m != n) {
                return Err("conflicting content-length headers");
            }
            length = Some(n);
        } else if is(h.name, "transfer-encoding") {
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
            other_coding |= !chunked || h.value.contains(&b',');
        } else if is(h.name, "connection") {
            connection.add(h.value);
        }
    }
    let no_body = asked.is_head || status == 204 || status == 304;
    let framing = if no_body {
        Framing::Empty
    } else if chunked && !other_coding {
        Framing::Chunked
    } else if other_coding {
        Framing::UntilClose
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    let reusable = !connection.close
        && (version == 1 || connection.keep_alive)
        && framing != Framing::UntilClose
        && !(chunked && length.is_some());
    // HTTP/1.0 clients cannot read chunks, and HTTP/2 frames the payload itself.
    let decode = framing == Framing::Chunked && (asked.http10 || matches!(sink, Sink::Fields(_)));
    let client_keep_alive = asked.keep_alive && framing != Framing::UntilClose && !decode;

    let ours = matches!(framing, Framing::Length(_) | Framing::Chunked);
    let kept = res.headers.iter().filter(|h| {
        let hop = connection.drops(h.name)
            || is(h.name, "x-request-id")
            || (ours && is(h.name, "content-length"));
        !hop && !asked.edits.drops(h.name)
    });
    let kept = kept.map(|h| (h.name, h.value));
    let reason = res.reason.unwrap_or_default();
    // HTTP/2 frames the body itself; a length is kept as the client's hint.
    let announced = if decode { Framing::Empty } else { framing };
    write_rewritten(
        sink,
        status,
        reason,
        kept,
        asked,
        announced,
        client_keep_alive,
    );
    Ok(Some(Head::Final(Response {
        head_len,
        status,
        framing,
        decode,
        reusable,
        keep_alive: client_keep_alive,
        upgraded: false,
    })))
}

/// The client's `101 Switching Protocols`: the upstream's, whose `Connection` and `Upgrade`
/// are for the client this time, with our request id.
fn switching(out: &mut Vec<u8>, headers: &[httparse::Header<'_>], asked: Asked<'_>) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    for h in headers {
        let ours = is(h.name, "x-request-id") || asked.edits.drops(h.name);
        if !ours {
            write_header(out, h.name, h.value);
        }
    }
    for (name, value) in asked.edits.appended() {
        write_header(out, name.as_str(), value.as_bytes());
    }
    write_header(out, "x-request-id", asked.request_id.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The response head as the client gets it, for either sink: the status, the upstream's
/// headers that are kept, the ones the rule and the policies add, then our framing (`announced`:
/// a length or chunks; nothing else is written), and for HTTP/1 the request id and what the
/// connection does next. The same headers whichever sink it is.
fn write_rewritten<'h>(
    sink: Sink<'_>,
    status: u16,
    reason: &str,
    kept: impl Iterator<Item = (&'h str, &'h [u8])>,
    asked: Asked<'_>,
    announced: Framing,
    keep_alive: bool,
) {
    let added = asked.edits.appended().iter().chain(asked.extra);
    match sink {
        Sink::Bytes(out) => {
            out.extend_from_slice(b"HTTP/1.1 ");
            write_decimal(out, u64::from(status));
            out.push(b' ');
            out.extend_from_slice(reason.as_bytes());
            out.extend_from_slice(b"\r\n");
            for (name, value) in kept {
                write_header(out, name, value);
            }
            for (name, value) in added {
                write_header(out, name.as_str(), value.as_bytes());
            }
            match announced {
                Framing::Length(n) => write_content_length(out, n),
                Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
                _ => {}
            }
            write_header(out, "x-request-id", asked.request_id.as_bytes());
            if !keep_alive {
                out.extend_from_slice(b"connection: close\r\n");
            } else if asked.http10 {
                out.extend_from_slice(b"connection: keep-alive\r\n");
            }
            out.extend_from_slice(b"\r\n");
        }
        Sink::Fields(fields) => {
            // HTTP/2 frames the body itself: a length is only the client's hint.
            fields.status(status);
            for (name, value) in kept {
                fields.field(name, value);
            }
            for (name, value) in added {
                fields.field(name.as_str(), value.as_bytes());
            }
            if let Framing::Length(n) = announced {
                fields.field("content-length", decimal(n, &mut [0u8; 20]));
            }
        }
    }
}

/// How an HTTP/2 upstream's response goes to an HTTP/1 client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Relayed {
    pub(crate) framing: Framing,
    pub(crate) keep_alive: bool,
}

/// An HTTP/2 upstream's response head, rewritten for the client as an HTTP/1.1 one is: the same
/// headers dropped and added. HTTP/2 has no hop-by-hop headers and frames the body itself, so
/// an HTTP/1 client gets a length when the upstream gave one, chunks otherwise (an HTTP/1.0
/// client: the body until the connection closes).
pub(crate) fn rewrite_parts(
    status: u16,
    headers: &http::HeaderMap,
    asked: Asked<'_>,
    sink: Sink<'_>,
) -> Relayed {
    let no_body = asked.is_head || status == 204 || status == 304;
    let length = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| parse_length(v.as_bytes()));
    let framing = match (no_body, length) {
        (true, _) | (false, Some(0)) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
        (false, None) if asked.http10 => Framing::UntilClose,
        (false, None) => Framing::Chunked,
    };
    let keep_alive = asked.keep_alive && framing != Framing::UntilClose;
    let kept = headers.iter().filter(|(name, _)| {
        let ours = *name == "x-request-id" || *name == http::header::CONTENT_LENGTH;
        !ours && !asked.edits.drops(name.as_str())
    });
    let kept = kept.map(|(name, value)| (name.as_str(), value.as_bytes()));
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let announced = match (&sink, length) {
        // The upstream's length goes to an HTTP/2 client even for a HEAD, as its hint.
        (Sink::Fields(_), Some(n)) => Framing::Length(n),
        _ => framing,
    };
    write_rewritten(sink, status, reason, kept, asked, announced, keep_alive);
    Relayed {
        framing,
        keep_alive,
    }
}
