use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};
use tokio::time::Instant;

use super::*;

/// Three chunks (extensions, lower- and upper-case hex, data that looks like framing) and a
/// trailer section.
const BODY: &[u8] = b"4;name=value\r\nWiki\r\n\
a\r\n\r\n0\r\n\r\nxyz\r\n\
1F; ext1 ;ext2=\"q s\"\r\n0123456789abcdefghijklmnopqrstu\r\n\
0\r\nExpires: never\r\nX-Sum: 1\r\n\r\n";
const PAYLOAD: &[u8] = b"Wiki\r\n0\r\n\r\nxyz0123456789abcdefghijklmnopqrstu";
/// A pipelined request after the body: never part of it.
const NEXT: &[u8] = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n";

const IDLE: Duration = Duration::from_secs(5);

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Feeds `pieces` in turn to one parser: the bytes each consumed, the payload, and whether the
/// body ended.
fn feed_pieces<'a>(
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(Vec<usize>, Vec<u8>, bool), BodyError> {
    let mut chunked = Chunked::default();
    let mut payload = Vec::new();
    let used = pieces
        .into_iter()
        .map(|piece| chunked.feed(piece, &mut |d| payload.extend_from_slice(d)))
        .collect::<Result<_, _>>()?;
    Ok((used, payload, chunked.is_done()))
}

fn feed(input: &[u8]) -> Result<(usize, Vec<u8>, bool), BodyError> {
    feed_pieces([input]).map(|(used, payload, done)| (used[0], payload, done))
}

/// The message of the framing error `input` gives, whole or one byte at a time.
fn reject(input: &[u8]) -> &'static str {
    match (feed(input), feed_pieces(input.chunks(1))) {
        (Err(BodyError::Chunked(whole)), Err(BodyError::Chunked(bytewise))) => {
            assert_eq!(
                whole, bytewise,
                "{input:?}: whole and byte by byte disagree"
            );
            whole
        }
        other => panic!("{input:?}: expected framing errors, got {other:?}"),
    }
}

// === Chunked ===

#[test]
fn chunked_consumes_exactly_the_body() {
    let input = cat(&[BODY, NEXT]);
    let (used, payload, done) = feed(&input).unwrap();
    assert_eq!((&input[..used], &input[used..]), (BODY, NEXT));
    assert_eq!(payload, PAYLOAD);
    assert!(done);
}

#[test]
fn chunked_minimal_and_after_done() {
    let bodies: [&[u8]; 4] = [
        b"0\r\n\r\n",
        b"000\r\n\r\n",
        b"0;x=y\r\n\r\n",
        b"0 \r\nA: b\r\n\r\n",
    ];
    for body in bodies {
        let got = feed(&cat(&[body, b"rest"])).unwrap();
        assert_eq!(got, (body.len(), Vec::new(), true), "{body:?}");
    }
    // Once done, nothing more is taken.
    let got = feed_pieces([&b"0\r\n\r\n"[..], b"5\r\nhello\r\n"]).unwrap();
    assert_eq!(got, (vec![5, 0], Vec::new(), true));
}

#[test]
fn chunked_byte_by_byte() {
    let input = cat(&[BODY, NEXT]);
    let (used, payload, done) = feed_pieces(input.chunks(1)).unwrap();
    let want: Vec<usize> = (0..input.len())
        .map(|i| usize::from(i < BODY.len()))
        .collect();
    assert_eq!(used, want);
    assert_eq!(payload, PAYLOAD);
    assert!(done);
}

#[test]
fn chunked_split_at_every_position() {
    let input = cat(&[BODY, NEXT]);
    for at in 0..=input.len() {
        let (used, payload, done) = feed_pieces([&input[..at], &input[at..]]).unwrap();
        let first = at.min(BODY.len());
        assert_eq!(used, [first, BODY.len() - first], "split at {at}");
        assert!(done, "split at {at}");
        assert_eq!(payload, PAYLOAD, "split at {at}");
    }
}

#[test]
fn chunked_incomplete_is_not_done() {
    for end in 0..BODY.len() {
        let (used, _, done) = feed(&BODY[..end]).unwrap();
        assert_eq!((used, done), (end, false), "prefix of {end} bytes");
    }
}

#[test]
fn chunked_rejects_bad_size_lines() {
    let (not_hex, bad_line, bad_ext) = (
        "chunk size is not hex",
        "invalid chunk size line",
        "invalid chunk extension",
    );
    let no_crlf = "chunk size line without CRLF";
    let cases: [(&[u8], &str); 19] = [
        (b"5\nhello\r\n0\r\n\r\n", bad_line), // bare LF after the size
        (b"0\n\r\n", bad_line),
        (b"5;ext\nhello\r\n", bad_ext), // bare LF after an extension
        (b"5 \n", bad_line),
        (b"5 6\r\n", bad_line), // text after whitespace must start an extension
        (b"00000000000000005\r\n", "chunk size over 16 hex digits"),
        (b"5\r\rhello", no_crlf),
        (b"0\r\r\n", no_crlf),
        (b"0;e\rX", no_crlf),
        (b"g\r\n", not_hex),
        (b"-5\r\n", not_hex),
        (b"+5\r\n", not_hex),
        (b" 5\r\n", not_hex),
        (b"\r\n", not_hex),
        (b"0x5\r\n", bad_line),
        (b"5g\r\n", bad_line),
        (b"5,6\r\n", bad_line),
        (b"5;a\x00b\r\n", bad_ext),
        (b"5;a\x7f\r\n", bad_ext),
    ];
    for (input, msg) in cases {
        assert_eq!(reject(input), msg, "{input:?}");
    }
}

#[test]
fn chunked_size_limits() {
    // 16 hex digits: the whole u64 range.
    let (used, payload, done) = feed(b"FFFFFFFFFFFFFFFF\r\nabc").unwrap();
    assert_eq!((used, payload.as_slice(), done), (21, &b"abc"[..], false));
    // More than 16 significant hex digits (2^64 and up).
    for input in [
        &b"10000000000000000\r\n"[..],
        b"FFFFFFFFFFFFFFFF0\r\n",
        b"123456789abcdef012\r\n",
    ] {
        assert_eq!(reject(input), "chunk size over 16 hex digits", "{input:?}");
    }
}

#[test]
fn chunked_rejects_bad_data_framing() {
    let (longer, no_crlf) = ("chunk data longer than its size", "chunk data without CRLF");
    assert_eq!(reject(b"5\r\nhello!\r\n0\r\n\r\n"), longer);
    assert_eq!(reject(b"5\r\nhello\n0\r\n\r\n"), longer); // bare LF after the data
    assert_eq!(reject(b"5\r\nhello0\r\n\r\n"), longer); // no CRLF at all
    assert_eq!(reject(b"5\r\nhello\r0\r\n\r\n"), no_crlf);
    assert_eq!(reject(b"5\r\nhello\r\r\n"), no_crlf);
}

#[test]
fn chunked_rejects_bad_trailers_and_end() {
    let (bare_lf, no_end) = (
        "invalid byte in trailers",
        "chunked body without final CRLF",
    );
    assert_eq!(reject(b"0\r\n\n"), bare_lf);
    assert_eq!(reject(b"0\r\nA: b\n\r\n"), bare_lf);
    assert_eq!(reject(b"0\r\nA: b\r\n\n"), bare_lf);
    assert_eq!(reject(b"0\r\nA: b\rX"), "trailer line without CRLF");
    assert_eq!(reject(b"0\r\n\rX"), no_end);
    assert_eq!(reject(b"0\r\n\r\r\n"), no_end);
    assert_eq!(reject(b"0\r\nA: b\r\n\r0"), no_end);
}

const TOO_LONG: &str = "chunk size line or trailers too long";

#[test]
fn chunked_limits_the_size_line() {
    // Well within 4 KiB: accepted.
    let ext = "x".repeat(3 * 1024);
    let ok = format!("3;{ext}\r\nabc\r\n0;{ext}\r\n\r\n");
    assert_eq!(
        feed(ok.as_bytes()).unwrap(),
        (ok.len(), b"abc".to_vec(), true)
    );
    // Over 4 KiB, in a data chunk's line or the last chunk's: refused.
    let ext = "x".repeat(MAX_CHUNK_LINE + 1);
    assert_eq!(reject(format!("3;{ext}\r\nabc\r\n").as_bytes()), TOO_LONG);
    assert_eq!(reject(format!("0;{ext}\r\n\r\n").as_bytes()), TOO_LONG);
    // However slowly it comes: the count spans feeds.
    match feed_pieces(std::iter::repeat_n(&b"5;"[..], MAX_CHUNK_LINE)) {
        Err(BodyError::Chunked(msg)) => assert_eq!(msg, TOO_LONG),
        other => panic!("an endless extension is accepted: {other:?}"),
    }
    // The count restarts with each chunk: many chunks with long lines are fine.
    let line = format!("1;{}\r\nz\r\n", "e".repeat(3 * 1024));
    let body = format!("{}0\r\n\r\n", line.repeat(8));
    assert_eq!(
        feed(body.as_bytes()).unwrap(),
        (body.len(), vec![b'z'; 8], true)
    );
}

#[test]
fn chunked_limits_the_trailers() {
    // Many trailer lines adding up to well under 16 KiB: accepted.
    let field = format!("X-T: {}\r\n", "v".repeat(100));
    let ok = format!("0\r\n{}\r\n", field.repeat(12 * 1024 / field.len()));
    assert_eq!(feed(ok.as_bytes()).unwrap(), (ok.len(), Vec::new(), true));
    // Adding up to more than 16 KiB, or one huge line: refused.
    let many = format!("0\r\n{}\r\n", field.repeat(MAX_TRAILERS / field.len() + 1));
    assert_eq!(reject(many.as_bytes()), TOO_LONG);
    let huge = format!("0\r\nX: {}\r\n\r\n", "v".repeat(MAX_TRAILERS));
    assert_eq!(reject(huge.as_bytes()), TOO_LONG);
}

#[test]
fn chunked_data_is_not_limited() {
    // Only lines count: a chunk far larger than every limit passes.
    let data = vec![b'd'; 4 * MAX_TRAILERS];
    let body = cat(&[
        format!("{:x}\r\n", data.len()).as_bytes(),
        &data,
        b"\r\n0\r\n\r\n",
    ]);
    assert_eq!(feed(&body).unwrap(), (body.len(), data, true));
}

// === Body::take / take_into ===

#[test]
fn take_length_empty_until_close() {
    let mut body = Body::new(Framing::Length(7), false);
    let mut decoded = Vec::new();
    let taken: Vec<_> = [&b"abc"[..], b"", b"defgNEXT", b"NEXT"]
        .into_iter()
        .map(|input| (body.take(input, &mut decoded).unwrap(), body.is_done()))
        .collect();
    assert_eq!(taken, [(3, false), (0, false), (4, true), (0, true)]);
    assert!(decoded.is_empty());

    for framing in [Framing::Empty, Framing::Length(0)] {
        let mut body = Body::new(framing, false);
        assert!(body.is_done());
        assert_eq!(body.take(b"NEXT", &mut decoded).unwrap(), 0);
    }

    let mut body = Body::new(Framing::UntilClose, false);
    for input in [&b"0\r\n\r\n"[..], b"", b"anything at all"] {
        assert_eq!(body.take(input, &mut decoded).unwrap(), input.len());
        assert!(!body.is_done());
    }
}

#[test]
fn take_chunked_decoded_or_passed_through() {
    let input = cat(&[BODY, NEXT]);
    for (decode, want) in [(true, PAYLOAD), (false, &b""[..])] {
        let mut body = Body::new(Framing::Chunked, decode);
        let mut decoded = Vec::new();
        assert_eq!(body.take(&input, &mut decoded).unwrap(), BODY.len());
        assert!(body.is_done());
        assert_eq!(decoded, want, "decode={decode}");
    }
    let res = Body::new(Framing::Chunked, false).take(b"5\nhello", &mut Vec::new());
    assert!(matches!(res, Err(BodyError::Chunked(_))), "{res:?}");
}

#[test]
fn take_into_leaves_what_follows() {
    let cases: [(Framing, bool, &[u8], &[u8]); 4] = [
        (Framing::Length(5), false, b"hello", b"hello"),
        (Framing::Empty, false, b"", b""),
        (Framing::Chunked, false, BODY, BODY),
        (Framing::Chunked, true, BODY, PAYLOAD),
    ];
    for (framing, decode, body_bytes, sent) in cases {
        let mut body = Body::new(framing, decode);
        let mut buf = cat(&[body_bytes, NEXT]);
        let mut out = b"HEAD".to_vec();
        body.take_into(&mut buf, &mut out).unwrap();
        let case = format!("{framing:?} decode={decode}");
        assert!(body.is_done(), "{case}");
        assert_eq!((buf, out), (NEXT.to_vec(), cat(&[b"HEAD", sent])), "{case}");
    }
    // A part of a body: all of it is taken, and the rest is still expected.
    let mut body = Body::new(Framing::Chunked, true);
    let (mut buf, mut out) = (BODY[..20].to_vec(), Vec::new());
    body.take_into(&mut buf, &mut out).unwrap();
    assert!(buf.is_empty() && !body.is_done());
    let mut buf = cat(&[&BODY[20..], NEXT]);
    body.take_into(&mut buf, &mut out).unwrap();
    assert_eq!((buf.as_slice(), out.as_slice()), (NEXT, PAYLOAD));
}

// === Body::relay over pipes ===

/// Relays `framing` from a pipe the sender writes `pieces` into (one write each, then closing
/// unless `keep_open`): the result (as `Debug`), what arrived on the other side, and what was
/// left in `buf`.
async fn relay(
    (framing, decode): (Framing, bool),
    pieces: &[&[u8]],
    keep_open: bool,
) -> (String, Vec<u8>, Vec<u8>) {
    let (mut tx, mut src) = duplex(64 * 1024);
    let (mut dst, mut rx) = duplex(64);
    let sender = async move {
        for piece in pieces {
            tx.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        keep_open.then_some(tx)
    };
    let relayer = async move {
        let mut body = Body::new(framing, decode);
        let (mut buf, mut scratch) = (Vec::new(), Vec::new());
        let res = body
            .relay(&mut src, &mut dst, &mut buf, &mut scratch, IDLE)
            .await;
        assert_eq!(
            res.is_ok(),
            body.is_done() || framing == Framing::UntilClose
        );
        (format!("{res:?}"), buf)
    };
    let receiver = async move {
        let mut got = Vec::new();
        rx.read_to_end(&mut got).await.unwrap();
        got
    };
    let (_tx, (res, buf), got) = tokio::join!(sender, relayer, receiver);
    (res, got, buf)
}

const OK: &str = "Ok(())";

#[tokio::test(start_paused = true)]
async fn relay_length_split_across_writes() {
    let data: Vec<u8> = (0..=255).cycle().take(3000).collect();
    let last = cat(&[&data[2000..], NEXT]);
    let pieces = [&data[..1], &data[1..700], &data[700..2000], &last[..]];
    let got = relay((Framing::Length(3000), false), &pieces, true).await;
    assert_eq!(got, (OK.into(), data, NEXT.to_vec()));
}

#[tokio::test(start_paused = true)]
async fn relay_chunked_pass_through_and_decoded() {
    let input = cat(&[BODY, NEXT]);
    let (body, last) = input.split_at(BODY.len() - 3);
    let pieces: Vec<&[u8]> = body.chunks(7).chain([last]).collect();
    for (decode, want) in [(false, BODY), (true, PAYLOAD)] {
        let got = relay((Framing::Chunked, decode), &pieces, true).await;
        assert_eq!(
            got,
            (OK.into(), want.to_vec(), NEXT.to_vec()),
            "decode={decode}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn relay_empty_and_until_close() {
    let got = relay((Framing::Empty, false), &[NEXT], true).await;
    assert_eq!(got, (OK.into(), Vec::new(), Vec::new()));
    let pieces = [&b"abc"[..], b"0\r\n\r\n", NEXT];
    let got = relay((Framing::UntilClose, false), &pieces, false).await;
    assert_eq!(got, (OK.into(), pieces.concat(), Vec::new()));
}

#[tokio::test(start_paused = true)]
async fn relay_errors() {
    let truncated = "Err(Truncated)";
    let cases: [(Framing, bool, &[&[u8]], &str); 5] = [
        (Framing::Length(10), false, &[b"hello"], truncated),
        (
            Framing::Chunked,
            false,
            &[&BODY[..BODY.len() - 1]],
            truncated,
        ),
        (Framing::Chunked, true, &[b"0\r\n"], truncated),
        (Framing::Chunked, false, &[], truncated),
        (
            Framing::Chunked,
            false,
            &[b"5\r\nhello\r\n", b"0\n"],
            "Err(Chunked(\"invalid chunk size line\"))",
        ),
    ];
    for (framing, decode, pieces, want) in cases {
        let (res, _, _) = relay((framing, decode), pieces, false).await;
        assert_eq!(res, want, "{framing:?} {pieces:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn relay_read_timeout_when_nothing_comes() {
    let start = Instant::now();
    let got = relay((Framing::Length(10), false), &[b"part"], true).await;
    assert_eq!(
        got,
        ("Err(ReadTimeout(5s))".into(), b"part".to_vec(), Vec::new())
    );
    assert!(start.elapsed() >= IDLE);
    let (res, _, _) = relay((Framing::Chunked, false), &[], true).await;
    assert_eq!(res, "Err(ReadTimeout(5s))");
}

#[tokio::test(start_paused = true)]
async fn relay_write_timeout_when_nothing_is_read() {
    let (mut tx, mut src) = duplex(1024);
    let (mut dst, _rx) = duplex(8);
    tx.write_all(b"more than eight bytes").await.unwrap();
    let mut body = Body::new(Framing::Length(21), false);
    let (mut buf, mut scratch) = (Vec::new(), Vec::new());
    let res = body
        .relay(&mut src, &mut dst, &mut buf, &mut scratch, IDLE)
        .await;
    assert!(
        matches!(res, Err(BodyError::WriteTimeout(d)) if d == IDLE),
        "{res:?}"
    );
    let res = write_all(&mut dst, b"x", IDLE).await;
    assert!(matches!(res, Err(BodyError::WriteTimeout(_))), "{res:?}");
}

#[test]
fn line_limits_restart_for_data_and_trailers() {
    // A size line of exactly 4 KiB (CRLF included) is allowed, whatever follows it.
    let line = cat(&[b"1;", &vec![b'x'; 4096 - 4], b"\r\n"]);
    let body = cat(&[&line, b"a\r\n0\r\n\r\n"]);
    assert_eq!(feed(&body).unwrap(), (body.len(), b"a".to_vec(), true));
    // The trailers' limit counts the trailers only, not the last chunk's long size line.
    let trailers: Vec<u8> = (0..1200)
        .flat_map(|i| format!("t{i:04}: v\r\n").into_bytes())
        .collect();
    assert!(trailers.len() < 16 * 1024);
    let body = cat(&[b"0;", &vec![b'x'; 4000], b"\r\n", &trailers, b"\r\n"]);
    assert!(feed(&body).unwrap().2);
}

#[test]
fn decoding_leaves_unchunked_bodies_whole() {
    for framing in [Framing::Length(5), Framing::UntilClose] {
        let mut body = Body::new(framing, true);
        let mut buf = b"helloNEXT".to_vec();
        let mut out = Vec::new();
        body.take_into(&mut buf, &mut out).unwrap();
        let (want_out, want_left): (&[u8], &[u8]) = match framing {
            Framing::Length(_) => (b"hello", b"NEXT"),
            _ => (b"helloNEXT", b""),
        };
        assert_eq!((out.as_slice(), buf.as_slice()), (want_out, want_left));
    }
}
