//! Arbitrary paths through the normaliser: it never panics, and what it returns is a fixed point
//! with none of what it removes or refuses.

#![no_main]

use gateway_data_plane::fuzzing::check_normalize_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(problem) = check_normalize_path(data) {
        panic!("{problem}");
    }
});
