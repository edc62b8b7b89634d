#![no_main]
//! Fuzz target: `oci_registry_exporter::fuzzing::probe_query` (see src/fuzzing.rs).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    oci_registry_exporter::fuzzing::probe_query(data);
});
