use std::borrow::Cow;

use super::{PathError, normalize_path};

use PathError::*;

/// `Ok(s)`: normalises to `s` (borrowed when `s` is the input); `Err(e)`: refused with `e`.
const CASES: &[(&str, Result<&str, PathError>)] = &[
    // Unchanged: the fast path.
    ("/", Ok("/")),
    ("/a/b/c", Ok("/a/b/c")),
    ("/a/b/", Ok("/a/b/")),
    ("/.well-known/acme", Ok("/.well-known/acme")),
    ("/a/...", Ok("/a/...")),
    ("/a/..b/.c", Ok("/a/..b/.c")),
    ("/a;b/c;d=1", Ok("/a;b/c;d=1")),
    ("/caf\u{e9}/\u{1f600}", Ok("/caf\u{e9}/\u{1f600}")),
    ("/a:b@c!$&'()*+,=", Ok("/a:b@c!$&'()*+,=")),
    ("/%3A%C3%A9", Ok("/%3A%C3%A9")),
    // Rule 1: absolute, no backslash, NUL or control bytes.
    ("", Err(NotAbsolute)),
    ("a/b", Err(NotAbsolute)),
    ("*", Err(NotAbsolute)),
    ("%2F", Err(NotAbsolute)),
    ("/a\\b", Err(Backslash)),
    ("/a\0b", Err(Nul)),
    ("/a\nb", Err(ControlCharacter)),
    ("/a\rb", Err(ControlCharacter)),
    ("/a\tb", Err(ControlCharacter)),
    ("/a\x7fb", Err(ControlCharacter)),
    // Rule 2: escapes.
    ("/%", Err(BadEscape)),
    ("/%4", Err(BadEscape)),
    ("/%4g", Err(BadEscape)),
    ("/%%41", Err(BadEscape)),
    ("/%41%62%2d%2E%5f%7E%30", Ok("/Ab-._~0")),
    ("/%3a%3A%20%25%e2%82%ac", Ok("/%3A%3A%20%25%E2%82%AC")),
    ("/%2F", Err(EncodedSlash)),
    ("/a%2fb", Err(EncodedSlash)),
    ("/a%5cb", Err(EncodedBackslash)),
    ("/a%5Cb", Err(EncodedBackslash)),
    ("/a%00b", Err(Nul)),
    ("/a%0Ab", Ok("/a%0Ab")),
    ("/%252e%252e", Ok("/%252e%252e")),
    ("/%3b", Ok("/%3B")),
    // Rule 3: the decoded bytes are UTF-8.
    ("/%C3%A9", Ok("/%C3%A9")),
    ("/%c3", Err(BadUtf8)),
    ("/%c3/%a9", Err(BadUtf8)),
    ("/%c3a", Err(BadUtf8)),
    ("/%c3\u{e9}", Err(BadUtf8)),
    ("/%a9", Err(BadUtf8)),
    ("/%C0%AE", Err(BadUtf8)),
    ("/%C1%BF", Err(BadUtf8)),
    ("/%E0%80%AE", Err(BadUtf8)),
    ("/%ED%A0%80", Err(BadUtf8)),
    ("/%F0%80%80%AE", Err(BadUtf8)),
    ("/%F4%90%80%80", Err(BadUtf8)),
    ("/%F5%80%80%80", Err(BadUtf8)),
    ("/%FF", Err(BadUtf8)),
    ("/%F0%9F%98%80", Ok("/%F0%9F%98%80")),
    // Rule 4: duplicate slashes.
    ("//", Ok("/")),
    ("///a//b///", Ok("/a/b/")),
    // Rule 5: dot segments.
    ("/.", Ok("/")),
    ("/..", Ok("/")),
    ("/./a", Ok("/a")),
    ("/../a", Ok("/a")),
    ("/../../a/../../b", Ok("/b")),
    ("/a/./b", Ok("/a/b")),
    ("/a/b/..", Ok("/a/")),
    ("/a/b/.", Ok("/a/b/")),
    ("/a/b/../c", Ok("/a/c")),
    ("/a/b/../../c", Ok("/c")),
    ("/a//..", Ok("/")),
    ("/a/%2e/b", Ok("/a/b")),
    ("/a/%2E%2e/b", Ok("/b")),
    ("/a/.%2E", Ok("/")),
    ("/a/..;/b", Err(DotSegmentParameter)),
    ("/a/.;x/b", Err(DotSegmentParameter)),
    ("/a/..;", Err(DotSegmentParameter)),
    ("/a/%2e%2e;/b", Err(DotSegmentParameter)),
    ("/a/..%3b/b", Err(DotSegmentParameter)),
    ("/a/b;/../c", Ok("/a/c")),
    ("/a/...;/b", Ok("/a/...;/b")),
    // Rule 6: the trailing slash is kept.
    ("/a/", Ok("/a/")),
    ("/a/%62/", Ok("/a/b/")),
    ("/a/%62", Ok("/a/b")),
];

#[test]
fn table() {
    for &(input, expected) in CASES {
        let got = normalize_path(input);
        match expected {
            Ok(out) => {
                let Ok(got) = got else {
                    panic!("{input:?}: expected Ok({out:?}), got {got:?}");
                };
                assert_eq!(got, out, "{input:?}");
                assert_eq!(
                    matches!(got, Cow::Borrowed(_)),
                    out == input,
                    "{input:?}: borrowed exactly when unchanged"
                );
            }
            Err(e) => assert_eq!(got, Err(e), "{input:?}"),
        }
    }
}

/// Path confusion: a path under `/public` must not reach `/admin` through anything that a backend
/// might read differently from the gateway. Each is refused, or normalises to a path that does not
/// start with `/admin`, or (`Ok("/admin")`) really is `/admin` by RFC 3986: those are simply
/// routed as `/admin`, with its policies. That is what a path-confusion defence wants: the gateway
/// routes the path that the backend will serve.
#[test]
fn path_confusion_corpus() {
    let corpus: &[(&str, Result<&str, PathError>)] = &[
        // Dot segments, plain or with unreserved escapes: really /admin.
        ("/public/../admin", Ok("/admin")),
        ("/public/%2e%2e/admin", Ok("/admin")),
        ("/public/%2E%2E/admin", Ok("/admin")),
        ("/public/.%2e/admin", Ok("/admin")),
        ("/public/%2e./admin", Ok("/admin")),
        ("/public/./../admin", Ok("/admin")),
        ("//admin", Ok("/admin")),
        // Separators that some backends decode or accept: refused.
        ("/public/..%2fadmin", Err(EncodedSlash)),
        ("/public/%2fadmin", Err(EncodedSlash)),
        ("/public%2f..%2fadmin", Err(EncodedSlash)),
        ("/public/..%5cadmin", Err(EncodedBackslash)),
        ("/public\\..\\admin", Err(Backslash)),
        // Tomcat strips `;` parameters before resolving dot segments: refused.
        ("/public/..;/admin", Err(DotSegmentParameter)),
        // `;` is a segment of its own, which `..` removes.
        ("/public/;/../admin", Ok("/public/admin")),
        ("/public/%00/../admin", Err(Nul)),
        // Overlong `.`: refused.
        ("/public/%c0%ae%c0%ae/admin", Err(BadUtf8)),
        // Double encoding is not decoded twice: `%25` is not unreserved.
        ("/public/%252e%252e/admin", Ok("/public/%252e%252e/admin")),
    ];
    for &(input, expected) in corpus {
        let got = normalize_path(input);
        assert_eq!(got.as_deref().map_err(|e| *e), expected, "{input:?}");
    }
}

/// Random paths, from pieces dense in what the normaliser acts on (and, one piece in 16, in what
/// it refuses): `normalize_path` never panics, and what it returns is a fixed point with none of
/// what it removes.
#[test]
fn random_paths_normalise_to_fixed_points() {
    const COMMON: &[&str] = &[
        "/", "/", "/", ".", ".", "..", "%2e", "%2E", "a", "b", ";", "\u{e9}", "2", "e", "E", "f",
        "F", "5", "c", "%25", "%3a", "%C3%A9", "%41",
    ];
    const HAZARDS: &[&str] = &[
        "%", "%2f", "%5C", "%c3", "%a9", "%3b", "\0", "\\", "\n", "%00", "%c0%ae",
    ];
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut input = String::new();
    let mut normalised = 0;
    for _ in 0..50_000 {
        input.clear();
        if rng.u8(..) < 250 {
            input.push('/');
        }
        for _ in 0..rng.usize(0..16) {
            let pieces = if rng.u8(..) < 16 { HAZARDS } else { COMMON };
            input.push_str(pieces[rng.usize(..pieces.len())]);
        }
        let Ok(out) = normalize_path(&input) else {
            continue;
        };
        normalised += 1;
        let context = format!("seed {seed}, input {input:?} -> {out:?}");
        assert!(
            matches!(normalize_path(&out), Ok(Cow::Borrowed(again)) if again == out),
            "not idempotent: {context}"
        );
        assert!(out.starts_with('/'), "{context}");
        assert!(!out.contains("//"), "{context}");
        assert!(!out.to_ascii_uppercase().contains("%2F"), "{context}");
        assert!(
            out.split('/')
                .all(|segment| segment != "." && segment != ".."),
            "dot segment left: {context}"
        );
    }
    // About 60% normalise; far fewer would mean the generator tests only the refusals.
    assert!(
        normalised > 20_000,
        "seed {seed}: only {normalised} normalised"
    );
}
