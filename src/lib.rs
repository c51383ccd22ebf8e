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
//! Train a network (feature `train`, on by default) on the CPU, or on the GPU with
//! `train::GpuBackend::new(ctx)` in place of [`train::CpuBackend`]; the same [`train::Session`]
//! runs forward, backward and the optimiser on either, and [`train::Trainer::export`] gives an
//! inference [`Model`] (BatchNorm folded) to save or classify with:
//!
//! ```
//! # #[cfg(feature = "train")]
//! # fn main() -> activeshift::Result<()> {
//! use activeshift::data::Dataset;
//! use activeshift::train::{CpuBackend, Session, TrainSettings, Trainer, fashion_mnist_config};
//!
//! // 16 blank 28x28 images, labels 0..9 (activeshift::data::FashionMnist holds the real set).
//! let mut data = Dataset::default(); // 1 x 28 x 28
//! for i in 0..16 {
//!     data.push(&[0; 784], i % 10)?;
//! }
//! let labels = (0..10).map(|c| format!("class {c}")).collect();
//! let settings = TrainSettings { epochs: 1, batch: 8, ..TrainSettings::default() };
//! let trainer = Trainer::new(fashion_mnist_config(4, 1), labels, settings)?;
//! let mut session = Session::new(trainer, CpuBackend)?;
//! let order: Vec<usize> = (0..data.len()).collect();
//! for (step, batch) in order.chunks(8).enumerate() {
//!     session.step(&data, batch, 0.1, step as u64)?;
//! }
//! println!("loss {:.3}", session.stats()?.loss());
//! let model = session.into_trainer()?.export()?; // model.save(path, false) writes the file
//! # let _ = model;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "train"))]
//! # fn main() {}
//! ```
//!
//! Embed a model in a host application's own wgpu device: adopt the device, then record the
//! whole network into the host's command encoder, reading a buffer the host wrote on the GPU and
//! writing class scores into one it owns ([`docs::embedding`] has the details):
//!
//! ```no_run
//! # fn demo(device: &wgpu::Device, queue: &wgpu::Queue, adapter: &wgpu::Adapter,
//! #         input: &wgpu::Buffer, scores: &wgpu::Buffer) -> activeshift::Result<()> {
//! use activeshift::{GpuContext, Model, model::GpuModel};
//! let ctx = GpuContext::from_device(device, queue, adapter.get_info())?;
//! let mut net = GpuModel::new(&ctx, &Model::load("model.safetensors")?)?;
//! let mut encoder = device.create_command_encoder(&Default::default());
//! // ... the host's passes that write `input` ([1, C, H, W] f32, STORAGE usage) ...
//! net.record(&mut encoder, input, 1, Some(scores))?;
//! // ... the host's passes that read `scores` ([1, classes] logits, then probabilities) ...
//! queue.submit([encoder.finish()]);
//! # Ok(()) }
//! ```
//!
//! Design notes (what the ASL computes, the networks, the model file format, the kernel
//! families): [`docs::design`]. This crate provides:
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
/// The project's longer documents, as pages of this documentation.
pub mod docs {
    #[doc = include_str!("../docs/design.md")]
    pub mod design {}
    #[doc = include_str!("../docs/embedding.md")]
    pub mod embedding {}
}
pub mod classify;
pub mod cpu;
#[cfg(feature = "train")]
pub mod data;
mod error;
pub mod gpu;
#[cfg(feature = "train")]
pub mod image_folder;
#[cfg(test)]
mod layering;
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
