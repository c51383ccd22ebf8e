//! The `activeshift` program's tests: they run the binary this package builds
//! (`CARGO_BIN_EXE_activeshift`) on files, folders, pipes and the authors' data. One test
//! binary, one module per suite: `cargo test --release -p activeshift-cli --test cli --
//! cli_train::` runs one suite. The helpers are the library's tests' own (tests/common).

#[path = "../../../tests/bad_input/mod.rs"]
mod bad_input;
#[path = "../../../tests/common/mod.rs"]
mod common;

mod ablation;
mod cli;
mod cli_eval;
mod cli_train;
mod pipeline_cache;
mod robustness_cli;
mod train_images;
