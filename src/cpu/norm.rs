//! BatchNorm in training mode (batch statistics) followed by ReLU, and its backward: the
//! twins of `shaders/batchnorm_train.wgsl`, written straight from the definition in the
//! float type of the caller (the tests run them in f64).

use super::check_len;
use crate::error::Result;
use crate::shape::{Shape4, check_nonempty};
use num_traits::Float;

/// BatchNorm epsilon (as [`fast::BN_EPS`](super::fast::BN_EPS)).
fn eps<T: Float>() -> T {
    T::from(1e-5f32).unwrap_or_else(T::epsilon)
}

/// `y = max(0, gamma (x - mean) / sqrt(var + eps) + beta)` with the batch's per-channel mean
/// and biased variance over (N, H, W). Returns `y` and `[3, C]`: mean, variance,
/// `1 / sqrt(var + eps)`.
pub fn batchnorm_relu_train<T: Float>(
    x: &[T],
    xs: Shape4,
    gamma: &[T],
    beta: &[T],
) -> Result<(Vec<T>, Vec<T>)> {
    const OP: &str = "batchnorm_relu_train";
    check_nonempty(OP, "input", xs)?;
    check_len(OP, "input", x, xs.len(), xs)?;
    check_len(OP, "gamma", gamma, xs.c, format!("[{}]", xs.c))?;
    check_len(OP, "beta", beta, xs.c, format!("[{}]", xs.c))?;
    let m = T::from(xs.n * xs.plane()).unwrap_or_else(T::one);
    let plane = |n: usize, c: usize| &x[(n * xs.c + c) * xs.plane()..][..xs.plane()];
    let mut stats = vec![T::zero(); 3 * xs.c];
    let mut y = vec![T::zero(); x.len()];
    for c in 0..xs.c {
        let mean = (0..xs.n)
            .flat_map(|n| plane(n, c))
            .fold(T::zero(), |a, &v| a + v)
            / m;
        let var = (0..xs.n)
            .flat_map(|n| plane(n, c))
            .fold(T::zero(), |a, &v| a + (v - mean) * (v - mean))
            / m;
        let inv_std = T::one() / (var + eps()).sqrt();
        stats[c] = mean;
        stats[xs.c + c] = var;
        stats[2 * xs.c + c] = inv_std;
        for n in 0..xs.n {
            let o = (n * xs.c + c) * xs.plane();
            for i in o..o + xs.plane() {
                y[i] = (gamma[c] * (x[i] - mean) * inv_std + beta[c]).max(T::zero());
            }
        }
    }
    Ok((y, stats))
}

/// Backward of [`batchnorm_relu_train`]: `(dx, dgamma, dbeta)` from the output gradient `dy`,
/// the input `x`, the output `y` and the statistics `[3, C]`.
pub fn batchnorm_relu_backward<T: Float>(
    dy: &[T],
    x: &[T],
    y: &[T],
    xs: Shape4,
    gamma: &[T],
    stats: &[T],
) -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
    const OP: &str = "batchnorm_relu_backward";
    check_nonempty(OP, "input", xs)?;
    for (what, t) in [("output gradient", dy), ("input", x), ("output", y)] {
        check_len(OP, what, t, xs.len(), xs)?;
    }
    check_len(OP, "gamma", gamma, xs.c, format!("[{}]", xs.c))?;
    check_len(OP, "statistics", stats, 3 * xs.c, format!("[3, {}]", xs.c))?;
    let m = T::from(xs.n * xs.plane()).unwrap_or_else(T::one);
    let (mut dx, mut dgamma, mut dbeta) = (
        vec![T::zero(); x.len()],
        vec![T::zero(); xs.c],
        vec![T::zero(); xs.c],
    );
    let idx = |c: usize| {
        (0..xs.n).flat_map(move |n| {
            let o = (n * xs.c + c) * xs.plane();
            o..o + xs.plane()
        })
    };
    for c in 0..xs.c {
        let (mean, inv_std) = (stats[c], stats[2 * xs.c + c]);
        let dz = |i: usize| if y[i] > T::zero() { dy[i] } else { T::zero() };
        let xhat = |i: usize| (x[i] - mean) * inv_std;
        dbeta[c] = idx(c).fold(T::zero(), |a, i| a + dz(i));
        dgamma[c] = idx(c).fold(T::zero(), |a, i| a + dz(i) * xhat(i));
        for i in idx(c) {
            dx[i] = gamma[c] * inv_std * (dz(i) - dbeta[c] / m - xhat(i) * dgamma[c] / m);
        }
    }
    Ok((dx, dgamma, dbeta))
}
