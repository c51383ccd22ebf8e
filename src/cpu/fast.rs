//! The fast CPU inference path (f32, multi-threaded with rayon, GEMMs through ndarray's
//! matrixmultiply): what [`Model::forward_cpu`](crate::Model::forward_cpu) runs when the `train`
//! feature (which brings rayon and ndarray) is on. It computes what the generic twins in this
//! module's siblings compute; they stay the reference, and a test compares the two on whole
//! networks.
//!
//! Every function writes into an output slice the caller owns, so one forward pass can reuse
//! its buffers (see [`BufferPool`]).

use super::conv::Epilogue;
use crate::shape::Shape4;
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;
use std::cell::RefCell;

/// `data` as a `rows x cols` row-major matrix (the caller checked the length).
pub(crate) fn view(data: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols), data).unwrap_or_else(|_| unreachable!("shape checked"))
}

/// `data` as a mutable `rows x cols` row-major matrix (the caller checked the length).
pub(crate) fn view_mut(data: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), data).unwrap_or_else(|_| unreachable!("shape checked"))
}

/// Output rows per parallel GEMM task: enough tasks for every thread (two each), at least 8
/// rows.
fn row_chunk(rows: usize) -> usize {
    let tasks = 2 * rayon::current_num_threads().max(1);
    rows.div_ceil(tasks).max(8)
}

/// `y[n] = epilogue(w · b[n])` for every image, where `b(n, dst)` fills `dst` with image `n`'s
/// `[K, P]` right-hand side (or returns `None` to use `x` in place). Parallel over blocks of
/// output rows.
#[allow(clippy::too_many_arguments)]
fn gemm_images(
    x: &[f32],
    n: usize,
    k: usize,
    p: usize,
    w: &[f32],
    cout: usize,
    ep: &Epilogue<'_, f32>,
    y: &mut [f32],
    scratch: &mut Vec<f32>,
    rhs: impl Fn(usize, &mut [f32]) -> bool,
) {
    let rc = row_chunk(cout);
    for img in 0..n {
        scratch.resize(k * p, 0.0);
        let b: &[f32] = if rhs(img, scratch) {
            scratch
        } else {
            &x[img * k * p..][..k * p]
        };
        let yn = &mut y[img * cout * p..][..cout * p];
        yn.par_chunks_mut(rc * p).enumerate().for_each(|(blk, yc)| {
            let rows = yc.len() / p;
            let r0 = blk * rc;
            general_mat_mul(
                1.0,
                &view(&w[r0 * k..][..rows * k], rows, k),
                &view(b, k, p),
                0.0,
                &mut view_mut(yc, rows, p),
            );
            for (r, row) in yc.chunks_mut(p).enumerate() {
                let co = r0 + r;
                let res = ep.residual.map(|res| &res[(img * cout + co) * p..][..p]);
                apply_epilogue(row, ep.affine.map(|(s, b)| (s[co], b[co])), res, ep.relu);
            }
        });
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

/// 1x1 convolution with stride and epilogue into `y` (`[N, Cout, Ho, Wo]`), as
/// [`conv1x1`](super::conv1x1) computes it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv1x1(
    x: &[f32],
    xs: Shape4,
    w: &[f32],
    cout: usize,
    stride: usize,
    ep: &Epilogue<'_, f32>,
    y: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let ys = xs.strided(cout, stride);
    let p = ys.plane();
    gemm_images(x, xs.n, xs.c, p, w, cout, ep, y, scratch, |img, dst| {
        if stride == 1 {
            return false;
        }
        let xn = &x[img * xs.c * xs.plane()..][..xs.c * xs.plane()];
        for c in 0..xs.c {
            let src = &xn[c * xs.plane()..][..xs.plane()];
            let d = &mut dst[c * p..][..p];
            for i in 0..ys.h {
                for j in 0..ys.w {
                    d[i * ys.w + j] = src[i * stride * xs.w + j * stride];
                }
            }
        }
        true
    });
}

/// 3x3 pad-1 convolution (the stem) into `y`, as [`conv3x3`](super::conv3x3) computes it:
/// im2col, then the GEMM.
pub(crate) fn conv3x3(
    x: &[f32],
    xs: Shape4,
    w: &[f32],
    cout: usize,
    stride: usize,
    y: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let ys = xs.strided(cout, stride);
    let p = ys.plane();
    let ep = Epilogue::default();
    gemm_images(
        x,
        xs.n,
        xs.c * 9,
        p,
        w,
        cout,
        &ep,
        y,
        scratch,
        |img, cols| {
            let xn = &x[img * xs.c * xs.plane()..][..xs.c * xs.plane()];
            cols.par_chunks_mut(p).enumerate().for_each(|(row, dst)| {
                let (ci, k) = (row / 9, row % 9);
                let (ky, kx) = (k / 3, k % 3);
                for i in 0..ys.h {
                    let r = (i * stride + ky) as i64 - 1;
                    let d = &mut dst[i * ys.w..][..ys.w];
                    if r < 0 || r >= xs.h as i64 {
                        d.fill(0.0);
                        continue;
                    }
                    let src = &xn[(ci * xs.h + r as usize) * xs.w..][..xs.w];
                    for (j, v) in d.iter_mut().enumerate() {
                        let c = (j * stride + kx) as i64 - 1;
                        *v = if c >= 0 && c < xs.w as i64 {
                            src[c as usize]
                        } else {
                            0.0
                        };
                    }
                }
            });
            true
        },
    );
}

/// One axis of an ASL tap: the two source coordinates (clamped into the image) and their
/// weights (0 for a coordinate outside the image).
#[derive(Clone, Copy)]
struct Axis {
    i0: usize,
    i1: usize,
    w0: f32,
    w1: f32,
}

fn axis(out: usize, stride: usize, f: i64, t: f32, extent: usize) -> Axis {
    let p0 = (out * stride) as i64 + f;
    let p1 = p0 + 1;
    let inside = |p: i64| p >= 0 && p < extent as i64;
    let clamp = |p: i64| p.clamp(0, extent as i64 - 1) as usize;
    Axis {
        i0: clamp(p0),
        i1: clamp(p1),
        w0: if inside(p0) { 1.0 - t } else { 0.0 },
        w1: if inside(p1) { t } else { 0.0 },
    }
}

/// The ASL forward into `out`, as [`asl_forward`](super::asl_forward) computes it (same shift
/// rules: NaN gives a zero channel, shifts clamped to ±[`SHIFT_LIMIT`](super::SHIFT_LIMIT)).
/// Parallel over channel planes.
pub(crate) fn asl_forward(x: &[f32], xs: Shape4, shift: &[f32], stride: usize, out: &mut [f32]) {
    let os = xs.strided(xs.c, stride);
    let lim = super::SHIFT_LIMIT as f32;
    out.par_chunks_mut(os.plane())
        .enumerate()
        .for_each(|(plane, dst)| {
            let c = plane % xs.c;
            let (xp, yp) = (shift[c], shift[xs.c + c]);
            if xp.is_nan() || yp.is_nan() {
                dst.fill(0.0);
                return;
            }
            let (xp, yp) = (xp.clamp(-lim, lim), yp.clamp(-lim, lim));
            let (fx, fy) = (xp.floor(), yp.floor());
            let (tx, ty) = (xp - fx, yp - fy);
            let src = &x[plane * xs.plane()..][..xs.plane()];
            let cols: Vec<Axis> = (0..os.w)
                .map(|j| axis(j, stride, fx as i64, tx, xs.w))
                .collect();
            for i in 0..os.h {
                let r = axis(i, stride, fy as i64, ty, xs.h);
                let row0 = &src[r.i0 * xs.w..][..xs.w];
                let row1 = &src[r.i1 * xs.w..][..xs.w];
                let d = &mut dst[i * os.w..][..os.w];
                for (v, a) in d.iter_mut().zip(&cols) {
                    let top = tap(a.w0, row0[a.i0]) + tap(a.w1, row0[a.i1]);
                    let bottom = tap(a.w0, row1[a.i0]) + tap(a.w1, row1[a.i1]);
                    *v = tap(r.w0, top) + tap(r.w1, bottom);
                }
            }
        });
}

/// `w * v`, and exactly 0 for a zero weight (a tap outside the image reads 0 even where the
/// clamped address holds an infinity).
fn tap(w: f32, v: f32) -> f32 {
    if w == 0.0 { 0.0 } else { w * v }
}

/// Per-channel affine with optional ReLU into `y`, as [`affine`](super::affine) computes it.
pub(crate) fn affine(
    x: &[f32],
    xs: Shape4,
    scale: &[f32],
    bias: &[f32],
    relu: bool,
    y: &mut [f32],
) {
    y.par_chunks_mut(xs.plane())
        .zip(x.par_chunks(xs.plane()))
        .enumerate()
        .for_each(|(plane, (d, s))| {
            let c = plane % xs.c;
            let (a, b) = (scale[c], bias[c]);
            for (v, &u) in d.iter_mut().zip(s) {
                let r = a * u + b;
                *v = if relu { r.max(0.0) } else { r };
            }
        });
}

/// Buffers handed back by one forward pass for the next one on the same thread (allocating
/// large buffers on every pass costs page faults).
#[derive(Default)]
pub(crate) struct BufferPool {
    free: Vec<Vec<f32>>,
}

thread_local! {
    static POOL: RefCell<BufferPool> = RefCell::new(BufferPool::default());
}

impl BufferPool {
    /// A buffer of `len` zeros-or-stale values (callers overwrite every element).
    pub(crate) fn take(len: usize) -> Vec<f32> {
        let found = POOL.with(|p| {
            let mut p = p.borrow_mut();
            let best = p
                .free
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= len)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i);
            best.map(|i| p.free.swap_remove(i))
        });
        let mut v = found.unwrap_or_default();
        v.resize(len, 0.0);
        v.truncate(len);
        v
    }

    /// Return buffers for later passes (at most 64 are kept).
    pub(crate) fn give(bufs: impl IntoIterator<Item = Vec<f32>>) {
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            for b in bufs {
                if b.capacity() > 0 && p.free.len() < 64 {
                    p.free.push(b);
                }
            }
        });
    }
}
