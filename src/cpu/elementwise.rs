//! Per-channel and per-row layers on the CPU: the affine (folded BatchNorm) with optional ReLU,
//! global average pooling and the row-wise softmax. Mirrors `shaders/affine.wgsl`,
//! `global_avg_pool.wgsl` and `softmax.wgsl`.

use super::check_len;
use crate::error::{Error, Result};
use crate::shape::{Shape4, check_nonempty};
use num_traits::Float;

/// Per-channel affine: `y[n, c, i, j] = scale[c] * x[n, c, i, j] + bias[c]`, then `max(y, 0)`
/// when `relu`. `x` is NCHW with shape `xs`, `scale` and `bias` are `[C]`; returns `xs`.
pub fn affine<T: Float>(
    x: &[T],
    xs: Shape4,
    scale: &[T],
    bias: &[T],
    relu: bool,
) -> Result<Vec<T>> {
    const OP: &str = "affine";
    check_nonempty(OP, "input", xs)?;
    check_len(OP, "input", x, xs.len(), xs)?;
    check_len(OP, "scale", scale, xs.c, format!("[{}]", xs.c))?;
    check_len(OP, "bias", bias, xs.c, format!("[{}]", xs.c))?;
    let plane = xs.plane();
    Ok(x.iter()
        .enumerate()
        .map(|(idx, &v)| {
            let c = (idx / plane) % xs.c;
            let r = scale[c] * v + bias[c];
            if relu { r.max(T::zero()) } else { r }
        })
        .collect())
}

/// Global average pooling: `y[n, c] = (sum over i, j of x[n, c, i, j]) / (H * W)`. `x` is NCHW
/// with shape `xs`; returns `[N, C, 1, 1]` (`N * C` values).
pub fn global_avg_pool<T: Float>(x: &[T], xs: Shape4) -> Result<Vec<T>> {
    const OP: &str = "global_avg_pool";
    check_nonempty(OP, "input", xs)?;
    check_len(OP, "input", x, xs.len(), xs)?;
    let count = T::from(xs.plane())
        .ok_or_else(|| Error::invalid(OP, format!("plane size {} is not a float", xs.plane())))?;
    Ok(x.chunks_exact(xs.plane())
        .map(|plane| plane.iter().fold(T::zero(), |acc, &v| acc + v) / count)
        .collect())
}

/// Numerically stable softmax of every row of a row-major `[rows, cols]` matrix:
/// `y[r, k] = exp(x[r, k] - m) / sum_k' exp(x[r, k'] - m)` with `m` the row maximum. Every
/// row is a distribution whatever its values: infinite logits count as the largest finite
/// value of their sign, NaN as the lowest.
pub fn softmax<T: Float>(x: &[T], rows: usize, cols: usize) -> Result<Vec<T>> {
    const OP: &str = "softmax";
    if rows == 0 || cols == 0 {
        return Err(Error::shape(
            OP,
            "input",
            "a non-empty [N, K] matrix",
            format!("[{rows}, {cols}]"),
        ));
    }
    let len = rows
        .checked_mul(cols)
        .ok_or_else(|| Error::invalid(OP, format!("shape [{rows}, {cols}] overflows")))?;
    check_len(OP, "input", x, len, format!("[{rows}, {cols}]"))?;
    // Logits that overflowed (weights near the largest float) must not give NaN: +-Inf is
    // taken as the largest finite value of its sign and NaN as the lowest, so `v - m` is never
    // `Inf - Inf`, and the largest term is exp(0) = 1. Ties at the top share the probability.
    let finite = |v: T| {
        if v.is_nan() {
            T::min_value()
        } else {
            v.max(T::min_value()).min(T::max_value())
        }
    };
    let mut y = Vec::with_capacity(len);
    for row in x.chunks_exact(cols) {
        let m = row.iter().fold(finite(row[0]), |m, &v| m.max(finite(v)));
        let sum = row
            .iter()
            .fold(T::zero(), |s, &v| s + (finite(v) - m).exp());
        let inv = T::one() / sum;
        y.extend(row.iter().map(|&v| (finite(v) - m).exp() * inv));
    }
    Ok(y)
}

/// A copy of `x` (the twin of `shaders/copy.wgsl`).
pub fn copy<T: Clone>(x: &[T]) -> Vec<T> {
    x.to_vec()
}
