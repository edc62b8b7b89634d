//! The fast lane (`scripts/test --fast`, issue 22 §4) runs only test files that need no
//! external tool, so that it passes on any machine with a Rust toolchain and stays under a
//! minute. This keeps its list honest: every file it names exists and starts no registry,
//! skopeo, promtool, browser, helm, proxy or Python.

use std::path::Path;

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

#[test]
fn the_fast_lane_names_only_test_files_that_need_no_tool() {
    let lane = fast_lane();
    assert!(lane.len() >= 10, "the fast lane lists {lane:?}");
    assert!(lane.iter().any(|t| t == "fast_lane"), "it checks itself");
    let mut problems = Vec::new();
    for name in &lane {
        let path = Path::new("tests").join(format!("{name}.rs"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            problems.push(format!("{}: no such test file", path.display()));
            continue;
        };
        // This file names the tools in order to look for them.
        if name == "fast_lane" {
            continue;
        }
        for tool in NEEDS_A_TOOL {
            if text.contains(tool) {
                problems.push(format!("{}: uses {tool}", path.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "scripts/test's FAST_TESTS names files that need an external tool or do not exist: {problems:#?}"
    );
}

#[test]
fn a_file_that_starts_a_registry_is_caught() {
    // The scanner itself: a file that starts a real registry would be refused.
    let text = "let reg = TestRegistry::start(Kind::Open).await;";
    assert!(NEEDS_A_TOOL.iter().any(|tool| text.contains(tool)));
}
