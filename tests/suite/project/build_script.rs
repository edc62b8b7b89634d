//! The build script declares only files that exist (issue 24 §5): cargo reruns a build
//! script that names a missing file on every command, so outside a git checkout (a
//! tarball, the Docker build context) or in a git worktree, where `.git` is a file, every
//! `cargo` command recompiled the crate.

use std::path::{Path, PathBuf};

/// The output of the build script run last for this crate in this target directory.
fn newest_build_output() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The test binary lives in <target>/<profile>/deps; the build scripts' outputs in
    // <target>/<profile>/build/<crate>-<hash>/output.
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(Path::parent).unwrap();
    std::fs::read_dir(profile.join("build"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("oci-registry-exporter-")
        })
        .map(|e| e.path().join("output"))
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| panic!("no build script output under {}", manifest.display()))
}

#[test]
fn the_build_script_names_no_missing_file() {
    let output = newest_build_output();
    let text = std::fs::read_to_string(&output).unwrap();
    let named: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("cargo:rerun-if-changed="))
        .collect();
    assert!(!named.is_empty(), "{}: {text}", output.display());
    for file in named {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        assert!(
            path.exists(),
            "build.rs declares rerun-if-changed={file}, which does not exist: every cargo command would rebuild the crate"
        );
    }
}
