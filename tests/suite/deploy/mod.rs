//! What ships around the binary: the kustomize tree (`kustomize`), the Helm chart (`helm`),
//! the container image's recipe (`dockerfile`) and `scripts/demo` (`demo`).

mod demo;
mod dockerfile;
mod helm;
mod kustomize;
