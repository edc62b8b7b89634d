#![no_main]
//! Fuzz target: `oci_registry_exporter::fuzzing::config_loader` (see src/fuzzing.rs).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    oci_registry_exporter::fuzzing::config_loader(data);
});
