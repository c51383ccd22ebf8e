//! Per-channel normalisation: the inference affine (+ReLU), BatchNorm with batch statistics
//! with or without a ReLU after it (the training form of every affine layer), its backward, the
//! running statistics, and the per-channel sum (bias gradients). The twins: [`crate::cpu::affine`], [`crate::cpu::batchnorm_relu_train`],
//! [`crate::cpu::batchnorm_relu_backward`].
//!
//! Batch statistics and parameter gradients are summed in f64, per (image, channel) plane and
//! then over the planes in order; the variance is combined from per-plane
//! centred sums (no cancellation from `E[x^2] - E[x]^2`).

use super::planes_per_task;
use crate::shape::Shape4;
use rayon::prelude::*;

/// BatchNorm epsilon.
pub const BN_EPS: f32 = 1e-5;

/// Per-channel affine with optional ReLU into `y`, as [`affine`](crate::cpu::affine) computes
/// it.
pub fn affine(x: &[f32], xs: Shape4, scale: &[f32], bias: &[f32], relu: bool, y: &mut [f32]) {
    let per = planes_per_task(xs.n * xs.c, xs.plane());
    y.par_chunks_mut(xs.plane() * per)
        .zip(x.par_chunks(xs.plane() * per))
        .enumerate()
        .for_each(|(task, (ds, ss))| {
            for (k, (d, s)) in ds
                .chunks_mut(xs.plane())
                .zip(ss.chunks(xs.plane()))
                .enumerate()
            {
                let c = (task * per + k) % xs.c;
                let (a, b) = (scale[c], bias[c]);
                if relu {
                    d.iter_mut()
                        .zip(s)
                        .for_each(|(v, &u)| *v = (a * u + b).max(0.0));
                } else {
                    d.iter_mut().zip(s).for_each(|(v, &u)| *v = a * u + b);
                }
            }
        });
}

/// `f(plane index, plane)` for every channel plane of `x`, in parallel; the results in plane
/// order.
fn per_plane<R: Send>(x: &[f32], xs: Shape4, f: impl Fn(usize, &[f32]) -> R + Sync) -> Vec<R> {
    let per = planes_per_task(xs.n * xs.c, xs.plane());
    x.par_chunks(xs.plane() * per)
        .enumerate()
        .flat_map_iter(|(task, chunk)| {
            let f = &f;
            chunk
                .chunks(xs.plane())
                .enumerate()
                .map(move |(k, p)| f(task * per + k, p))
        })
        .collect()
}

/// `sum f(v)` over a plane in f64, in four lanes (vectorisable).
fn lane_sum(v: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut a = [0.0f64; 4];
    let chunks = v.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..4 {
            a[l] += f(f64::from(c[l]));
        }
    }
    for (l, &x) in tail.iter().enumerate() {
        a[l] += f(f64::from(x));
    }
    (a[0] + a[1]) + (a[2] + a[3])
}

/// `d` where the ReLU output `y` is positive, else 0, as a bit mask (so that loops over lanes
/// vectorise; the same value as the branch).
#[inline(always)]
fn relu_mask(y: f32, d: f32) -> f32 {
    let keep = if y > 0.0 { u32::MAX } else { 0 };
    f32::from_bits(d.to_bits() & keep)
}

/// `d` through the ReLU whose output is `y` ([`relu_mask`]) when `RELU`, else `d`.
#[inline(always)]
fn through<const RELU: bool>(y: f32, d: f32) -> f32 {
    if RELU { relu_mask(y, d) } else { d }
}

/// `(sum dz, sum dz (x - mu))` over a plane, `dz` the gradient `dy` through the ReLU whose
/// output is `y` (`dy` itself without `RELU`): eight f32 lanes per block of 256 values
/// (vectorisable), the blocks summed in f64.
fn relu_grad_sums<const RELU: bool>(x: &[f32], y: &[f32], dy: &[f32], mu: f32) -> (f64, f64) {
    let (mut ta, mut tb) = (0.0f64, 0.0f64);
    for ((xb, yb), db) in x.chunks(256).zip(y.chunks(256)).zip(dy.chunks(256)) {
        let (a, b) = relu_grad_lanes::<RELU>(xb, yb, db, mu);
        ta += a.iter().map(|&v| f64::from(v)).sum::<f64>();
        tb += b.iter().map(|&v| f64::from(v)).sum::<f64>();
    }
    (ta, tb)
}

/// The eight f32 lanes of [`relu_grad_sums`] over one block (kept out of line: inlined, it
/// lost its vectorisation).
#[inline(never)]
fn relu_grad_lanes<const RELU: bool>(
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    mu: f32,
) -> ([f32; 8], [f32; 8]) {
    let (mut a, mut b) = ([0.0f32; 8], [0.0f32; 8]);
    let ((xc, xt), (yc, yt), (dc, dt)) =
        (x.as_chunks::<8>(), y.as_chunks::<8>(), dy.as_chunks::<8>());
    for ((xv, yv), dv) in xc.iter().zip(yc).zip(dc) {
        for l in 0..8 {
            let dz = through::<RELU>(yv[l], dv[l]);
            a[l] += dz;
            b[l] += dz * (xv[l] - mu);
        }
    }
    for l in 0..xt.len().min(yt.len()).min(dt.len()) {
        let dz = through::<RELU>(yt[l], dt[l]);
        a[l] += dz;
        b[l] += dz * (xt[l] - mu);
    }
    (a, b)
}

/// Per-channel mean and biased variance over (N, H, W).
fn channel_stats(x: &[f32], xs: Shape4) -> (Vec<f32>, Vec<f32>) {
    let p = xs.plane() as f64;
    // (mean, centred sum of squares) of each plane.
    let planes = per_plane(x, xs, |_, plane| {
        let mean = lane_sum(plane, |v| v) / p;
        let m2 = lane_sum(plane, |v| (v - mean) * (v - mean));
        (mean, m2)
    });
    let (mut mean, mut var) = (vec![0.0f32; xs.c], vec![0.0f32; xs.c]);
    for c in 0..xs.c {
        let of_c = || planes.iter().skip(c).step_by(xs.c);
        let mu = of_c().map(|&(m, _)| m).sum::<f64>() / xs.n as f64;
        let m2: f64 = of_c().map(|&(m, s)| s + p * (m - mu).powi(2)).sum();
        mean[c] = mu as f32;
        var[c] = (m2 / (xs.n as f64 * p)).max(0.0) as f32;
    }
    (mean, var)
}

/// BatchNorm with batch statistics followed by ReLU: `y = max(0, gamma * (x - mean) /
/// sqrt(var + eps) + beta)`. Returns `y` and the statistics `[3, C]`: mean, biased variance,
/// `1 / sqrt(var + eps)` (the layout of `shaders/batchnorm_train.wgsl`).
pub fn bn_relu_train(x: &[f32], xs: Shape4, gamma: &[f32], beta: &[f32]) -> (Vec<f32>, Vec<f32>) {
    bn_train(x, xs, gamma, beta, true)
}

/// BatchNorm with batch statistics, followed by ReLU when `relu` ([`bn_relu_train`] is this
/// with `relu`): `y` and the statistics `[3, C]`.
pub fn bn_train(
    x: &[f32],
    xs: Shape4,
    gamma: &[f32],
    beta: &[f32],
    relu: bool,
) -> (Vec<f32>, Vec<f32>) {
    let (mean, var) = channel_stats(x, xs);
    let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + BN_EPS).sqrt()).collect();
    let mut stats = mean;
    stats.extend(var);
    stats.extend(inv_std);
    (bn_frozen(x, xs, gamma, beta, &stats, relu), stats)
}

/// Fold a batch's statistics (`[3, C]` as from [`bn_relu_train`], over `m` values per channel)
/// into the running averages: momentum 0.1, unbiased variance.
pub fn update_running_stats(
    running_mean: &mut [f32],
    running_var: &mut [f32],
    stats: &[f32],
    m: usize,
) {
    let c = running_mean.len();
    let m = m as f32;
    for ch in 0..c {
        running_mean[ch] = 0.9 * running_mean[ch] + 0.1 * stats[ch];
        running_var[ch] = 0.9 * running_var[ch] + 0.1 * stats[c + ch] * m / (m - 1.0).max(1.0);
    }
}

/// The affine equivalent of inference BatchNorm: `(scale, bias)`.
pub fn fold_bn(gamma: &[f32], beta: &[f32], rm: &[f32], rv: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f32> = (0..gamma.len())
        .map(|c| gamma[c] / (rv[c] + BN_EPS).sqrt())
        .collect();
    let bias = (0..gamma.len())
        .map(|c| beta[c] - rm[c] * scale[c])
        .collect();
    (scale, bias)
}

/// [`bn_relu_train`] with given statistics `[3, C]` (mean, variance, `1 / sqrt(var + eps)`)
/// instead of the batch's: the per-channel affine `gamma * (x - mean) / std + beta`, then ReLU.
pub fn bn_relu_frozen(
    x: &[f32],
    xs: Shape4,
    gamma: &[f32],
    beta: &[f32],
    stats: &[f32],
) -> Vec<f32> {
    bn_frozen(x, xs, gamma, beta, stats, true)
}

/// [`bn_train`] with given statistics `[3, C]` ([`bn_relu_frozen`] is this with `relu`).
pub fn bn_frozen(
    x: &[f32],
    xs: Shape4,
    gamma: &[f32],
    beta: &[f32],
    stats: &[f32],
    relu: bool,
) -> Vec<f32> {
    let (mean, inv_std) = (&stats[..xs.c], &stats[2 * xs.c..3 * xs.c]);
    let scale: Vec<f32> = (0..xs.c).map(|c| gamma[c] * inv_std[c]).collect();
    let shift: Vec<f32> = (0..xs.c).map(|c| beta[c] - mean[c] * scale[c]).collect();
    let mut y = super::BufferPool::take(x.len());
    affine(x, xs, &scale, &shift, relu, &mut y);
    y
}

/// How a BatchNorm ran forward, for [`bn_backward`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BnMode {
    /// With given statistics ([`bn_frozen`]): constants, so the input gradient has no terms
    /// through them.
    pub frozen: bool,
    /// With a ReLU after the affine.
    pub relu: bool,
}

/// Backward of [`bn_relu_train`]: returns `(dx, dgamma, dbeta)`; `y` is the forward output,
/// `stats` its statistics.
pub fn bn_relu_backward(
    dy: &[f32],
    x: &[f32],
    y: &[f32],
    xs: Shape4,
    gamma: &[f32],
    stats: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    bn_relu_backward_with(dy, x, y, xs, gamma, stats, false)
}

/// Backward of [`bn_relu_train`] (`frozen` false) or of [`bn_relu_frozen`] (`frozen` true:
/// the statistics are constants, so the input gradient has no terms through them).
pub fn bn_relu_backward_with(
    dy: &[f32],
    x: &[f32],
    y: &[f32],
    xs: Shape4,
    gamma: &[f32],
    stats: &[f32],
    frozen: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mode = BnMode { frozen, relu: true };
    bn_backward(dy, x, y, xs, gamma, stats, mode)
}

/// Backward of [`bn_train`] or [`bn_frozen`], as `mode` says they ran: `(dx, dgamma, dbeta)`;
/// `y` is the forward output (read for the ReLU's mask only), `stats` its statistics.
pub fn bn_backward(
    dy: &[f32],
    x: &[f32],
    y: &[f32],
    xs: Shape4,
    gamma: &[f32],
    stats: &[f32],
    mode: BnMode,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let BnMode { frozen, relu } = mode;
    let (mean, inv_std) = (&stats[..xs.c], &stats[2 * xs.c..3 * xs.c]);
    let p = xs.plane();
    // Per plane: (sum dz, sum dz * (x - mean)), dz the gradient through the ReLU.
    let planes = per_plane(y, xs, |k, yp| {
        let c = k % xs.c;
        let (xp, dp) = (&x[k * p..][..p], &dy[k * p..][..p]);
        if relu {
            relu_grad_sums::<true>(xp, yp, dp, mean[c])
        } else {
            relu_grad_sums::<false>(xp, yp, dp, mean[c])
        }
    });
    let (mut dgamma, mut dbeta) = (vec![0.0f32; xs.c], vec![0.0f32; xs.c]);
    for c in 0..xs.c {
        let of_c = || planes.iter().skip(c).step_by(xs.c);
        dbeta[c] = of_c().map(|&(d, _)| d).sum::<f64>() as f32;
        dgamma[c] = (of_c().map(|&(_, d)| d).sum::<f64>() * f64::from(inv_std[c])) as f32;
    }
    let m = (xs.n * p) as f32;
    let mut dx = super::BufferPool::take(x.len());
    let per = planes_per_task(xs.n * xs.c, p);
    dx.par_chunks_mut(p * per)
        .enumerate()
        .for_each(|(task, dxs)| {
            for (k, dxp) in dxs.chunks_mut(p).enumerate() {
                let k = task * per + k;
                let c = k % xs.c;
                let (xp, yp, dp) = (&x[k * p..][..p], &y[k * p..][..p], &dy[k * p..][..p]);
                let g = gamma[c] * inv_std[c];
                let (mb, mg) = if frozen {
                    (0.0, 0.0)
                } else {
                    (dbeta[c] / m, dgamma[c] / m)
                };
                let terms = DxTerms {
                    g,
                    mb,
                    mg,
                    mu: mean[c],
                    is: inv_std[c],
                };
                if relu {
                    dx_plane::<true>(dxp, xp, yp, dp, terms);
                } else {
                    dx_plane::<false>(dxp, xp, yp, dp, terms);
                }
            }
        });
    (dx, dgamma, dbeta)
}

/// A channel's constants in BatchNorm's input gradient: `gamma * inv_std`, the means of
/// `dz` and of `dz * xhat` (zero when frozen), the mean and `inv_std`.
#[derive(Clone, Copy)]
struct DxTerms {
    g: f32,
    mb: f32,
    mg: f32,
    mu: f32,
    is: f32,
}

/// One plane of BatchNorm's input gradient, `dz` through the ReLU when `RELU` (the branch
/// chosen once per plane, so the loop vectorises).
fn dx_plane<const RELU: bool>(dx: &mut [f32], x: &[f32], y: &[f32], dy: &[f32], t: DxTerms) {
    let DxTerms { g, mb, mg, mu, is } = t;
    for (((d, &xv), &yv), &dv) in dx.iter_mut().zip(x).zip(y).zip(dy) {
        *d = g * (through::<RELU>(yv, dv) - mb - (xv - mu) * is * mg);
    }
}

/// The sum of every channel of `x` over its images and pixels (`[C]`): a bias gradient, the
/// batch's loss totals. Per plane in f64, then over the planes in order.
pub fn channel_sum(x: &[f32], xs: Shape4) -> Vec<f32> {
    let planes = per_plane(x, xs, |_, plane| lane_sum(plane, |v| v));
    (0..xs.c)
        .map(|c| planes.iter().skip(c).step_by(xs.c).sum::<f64>() as f32)
        .collect()
}
