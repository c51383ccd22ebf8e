//! CPU twins of the GPU kernels, and the fast CPU op set.
//!
//! The twins: plain, readable Rust written to mirror the WGSL in `shaders/` loop for loop,
//! generic over the float type so tests can run them in `f64` as an independent
//! high-precision reference. They are the reference every GPU kernel and every fast CPU op is
//! tested against, and nothing else runs them.
//!
//! [`fast`]: the one fast CPU op set (f32, multi-threaded), what the CPU engine and the CPU
//! trainer run.

mod asl;
mod conv;
mod elementwise;
pub mod fast;
mod norm;

pub use asl::{
    SHIFT_LIMIT, asl_backward_input, asl_backward_shift, asl_forward, normalize_shift_grad,
};
pub use conv::{
    Epilogue, asl_conv1x1, conv1x1, conv1x1_backward_input, conv1x1_backward_weight, conv3x3,
    conv3x3_backward_input, conv3x3_backward_weight, depthwise3x3, depthwise3x3_backward,
};
pub use elementwise::{affine, copy, global_avg_pool, softmax};
pub use norm::{batchnorm_relu_backward, batchnorm_relu_train};

use crate::error::{Error, Result};

/// Check that a slice holds exactly `expected` elements.
pub(crate) fn check_len<T>(
    op: &'static str,
    what: &str,
    data: &[T],
    expected: usize,
    shape: impl std::fmt::Display,
) -> Result<()> {
    if data.len() != expected {
        return Err(Error::shape(
            op,
            what,
            format!("{expected} elements for shape {shape}"),
            format!("{} elements", data.len()),
        ));
    }
    Ok(())
}
