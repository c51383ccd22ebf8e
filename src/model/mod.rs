//! Networks: configurations, model files, and the execution plan shared by the CPU and GPU
//! engines.

pub mod config;
mod file;
mod gpu_engine;
#[cfg(feature = "caffe")]
mod import;
pub mod plan;
mod run;

pub use config::{ArchConfig, BlockSpec, ColorOrder, Preprocess, StageConfig};
pub use file::{FORMAT, HostTensor, Model, read_labels};
pub use gpu_engine::GpuModel;
#[cfg(feature = "caffe")]
pub use import::import_caffe;
pub use plan::{Op, Plan, Slot};
pub use run::Output;
