//! A request's header block as the pipeline takes it: HPACK's fields checked against HTTP/2's
//! rules (RFC 9113 §8.2–8.3) and kept in one buffer, then seen as the header lines and target
//! an HTTP/1 request would have.

use std::ops::Range;

use crate::limits::MAX_HEADER_BYTES;

/// What is wrong with a header block, as the stream's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Problem {
    /// Malformed (RFC 9113 §8.1.1): the stream is reset with `PROTOCOL_ERROR`.
    Malformed(&'static str),
    /// Over the header list limit: answered 431.
    TooLarge,
}

/// The fields of one header block.
#[derive(Debug, Default)]
pub(super) struct Fields {
    buf: Vec<u8>,
    /// Regular fields: name and value ranges in `buf`.
    lines: Vec<(Range<usize>, Range<usize>)>,
    method: Option<Range<usize>>,
    scheme: Option<Range<usize>>,
    authority: Option<Range<usize>>,
    path: Option<Range<usize>>,
    /// `cookie` fields, joined into one line for the HTTP/1.1 upstream (RFC 9113 §8.2.3).
    cookies: usize,
    pub(super) content_length: Option<u64>,
    /// `content-type: application/grpc…`: the gateway's own errors are gRPC statuses.
    pub(super) grpc: bool,
    /// A gRPC call's `grpc-timeout`.
    pub(super) grpc_timeout: Option<std::time::Duration>,
    /// The header list size as RFC 9113 counts it (32 bytes of overhead per field).
    size: usize,
    problem: Option<Problem>,
}

/// The pseudo-headers and regular headers of a request, borrowed from [`Fields`].
pub(super) struct Parts<'f> {
    pub(super) method: &'f str,
    pub(super) path: &'f str,
    pub(super) authority: Option<&'f [u8]>,
}

impl Fields {
    pub(super) fn clear(&mut self) {
        self.buf.clear();
        self.lines.clear();
        self.method = None;
        self.scheme = None;
        self.authority = None;
        self.path = None;
        self.cookies = 0;
        self.content_length = None;
        self.grpc = false;
        self.grpc_timeout = None;
        self.size = 0;
        self.problem = None;
    }

    fn fail(&mut self, problem: Problem) {
        // The first problem wins, except that a malformed block is never answered 431.
        match (self.problem, problem) {
            (None, _) | (Some(Problem::TooLarge), Problem::Malformed(_)) => {
                self.problem = Some(problem);
            }
            _ => {}
        }
    }

    /// Takes one decoded field of a request's first header block.
    pub(super) fn add(&mut self, name: &[u8], value: &[u8]) {
        self.size += name.len() + value.len() + 32;
        if self.size > MAX_HEADER_BYTES {
            self.fail(Problem::TooLarge);
        }
        if self.problem.is_some() {
            return;
        }
        if !valid_value(value) {
            return self.fail(Problem::Malformed("invalid header value"));
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            if !self.lines.is_empty() {
                return self.fail(Problem::Malformed("pseudo-header after a regular header"));
            }
            let range = self.keep(value);
            let slot = match pseudo {
                b"method" => &mut self.method,
                b"scheme" => &mut self.scheme,
                b"authority" => &mut self.authority,
                b"path" => &mut self.path,
                _ => return self.fail(Problem::Malformed("unknown pseudo-header")),
            };
            if slot.replace(range).is_some() {
                self.fail(Problem::Malformed("repeated pseudo-header"));
            }
            return;
        }
        if !valid_name(name) {
            return self.fail(Problem::Malformed("invalid header name"));
        }
        match name {
            b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding"
            | b"upgrade" => {
                return self.fail(Problem::Malformed("connection-specific header"));
            }
            b"te" if value != b"trailers" => {
                return self.fail(Problem::Malformed("te other than trailers"));
            }
            b"content-length" => {
                let n = crate::h1::parse_length(value);
                match (n, self.content_length) {
                    (None, _) => return self.fail(Problem::Malformed("invalid content-length")),
                    (Some(n), Some(m)) if n != m => {
                        return self.fail(Problem::Malformed("conflicting content-length"));
                    }
                    (n, _) => self.content_length = n,
                }
            }
            b"cookie" => self.cookies += 1,
            b"content-type" => self.grpc = value.starts_with(b"application/grpc"),
            b"grpc-timeout" => self.grpc_timeout = crate::h2_client::grpc_timeout(value),
            _ => {}
        }
        let name = self.keep(name);
        let value = self.keep(value);
        self.lines.push((name, value));
    }

    fn keep(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        start..self.buf.len()
    }

    /// The block is complete: checks what only the whole block can show (the pseudo-headers
    /// a request needs), and returns the first problem found.
    pub(super) fn complete(&mut self) -> Option<Problem> {
        let problem = match (&self.method, &self.scheme, &self.path) {
            (Some(_), Some(scheme), Some(path)) => {
                let path = &self.buf[path.clone()];
                if path.is_empty() || scheme.is_empty() {
                    Some(Problem::Malformed("empty :path or :scheme"))
                } else if !path.iter().all(|&b| (0x21..0x7f).contains(&b)) {
                    Some(Problem::Malformed("invalid :path"))
                } else {
                    None
                }
            }
            _ => Some(Problem::Malformed("missing :method, :scheme or :path")),
        };
        if let Some(problem) = problem {
            self.fail(problem);
        }
        self.problem
    }

    /// The request of a [`complete`](Self::complete) block without problems: `lines` is filled
    /// with the regular headers (several `cookie` fields as one) and the target is returned.
    pub(super) fn finish<'f>(
        &'f mut self,
        lines: &mut Vec<httparse::Header<'f>>,
    ) -> Result<Parts<'f>, Problem> {
        if let Some(problem) = self.complete() {
            return Err(problem);
        }
        let (Some(method), Some(path)) = (self.method.clone(), self.path.clone()) else {
            return Err(Problem::Malformed("missing :method, :scheme or :path"));
        };
        if self.cookies > 1 {
            self.join_cookies();
        }
        let buf = &self.buf[..];
        let path = &buf[path];
        // Checked to be visible ASCII above (a value) and here (a name): UTF-8 either way.
        let as_str = |b: &'f [u8]| std::str::from_utf8(b).unwrap_or_default();
        for (name, value) in &self.lines {
            lines.push(httparse::Header {
                name: as_str(&buf[name.clone()]),
                value: &buf[value.clone()],
            });
        }
        Ok(Parts {
            method: as_str(&buf[method]),
            path: as_str(path),
            authority: self.authority.clone().map(|a| &buf[a]),
        })
    }

    fn join_cookies(&mut self) {
        let mut joined = Vec::new();
        let mut first = None;
        self.lines.retain(|(name, value)| {
            if &self.buf[name.clone()] != b"cookie" {
                return true;
            }
            if !joined.is_empty() {
                joined.extend_from_slice(b"; ");
            }
            joined.extend_from_slice(&self.buf[value.clone()]);
            first.get_or_insert(name.clone());
            // The first cookie line stays and gets the joined value below.
            first.as_ref() == Some(name)
        });
        let value = self.keep(&joined);
        if let Some((_, v)) = self
            .lines
            .iter_mut()
            .find(|(n, _)| Some(n) == first.as_ref())
        {
            *v = value;
        }
    }
}

/// A lowercase token (RFC 9110 §5.6.2); uppercase is malformed in HTTP/2.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.iter().all(|&b| {
            matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\''
                | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
        })
}

/// No NUL, CR or LF anywhere, no other control but tab, and no whitespace at either end
/// (RFC 9113 §8.2.1).
fn valid_value(value: &[u8]) -> bool {
    let ends = |b: Option<&u8>| !matches!(b, Some(b' ' | b'\t'));
    ends(value.first())
        && ends(value.last())
        && value
            .iter()
            .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(list: &[(&str, &str)]) -> Fields {
        let mut f = Fields::default();
        for (n, v) in list {
            f.add(n.as_bytes(), v.as_bytes());
        }
        f
    }

    const GET: [(&str, &str); 3] = [(":method", "GET"), (":scheme", "http"), (":path", "/a?b")];

    #[test]
    fn a_request_becomes_lines_and_a_target() {
        let mut list = GET.to_vec();
        list.extend([
            (":authority", "gw.test"),
            ("cookie", "a=1"),
            ("x-one", "1"),
            ("cookie", "b=2"),
        ]);
        let mut f = fields(&list);
        let mut lines = Vec::new();
        let parts = f.finish(&mut lines).unwrap();
        assert_eq!((parts.method, parts.path), ("GET", "/a?b"));
        assert_eq!(parts.authority, Some(&b"gw.test"[..]));
        let got: Vec<_> = lines.iter().map(|h| (h.name, h.value)).collect();
        assert_eq!(got, [("cookie", &b"a=1; b=2"[..]), ("x-one", b"1")]);
    }

    #[test]
    fn malformed_blocks_are_named() {
        let cases: [&[(&str, &str)]; 10] = [
            &[(":method", "GET"), (":path", "/")],
            &[
                (":method", "GET"),
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
            ],
            &[
                ("x", "1"),
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
            ],
            &[(":status", "200")],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("X-Up", "1"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("connection", "x"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("te", "gzip"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("x", "a\r\nb"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("x", " padded"),
            ],
            &[(":method", "GET"), (":scheme", "http"), (":path", "/a b")],
        ];
        for case in cases {
            let mut f = fields(case);
            let mut lines = Vec::new();
            assert!(
                matches!(f.finish(&mut lines), Err(Problem::Malformed(_))),
                "{case:?}"
            );
        }
    }

    #[test]
    fn a_large_list_is_too_large_not_malformed() {
        let big = "v".repeat(MAX_HEADER_BYTES);
        let mut list = GET.to_vec();
        list.push(("x-big", &big));
        let mut f = fields(&list);
        assert_eq!(f.finish(&mut Vec::new()).err(), Some(Problem::TooLarge));
    }
}
