//! The fast lane (`scripts/test --fast`, issue 22 §4) runs only test modules that need no
//! external tool, so that it passes on any machine with a Rust toolchain and stays under a
//! minute. This keeps its list honest: every module path it names is a module whose file
//! starts no registry, skopeo, promtool, browser, helm, proxy or Python, and as a libtest
//! filter (a substring of a test's name) it selects that module's tests and no others.
//! It also keeps the integration tests in one binary organised by behaviour: a new file
//! directly in tests/ would be a binary of its own, found by no module path.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a test file uses when it needs a tool the fast lane does not install.
const NEEDS_A_TOOL: &[&str] = &[
    "TestRegistry",
    "start_prometheus",
    "skopeo",
    "promtool",
    "amtool",
    "chromium",
    "tinyproxy",
    "hadolint",
    "helm_validate",
    "\"helm\"",
    "\"kubectl\"",
    "\"openssl\"",
    "\"python3\"",
    "PYTHON",
    "docker-registry",
];

/// The test binaries under tests/: this one, and the one whose tests change process-wide
/// state (tests/process_global/main.rs says why it is separate).
const TEST_BINARIES: &[&str] = &["suite", "process_global"];

/// The module paths of scripts/test's FAST_TESTS, each ending in `::`.
fn fast_lane() -> Vec<String> {
    let script = std::fs::read_to_string("scripts/test").expect("scripts/test is readable");
    let start = script
        .find("FAST_TESTS=(")
        .expect("scripts/test declares FAST_TESTS")
        + 12;
    let end = start + script[start..].find(')').expect("FAST_TESTS=(…) is closed");
    script[start..end]
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The file of module `path` (`a::b::`) in one of the test binaries: `tests/<bin>/a/b.rs`
/// or `tests/<bin>/a/b/mod.rs`, and its binary.
fn module_file(path: &str) -> Option<(&'static str, PathBuf)> {
    let segments: Vec<&str> = path.trim_end_matches("::").split("::").collect();
    TEST_BINARIES.iter().find_map(|bin| {
        let mut file = Path::new("tests").join(bin);
        for s in &segments {
            file.push(s);
        }
        let flat = file.with_extension("rs");
        if flat.is_file() {
            return Some((*bin, flat));
        }
        let dir = file.join("mod.rs");
        dir.is_file().then_some((*bin, dir))
    })
}

#[test]
fn the_fast_lane_names_only_modules_that_need_no_tool() {
    let lane = fast_lane();
    assert!(lane.len() >= 10, "the fast lane lists {lane:?}");
    assert!(
        lane.iter().any(|t| t == "project::fast_lane::"),
        "it checks itself"
    );
    let mut problems = Vec::new();
    for name in &lane {
        if !name.ends_with("::") || name.starts_with(':') {
            problems.push(format!("{name}: not a module path ending in ::"));
            continue;
        }
        let Some((_, path)) = module_file(name) else {
            problems.push(format!("{name}: no such module in {TEST_BINARIES:?}"));
            continue;
        };
        // A module of whole submodules would hide which of them the lane runs.
        if path.ends_with("mod.rs") {
            problems.push(format!("{name}: names a directory, not one module file"));
            continue;
        }
        // This file names the tools in order to look for them.
        if name == "project::fast_lane::" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for tool in NEEDS_A_TOOL {
            if text.contains(tool) {
                problems.push(format!("{}: uses {tool}", path.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "scripts/test's FAST_TESTS names modules that need an external tool or do not exist: {problems:#?}"
    );
}

#[test]
fn each_fast_filter_selects_its_own_module_and_nothing_else() {
    // libtest matches a filter anywhere in a test's name: `config::` would also run a
    // `doctor::config::` module. Ask this binary which tests the lane's filters select.
    let lane = fast_lane();
    let out = Command::new(std::env::current_exe().expect("the test binary's path"))
        .arg("--list")
        .args(&lane)
        .output()
        .expect("the test binary lists its tests");
    assert!(out.status.success(), "{out:?}");
    let listed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect();
    let stray: Vec<&String> = listed
        .iter()
        .filter(|t| !lane.iter().any(|m| t.starts_with(m.as_str())))
        .collect();
    assert!(
        stray.is_empty(),
        "the fast lane's filters also select {stray:?}"
    );
    for module in &lane {
        if matches!(module_file(module), Some(("suite", _))) {
            assert!(
                listed.iter().any(|t| t.starts_with(module.as_str())),
                "{module} selects no test of this binary: {listed:?}"
            );
        }
    }
}

#[test]
fn integration_tests_are_one_binary_organised_by_behaviour() {
    // Cargo makes a binary of every tests/*.rs and tests/*/main.rs: each links the whole
    // crate again. A new test belongs in a module of tests/suite/ named by its behaviour.
    let mut binaries = Vec::new();
    for entry in std::fs::read_dir("tests").unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.extension().is_some_and(|e| e == "rs") || path.join("main.rs").is_file() {
            binaries.push(name);
        }
    }
    binaries.sort();
    let mut expected: Vec<String> = TEST_BINARIES.iter().map(|b| b.to_string()).collect();
    expected.sort();
    assert_eq!(
        binaries, expected,
        "tests/ holds these test binaries; move a new file into a module of tests/suite/"
    );
}

#[test]
fn a_file_that_starts_a_registry_is_caught() {
    // The scanner itself: a file that starts a real registry would be refused.
    let text = "let reg = TestRegistry::start(Kind::Open).await;";
    assert!(NEEDS_A_TOOL.iter().any(|tool| text.contains(tool)));
}
