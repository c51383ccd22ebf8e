//! The library's tests that open a GPU adapter: every kernel against its CPU twin (and the
//! design's reference identities on both), the hardware GPUs' kernel family, whole networks,
//! training on the GPU, embedding in a host's frame, the GPU path's robustness. They skip
//! without an adapter unless `ACTIVESHIFT_REQUIRE_GPU=1` (tests/common). One test binary (one
//! link of the library), one module per suite: `cargo test --release --test gpu --
//! gpu_layers::` runs one suite.

#[path = "../bad_input/mod.rs"]
mod bad_input;
#[path = "../common/mod.rs"]
mod common;

mod asl_reference;
mod embed;
mod gpu_depthwise;
mod gpu_gemm;
mod gpu_layers;
mod gpu_model;
mod gpu_resident;
mod gpu_train;
mod gpu_vs_cpu;
mod hardware_kernels;
mod imagenet;
mod robustness_gpu;
mod soak;
