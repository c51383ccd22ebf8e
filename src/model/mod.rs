//! Networks: configurations, model files, and the execution plan shared by the CPU and GPU
//! engines.

pub mod config;
#[cfg(feature = "default-model")]
mod default;
mod diagnose;
mod file;
mod gpu_engine;
pub mod imagenet;
#[cfg(feature = "caffe")]
mod import;
pub mod lower;
pub mod params;
pub mod plan;
mod run;
mod synthetic;

pub use crate::error::read_file_limited;
pub use config::{ArchConfig, BlockKind, BlockSpec, ColorOrder, Preprocess, StageConfig};
#[cfg(feature = "default-model")]
pub use default::DEFAULT_MODEL_BYTES;
pub use file::{
    FORMAT, HostTensor, MAX_HEADER_BYTES, MAX_LABELS_FILE_BYTES, MAX_MODEL_FILE_BYTES, MAX_TENSORS,
    Model, read_labels, read_labels_file, read_tensors, write_atomic, write_tensors_atomic,
};
#[cfg(feature = "train")]
pub(crate) use file::{encode_tensors, parse_tensors};
pub use gpu_engine::{GpuModel, OpDispatch};
#[cfg(feature = "caffe")]
pub use import::import_caffe;
pub use lower::{LoweredOp, LoweredPlan, Lowering, Prologue};
pub use params::{Norm, ParamId};
pub use plan::{Op, Plan, PlanBuilder, Slot};
pub use run::Output;
