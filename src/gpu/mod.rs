//! The GPU runtime: device creation (or adoption of a host's device), tensors, kernels.

pub mod compile_cost;
mod context;
pub mod kernels;
mod policy;
mod tensor;
mod timing;
pub mod tune;

pub use compile_cost::CompileTime;
pub use context::{GpuContext, TransferCounts, required_limits, select_adapter};
pub use policy::{KernelFamily, KernelPolicy, KernelPolicyBuilder};
#[cfg(not(target_arch = "wasm32"))]
pub use tensor::read_many_blocking;
#[cfg(all(feature = "train", not(target_arch = "wasm32")))]
pub(crate) use tensor::read_mapped_prefix;
pub use tensor::{GpuTensor, read_many};
pub(crate) use tensor::{read_mapped, usage_names};
pub use timing::DispatchTimer;
