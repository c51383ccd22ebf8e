//! Convolutions: the 1x1 convolution (one GEMM per image) with its epilogue and both
//! gradients, the 3x3 pad-1 convolution (im2col, then the GEMM) and its weight gradient.
//! The twins: [`crate::cpu::conv1x1`], [`crate::cpu::conv1x1_backward_input`],
//! [`crate::cpu::conv1x1_backward_weight`], [`crate::cpu::conv3x3`],
//! [`crate::cpu::conv3x3_backward_weight`].

use super::{Gemm, chunked_sum};
use crate::cpu::Epilogue;
use crate::shape::Shape4;
use rayon::prelude::*;

/// Output rows per parallel GEMM task when one image is split: enough tasks for every thread
/// (two each), at least 8 rows.
fn row_chunk(rows: usize) -> usize {
    let tasks = 2 * rayon::current_num_threads().max(1);
    rows.div_ceil(tasks).max(8)
}

/// What [`gemm_images`] multiplies: `y[n] = epilogue(w · b[n])` with `w` `[cout, k]` and
/// `b[n]` `[k, p]`.
struct Images<'a> {
    n: usize,
    k: usize,
    p: usize,
    w: &'a [f32],
    cout: usize,
}

/// `y[n] = epilogue(w · b[n])` for every image, where `rhs(n, dst)` fills `dst` with image
/// `n`'s `[k, p]` right-hand side, or returns `false` to read it from `x` in place (without
/// `dst` being sized: no scratch is filled for an image read in place). Parallel
/// over images, or over blocks of output rows for a batch too small to feed every thread.
fn gemm_images(
    g: Images<'_>,
    x: &[f32],
    ep: &Epilogue<'_, f32>,
    y: &mut [f32],
    scratch: &mut Vec<f32>,
    rhs: impl Fn(usize, &mut Vec<f32>) -> bool + Sync,
) {
    let Images { n, k, p, w, cout } = g;
    let one_image = |img: usize, b: &[f32], yc: &mut [f32], r0: usize| {
        let rows = yc.len() / p;
        let m = Gemm {
            m: rows,
            k,
            n: p,
            beta: 0.0,
        };
        m.nn(&w[r0 * k..][..rows * k], b, yc);
        for (r, row) in yc.chunks_mut(p).enumerate() {
            let co = r0 + r;
            let res = ep.residual.map(|res| &res[(img * cout + co) * p..][..p]);
            apply_epilogue(row, ep.affine.map(|(s, b)| (s[co], b[co])), res, ep.relu);
        }
    };
    if n >= rayon::current_num_threads() {
        y.par_chunks_mut(cout * p)
            .enumerate()
            .for_each_init(Vec::new, |buf, (img, yn)| {
                let b: &[f32] = if rhs(img, buf) {
                    buf
                } else {
                    &x[img * k * p..][..k * p]
                };
                one_image(img, b, yn, 0);
            });
        return;
    }
    let rc = row_chunk(cout);
    for img in 0..n {
        let b: &[f32] = if rhs(img, scratch) {
            scratch
        } else {
            &x[img * k * p..][..k * p]
        };
        let yn = &mut y[img * cout * p..][..cout * p];
        yn.par_chunks_mut(rc * p)
            .enumerate()
            .for_each(|(blk, yc)| one_image(img, b, yc, blk * rc));
    }
}

fn apply_epilogue(row: &mut [f32], affine: Option<(f32, f32)>, res: Option<&[f32]>, relu: bool) {
    if let Some((s, b)) = affine {
        row.iter_mut().for_each(|v| *v = s * *v + b);
    }
    if let Some(res) = res {
        row.iter_mut().zip(res).for_each(|(v, r)| *v += r);
    }
    if relu {
        row.iter_mut().for_each(|v| *v = v.max(0.0));
    }
}

/// Keep every `s`-th row and column of one image `[c, h, w]` into `out` (`[c, ho, wo]`).
fn subsample(xn: &[f32], xs: Shape4, s: usize, out: &mut [f32]) {
    let ys = xs.strided(xs.c, s);
    for (src, dst) in xn.chunks(xs.plane()).zip(out.chunks_mut(ys.plane())) {
        for (i, d) in dst.chunks_mut(ys.w).enumerate() {
            let row = &src[i * s * xs.w..][..xs.w];
            for (j, v) in d.iter_mut().enumerate() {
                *v = row[j * s];
            }
        }
    }
}

/// One 1x1 convolution layer for [`conv1x1`]: the weight `[cout, C]`, the stride and the
/// epilogue applied to its output.
#[derive(Clone, Copy, Debug)]
pub struct Conv1x1Layer<'a> {
    /// The weight `[cout, C]`.
    pub w: &'a [f32],
    /// Output channels.
    pub cout: usize,
    /// Stride (the input is subsampled).
    pub stride: usize,
    /// What is applied to the output (affine, residual, ReLU).
    pub ep: &'a Epilogue<'a, f32>,
}

/// 1x1 convolution with stride and epilogue into `y` (`[N, Cout, Ho, Wo]`), as
/// [`conv1x1`](crate::cpu::conv1x1) computes it. `scratch` is reused between calls.
pub fn conv1x1(
    x: &[f32],
    xs: Shape4,
    layer: Conv1x1Layer<'_>,
    y: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let Conv1x1Layer {
        w,
        cout,
        stride,
        ep,
    } = layer;
    let ys = xs.strided(cout, stride);
    let p = ys.plane();
    let one = Shape4 { n: 1, ..xs };
    let g = Images {
        n: xs.n,
        k: xs.c,
        p,
        w,
        cout,
    };
    gemm_images(g, x, ep, y, scratch, |img, dst| {
        if stride == 1 {
            return false;
        }
        dst.resize(xs.c * p, 0.0);
        subsample(&x[img * one.len()..][..one.len()], one, stride, dst);
        true
    });
}

/// im2col of one image for a 3x3 pad-1 convolution into `cols` (`[Cin * 9, Ho * Wo]`).
fn im2col(xn: &[f32], xs: Shape4, s: usize, cols: &mut [f32]) {
    let ys = xs.strided(1, s);
    for (row, dst) in cols.chunks_mut(ys.plane()).enumerate() {
        let (ci, k) = (row / 9, row % 9);
        let (ky, kx) = (k / 3, k % 3);
        let plane = &xn[ci * xs.plane()..][..xs.plane()];
        for (i, d) in dst.chunks_mut(ys.w).enumerate() {
            let r = (i * s + ky) as i64 - 1;
            super::gather_row(plane, (xs.h, xs.w), r, kx as i64 - 1, s, d);
        }
    }
}

/// 3x3 pad-1 convolution (the stem) into `y`, as [`conv3x3`](crate::cpu::conv3x3) computes
/// it: im2col, then the GEMM.
pub fn conv3x3(
    x: &[f32],
    xs: Shape4,
    w: &[f32],
    cout: usize,
    stride: usize,
    y: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let p = xs.strided(cout, stride).plane();
    let one = Shape4 { n: 1, ..xs };
    let ep = Epilogue::default();
    let g = Images {
        n: xs.n,
        k: xs.c * 9,
        p,
        w,
        cout,
    };
    gemm_images(g, x, &ep, y, scratch, |img, cols| {
        cols.resize(xs.c * 9 * p, 0.0);
        im2col(&x[img * one.len()..][..one.len()], one, stride, cols);
        true
    });
}

/// Input gradient of [`conv1x1`] (no epilogue) into `dx` (shape `xs`, every value written;
/// the pixels a stride skipped get zero).
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
        .for_each_init(Vec::new, |sub, (dxn, dyn_)| {
            let g = Gemm {
                m: xs.c,
                k: cout,
                n: ys.plane(),
                beta: 0.0,
            };
            if s == 1 {
                g.tn(w, dyn_, dxn);
                return;
            }
            sub.resize(xs.c * ys.plane(), 0.0);
            g.tn(w, dyn_, sub);
            dxn.fill(0.0);
            for (dst, src) in dxn.chunks_mut(xs.plane()).zip(sub.chunks(ys.plane())) {
                for (i, srow) in src.chunks(ys.w).enumerate() {
                    let drow = &mut dst[i * s * xs.w..][..xs.w];
                    for (j, v) in srow.iter().enumerate() {
                        drow[j * s] = *v;
                    }
                }
            }
        });
}

/// Weight gradient of [`conv1x1`] (no epilogue), summed over the batch: `[Cout, Cin]`.
pub fn conv1x1_backward_weight(
    dy: &[f32],
    x: &[f32],
    xs: Shape4,
    cout: usize,
    s: usize,
) -> Vec<f32> {
    let ys = xs.strided(cout, s);
    let one = Shape4 { n: 1, ..xs };
    let po = cout * ys.plane();
    let g = Gemm {
        m: cout,
        k: ys.plane(),
        n: xs.c,
        beta: 1.0,
    };
    chunked_sum(xs.n, cout * xs.c, |range, acc| {
        let mut sub = vec![0.0; if s == 1 { 0 } else { xs.c * ys.plane() }];
        for n in range {
            let xn = &x[n * one.len()..][..one.len()];
            let dyn_ = &dy[n * po..][..po];
            if s == 1 {
                g.nt(dyn_, xn, acc);
            } else {
                subsample(xn, one, s, &mut sub);
                g.nt(dyn_, &sub, acc);
            }
        }
    })
}

/// Input gradient of [`conv3x3`] (the transposed convolution) into `dx` (shape `xs`, every
/// value written): per image, the columns `W^T dY` (`[Cin * 9, Ho * Wo]`, a GEMM), then each
/// column added back at the input pixel it read (col2im, the adjoint of `im2col`).
pub fn conv3x3_backward_input(
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
        .for_each_init(Vec::new, |cols, (dxn, dyn_)| {
            cols.resize(xs.c * 9 * ys.plane(), 0.0);
            let g = Gemm {
                m: xs.c * 9,
                k: cout,
                n: ys.plane(),
                beta: 0.0,
            };
            g.tn(w, dyn_, cols);
            dxn.fill(0.0);
            for (row, src) in cols.chunks(ys.plane()).enumerate() {
                let (ci, k) = (row / 9, row % 9);
                let (ky, kx) = (k / 3, k % 3);
                let plane = &mut dxn[ci * xs.plane()..][..xs.plane()];
                for (i, srow) in src.chunks(ys.w).enumerate() {
                    let Some(iy) = (i * s + ky).checked_sub(1).filter(|&r| r < xs.h) else {
                        continue;
                    };
                    let drow = &mut plane[iy * xs.w..][..xs.w];
                    for (j, v) in srow.iter().enumerate() {
                        if let Some(ix) = (j * s + kx).checked_sub(1).filter(|&c| c < xs.w) {
                            drow[ix] += v;
                        }
                    }
                }
            }
        });
}

/// Weight gradient of [`conv3x3`] summed over the batch: `[Cout, Cin, 3, 3]`.
pub fn conv3x3_backward_weight(
    dy: &[f32],
    x: &[f32],
    xs: Shape4,
    cout: usize,
    s: usize,
) -> Vec<f32> {
    let ys = xs.strided(cout, s);
    let one = Shape4 { n: 1, ..xs };
    let po = cout * ys.plane();
    let g = Gemm {
        m: cout,
        k: ys.plane(),
        n: xs.c * 9,
        beta: 1.0,
    };
    chunked_sum(xs.n, cout * xs.c * 9, |range, acc| {
        let mut cols = vec![0.0; xs.c * 9 * ys.plane()];
        for n in range {
            im2col(&x[n * one.len()..][..one.len()], one, s, &mut cols);
            g.nt(&dy[n * po..][..po], &cols, acc);
        }
    })
}
