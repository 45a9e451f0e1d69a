//! Arbitrary bytes as the HPACK header blocks of one HTTP/2 connection's requests (the input's
//! first bytes say where one block ends and the next begins): decoding never panics, the
//! dynamic table stays within its size, and a block taken as a request runs through the
//! pipeline like any other.

#![no_main]

use std::sync::LazyLock;

use gateway_data_plane::fuzzing::{HeadParser, check_h2_headers};
use libfuzzer_sys::fuzz_target;

static PARSER: LazyLock<HeadParser> = LazyLock::new(HeadParser::default);

fuzz_target!(|data: &[u8]| {
    if let Err(problem) = check_h2_headers(&PARSER, data) {
        panic!("{problem}");
    }
});
