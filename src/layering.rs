//! The library's layers and the one direction their dependencies point (docs/design.md,
//! "Crates and what depends on what"): the kernel layers (`gpu/`, `cpu/`) and image input
//! (`preprocess.rs`) sit below the networks (`model/`, `classify.rs`) and training (`train/`,
//! `data.rs`, `image_folder.rs`, `caffe.rs`). This test reads the lower layers' sources and
//! fails on any path into an upper one, so the direction cannot quietly regress.

use std::path::{Path, PathBuf};

/// Modules of the upper layers, as `crate::NAME` paths name them.
const UPPER: &[&str] = &[
    "model",
    "classify",
    "train",
    "data",
    "image_folder",
    "caffe",
];

/// Files and folders of the lower layers, relative to `src/`.
const LOWER: &[&str] = &["gpu", "cpu", "preprocess.rs", "shape.rs", "error.rs"];

/// Every upper module that `source` reaches through a `crate::` path, including grouped
/// imports (`crate::{error::Error, model::Plan}`) and doc links (`[x](crate::model::X)`).
fn upward_paths(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let names: Vec<&str> = match rest.trim_start().strip_prefix('{') {
            // A group: its top-level names (nested groups start with one of them).
            Some(group) => {
                let end = group.find('}').unwrap_or(group.len());
                group[..end]
                    .split(',')
                    .map(|item| item.trim().split("::").next().unwrap_or(""))
                    .collect()
            }
            None => vec![rest],
        };
        for name in names {
            let ident: String = name
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if UPPER.contains(&ident.as_str()) {
                found.push(ident);
            }
        }
    }
    found
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        entries.sort();
        for entry in entries {
            rust_files(&entry, out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

#[test]
fn the_scanner_finds_upward_paths() {
    assert_eq!(upward_paths("use crate::model::Plan;"), ["model"]);
    assert_eq!(
        upward_paths("use crate::{error::Error, train::Trainer};\nuse crate::gpu::X;"),
        ["train"]
    );
    assert_eq!(
        upward_paths("/// [`GpuModel`](crate::model::GpuModel)\nfn f(_: crate::data::Dataset) {}"),
        ["model", "data"]
    );
    assert!(
        upward_paths("use crate::gpu::{kernels, tune::Tuning};\nuse crate::error::Result;")
            .is_empty()
    );
    // A module whose name only starts like an upper one is not one.
    assert!(upward_paths("use crate::models_x::A; use crate::training::B;").is_empty());
}

#[test]
fn kernel_layers_and_image_input_know_no_networks_or_training() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for lower in LOWER {
        let path = src.join(lower);
        assert!(path.exists(), "{} is gone: update LOWER", path.display());
        rust_files(&path, &mut files);
    }
    assert!(files.len() > 10, "found only {files:?}");
    let mut wrong = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for name in upward_paths(&text) {
            wrong.push(format!("{} uses crate::{name}", file.display()));
        }
    }
    assert!(
        wrong.is_empty(),
        "the lower layers must not reach upward:\n{}",
        wrong.join("\n")
    );
}
