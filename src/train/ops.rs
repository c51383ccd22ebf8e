//! The CPU training kernels beside the fast forward kernels of `crate::cpu::fast` (which the
//! CPU backend runs for the forward convolutions, the ASL and the affine): batched,
//! multi-threaded over images (rayon), GEMMs through ndarray's matrixmultiply backend.
//! Reductions over the batch use a fixed split of the batch into chunks summed in order, so
//! results do not depend on the number of threads.

use crate::cpu;
use crate::cpu::fast::{view, view_mut};
use crate::error::Result;
use crate::shape::Shape4;
use ndarray::linalg::general_mat_mul;
use rayon::prelude::*;

/// Fixed number of batch chunks for reductions (independent of the thread count).
const CHUNKS: usize = 8;
/// BatchNorm epsilon.
pub const BN_EPS: f32 = 1e-5;

/// `c = a^T * b + beta * c` with `a` stored `k x m`.
fn gemm_tn(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize, beta: f32) {
    general_mat_mul(
        1.0,
        &view(a, k, m).t(),
        &view(b, k, n),
        beta,
        &mut view_mut(c, m, n),
    );
}

/// `c = a * b^T + beta * c` with `b` stored `n x k`.
fn gemm_nt(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize, beta: f32) {
    general_mat_mul(
        1.0,
        &view(a, m, k),
        &view(b, n, k).t(),
        beta,
        &mut view_mut(c, m, n),
    );
}

/// Keep every `s`-th row and column of one image `[C, H, W]`.
fn subsample(x: &[f32], c: usize, h: usize, w: usize, s: usize) -> Vec<f32> {
    let (ho, wo) = ((h - 1) / s + 1, (w - 1) / s + 1);
    let mut out = Vec::with_capacity(c * ho * wo);
    for ch in 0..c {
        for i in 0..ho {
            for j in 0..wo {
                out.push(x[(ch * h + i * s) * w + j * s]);
            }
        }
    }
    out
}

/// Sum `f(image range)` over the batch in `CHUNKS` fixed chunks, in order.
fn chunked_sum(
    n: usize,
    len: usize,
    f: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync,
) -> Vec<f32> {
    let per = n.div_ceil(CHUNKS).max(1);
    let parts: Vec<Vec<f32>> = (0..n.div_ceil(per))
        .into_par_iter()
        .map(|k| {
            let mut acc = vec![0.0; len];
            f(k * per..((k + 1) * per).min(n), &mut acc);
            acc
        })
        .collect();
    let mut total = vec![0.0; len];
    for p in parts {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// Input gradient of a 1x1 convolution (`crate::cpu::fast::conv1x1`); `acc` (if given) is added to.
pub fn conv1x1_backward_input(
    dy: &[f32],
    xs: Shape4,
    w: &[f32],
    cout: usize,
    s: usize,
    dx: &mut [f32],
) {
    let ys = xs.strided(cout, s);
    let (pi, po) = (xs.c * xs.plane(), cout * ys.plane());
    dx.par_chunks_mut(pi)
        .zip(dy.par_chunks(po))
        .for_each(|(dxn, dyn_)| {
            if s == 1 {
                gemm_tn(w, dyn_, dxn, xs.c, cout, xs.plane(), 1.0);
            } else {
                let mut sub = vec![0.0; xs.c * ys.plane()];
                gemm_tn(w, dyn_, &mut sub, xs.c, cout, ys.plane(), 0.0);
                for ch in 0..xs.c {
                    for i in 0..ys.h {
                        for j in 0..ys.w {
                            dxn[(ch * xs.h + i * s) * xs.w + j * s] +=
                                sub[(ch * ys.h + i) * ys.w + j];
                        }
                    }
                }
            }
        });
}

/// Weight gradient of a 1x1 convolution, summed over the batch: `[Cout, Cin]`.
pub fn conv1x1_backward_weight(
    dy: &[f32],
    x: &[f32],
    xs: Shape4,
    cout: usize,
    s: usize,
) -> Vec<f32> {
    let ys = xs.strided(cout, s);
    let (pi, po) = (xs.c * xs.plane(), cout * ys.plane());
    chunked_sum(xs.n, cout * xs.c, |range, acc| {
        for n in range {
            let xn = &x[n * pi..][..pi];
            let dyn_ = &dy[n * po..][..po];
            if s == 1 {
                gemm_nt(dyn_, xn, acc, cout, ys.plane(), xs.c, 1.0);
            } else {
                let sub = subsample(xn, xs.c, xs.h, xs.w, s);
                gemm_nt(dyn_, &sub, acc, cout, ys.plane(), xs.c, 1.0);
            }
        }
    })
}

/// im2col of one image for a 3x3 pad-1 convolution: `[Cin * 9, Ho * Wo]`.
fn im2col(xn: &[f32], xs: Shape4, s: usize) -> Vec<f32> {
    let ys = xs.strided(1, s);
    let mut cols = vec![0.0; xs.c * 9 * ys.plane()];
    for ci in 0..xs.c {
        for k in 0..9 {
            let (ky, kx) = (k / 3, k % 3);
            let row = &mut cols[(ci * 9 + k) * ys.plane()..][..ys.plane()];
            for i in 0..ys.h {
                let r = (i * s + ky) as i64 - 1;
                if r < 0 || r >= xs.h as i64 {
                    continue;
                }
                for j in 0..ys.w {
                    let c = (j * s + kx) as i64 - 1;
                    if c >= 0 && c < xs.w as i64 {
                        row[i * ys.w + j] = xn[(ci * xs.h + r as usize) * xs.w + c as usize];
                    }
                }
            }
        }
    }
    cols
}

/// Weight gradient of a 3x3 pad-1 convolution (`crate::cpu::fast::conv3x3`) summed over the batch.
pub fn conv3x3_backward_weight(
    dy: &[f32],
    x: &[f32],
    xs: Shape4,
    cout: usize,
    s: usize,
) -> Vec<f32> {
    let ys = xs.strided(cout, s);
    let (pi, po) = (xs.c * xs.plane(), cout * ys.plane());
    chunked_sum(xs.n, cout * xs.c * 9, |range, acc| {
        for n in range {
            let cols = im2col(&x[n * pi..][..pi], xs, s);
            gemm_nt(
                &dy[n * po..][..po],
                &cols,
                acc,
                cout,
                ys.plane(),
                xs.c * 9,
                1.0,
            );
        }
    })
}

/// Per-channel mean and biased variance over (N, H, W).
fn channel_stats(x: &[f32], xs: Shape4) -> (Vec<f32>, Vec<f32>) {
    let stats: Vec<(f32, f32)> = (0..xs.c)
        .into_par_iter()
        .map(|c| {
            let (mut s, mut s2) = (0.0f64, 0.0f64);
            for n in 0..xs.n {
                for &v in &x[(n * xs.c + c) * xs.plane()..][..xs.plane()] {
                    s += f64::from(v);
                    s2 += f64::from(v) * f64::from(v);
                }
            }
            let m = (xs.n * xs.plane()) as f64;
            let mean = s / m;
            ((mean) as f32, (s2 / m - mean * mean).max(0.0) as f32)
        })
        .collect();
    stats.into_iter().unzip()
}

/// BatchNorm with batch statistics followed by ReLU: `y = max(0, gamma * (x - mean) /
/// sqrt(var + eps) + beta)`. Returns `y` and the statistics `[3, C]`: mean, biased variance,
/// `1 / sqrt(var + eps)` (the layout of `shaders/batchnorm_train.wgsl`).
pub fn bn_relu_train(x: &[f32], xs: Shape4, gamma: &[f32], beta: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (mean, var) = channel_stats(x, xs);
    let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + BN_EPS).sqrt()).collect();
    let scale: Vec<f32> = (0..xs.c).map(|c| gamma[c] * inv_std[c]).collect();
    let shift: Vec<f32> = (0..xs.c).map(|c| beta[c] - mean[c] * scale[c]).collect();
    let y = affine_relu(x, xs, &scale, &shift);
    let mut stats = mean;
    stats.extend(var);
    stats.extend(inv_std);
    (y, stats)
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

fn affine_relu(x: &[f32], xs: Shape4, scale: &[f32], shift: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    crate::cpu::fast::affine(x, xs, scale, shift, true, &mut y);
    y
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
    let (mean, inv_std) = (&stats[..xs.c], &stats[2 * xs.c..3 * xs.c]);
    let m = (xs.n * xs.plane()) as f64;
    let sums: Vec<(f32, f32)> = (0..xs.c)
        .into_par_iter()
        .map(|c| {
            let (mut sd, mut sdx) = (0.0f64, 0.0f64);
            for n in 0..xs.n {
                let o = (n * xs.c + c) * xs.plane();
                for i in o..o + xs.plane() {
                    if y[i] > 0.0 {
                        let xhat = (x[i] - mean[c]) * inv_std[c];
                        sd += f64::from(dy[i]);
                        sdx += f64::from(dy[i]) * f64::from(xhat);
                    }
                }
            }
            (sd as f32, sdx as f32)
        })
        .collect();
    let (dbeta, dgamma): (Vec<f32>, Vec<f32>) = sums.into_iter().unzip();
    let mut dx = vec![0.0; x.len()];
    dx.par_chunks_mut(xs.plane())
        .enumerate()
        .for_each(|(k, dxp)| {
            let c = k % xs.c;
            let o = k * xs.plane();
            let g = gamma[c] * inv_std[c];
            let (mb, mg) = (dbeta[c] / m as f32, dgamma[c] / m as f32);
            for (i, d) in dxp.iter_mut().enumerate() {
                let dz = if y[o + i] > 0.0 { dy[o + i] } else { 0.0 };
                let xhat = (x[o + i] - mean[c]) * inv_std[c];
                *d = g * (dz - mb - xhat * mg);
            }
        });
    (dx, dgamma, dbeta)
}

/// ASL backward: `(dx, dshift)`, the shift gradient summed over the batch in image order.
pub fn shift_backward(
    x: &[f32],
    xs: Shape4,
    dout: &[f32],
    sh: &[f32],
    s: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let one = Shape4::new(1, xs.c, xs.h, xs.w);
    let po = xs.strided(xs.c, s).len() / xs.n;
    let parts: Result<Vec<(Vec<f32>, Vec<f32>)>> = x
        .par_chunks(one.len())
        .zip(dout.par_chunks(po))
        .map(|(xn, dn)| {
            Ok((
                cpu::asl_backward_input(dn, one, sh, s)?,
                cpu::asl_backward_shift(xn, one, dn, sh, s)?,
            ))
        })
        .collect();
    let mut dx = Vec::with_capacity(xs.len());
    let mut dsh = vec![0.0; 2 * xs.c];
    for (a, g) in parts? {
        dx.extend(a);
        for (t, v) in dsh.iter_mut().zip(g) {
            *t += v;
        }
    }
    Ok((dx, dsh))
}

/// 3x3 depthwise convolution (pad 1, stride `s`, weight `[C, 1, 3, 3]`), parallel over
/// images.
pub fn depthwise3x3(x: &[f32], xs: Shape4, w: &[f32], s: usize) -> Result<Vec<f32>> {
    let one = Shape4::new(1, xs.c, xs.h, xs.w);
    let parts: Result<Vec<Vec<f32>>> = x
        .par_chunks(one.len())
        .map(|xn| cpu::depthwise3x3(xn, one, w, s))
        .collect();
    Ok(parts?.concat())
}

/// Backward of [`depthwise3x3`]: `(dx, dw)`, the weight gradient summed over the batch in
/// image order.
pub fn depthwise3x3_backward(
    x: &[f32],
    xs: Shape4,
    dy: &[f32],
    w: &[f32],
    s: usize,
) -> (Vec<f32>, Vec<f32>) {
    let ys = xs.strided(xs.c, s);
    let mut dx = vec![0.0; xs.len()];
    // One [9] partial weight gradient per (image, channel) plane.
    let partial: Vec<[f32; 9]> = dx
        .par_chunks_mut(xs.plane())
        .enumerate()
        .map(|(k, dxp)| {
            let c = k % xs.c;
            let xp = &x[k * xs.plane()..][..xs.plane()];
            let dyp = &dy[k * ys.plane()..][..ys.plane()];
            let wc = &w[c * 9..][..9];
            let mut dw = [0.0f32; 9];
            for i in 0..ys.h {
                for j in 0..ys.w {
                    let g = dyp[i * ys.w + j];
                    for ky in 0..3 {
                        let Some(r) = (i * s + ky).checked_sub(1).filter(|&r| r < xs.h) else {
                            continue;
                        };
                        for kx in 0..3 {
                            let Some(col) = (j * s + kx).checked_sub(1).filter(|&q| q < xs.w)
                            else {
                                continue;
                            };
                            dxp[r * xs.w + col] += wc[ky * 3 + kx] * g;
                            dw[ky * 3 + kx] += xp[r * xs.w + col] * g;
                        }
                    }
                }
            }
            dw
        })
        .collect();
    let mut dw = vec![0.0; xs.c * 9];
    for (k, p) in partial.iter().enumerate() {
        let c = k % xs.c;
        for (t, v) in dw[c * 9..][..9].iter_mut().zip(p) {
            *t += v;
        }
    }
    (dx, dw)
}
