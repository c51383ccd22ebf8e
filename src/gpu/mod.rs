//! The GPU runtime: device creation (or adoption of a host's device), tensors, kernels.

mod context;
pub mod kernels;
mod tensor;

pub use context::{GpuContext, required_limits};
pub use tensor::GpuTensor;
pub(crate) use tensor::{read_mapped, usage_names};
