//! Arbitrary bytes as an HTTP/1 request head, through the front end's parser, the pipeline
//! (normalisation, routing, policies, filters) and the upstream head writer: nothing panics,
//! a head ends within the input, and the upstream head written is a request that parses.

#![no_main]

use std::sync::LazyLock;

use gateway_data_plane::fuzzing::{HeadParser, check_head};
use libfuzzer_sys::fuzz_target;

static PARSER: LazyLock<HeadParser> = LazyLock::new(HeadParser::default);

fuzz_target!(|data: &[u8]| {
    if let Err(problem) = check_head(&PARSER, data) {
        panic!("{problem}");
    }
});
