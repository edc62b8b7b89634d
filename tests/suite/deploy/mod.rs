//! What ships around the binary: the kustomize tree (`kustomize`), the Helm chart (`helm`),
//! the container image's recipe (`dockerfile`) and `scripts/demo` (`demo`); `k8s` holds what
//! the first three share (the tools, rendered objects' containers, mounts and data).

mod demo;
mod dockerfile;
mod helm;
mod k8s;
mod kustomize;
