//! The library's tests that need no GPU: the fast CPU ops against the reference ones,
//! lowering, CPU training, the model file, the Caffe reader, image folders, the shaders (naga:
//! validation, layouts, every backend's translation), files and images that must be refused.
//! One test binary (one link of the library), one module per suite: `cargo test --release
//! --test cpu -- train::` runs one suite.

#[path = "../bad_input/mod.rs"]
mod bad_input;
#[path = "../common/mod.rs"]
mod common;

mod caffe;
mod cpu_fast;
mod cpu_fast_ops;
mod image_folder;
mod lowering;
mod model_file;
mod reliability;
mod robustness_files;
mod robustness_images;
mod shader_backends;
mod shaders;
mod train;
