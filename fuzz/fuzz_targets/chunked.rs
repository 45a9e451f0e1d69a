//! Arbitrary bytes as a chunked body, fed whole and cut into pieces (the input's first bytes
//! say where): the parser never panics, and however the body is cut it reads the same bytes
//! and the same payload, and ends or fails the same way.

#![no_main]

use gateway_data_plane::fuzzing::check_chunked;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(problem) = check_chunked(data) {
        panic!("{problem}");
    }
});
