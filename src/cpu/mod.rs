//! CPU twins of the GPU kernels.
//!
//! Plain, readable Rust written to mirror the WGSL in `shaders/` loop for loop. They are the
//! reference every GPU kernel is tested against and the fallback when no adapter exists. All
//! functions are generic over the float type so tests can run them in `f64` as an independent
//! high-precision reference.

mod asl;
mod conv;
mod elementwise;
#[cfg(feature = "train")]
pub(crate) mod fast;

pub use asl::{
    SHIFT_LIMIT, asl_backward_input, asl_backward_shift, asl_forward, normalize_shift_grad,
};
pub use conv::{
    Epilogue, asl_conv1x1, conv1x1, conv1x1_backward_input, conv1x1_backward_weight, conv3x3,
    depthwise3x3,
};
pub use elementwise::{affine, copy, global_avg_pool, softmax};

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
