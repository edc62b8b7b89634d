#![no_main]
//! Fuzz target: `oci_registry_exporter::fuzzing::token_answer` (see src/fuzzing.rs).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    oci_registry_exporter::fuzzing::token_answer(data);
});
