//! The delivery files: the Kubernetes kustomize tree (deploy/kubernetes), the Dockerfile and
//! the systemd unit (deploy/systemd).
//!
//! deploy/kubernetes is a base, opt-in components and an example overlay. Its resources are
//! rendered from the Helm chart (the one description of the pods, tested in tests/helm.rs) by
//! scripts/render-deploy: the first tests run `scripts/render-deploy --check`, which fails
//! when a committed file is not what the chart renders, and show that it does fail on a
//! stale file. The rest render the tree with kubectl's built-in kustomize, as a user would,
//! from a temporary copy in which the secret files the example overlay reads have been
//! created: the base alone, the base with each component, the example overlay, and the
//! example overlay moved to another namespace with the Probe instead of the ServiceMonitor.
//! Every rendered object is validated against the Kubernetes and prometheus-operator schemas
//! (tests/helm_validate.py, the vendored CRD schemas of tests/testdata/crd-schemas). Then
//! what kustomize adds to the chart's objects: the namespace is set in one place and the
//! Probe follows it; the Probe's targets are the configured registries; the configuration
//! passes the exporter's own validation with every secret file it names mounted from the
//! overlay's generated Secrets; a change of config.toml renames the ConfigMap (so the pods
//! roll); the sharding component turns the Deployment into a StatefulSet of shards whose
//! pods pass flags the exporter accepts.
//!
//! kubectl is `KUBECTL`, else target/tools/kubectl-layer/kubectl/kubectl (scripts/test
//! installs it there), else `kubectl` on PATH; helm likewise `HELM`; `PYTHON` names another
//! python3.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use oci_registry_exporter::config::{Config, Credentials, Secret};
use serde::Deserialize;
use serde_yaml_ng::Value;

use super::k8s::{
    copy_tree, output_text, python_bin, read, root, run, seq, str_of, tool, volume_files,
};

/// The namespace of overlays/example.
const NAMESPACE: &str = "monitoring";
/// The namespace the override test moves the example overlay to.
const OTHER_NAMESPACE: &str = "team-registry-checks";
const PORT: u64 = 9793;
const CONFIG_DIR: &str = "/etc/oci-registry-exporter";
const CONFIG_PATH: &str = "/etc/oci-registry-exporter/config.toml";
/// The values scripts/render-deploy renders the chart with: no kustomization lists it.
const CHART_VALUES: &str = "chart-values.yaml";
/// The Kubernetes version the objects are validated against (that of the kubectl used).
const KUBE_VERSION: &str = "1.31.0";
const EXAMPLE: &str = "overlays/example";
/// The components, each with the kinds it adds to the base.
const COMPONENTS: [(&str, &str); 4] = [
    ("servicemonitor", "ServiceMonitor"),
    ("probe", "Probe"),
    ("prometheusrule", "PrometheusRule"),
    ("dashboards", "ConfigMap"),
];
/// The component that turns the Deployment into a StatefulSet of shards: it replaces an
/// object rather than adding some, so it is not among `COMPONENTS`.
const SHARDING: &str = "sharding";
/// The files the example overlay's secretGenerator reads, which the user creates.
const EXAMPLE_SECRET_FILES: [(&str, &str); 2] = [
    ("secrets/internal-password", "not-a-real-password\n"),
    (
        "secrets/docker-config.json",
        "{\"auths\": {\"registry.example.com\": {\"auth\": \"dXNlcjpub3QtcmVhbA==\"}}}\n",
    ),
];

fn kube_dir() -> PathBuf {
    root().join("deploy/kubernetes")
}

// ---------------------------------------------------------------------------------------
// Rendering with kubectl kustomize

/// The renderings the tests look at, by name: `base`, `base+<component>` for each
/// component and the sharding one, `example`, `example-moved` (another namespace, the Probe
/// instead of the ServiceMonitor), `example-changed-config` (one more line in config.toml)
/// and `example+sharding`.
fn renders() -> &'static BTreeMap<String, String> {
    static R: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    R.get_or_init(|| {
        // A copy, so that the secret files a user would create never land in the checkout.
        let tmp = tempfile::tempdir().expect("temp dir");
        let tree = tmp.path().join("kubernetes");
        copy_tree(&kube_dir(), &tree);
        let example = tree.join(EXAMPLE);
        for (file, content) in EXAMPLE_SECRET_FILES {
            let path = example.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        let mut dirs: Vec<(String, PathBuf)> = vec![
            ("base".into(), tree.join("base")),
            ("example".into(), example.clone()),
        ];
        for component in COMPONENTS.iter().map(|(c, _)| *c).chain([SHARDING]) {
            let dir = tree.join("test-renders").join(component);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("kustomization.yaml"),
                format!(
                    "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
                     resources: [../../base]\ncomponents: [../../components/{component}]\n"
                ),
            )
            .unwrap();
            dirs.push((format!("base+{component}"), dir));
        }
        // The example, as a user moving it to another namespace and switching to the Probe
        // would edit it: the `namespace:` line and the components list, nothing else.
        let moved = tree.join("overlays/moved");
        copy_tree(&example, &moved);
        let k = read(&moved.join("kustomization.yaml"));
        let namespace_line = format!("\nnamespace: {NAMESPACE}\n");
        assert_eq!(
            k.matches(&namespace_line).count(),
            1,
            "{EXAMPLE}/kustomization.yaml sets `namespace: {NAMESPACE}` once"
        );
        let swapped = k
            .replace(
                &namespace_line,
                &format!("\nnamespace: {OTHER_NAMESPACE}\n"),
            )
            .replace(
                "\n  - ../../components/servicemonitor\n",
                "\n  - ../../components/probe\n",
            );
        assert_ne!(
            swapped.matches("components/probe").count(),
            k.matches("components/probe").count(),
            "{EXAMPLE}/kustomization.yaml lists ../../components/servicemonitor as a component"
        );
        std::fs::write(moved.join("kustomization.yaml"), swapped).unwrap();
        dirs.push(("example-moved".into(), moved));
        let changed = tree.join("overlays/changed");
        copy_tree(&example, &changed);
        let mut config = read(&changed.join("config.toml"));
        config.push_str("\n# one more line\n");
        std::fs::write(changed.join("config.toml"), config).unwrap();
        dirs.push(("example-changed-config".into(), changed));
        // The example with the sharding component added to its list, as a user would.
        let sharded = tree.join("overlays/sharded");
        copy_tree(&example, &sharded);
        let k = read(&sharded.join("kustomization.yaml"));
        let with = k.replacen(
            "\ncomponents:\n",
            &format!("\ncomponents:\n  - ../../components/{SHARDING}\n"),
            1,
        );
        assert_ne!(
            with, k,
            "{EXAMPLE}/kustomization.yaml has a components list"
        );
        std::fs::write(sharded.join("kustomization.yaml"), with).unwrap();
        dirs.push((format!("example+{SHARDING}"), sharded));

        dirs.into_iter()
            .map(|(name, dir)| {
                let mut cmd = Command::new(tool("KUBECTL", "kubectl"));
                cmd.arg("kustomize").arg(&dir);
                let out = run(cmd);
                assert!(
                    out.status.success(),
                    "kubectl kustomize of {name} failed:\n{}",
                    output_text(&out)
                );
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    stderr.trim().is_empty(),
                    "kubectl kustomize of {name} warns:\n{stderr}"
                );
                (name, String::from_utf8(out.stdout).expect("UTF-8"))
            })
            .collect()
    })
}

fn render_text(name: &str) -> &'static str {
    renders()
        .get(name)
        .unwrap_or_else(|| panic!("no rendering {name}"))
}

// ---------------------------------------------------------------------------------------
// Reading rendered objects

/// One rendered object.
struct Manifest {
    doc: Value,
}

impl Manifest {
    fn kind(&self) -> &str {
        self.doc["kind"].as_str().unwrap_or("")
    }
    fn name(&self) -> &str {
        self.doc["metadata"]["name"].as_str().unwrap_or("")
    }
    fn namespace(&self) -> Option<&str> {
        self.doc["metadata"]["namespace"].as_str()
    }
}

/// The exporter's container, mounts, flags and data of a rendered object (super::k8s reads
/// them from the object's document).
fn container(workload: &Manifest) -> &Value {
    super::k8s::container(&workload.doc)
}

fn mounts(workload: &Manifest) -> BTreeMap<String, Value> {
    super::k8s::mounts(&workload.doc)
}

fn flag<'a>(workload: &'a Manifest, flag: &str) -> Option<&'a str> {
    super::k8s::flag(&workload.doc, flag)
}

fn data_keys(m: &Manifest) -> BTreeSet<String> {
    super::k8s::data_keys(&m.doc)
}

fn data_value(m: &Manifest, key: &str) -> String {
    super::k8s::data_value(&m.doc, key)
}

fn parse_documents(text: &str, what: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml_documents(path: &Path) -> Vec<Value> {
    parse_documents(&read(path), &path.display().to_string())
}

/// The objects of one rendering.
fn rendered(name: &str) -> Vec<Manifest> {
    let docs = parse_documents(render_text(name), name);
    assert!(!docs.is_empty(), "{name} renders nothing");
    docs.into_iter().map(|doc| Manifest { doc }).collect()
}

/// The objects of the example overlay.
fn manifests() -> Vec<Manifest> {
    rendered("example")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("deploy/kubernetes is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

fn is_kustomization(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n == "kustomization.yaml" || n == "kustomization.yml")
}

fn all_of_kind<'a>(manifests: &'a [Manifest], kind: &str) -> Vec<&'a Manifest> {
    manifests.iter().filter(|m| m.kind() == kind).collect()
}

fn one_of_kind<'a>(manifests: &'a [Manifest], kind: &str) -> &'a Manifest {
    let found = all_of_kind(manifests, kind);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind} in the rendering, found {}",
        found.len()
    );
    found[0]
}

fn named<'a>(manifests: &'a [Manifest], kind: &str, name: &str) -> &'a Manifest {
    manifests
        .iter()
        .find(|m| m.kind() == kind && m.name() == name)
        .unwrap_or_else(|| panic!("no {kind} named {name:?} is rendered"))
}

/// The ConfigMap mounted at /etc/oci-registry-exporter, whose config.toml the image passes
/// to --config.
fn config_configmap(manifests: &[Manifest]) -> &Manifest {
    // The Deployment, or the StatefulSet of the sharding component.
    let workloads: Vec<&Manifest> = manifests
        .iter()
        .filter(|m| matches!(m.kind(), "Deployment" | "StatefulSet"))
        .collect();
    assert_eq!(workloads.len(), 1, "one Deployment or StatefulSet");
    let mounts = mounts(workloads[0]);
    let volume = mounts
        .get(CONFIG_DIR)
        .unwrap_or_else(|| panic!("nothing is mounted at {CONFIG_DIR}"));
    let name = str_of(
        &volume["configMap"]["name"],
        "config volume's configMap.name",
    );
    let cm = named(manifests, "ConfigMap", name);
    assert!(
        volume_files(volume, &data_keys(cm)).contains("config.toml"),
        "the config volume has no config.toml"
    );
    cm
}

/// The ConfigMap's config.toml, written to a temporary directory.
fn config_file(manifests: &[Manifest]) -> (tempfile::TempDir, PathBuf) {
    let text = data_value(config_configmap(manifests), "config.toml");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("write config.toml");
    (dir, path)
}

/// Paths a kustomization names under `key` (resources, components) or in its generators'
/// `files` (`key=path` or `path`).
fn kustomization_paths(k: &Value) -> (Vec<String>, Vec<String>, Vec<String>) {
    let list = |key: &str| -> Vec<String> {
        seq(&k[key])
            .iter()
            .map(|r| str_of(r, key).to_string())
            .collect()
    };
    let mut files = Vec::new();
    for generator in ["configMapGenerator", "secretGenerator"] {
        for g in seq(&k[generator]) {
            for f in seq(&g["files"]) {
                let f = str_of(f, "files[]");
                files.push(f.split_once('=').map_or(f, |(_, p)| p).to_string());
            }
        }
    }
    (list("resources"), list("components"), files)
}

// ---------------------------------------------------------------------------------------
// The resources rendered from the chart

/// Runs scripts/render-deploy --check in `root` (the repository, or a copy of its parts).
fn render_check(root: &Path) -> Output {
    let mut cmd = Command::new(root.join("scripts/render-deploy"));
    cmd.arg("--check").env("HELM", tool("HELM", "helm"));
    run(cmd)
}

#[test]
fn kustomize_resources_are_what_the_chart_renders() {
    let out = render_check(&root());
    let t = output_text(&out);
    assert!(
        out.status.success(),
        "deploy/ is not what scripts/render-deploy writes; run scripts/render-deploy:\n{t}"
    );
    assert!(t.contains("deploy/ is current"), "{t}");
}

/// The check above fails on a stale file: a hand edit of a rendered resource, and a change
/// of alerts/ that neither the chart's copy nor the PrometheusRule has followed.
#[test]
fn render_check_names_what_is_stale() {
    let tmp = tempfile::tempdir().expect("temp dir");
    for dir in ["scripts", "deploy", "alerts", "dashboards"] {
        copy_tree(&root().join(dir), &tmp.path().join(dir));
    }
    let deployment = tmp.path().join("deploy/kubernetes/base/deployment.yaml");
    let edited = read(&deployment).replace("replicas: 1", "replicas: 2");
    std::fs::write(&deployment, edited).unwrap();
    let rules = tmp.path().join("alerts/oci-registry-exporter.rules.yml");
    let mut changed = read(&rules);
    changed.push_str("# one more line\n");
    std::fs::write(&rules, changed).unwrap();
    let out = render_check(tmp.path());
    let t = output_text(&out);
    assert!(
        !out.status.success(),
        "a stale deploy/ passed the check:\n{t}"
    );
    for stale in [
        "deploy/kubernetes/base/deployment.yaml",
        "deploy/helm/oci-registry-exporter/files/",
        "deploy/kubernetes/components/prometheusrule/prometheusrule.yaml",
    ] {
        assert!(t.contains(stale), "the check does not name {stale}:\n{t}");
    }
    assert!(t.contains("run scripts/render-deploy"), "{t}");
}

// ---------------------------------------------------------------------------------------
// The kustomize tree and its renderings

#[test]
fn kustomizations_list_every_manifest_and_only_existing_files() {
    let dir = kube_dir();
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    let kustomizations: Vec<&PathBuf> = files.iter().filter(|p| is_kustomization(p)).collect();
    let mut seen_dirs = BTreeSet::new();
    for path in &kustomizations {
        let here = path.parent().unwrap();
        let rel = here
            .strip_prefix(&dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        seen_dirs.insert(rel.clone());
        let docs = yaml_documents(path);
        assert_eq!(docs.len(), 1, "{rel}/kustomization.yaml is one document");
        let k = &docs[0];
        let want_kind = if rel.starts_with("components/") {
            ("kustomize.config.k8s.io/v1alpha1", "Component")
        } else {
            ("kustomize.config.k8s.io/v1beta1", "Kustomization")
        };
        assert_eq!(
            (k["apiVersion"].as_str(), k["kind"].as_str()),
            (Some(want_kind.0), Some(want_kind.1)),
            "{rel}/kustomization.yaml"
        );
        let (resources, components, generated_from) = kustomization_paths(k);
        let unique: BTreeSet<&String> = resources.iter().collect();
        assert_eq!(
            unique.len(),
            resources.len(),
            "{rel}: a resource is listed twice"
        );
        for r in resources.iter().chain(&components) {
            assert!(
                here.join(r).exists(),
                "{rel}/kustomization.yaml names {r}, which does not exist"
            );
        }
        for c in &components {
            let docs = yaml_documents(&here.join(c).join("kustomization.yaml"));
            assert_eq!(
                docs[0]["kind"].as_str(),
                Some("Component"),
                "{rel}: {c} is not a Component"
            );
        }
        if rel != EXAMPLE {
            // The example's generator files are the secrets the user creates.
            for f in &generated_from {
                assert!(
                    here.join(f).is_file(),
                    "{rel}: generator file {f} is missing"
                );
            }
        }
        // Every manifest of the directory is listed.
        for entry in std::fs::read_dir(here).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_file()
                && (name.ends_with(".yaml") || name.ends_with(".yml"))
                && !is_kustomization(&p)
            {
                assert!(
                    resources.contains(&name),
                    "deploy/kubernetes/{rel}/{name} is not listed in its kustomization.yaml's resources"
                );
            }
        }
    }
    let mut want: BTreeSet<String> = ["base".to_string(), EXAMPLE.to_string()].into();
    want.extend(COMPONENTS.iter().map(|(c, _)| format!("components/{c}")));
    want.insert(format!("components/{SHARDING}"));
    assert_eq!(seen_dirs, want, "the kustomize tree's directories");
    // Every manifest is in a directory with a kustomization.
    for path in files
        .iter()
        .filter(|p| !is_kustomization(p) && *p != &dir.join(CHART_VALUES))
    {
        let parent = path
            .parent()
            .unwrap()
            .strip_prefix(&dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            seen_dirs.contains(&parent),
            "{} is in no kustomization's directory",
            path.display()
        );
    }
}

/// The namespace is set in one place, the example overlay's `namespace:`: no manifest, base
/// or component sets one, no placeholder secret is shipped.
#[test]
fn namespace_is_set_only_in_the_overlay_and_no_placeholder_secret_ships() {
    let dir = kube_dir();
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    for path in &files {
        let rel = path
            .strip_prefix(&dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = read(path);
        assert!(
            !text.contains("CHANGE-ME"),
            "{rel} ships a CHANGE-ME placeholder"
        );
        for doc in yaml_documents(path) {
            if is_kustomization(path) {
                let expected =
                    (rel == format!("{EXAMPLE}/kustomization.yaml")).then_some(NAMESPACE);
                assert_eq!(doc["namespace"].as_str(), expected, "{rel}: namespace:");
                continue;
            }
            assert!(
                doc["metadata"]["namespace"].is_null(),
                "{rel} sets metadata.namespace; the overlay sets it"
            );
            assert_ne!(
                doc["kind"].as_str(),
                Some("Secret"),
                "{rel} is a Secret: generate it in the overlay"
            );
        }
    }
}

#[test]
fn every_rendering_is_schema_valid() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut paths = Vec::new();
    for (name, text) in renders() {
        let path = tmp.path().join(format!("{}.yaml", name.replace('+', "-")));
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    let mut cmd = Command::new(python_bin());
    cmd.arg(root().join("tests/helm_validate.py"))
        .arg("--kubernetes-version")
        .arg(KUBE_VERSION)
        .arg("--crd-schemas")
        .arg(root().join("tests/testdata/crd-schemas"))
        .args(&paths);
    let out = run(cmd);
    let t = output_text(&out);
    assert!(
        !t.contains("ModuleNotFoundError"),
        "tests/helm_validate.py needs kubernetes-validate (pip install kubernetes-validate; scripts/test does it):\n{t}"
    );
    assert!(out.status.success(), "a rendered object is invalid:\n{t}");
    for path in &paths {
        assert!(
            t.contains(&format!("OK {}", path.display())),
            "{} was not validated:\n{t}",
            path.display()
        );
    }
}

fn kinds(manifests: &[Manifest]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for m in manifests {
        *out.entry(m.kind().to_string()).or_insert(0) += 1;
    }
    out
}

#[test]
fn base_renders_the_exporter_alone_with_a_valid_config_and_no_secret() {
    let base = rendered("base");
    let want: BTreeMap<String, usize> = [
        ("ConfigMap", 1),
        ("Deployment", 1),
        ("Service", 1),
        ("ServiceAccount", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(kinds(&base), want, "the base's objects");
    for m in &base {
        assert_eq!(
            m.namespace(),
            None,
            "base: {} {} has a namespace",
            m.kind(),
            m.name()
        );
    }
    // Generated by configMapGenerator: its name carries the content hash, and the
    // Deployment mounts it by that name.
    let cm = config_configmap(&base);
    assert!(
        cm.name().starts_with("oci-registry-exporter-config-")
            && cm.name() != "oci-registry-exporter-config-",
        "the config ConfigMap has no hash suffix: {}",
        cm.name()
    );
    let (_dir, path) = config_file(&base);
    let config =
        Config::load(Some(&path)).unwrap_or_else(|e| panic!("base/config.toml is invalid: {e}"));
    assert!(
        config.warnings.is_empty(),
        "base/config.toml needs secrets the base does not have: {:?}",
        config.warnings
    );
}

#[test]
fn each_component_adds_only_its_objects_to_the_base() {
    let base = rendered("base");
    let base_objects: BTreeSet<(String, String)> = base
        .iter()
        .map(|m| (m.kind().into(), m.name().into()))
        .collect();
    for (component, kind) in COMPONENTS {
        let name = format!("base+{component}");
        let objects = rendered(&name);
        let all: BTreeSet<(String, String)> = objects
            .iter()
            .map(|m| (m.kind().into(), m.name().into()))
            .collect();
        assert!(all.is_superset(&base_objects), "{name} lost base objects");
        let added: Vec<&Manifest> = objects
            .iter()
            .filter(|m| !base_objects.contains(&(m.kind().into(), m.name().into())))
            .collect();
        assert!(!added.is_empty(), "{name} adds nothing");
        for m in &added {
            assert_eq!(m.kind(), kind, "{name} adds a {} {}", m.kind(), m.name());
            if kind == "ConfigMap" {
                assert_eq!(
                    m.doc["metadata"]["labels"]["grafana_dashboard"].as_str(),
                    Some("1"),
                    "{name}: {} is not labelled for Grafana's sidecar",
                    m.name()
                );
            }
        }
    }
}

#[test]
fn example_overlay_puts_everything_in_its_namespace_and_scrapes_once() {
    let objects = manifests();
    for m in &objects {
        assert_eq!(m.namespace(), Some(NAMESPACE), "{} {}", m.kind(), m.name());
    }
    let k = kinds(&objects);
    assert_eq!(k.get("ServiceMonitor"), Some(&1), "{k:?}");
    assert_eq!(
        k.get("Probe"),
        None,
        "the ServiceMonitor and the Probe together check every registry twice"
    );
    assert_eq!(k.get("PrometheusRule"), Some(&1), "{k:?}");
    assert_eq!(
        k.get("Secret"),
        Some(&2),
        "the two generated Secrets: {k:?}"
    );
    // The secret files the user created are in the Secrets, under the keys config.toml uses.
    let secret = all_of_kind(&objects, "Secret")
        .into_iter()
        .find(|s| s.doc["type"].as_str() == Some("Opaque"))
        .expect("the password Secret");
    assert_eq!(
        data_value(secret, "internal-password"),
        EXAMPLE_SECRET_FILES[0].1
    );
}

/// The chart's selectors, without the labels only Helm's objects carry, still select: the
/// Deployment's (immutable) selector is the name label alone, as it always was, the Service
/// selects the pods and the ServiceMonitor the Service, in its own namespace whatever the
/// overlay sets.
#[test]
fn selectors_match_once_the_helm_labels_are_dropped() {
    let manifests = manifests();
    let d = one_of_kind(&manifests, "Deployment");
    let s = one_of_kind(&manifests, "Service");
    let sm = one_of_kind(&manifests, "ServiceMonitor");
    let selector: Value =
        serde_yaml_ng::from_str("app.kubernetes.io/name: oci-registry-exporter").expect("YAML");
    assert_eq!(d.doc["spec"]["selector"]["matchLabels"], selector);
    let pod_labels = &d.doc["spec"]["template"]["metadata"]["labels"];
    for (what, selector, labels) in [
        (
            "Deployment",
            &d.doc["spec"]["selector"]["matchLabels"],
            pod_labels,
        ),
        ("Service", &s.doc["spec"]["selector"], pod_labels),
        (
            "ServiceMonitor",
            &sm.doc["spec"]["selector"]["matchLabels"],
            &s.doc["metadata"]["labels"],
        ),
    ] {
        let selector = selector.as_mapping().expect("a selector");
        assert!(!selector.is_empty(), "{what}: empty selector");
        for (k, v) in selector {
            assert_eq!(
                &labels[k], v,
                "{what} selects {k:?}, which its targets lack"
            );
        }
    }
    assert!(
        sm.doc["spec"]["namespaceSelector"].is_null(),
        "the ServiceMonitor names a namespace; the overlay's is the one"
    );
    for m in &manifests {
        let labels = m.doc["metadata"]["labels"]
            .as_mapping()
            .into_iter()
            .flatten();
        for (k, _) in labels {
            let k = str_of(k, "label");
            assert!(
                !matches!(
                    k,
                    "helm.sh/chart" | "app.kubernetes.io/managed-by" | "app.kubernetes.io/instance"
                ),
                "{} {} carries Helm's label {k}",
                m.kind(),
                m.name()
            );
        }
    }
}

/// Moving the example to another namespace takes one edit, and the Probe's prober url,
/// the one place the namespace is written inside a value, follows.
#[test]
fn namespace_override_moves_everything_and_the_probe_follows() {
    let objects = rendered("example-moved");
    for m in &objects {
        assert_eq!(
            m.namespace(),
            Some(OTHER_NAMESPACE),
            "{} {}",
            m.kind(),
            m.name()
        );
    }
    assert!(all_of_kind(&objects, "ServiceMonitor").is_empty());
    let p = one_of_kind(&objects, "Probe");
    let s = one_of_kind(&objects, "Service");
    assert_eq!(
        p.doc["spec"]["prober"]["url"].as_str(),
        Some(format!("{}.{OTHER_NAMESPACE}.svc:{PORT}", s.name()).as_str()),
        "the Probe's prober url does not follow the namespace"
    );
    assert!(
        !render_text("example-moved").contains(&format!(".{NAMESPACE}.svc")),
        "the moved rendering still names the {NAMESPACE} namespace"
    );
    probe_targets_the_configured_registries_through_the_service(&objects, OTHER_NAMESPACE);
}

/// configMapGenerator: a changed config.toml is a new ConfigMap name, so the Deployment's
/// pod template changes and the pods roll.
#[test]
fn a_config_change_renames_the_config_map_and_rolls_the_pods() {
    let before = manifests();
    let after = rendered("example-changed-config");
    let (a, b) = (config_configmap(&before), config_configmap(&after));
    assert_ne!(
        a.name(),
        b.name(),
        "the ConfigMap's name does not follow its content"
    );
    let template = |m: &[Manifest]| one_of_kind(m, "Deployment").doc["spec"]["template"].clone();
    assert_ne!(
        template(&before),
        template(&after),
        "the pod template did not change"
    );
}

/// The Probe scrapes /probe through the Service in `namespace`, for registries configured in
/// the ConfigMap (/probe refuses any other name).
fn probe_targets_the_configured_registries_through_the_service(
    manifests: &[Manifest],
    namespace: &str,
) {
    let p = one_of_kind(manifests, "Probe");
    let s = one_of_kind(manifests, "Service");
    assert_eq!(
        p.doc["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    let prober = &p.doc["spec"]["prober"];
    assert_eq!(
        prober["url"].as_str(),
        Some(format!("{}.{namespace}.svc:{PORT}", s.name()).as_str()),
        "the prober url is not the Service"
    );
    assert_eq!(prober["path"].as_str(), Some("/probe"));
    let targets: Vec<String> = seq(&p.doc["spec"]["targets"]["staticConfig"]["static"])
        .iter()
        .map(|t| str_of(t, "static target").to_string())
        .collect();
    let (_dir, path) = config_file(manifests);
    let config = Config::load(Some(&path)).expect("the ConfigMap's config.toml is valid");
    let names: Vec<String> = config.registries.iter().map(|r| r.name.clone()).collect();
    assert_eq!(
        targets, names,
        "the Probe's targets must be the names of the configured registries"
    );
}

#[test]
fn probe_component_on_the_base_targets_the_base_registries() {
    // Without an overlay there is no namespace: the url keeps the default one.
    probe_targets_the_configured_registries_through_the_service(
        &rendered("base+probe"),
        "monitoring",
    );
}

#[test]
fn config_map_config_passes_the_exporters_validation() {
    let manifests = manifests();
    let (_dir, path) = config_file(&manifests);
    let config = Config::load(Some(&path))
        .unwrap_or_else(|e| panic!("configmap.yaml's config.toml is invalid: {e}"));
    assert!(!config.registries.is_empty());

    // Secrets are files, each in a mounted Secret: never inline in the ConfigMap.
    let d = one_of_kind(&manifests, "Deployment");
    let mounts = mounts(d);
    let mut secret_files = 0;
    for target in &config.registries {
        let secret = match &target.credentials {
            Credentials::Anonymous | Credentials::DockerConfig { .. } => continue,
            Credentials::Basic { password, .. } => password.as_ref().unwrap_or_else(|| {
                panic!(
                    "registry {} has a username but no password_file",
                    target.name
                )
            }),
            Credentials::Bearer { token } => token,
        };
        let Secret::File(file) = secret else {
            panic!(
                "registry {} has an inline secret in the ConfigMap; use password_file or token_file",
                target.name
            );
        };
        let (dir, name) = (
            file.parent().unwrap().to_string_lossy().into_owned(),
            file.file_name().unwrap().to_string_lossy().into_owned(),
        );
        let volume = mounts.get(&dir).unwrap_or_else(|| {
            panic!(
                "registry {}: {} is not in a mounted volume",
                target.name,
                file.display()
            )
        });
        let secret_name = str_of(
            &volume["secret"]["secretName"],
            "the secret file's volume secret.secretName",
        );
        let secret = named(&manifests, "Secret", secret_name);
        assert!(
            volume_files(volume, &data_keys(secret)).contains(&name),
            "registry {}: Secret {secret_name} mounted at {dir} provides no file {name}",
            target.name
        );
        secret_files += 1;
    }
    assert!(
        secret_files > 0,
        "the example configuration should show a password_file"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"))
        .arg("--check-config")
        .arg("--config")
        .arg(&path)
        .env_clear()
        .output()
        .expect("run the exporter");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "--check-config rejected configmap.yaml's config.toml ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("config is valid"), "{stdout}");
}

#[test]
fn docker_config_secret_is_mounted_where_docker_config_points() {
    let manifests = manifests();
    let d = one_of_kind(&manifests, "Deployment");
    let secret = all_of_kind(&manifests, "Secret")
        .into_iter()
        .find(|s| s.doc["type"].as_str() == Some("kubernetes.io/dockerconfigjson"))
        .expect("a Secret of type kubernetes.io/dockerconfigjson");
    let json: serde_json::Value = serde_json::from_str(&data_value(secret, ".dockerconfigjson"))
        .expect(".dockerconfigjson is JSON");
    assert!(
        json["auths"].is_object(),
        ".dockerconfigjson has no auths object"
    );

    let env = seq(&container(d)["env"]);
    let docker_config = env
        .iter()
        .find(|e| e["name"].as_str() == Some("DOCKER_CONFIG"))
        .and_then(|e| e["value"].as_str())
        .expect("env DOCKER_CONFIG");
    let mounts = mounts(d);
    let volume = mounts
        .get(docker_config)
        .unwrap_or_else(|| panic!("nothing is mounted at DOCKER_CONFIG={docker_config}"));
    assert_eq!(
        volume["secret"]["secretName"].as_str(),
        Some(secret.name()),
        "DOCKER_CONFIG's volume is not the dockerconfigjson Secret"
    );
    let items = seq(&volume["secret"]["items"]);
    assert!(
        items
            .iter()
            .any(|i| i["key"].as_str() == Some(".dockerconfigjson")
                && i["path"].as_str() == Some("config.json")),
        "the dockerconfigjson volume must map .dockerconfigjson to config.json"
    );
}

// ---------------------------------------------------------------------------------------
// Dockerfile

#[test]
fn dockerfile_builds_locked_and_runs_as_non_root() {
    let text = read(&root().join("Dockerfile"));
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "the Dockerfile is multi-stage");
    assert!(
        froms[0].starts_with("FROM rust:1-bookworm"),
        "builder: {}",
        froms[0]
    );
    let last = froms[froms.len() - 1];
    assert!(
        last.contains("gcr.io/distroless/") && last.contains(":nonroot"),
        "final stage: {last}"
    );
    assert!(
        text.contains("cargo build --release --locked"),
        "the build must be --release --locked"
    );
    let after_last_from = &lines[lines.iter().position(|l| *l == last).unwrap()..];
    let user = after_last_from
        .iter()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("USER in the final stage");
    let uid = user["USER ".len()..].split(':').next().unwrap().trim();
    assert!(
        uid == "nonroot" || uid.parse::<u32>().is_ok_and(|u| u != 0),
        "{user} is not a non-root user"
    );
    assert!(
        lines.contains(&format!("EXPOSE {PORT}").as_str()),
        "EXPOSE {PORT}"
    );
    let entrypoint = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("ENTRYPOINT "))
        .expect("ENTRYPOINT");
    let argv: Vec<String> = serde_json::from_str(&entrypoint["ENTRYPOINT ".len()..])
        .expect("ENTRYPOINT in exec (JSON) form");
    assert!(
        argv[0].ends_with("/oci-registry-exporter"),
        "ENTRYPOINT runs {}",
        argv[0]
    );
    assert!(
        argv.windows(2)
            .any(|w| w[0] == "--config" && w[1] == CONFIG_PATH),
        "ENTRYPOINT must pass --config {CONFIG_PATH}: {argv:?}"
    );
    // What is mounted at CONFIG_DIR in Kubernetes (checked above) replaces this default.
    assert!(
        text.contains(&format!("COPY deploy/docker/config.toml {CONFIG_PATH}")),
        "the image ships deploy/docker/config.toml at {CONFIG_PATH}"
    );

    let ignore = read(&root().join(".dockerignore"));
    assert!(
        ignore
            .lines()
            .any(|l| matches!(l.trim(), "target" | "target/" | "/target" | "/target/")),
        ".dockerignore must exclude target/"
    );
}

/// The image's default config.toml configures no registry: the seed keys do.
#[test]
fn image_default_config_works_with_the_seed_keys() {
    let path = root().join("deploy/docker/config.toml");
    let run = |env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"))
            .arg("--check-config")
            .arg("--config")
            .arg(&path)
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .expect("run the exporter")
    };
    let out = run(&[
        ("OCI__RegistryUrl", "https://registry.example.com"),
        ("OCI__TestRepository", "library/alpine"),
    ]);
    assert!(
        out.status.success(),
        "the image's config with OCI__RegistryUrl is rejected: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("(default)"));
    let out = run(&[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no registry is configured"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// systemd

/// `Key=value` lines of a unit section; a key may repeat.
fn unit_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            current = line[1..line.len() - 1].to_string();
            continue;
        }
        assert!(!line.ends_with('\\'), "keep unit lines unbroken: {line}");
        if current == section {
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not Key=value: {line}"));
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

#[test]
fn systemd_unit_is_hardened() {
    let text = read(&root().join("deploy/systemd/oci-registry-exporter.service"));
    let service = unit_section(&text, "Service");
    let values = |key: &str| -> Vec<&str> {
        service
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let one = |key: &str| -> &str {
        let v = values(key);
        assert_eq!(v.len(), 1, "{key}= must be set once in [Service], is {v:?}");
        v[0]
    };
    for (key, want) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("EnvironmentFile", "-/etc/default/oci-registry-exporter"),
    ] {
        assert_eq!(one(key), want, "{key}=");
    }
    assert!(
        matches!(one("ProtectHome"), "yes" | "true" | "read-only" | "tmpfs"),
        "ProtectHome="
    );
    // A usage error (an invalid configuration after an edit) exits EXIT_USAGE; restarting
    // every RestartSec cannot fix it, so the unit must stop and show it.
    assert_eq!(
        one("RestartPreventExitStatus"),
        oci_registry_exporter::EXIT_USAGE.to_string(),
        "RestartPreventExitStatus="
    );
    assert!(
        values("SystemCallFilter").contains(&"@system-service"),
        "SystemCallFilter=@system-service"
    );
    // A LoadCredential= whose file is missing fails the start of the unit: none is active,
    // one is shown commented out, with how config.toml names it (%d/ID).
    assert!(
        values("LoadCredential").is_empty(),
        "an active LoadCredential= fails the unit when its file is absent; leave it commented out"
    );
    let commented: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("#LoadCredential="))
        .collect();
    assert!(
        !commented.is_empty(),
        "show a commented #LoadCredential=ID:PATH line for the password file"
    );
    for c in commented {
        let (id, source) = c.split_once(':').expect("LoadCredential=ID:PATH");
        assert!(
            !id.is_empty() && source.starts_with('/'),
            "LoadCredential={c}"
        );
        assert!(
            text.contains(&format!("%d/{id}"))
                || text.contains(&format!("$CREDENTIALS_DIRECTORY/{id}")),
            "the unit should show how config.toml names credential {id} (%d/{id})"
        );
    }
    // Descriptors: each scrape connection and each registry connection is one; the
    // exporter caps its connections from this limit (issue 12: 1,137 half-sent requests
    // exhausted a 1,024 default and silenced /-/healthy).
    let nofile: u64 = one("LimitNOFILE")
        .parse()
        .expect("LimitNOFILE= a number (soft and hard limit alike)");
    assert!(nofile >= 8192, "LimitNOFILE={nofile} is below 8192");
    let exec = one("ExecStart");
    let argv: Vec<&str> = exec.split_whitespace().collect();
    assert!(
        argv[0].ends_with("/oci-registry-exporter"),
        "ExecStart={exec}"
    );
    assert!(
        argv.windows(2)
            .any(|w| w[0] == "--config" && w[1] == CONFIG_PATH),
        "ExecStart must pass --config {CONFIG_PATH}"
    );
    let install = unit_section(&text, "Install");
    assert!(
        install.iter().any(|(k, _)| k == "WantedBy"),
        "[Install] WantedBy="
    );
}

#[test]
fn systemd_environment_example_names_the_seed_keys() {
    let text = read(&root().join("deploy/systemd/oci-registry-exporter.env"));
    for key in [
        "OCI__RegistryUrl",
        "Registry__Url",
        "OCI__Username",
        "OCI__Password",
        "OCI__Token",
        "OCI__TestRepository",
        "OCI__TestTag",
        "OCI__PushTestRepository",
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start_matches('#').starts_with(&format!("{key}="))),
            "the environment example does not show {key}="
        );
    }
    // Every line is a comment, blank, or KEY=value as EnvironmentFile= reads it.
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, _) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not KEY=value: {line}"));
        assert!(
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "bad variable name in: {line}"
        );
    }
}

/// The install steps in the unit's header copy files the repository has (target/ aside,
/// which the build makes), and the configuration from config/.
#[test]
fn systemd_install_steps_copy_files_the_repository_has() {
    let text = read(&root().join("deploy/systemd/oci-registry-exporter.service"));
    let installs: Vec<Vec<&str>> = text
        .lines()
        .filter_map(|l| l.trim_start_matches('#').trim().strip_prefix("install "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(!installs.is_empty(), "the unit shows its install steps");
    let mut config_installed = false;
    for argv in &installs {
        let operands: Vec<&str> = argv
            .iter()
            .copied()
            .filter(|a| !a.starts_with('-') && a.parse::<u32>().is_err() && !a.starts_with("<<<"))
            .collect();
        let (sources, dest) = operands.split_at(operands.len() - 1);
        for source in sources {
            if source.starts_with('/') || source.starts_with("target/") {
                continue;
            }
            assert!(
                root().join(source).is_file(),
                "the unit installs {source}, which the repository does not have"
            );
            if dest[0] == CONFIG_PATH {
                assert!(
                    source.starts_with("config/"),
                    "{source} is not from config/"
                );
                config_installed = true;
            }
        }
    }
    assert!(
        config_installed,
        "the install steps put a config/ example at {CONFIG_PATH}"
    );
}

// ---------------------------------------------------------------------------------------
// The sharding component

#[test]
fn sharding_component_makes_a_statefulset_of_shards_from_the_deployment() {
    for (plain, sharded) in [
        ("base".to_string(), format!("base+{SHARDING}")),
        ("example".to_string(), format!("example+{SHARDING}")),
    ] {
        let before = rendered(&plain);
        let after = rendered(&sharded);
        // The same objects, the Deployment now a StatefulSet of the same name.
        let objects = |ms: &[Manifest]| -> BTreeSet<(String, String)> {
            ms.iter()
                .map(|m| {
                    let k = if m.kind() == "Deployment" {
                        "StatefulSet"
                    } else {
                        m.kind()
                    };
                    (k.to_string(), m.name().to_string())
                })
                .collect()
        };
        assert_eq!(objects(&after), objects(&before), "{sharded}");
        assert!(all_of_kind(&after, "Deployment").is_empty(), "{sharded}");
        let d = one_of_kind(&before, "Deployment");
        let sts = one_of_kind(&after, "StatefulSet");
        assert_eq!(sts.name(), d.name());
        let svc = one_of_kind(&after, "Service");
        assert_eq!(sts.doc["spec"]["serviceName"].as_str(), Some(svc.name()));
        assert_eq!(
            sts.doc["spec"]["podManagementPolicy"].as_str(),
            Some("Parallel")
        );
        assert_eq!(sts.doc["spec"]["selector"], d.doc["spec"]["selector"]);

        // As many shards as pods, each pod's from its ordinal.
        let replicas = sts.doc["spec"]["replicas"].as_u64().expect("replicas");
        assert_eq!(
            flag(sts, "--total-shards"),
            Some(replicas.to_string().as_str())
        );
        assert_eq!(flag(sts, "--shard"), Some("$(POD_INDEX)"));
        let pod_index = seq(&container(sts)["env"])
            .iter()
            .find(|e| e["name"].as_str() == Some("POD_INDEX"))
            .expect("POD_INDEX in the container's env");
        assert_eq!(
            pod_index["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            Some("metadata.labels['apps.kubernetes.io/pod-index']")
        );

        // Otherwise the pod template is the Deployment's.
        let mut template = sts.doc["spec"]["template"].clone();
        let c = &mut template["spec"]["containers"][0];
        c["args"].as_sequence_mut().unwrap().retain(|a| {
            !a.as_str()
                .is_some_and(|a| a.starts_with("--shard=") || a.starts_with("--total-shards="))
        });
        c["env"]
            .as_sequence_mut()
            .unwrap()
            .retain(|e| e["name"].as_str() != Some("POD_INDEX"));
        assert_eq!(
            template, d.doc["spec"]["template"],
            "{sharded}: the pod template"
        );

        // Every pod's arguments, `$(POD_INDEX)` expanded as the kubelet does and --config
        // naming the ConfigMap's file here, are accepted by the exporter.
        let (_dir, path) = config_file(&after);
        for ordinal in 0..replicas {
            let args: Vec<String> = seq(&container(sts)["args"])
                .iter()
                .map(|a| match str_of(a, "args[]") {
                    a if a.starts_with("--config=") => format!("--config={}", path.display()),
                    a => a.replace("$(POD_INDEX)", &ordinal.to_string()),
                })
                .collect();
            let out = Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"))
                .args(&args)
                .arg("--check-config")
                .env_clear()
                .output()
                .expect("run the exporter");
            let t = output_text(&out);
            assert!(
                out.status.success(),
                "{sharded}: pod {ordinal} {args:?}:\n{t}"
            );
            assert!(
                t.contains(&format!("shard {ordinal} of {replicas} checks ")),
                "{sharded}: pod {ordinal}:\n{t}"
            );
        }
    }
}
