//! Arbitrary bytes after the HTTP/2 preface and SETTINGS, into one server connection over an
//! in-memory stream: it never panics, and it ends once the client closes.

#![no_main]

use std::sync::LazyLock;

use gateway_data_plane::fuzzing::{HeadParser, check_h2_connection};
use libfuzzer_sys::fuzz_target;

static PARSER: LazyLock<HeadParser> = LazyLock::new(HeadParser::default);

fuzz_target!(|data: &[u8]| {
    if let Err(problem) = check_h2_connection(&PARSER, data) {
        panic!("{problem}");
    }
});
