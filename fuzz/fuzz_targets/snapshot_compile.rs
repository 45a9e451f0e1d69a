//! Arbitrary bytes as a snapshot: whatever the shared validation accepts, the data plane compiles,
//! and whatever it refuses, the compile refuses with the same errors. Nothing panics.

#![no_main]

use gateway_data_plane::fuzzing::check_snapshot_compile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(problem) = check_snapshot_compile(data) {
        panic!("{problem}");
    }
});
