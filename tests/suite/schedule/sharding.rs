//! Sharding across replicas (`--shard`, `--total-shards`), in-process on 127.0.0.1 against a
//! real Distribution registry: M exporters loading the same configuration together check
//! and export every registry exactly once (interval and scrape mode); `/probe` answers for
//! a registry of another shard without it entering that replica's `/metrics`; a reload keeps
//! the shard; the `/` page says which shard a replica is. And the assignment is the one
//! Prometheus' `hashmod` computes, checked with the real promtool.

use crate::common;
use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::{Exporter, sample, status_of};
use oci_registry_exporter::config::Config;
use oci_registry_exporter::shard::{Shard, shard_of};
use support::{Kind, TestRegistry};

/// Registry names, all pointing at one real registry: enough that every shard of 3 gets
/// some (asserted, not assumed).
const NAMES: [&str; 9] = [
    "docker-hub",
    "ghcr",
    "harbor",
    "quay",
    "ecr",
    "gitlab",
    "zot",
    "artifactory-eu",
    "acr-prod",
];

fn config_text(url: &str, mode: &str, names: &[&str]) -> String {
    let mut text = format!(
        "mode = \"{mode}\"\nmin_interval = \"1h\"\n[defaults]\ninterval = \"1h\"\ntimeout = \"5s\"\n\
         checks = [\"registry\", \"pull\"]\ntest_repository = \"{}\"\ntest_tag = \"{}\"\n",
        support::SEED_REPO,
        support::SEED_TAG
    );
    for name in names {
        text.push_str(&format!(
            "[[registries]]\nname = \"{name}\"\nurl = \"{url}\"\n"
        ));
    }
    text
}

/// The configuration in `path`, as `--config` loads it, for shard `index` of `total`.
fn load(path: &Path, index: u64, total: u64) -> Config {
    let mut config = Config::load(Some(path)).expect("the config is valid");
    config.shard = Shard::new(index, total).unwrap();
    config
}

/// The registries a /metrics body has any series of.
fn registries_in(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let start = l.find("registry=\"")? + "registry=\"".len();
            let end = l[start..].find('"')? + start;
            Some(l[start..end].to_string())
        })
        .collect()
}

/// What shard each name belongs to, every shard of `total` holding at least one.
fn expected(names: &[&str], total: u64) -> BTreeMap<u64, BTreeSet<String>> {
    let mut by_shard: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for name in names {
        by_shard
            .entry(shard_of(name, total))
            .or_default()
            .insert(name.to_string());
    }
    assert_eq!(
        by_shard.len() as u64,
        total,
        "the test's names leave a shard of {total} empty: {by_shard:?}"
    );
    by_shard
}

/// Starts `total` exporters on the config file, waits until each is ready, and returns them.
async fn start_all(path: &Path, total: u64) -> Vec<Exporter> {
    let mut exporters = Vec::new();
    for index in 0..total {
        let e = Exporter::start(load(path, index, total)).await;
        e.wait_ready().await;
        exporters.push(e);
    }
    exporters
}

/// Every exporter's /metrics holds exactly its shard's registries, each with a passing
/// result of every check; together they cover every name once.
async fn assert_exact_cover(exporters: &[Exporter], names: &[&str]) {
    let total = exporters.len() as u64;
    let want = expected(names, total);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (index, e) in exporters.iter().enumerate() {
        let body = e.metrics().await;
        // Each replica says which shard it is, for OciRegistryExporterShardMissing.
        assert_eq!(
            sample(&body, "oci_registry_exporter_shard_ordinal", &[]),
            Some(index as f64),
            "shard {index} of {total}"
        );
        assert_eq!(
            sample(&body, "oci_registry_exporter_total_shards", &[]),
            Some(total as f64),
            "shard {index} of {total}"
        );
        let got = registries_in(&body);
        assert_eq!(
            got,
            want[&(index as u64)],
            "shard {index} of {total} exports the wrong registries"
        );
        for name in &got {
            *seen.entry(name.clone()).or_default() += 1;
            for check in ["registry", "pull"] {
                assert_eq!(
                    status_of(&body, name, check).as_deref(),
                    Some("pass"),
                    "shard {index}: {name} {check}"
                );
                // Run here (a reload runs a kept registry's round again, so not always once).
                let runs = sample(
                    &body,
                    "oci_registry_check_runs_total",
                    &[("registry", name), ("check", check), ("status", "pass")],
                );
                assert!(
                    runs.is_some_and(|n| n >= 1.0),
                    "shard {index}: {name} {check} runs {runs:?}"
                );
            }
        }
    }
    let all: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        all,
        "not every registry is covered"
    );
    assert!(
        seen.values().all(|&n| n == 1),
        "a registry is exported twice: {seen:?}"
    );
}

#[tokio::test]
async fn three_shards_check_every_registry_exactly_once_and_probe_any() {
    let reg = TestRegistry::start(Kind::Open).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config_text(&reg.url, "interval", &NAMES)).unwrap();
    let exporters = start_all(&path, 3).await;
    assert_exact_cover(&exporters, &NAMES).await;

    // The / page says which shard and how many registries.
    let want = expected(&NAMES, 3);
    for (index, e) in exporters.iter().enumerate() {
        let (code, page) = e.get("/").await;
        assert_eq!(code, 200);
        let n = want[&(index as u64)].len();
        assert!(
            page.contains(&format!(
                "Shard {index} of 3 (<code>--shard</code>, <code>--total-shards</code>): this replica checks {n} of the 9 configured registries; the other shards check the rest."
            )),
            "shard {index}'s / page:\n{page}"
        );
    }

    // /probe of another shard's registry answers from any replica, and stays out of that
    // replica's /metrics.
    let foreign = want[&1].iter().next().unwrap().clone();
    let (code, body) = exporters[0].get(&format!("/probe?target={foreign}")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(sample(&body, "probe_success", &[]), Some(1.0), "{body}");
    assert_eq!(
        status_of(&body, &foreign, "pull").as_deref(),
        Some("pass"),
        "{body}"
    );
    assert!(
        !registries_in(&exporters[0].metrics().await).contains(&foreign),
        "a probe of {foreign} put it in shard 0's /metrics"
    );
    // A name configured nowhere is still a 400, and the configured names it offers come
    // from every shard.
    let (code, body) = exporters[0].get("/probe?target=nope").await;
    assert_eq!(code, 400);
    assert!(
        body.contains("9 are configured, e.g. docker-hub, ghcr, harbor, quay, ecr"),
        "{body}"
    );

    // A reload keeps the shard: after adding registries, each replica exports exactly its
    // shard's share of the new list.
    let more: Vec<&str> = NAMES
        .iter()
        .copied()
        .chain(["harbor-eu", "quay-mirror", "nexus", "jfrog-us"])
        .collect();
    std::fs::write(&path, config_text(&reg.url, "interval", &more)).unwrap();
    for e in &exporters {
        let (code, body) = e.post("/-/reload").await;
        assert_eq!(code, 200, "{body}");
    }
    // The added registries' first rounds start at once (their series are declared at the
    // reload); wait, bounded, until every replica has results for all of its registries.
    for e in &exporters {
        for _ in 0..100 {
            let body = e.metrics().await;
            if registries_in(&body)
                .iter()
                .all(|r| status_of(&body, r, "pull").is_some())
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    assert_exact_cover(&exporters, &more).await;

    for e in exporters {
        e.stop().await;
    }
}

#[tokio::test]
async fn scrape_mode_shards_run_only_their_own_rounds() {
    let reg = TestRegistry::start(Kind::Open).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config_text(&reg.url, "scrape", &NAMES)).unwrap();
    let exporters = start_all(&path, 2).await;
    // Each scrape runs the due rounds: the first one runs them all, of this shard only.
    assert_exact_cover(&exporters, &NAMES).await;
    for e in exporters {
        e.stop().await;
    }
}

/// The shard of a name is what Prometheus' `hashmod` relabelling computes for it (the claim
/// docs/operations.md makes, so that relabelling can route to the owner), checked with the
/// real promtool (`check service-discovery` applies a job's relabelling to its targets).
#[test]
fn assignment_equals_prometheus_hashmod() {
    let mut names: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
    names.extend((0..200).map(|i| format!("registry-{i}")));
    names.extend(["Harbor_EU", "registry.example.com", "a", "ü-mirror"].map(String::from));
    let dir = tempfile::tempdir().unwrap();
    let targets = names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    for modulus in [2u64, 3, 7] {
        let path = dir.path().join(format!("prometheus-{modulus}.yml"));
        std::fs::write(
            &path,
            format!(
                "scrape_configs:\n  - job_name: shards\n    static_configs: [{{targets: [{targets}]}}]\n    \
                 relabel_configs:\n      - {{source_labels: [__address__], target_label: name}}\n      \
                 - {{source_labels: [__address__], modulus: {modulus}, target_label: shard, action: hashmod}}\n"
            ),
        )
        .unwrap();
        let out = Command::new("promtool")
            // promtool waits this long for discovery, then prints what it found; static
            // targets are there at once.
            .args(["check", "service-discovery", "--timeout=3s"])
            .arg(&path)
            .arg("shards")
            .output()
            .expect("promtool is installed (scripts/test installs Debian's prometheus)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "promtool failed:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let targets: Vec<serde_json::Value> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("promtool printed no JSON ({e}):\n{text}"));
        assert_eq!(targets.len(), names.len(), "{text}");
        for t in &targets {
            let name = t["labels"]["name"].as_str().expect("name label");
            let shard: u64 = t["labels"]["shard"]
                .as_str()
                .expect("shard label")
                .parse()
                .expect("a number");
            assert_eq!(
                shard_of(name, modulus),
                shard,
                "{name}, modulus {modulus}: Prometheus' hashmod says {shard}"
            );
        }
    }
}

/// The binary with `args` and a config of `NAMES`: exit code, stdout, stderr.
fn exporter(args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config_text("http://127.0.0.1:1", "interval", &NAMES)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"))
        .arg("--config")
        .arg(&path)
        .args(args)
        .env_remove("OCI__RegistryUrl")
        .env_remove("Registry__Url")
        .output()
        .unwrap();
    common::exit_and_output(out)
}

#[test]
fn bad_shard_flags_are_refused_naming_the_flag() {
    for (args, message) in [
        (
            &["--shard=3", "--total-shards=3"][..],
            "error: --shard=3 is out of range for --total-shards=3: it must be below --total-shards, from 0 to 2, a different number for each replica\n",
        ),
        (
            &["--shard=1"][..],
            "error: --shard=1 is out of range for --total-shards=1: it must be below --total-shards, from 0 to 0, a different number for each replica\n",
        ),
        (
            &["--total-shards=0"][..],
            "error: invalid value '0' for '--total-shards <M>': must be at least 1 (1, the default, is no sharding); set it to the number of replicas sharing the registries\n",
        ),
        (
            &["--total-shards=three"][..],
            "error: invalid value 'three' for '--total-shards <M>': is not a number; set it to the number of replicas sharing the registries, e.g. 3\n",
        ),
        (
            &["--shard=-1", "--total-shards=3"][..],
            "error: invalid value '-1' for '--shard <N>': is not a shard number; write a whole number from 0 to --total-shards minus 1\n",
        ),
        // What a pod without the pod-index label passes: the variable empty, or unexpanded.
        (
            &["--shard=", "--total-shards=3"][..],
            "error: invalid value '' for '--shard <N>': is not a shard number: an empty or unexpanded $(POD_INDEX) means the pod has no label apps.kubernetes.io/pod-index, which StatefulSets set from Kubernetes 1.28 on; write a whole number from 0\n",
        ),
        (
            &["--shard=$(POD_INDEX)", "--total-shards=3"][..],
            "error: invalid value '$(POD_INDEX)' for '--shard <N>': is not a shard number: an empty or unexpanded $(POD_INDEX) means the pod has no label apps.kubernetes.io/pod-index, which StatefulSets set from Kubernetes 1.28 on; write a whole number from 0\n",
        ),
    ] {
        let (code, out, err) = exporter(args);
        // 3: the usage error of the daemon and `check` alike (docs/operations.md).
        assert_eq!(code, 3, "{args:?}: {err}");
        assert_eq!(out, "", "{args:?}");
        let first = err.split_inclusive('\n').next().unwrap_or("");
        assert_eq!(first, message, "{args:?}");
    }
    // `check` runs the registries it is asked for; the flags would be ignored, so they are
    // refused.
    let (code, _, err) = exporter(&["--shard=1", "--total-shards=2", "check"]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err,
        "error: --shard and --total-shards apply to the daemon; `check` runs the registry named by --registry, or all of them\n"
    );
}

#[test]
fn check_config_lists_the_registries_of_the_shard() {
    let want = expected(&NAMES, 3);
    for index in 0..3u64 {
        let (code, out, err) = exporter(&[
            "--check-config",
            &format!("--shard={index}"),
            "--total-shards=3",
        ]);
        assert_eq!(code, 0, "{err}");
        let names: Vec<&str> = NAMES
            .iter()
            .copied()
            .filter(|n| want[&index].contains(*n))
            .collect();
        assert_eq!(
            out,
            format!(
                "config is valid: 9 registries ({})\nshard {index} of 3 checks {} of them: {}\n",
                NAMES.join(", "),
                names.len(),
                names.join(", ")
            )
        );
    }
    // Unsharded, --check-config says what it always said.
    let (code, out, _) = exporter(&["--check-config"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!("config is valid: 9 registries ({})\n", NAMES.join(", "))
    );
}
