//! Request-path normalisation before routing.
//!
//! Once routes carry policies (auth, rate limits), a path that the gateway and the backend read
//! differently is an auth bypass: `/public/%2e%2e/admin` matches a public route here and is served
//! as `/admin` there. So every path is normalised before it is matched, with Envoy's edge
//! defaults (`normalize_path`, `merge_slashes`, encoded slashes and backslashes rejected): escapes
//! of unreserved characters decoded and the others upper-cased, duplicate slashes merged, dot
//! segments removed (RFC 3986 §5.2.4). What cannot be made unambiguous is refused with a
//! [`PathError`]: encoded slashes and backslashes, NUL and control bytes, bad escapes, escapes
//! that decode to invalid UTF-8 (overlong `%C0%AE`), and Tomcat-style `..;` segments.
//!
//! The common path needs none of this: one scan finds that nothing would change, and the input
//! is returned borrowed.

use std::borrow::Cow;

/// Why a path is refused (the data plane answers 400 `bad_path`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// An encoded slash (`%2F`): backends disagree on whether it separates segments.
    #[error("encoded slash (%2F) in path")]
    EncodedSlash,
    /// An encoded backslash (`%5C`): some backends read it as a separator.
    #[error("encoded backslash (%5C) in path")]
    EncodedBackslash,
    /// A raw backslash: some backends (Windows, Tomcat) read it as a separator.
    #[error("backslash in path")]
    Backslash,
    /// A NUL byte, raw or `%00`: C-string backends truncate the path there.
    #[error("NUL in path")]
    Nul,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-escape in path")]
    BadEscape,
    /// The fully percent-decoded bytes are not UTF-8 (e.g. the overlong `%C0%AE`).
    #[error("percent-escapes in path do not decode to UTF-8")]
    BadUtf8,
    /// The path does not start with `/`.
    #[error("path is not absolute")]
    NotAbsolute,
    /// A `.` or `..` segment followed by `;` (`/public/..;/admin`), which Tomcat-style servers
    /// resolve as a dot segment after stripping the parameter.
    #[error("dot segment with a parameter (..;) in path")]
    DotSegmentParameter,
    /// A raw control byte (below 0x20, or 0x7F).
    #[error("control character in path")]
    ControlCharacter,
}

/// Normalises a request path (without its query): `Ok(Cow::Borrowed(path))` when nothing
/// changes (the common case: one scan, no allocation), `Ok(Cow::Owned(..))` otherwise.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_clean(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    let out = normalize_slow(path)?;
    Ok(if out == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(out)
    })
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7F
}

/// Whether `normalize_slow` would return the path unchanged: no `%`, `\`, control byte, `//`,
/// or dot segment (`/.` or `/..` followed by `/`, `;` or the end).
fn is_clean(bytes: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' | b'\\' => return false,
            b'/' => match bytes.get(i + 1) {
                Some(b'/') => return false,
                Some(b'.') if starts_dot_segment(&bytes[i + 1..]) => return false,
                _ => {}
            },
            b if is_control(b) => return false,
            _ => {}
        }
        i += 1;
    }
    true
}

/// Whether a segment starting at `rest` is `.` or `..`, alone or followed by a parameter.
fn starts_dot_segment(rest: &[u8]) -> bool {
    let after = match rest {
        [b'.', b'.', after @ ..] | [b'.', after @ ..] => after,
        _ => return false,
    };
    matches!(after.first(), None | Some(b'/' | b';'))
}

/// Decodes, checks and resolves the path one segment at a time into one buffer. `out` always ends
/// with `/` where a segment starts.
fn normalize_slow(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut utf8 = Utf8::default();
    out.push('/');
    let mut i = 1;
    loop {
        let start = out.len();
        while let Some(&b) = bytes.get(i) {
            match b {
                b'/' => break,
                b'%' => {
                    let (Some(hi), Some(lo)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2)))
                    else {
                        return Err(PathError::BadEscape);
                    };
                    let decoded = (hi << 4) | lo;
                    match decoded {
                        b'/' => return Err(PathError::EncodedSlash),
                        b'\\' => return Err(PathError::EncodedBackslash),
                        0 => return Err(PathError::Nul),
                        _ => {}
                    }
                    utf8.push(decoded)?;
                    if is_unreserved(decoded) {
                        out.push(char::from(decoded));
                    } else {
                        out.push('%');
                        out.push(char::from(HEX_UPPER[usize::from(hi)]));
                        out.push(char::from(HEX_UPPER[usize::from(lo)]));
                    }
                    i += 3;
                }
                b'\\' => return Err(PathError::Backslash),
                0 => return Err(PathError::Nul),
                b if is_control(b) => return Err(PathError::ControlCharacter),
                _ => {
                    // A run of plain bytes; it starts and ends at ASCII bytes, so on char
                    // boundaries, and is UTF-8 on its own.
                    utf8.boundary()?;
                    let run = i;
                    while bytes.get(i).is_some_and(|&b| is_plain(b)) {
                        i += 1;
                    }
                    out.push_str(path.get(run..i).unwrap_or_default());
                }
            }
        }
        utf8.boundary()?;
        let last = i >= bytes.len();
        match &out[start..] {
            // An empty segment: `//` merged, or the input's trailing slash kept.
            "" => {}
            "." => out.truncate(start),
            ".." => {
                out.truncate(start);
                // Drop the previous segment; at the root, stay there.
                let parent = out[..start - 1].rfind('/').map_or(1, |p| p + 1);
                out.truncate(parent);
            }
            segment if is_dot_parameter(segment) => return Err(PathError::DotSegmentParameter),
            _ if last => {}
            _ => out.push('/'),
        }
        if last {
            return Ok(out);
        }
        i += 1;
    }
}

/// `.;x`, `..;x`, also with the `;` encoded (`..%3B`), which some servers decode first.
fn is_dot_parameter(segment: &str) -> bool {
    segment
        .strip_prefix("..")
        .or_else(|| segment.strip_prefix('.'))
        .is_some_and(|rest| rest.starts_with(';') || rest.starts_with("%3B"))
}

/// A byte copied as it is (part of a run of plain bytes).
fn is_plain(b: u8) -> bool {
    !matches!(b, b'/' | b'%' | b'\\') && !is_control(b)
}

/// RFC 3986 unreserved: ALPHA / DIGIT / `-` / `.` / `_` / `~`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex(b: Option<&u8>) -> Option<u8> {
    let b = *b?;
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A streaming UTF-8 check (RFC 3629 §4) of the bytes that escapes decode to; plain bytes are
/// UTF-8 by construction, so between escapes it checks only that no sequence is left open.
#[derive(Debug, Default)]
struct Utf8 {
    /// Continuation bytes still expected.
    pending: u8,
    /// The range allowed for the next continuation byte (narrower after some lead bytes, which
    /// rules out overlong forms, surrogates and code points past U+10FFFF).
    low: u8,
    high: u8,
}

// === impl Utf8 ===

impl Utf8 {
    fn push(&mut self, b: u8) -> Result<(), PathError> {
        if self.pending > 0 {
            if !(self.low..=self.high).contains(&b) {
                return Err(PathError::BadUtf8);
            }
            self.pending -= 1;
            (self.low, self.high) = (0x80, 0xBF);
            return Ok(());
        }
        (self.pending, self.low, self.high) = match b {
            0x00..=0x7F => return Ok(()),
            0xC2..=0xDF => (1, 0x80, 0xBF),
            0xE0 => (2, 0xA0, 0xBF),
            0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
            0xED => (2, 0x80, 0x9F),
            0xF0 => (3, 0x90, 0xBF),
            0xF1..=0xF3 => (3, 0x80, 0xBF),
            0xF4 => (3, 0x80, 0x8F),
            _ => return Err(PathError::BadUtf8),
        };
        Ok(())
    }

    /// A plain byte or the end of a segment follows: no sequence may be left open.
    fn boundary(&self) -> Result<(), PathError> {
        if self.pending > 0 {
            Err(PathError::BadUtf8)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
