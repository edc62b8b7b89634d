//! The repository's own invariants: import layers by rank (`layers`), generated docs kept
//! current (`docs`), words that agree across files (`words`), the build script's inputs
//! (`build_script`) and the fast lane's list (`fast_lane`).

mod build_script;
mod docs;
mod fast_lane;
mod layers;
mod words;
