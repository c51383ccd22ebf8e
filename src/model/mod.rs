//! Networks: configurations, model files, and the execution plan shared by the CPU and GPU
//! engines.

pub mod config;
mod file;
pub mod plan;
mod run;

pub use config::{ArchConfig, BlockSpec, ColorOrder, Preprocess, StageConfig};
pub use file::{FORMAT, HostTensor, Model};
pub use plan::{Op, Plan, Slot};
pub use run::Output;
