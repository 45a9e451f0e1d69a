//! Arbitrary bytes as a snapshot: whatever the shared validation accepts, the data plane compiles,
//! and whatever it refuses, the compile refuses with the same errors. Nothing panics.

#![no_main]

use gateway_data_plane::{CompileError, Source, Table, side::SideTables};
use gateway_proto::v1::Snapshot;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(snapshot) = Snapshot::decode(data) else {
        return;
    };
    let validated = gateway_proto::validate(&snapshot.resources);
    let compiled = Table::compile(
        snapshot.version,
        &snapshot.resources,
        Source::File,
        &SideTables::default(),
    );
    match (validated, compiled) {
        (Ok(()), Ok(_)) => {}
        (Ok(()), Err(error)) => panic!("validation accepted what compile refused: {error}"),
        (Err(errors), Err(CompileError::Invalid(again))) => assert_eq!(errors, again),
        (Err(errors), Ok(_)) => panic!("compile accepted what validation refused: {errors}"),
        (Err(errors), Err(error)) => {
            panic!("validation refused ({errors}) but compile failed otherwise: {error}")
        }
    }
});
