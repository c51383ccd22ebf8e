//! # activeshift
//!
//! Active Shift networks (Jeon & Kim, NeurIPS 2018) on any GPU through wgpu, with every kernel
//! written in WGSL, and a CPU twin of every kernel that serves as test reference and fallback.
//!
//! The Active Shift Layer (ASL) replaces a spatial convolution by a learnable per-channel
//! sub-pixel shift followed by a 1x1 convolution.
//!
//! Classify an image with the embedded Fashion-MNIST model (feature `default-model`, on by
//! default) on the CPU; [`Classifier::gpu`] runs the same model on a [`GpuContext`], and
//! [`Model::load`] reads any activeshift model file (such as the authors' ImageNet
//! AS-ResNet-w32 converted by `activeshift import-caffe`):
//!
//! ```
//! # #[cfg(feature = "default-model")]
//! # fn main() -> activeshift::Result<()> {
//! use activeshift::{Classifier, Model};
//!
//! let model = Model::embedded_default()?; // or Model::load("w32.safetensors")?
//! let mut classifier = Classifier::cpu(model);
//! let result = classifier.classify_file("examples/images/sneaker-0.png", 3)?;
//! assert_eq!(result.top[0].label, "Sneaker");
//! println!("{}: {:.1}%", result.top[0].label, result.top[0].prob * 100.0);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "default-model"))]
//! # fn main() {}
//! ```
//!
//! On the GPU, from async code (the web) or through `pollster::block_on` (native):
//!
//! ```no_run
//! # async fn demo() -> activeshift::Result<()> {
//! use activeshift::{Classifier, GpuContext, Model};
//! let ctx = GpuContext::new().await?;
//! let mut classifier = Classifier::gpu(&ctx, Model::load("w32.safetensors")?)?;
//! let bytes: Vec<u8> = Vec::new(); // a JPEG, PNG, ... read or fetched by the host
//! let result = classifier.classify_bytes(&bytes, 5).await?;
//! # Ok(()) }
//! ```
//!
//! Design notes (what the ASL computes, the networks, the model file format, the kernel
//! families): `docs/design.md` in the repository. This crate provides:
//!
//! - [`GpuContext`]: opens a device (honouring `WGPU_BACKEND` / `WGPU_ADAPTER_NAME`) or adopts a
//!   host application's `wgpu::Device` and `wgpu::Queue`;
//! - [`GpuTensor`]: f32 tensors in storage buffers, with async readback that works on native
//!   and on the web;
//! - [`gpu::kernels`]: one type per WGSL kernel (ASL forward and both gradients, the
//!   normalized shift gradient, the tiled 1x1 GEMM with epilogue and its backward GEMMs);
//! - [`cpu`]: the same computations in plain Rust.
//!
//! ```no_run
//! # async fn demo() -> activeshift::Result<()> {
//! use activeshift::{GpuContext, GpuTensor};
//! let ctx = GpuContext::new().await?;
//! let x = GpuTensor::from_slice(&ctx, &[1, 2, 4, 4], &[1.0; 32])?;
//! // xpos then ypos, one per channel
//! let shift = GpuTensor::from_slice(&ctx, &[2, 2], &[0.5, -1.0, 0.25, 2.0])?;
//! let out = GpuTensor::zeros(&ctx, &[1, 2, 4, 4])?;
//! ctx.submit(|enc| {
//!     ctx.kernels().asl_forward().prepare(&ctx, &x, &shift, 1, &out).map(|d| d.record(enc))
//! })?;
//! let values = out.read(&ctx).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "caffe")]
pub mod caffe;
pub mod classify;
pub mod cpu;
#[cfg(feature = "train")]
pub mod data;
mod error;
pub mod gpu;
pub mod model;
pub mod preprocess;
mod shape;
#[cfg(feature = "train")]
pub mod train;

pub use classify::{Classification, Classifier, TopClass};
pub use error::{Error, Result};
pub use gpu::{GpuContext, GpuTensor};
pub use model::{ArchConfig, Model, Output};
pub use shape::Shape4;
