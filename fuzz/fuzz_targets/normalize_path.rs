//! Arbitrary paths through the normaliser: it never panics, and what it returns is a fixed point
//! with none of what it removes or refuses.

#![no_main]

use std::borrow::Cow;

use gateway_data_plane::normalize::normalize_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(out) = normalize_path(path) else {
        return;
    };
    if let Cow::Owned(owned) = &out {
        assert_ne!(owned, path, "allocated for an unchanged path");
    }
    assert!(
        matches!(normalize_path(&out), Ok(Cow::Borrowed(again)) if again == out),
        "not idempotent: {path:?} -> {out:?}"
    );
    assert!(out.starts_with('/'), "{path:?} -> {out:?}");
    assert!(!out.contains("//"), "{path:?} -> {out:?}");
    assert!(
        out.split('/')
            .all(|segment| segment != "." && segment != ".."),
        "dot segment left: {path:?} -> {out:?}"
    );
    assert!(
        !out.bytes().any(|b| b == b'\\' || b < 0x20 || b == 0x7F),
        "{path:?} -> {out:?}"
    );
    // Every escape is canonical (upper-case hex), none is a slash, and they decode to UTF-8.
    let bytes = out.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let escape = out.get(i + 1..i + 3).unwrap_or_default();
            assert!(
                escape.len() == 2
                    && escape
                        .bytes()
                        .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(&h)),
                "bad escape left: {path:?} -> {out:?}"
            );
            assert_ne!(escape, "2F", "{path:?} -> {out:?}");
            decoded.push(u8::from_str_radix(escape, 16).unwrap_or_default());
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    assert!(
        std::str::from_utf8(&decoded).is_ok(),
        "escapes do not decode to UTF-8: {path:?} -> {out:?}"
    );
});
