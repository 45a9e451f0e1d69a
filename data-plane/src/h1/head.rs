//! Writing head lines, and our own responses (errors, `100 Continue`) in HTTP/1.1.

use http::StatusCode;

use crate::pipeline::{LocalResponse, headers::HOP_BY_HOP, request_id::RequestId};

/// Whether a header name is `lower` (the name as sent may be in any case).
#[inline]
pub(crate) fn is(name: &str, lower: &str) -> bool {
    name.len() == lower.len() && name.eq_ignore_ascii_case(lower)
}

/// Whether a header is hop-by-hop by its name alone.
#[inline]
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|hop| is(name, hop))
}

/// What the `Connection` headers of a message say.
#[derive(Debug, Default)]
pub(crate) struct ConnectionOptions<'b> {
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
    /// `upgrade` is listed: the client asks to switch protocols.
    pub(crate) upgrade: bool,
    /// Other names listed: hop-by-hop for this message.
    listed: Vec<&'b str>,
}

impl<'b> ConnectionOptions<'b> {
    /// Takes in one `Connection` header value.
    pub(crate) fn add(&mut self, value: &'b [u8]) {
        for token in value.split(|&b| b == b',') {
            let token = token.trim_ascii();
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else if let Ok(token) = std::str::from_utf8(token)
                && !token.is_empty()
            {
                self.listed.push(token);
            }
        }
    }

    /// Whether a header stays on this hop: hop-by-hop by name, or listed here.
    pub(crate) fn drops(&self, name: &str) -> bool {
        is_hop_by_hop(name) || self.listed.iter().any(|l| l.eq_ignore_ascii_case(name))
    }
}

/// A Content-Length value: digits only, at most 18 of them (no sign, no list, no overflow).
pub(crate) fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

#[inline]
pub(crate) fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

pub(crate) fn write_content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    write_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

pub(crate) fn write_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(decimal(n, &mut [0u8; 20]));
}

/// `n` in decimal, written at the end of `digits`.
pub(crate) fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[i..]
}

/// The interim response a client that sent `Expect: 100-continue` waits for.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The gateway's own response, appended to `out`.
pub(crate) fn write_local(
    out: &mut Vec<u8>,
    response: LocalResponse,
    request_id: &RequestId,
    close: bool,
) {
    write_status_line(out, response.status);
    for (name, value) in &response.headers {
        write_header(out, name.as_str(), value.as_bytes());
    }
    write_content_length(out, response.body.len() as u64);
    write_header(out, "x-request-id", request_id.as_bytes());
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&response.body);
}

fn write_status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimals() {
        for n in [0, 7, 10, 97, 1_000_000, u64::MAX] {
            let mut out = Vec::new();
            super::write_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
