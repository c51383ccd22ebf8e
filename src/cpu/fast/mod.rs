//! The fast CPU op set (f32, multi-threaded with rayon, GEMMs through ndarray's
//! matrixmultiply): every operation the CPU engine ([`Model::forward_cpu`](crate::Model::forward_cpu))
//! and the CPU trainer (`train::CpuBackend`) run, forward and backward. Each computes what a
//! generic twin in this module's siblings computes; those twins stay the reference the tests
//! compare this set with (`tests/cpu/cpu_fast.rs`), and nothing else runs them.
//!
//! Tensors are NCHW. Work is split over images or over (image, channel) planes. Reductions
//! over the batch (weight, shift and BatchNorm gradients, batch statistics) are taken per
//! image or per plane and summed in a fixed order, so results do not depend on the number of
//! threads.
//!
//! - [`conv`]: 1x1 convolution with its epilogue and both gradients, 3x3 convolution and its
//!   weight gradient.
//! - [`asl`]: the Active Shift Layer forward and its fused backward (input and shift).
//! - [`norm`]: the inference affine, BatchNorm+ReLU in training mode and its backward, the
//!   running statistics and their folding.
//! - [`depthwise`]: the 3x3 depthwise convolution and its backward.

pub mod asl;
pub mod conv;
pub mod depthwise;
pub mod norm;

pub use asl::{asl_forward, shift_backward};
pub use conv::{
    Conv1x1Layer, conv1x1, conv1x1_backward_input, conv1x1_backward_weight, conv3x3,
    conv3x3_backward_weight,
};
pub use depthwise::{depthwise3x3, depthwise3x3_backward};
pub use norm::{
    BN_EPS, affine, bn_relu_backward, bn_relu_backward_with, bn_relu_frozen, bn_relu_train,
    fold_bn, update_running_stats,
};

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

/// The sizes of one GEMM `c (m x n) = op(a) · op(b) + beta c` (`k` the inner size).
#[derive(Clone, Copy)]
pub(crate) struct Gemm {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub beta: f32,
}

impl Gemm {
    /// `c = a · b + beta c`, `a` stored `m x k`, `b` `k x n`.
    pub(crate) fn nn(self, a: &[f32], b: &[f32], c: &mut [f32]) {
        let Gemm { m, k, n, beta } = self;
        general_mat_mul(
            1.0,
            &view(a, m, k),
            &view(b, k, n),
            beta,
            &mut view_mut(c, m, n),
        );
    }

    /// `c = a^T · b + beta c`, `a` stored `k x m`, `b` `k x n`.
    pub(crate) fn tn(self, a: &[f32], b: &[f32], c: &mut [f32]) {
        let Gemm { m, k, n, beta } = self;
        general_mat_mul(
            1.0,
            &view(a, k, m).t(),
            &view(b, k, n),
            beta,
            &mut view_mut(c, m, n),
        );
    }

    /// `c = a · b^T + beta c`, `a` stored `m x k`, `b` `n x k`.
    pub(crate) fn nt(self, a: &[f32], b: &[f32], c: &mut [f32]) {
        let Gemm { m, k, n, beta } = self;
        general_mat_mul(
            1.0,
            &view(a, m, k),
            &view(b, n, k).t(),
            beta,
            &mut view_mut(c, m, n),
        );
    }
}

/// Fixed number of batch chunks for reductions over images (independent of the thread count).
const CHUNKS: usize = 8;

/// Sum `f(image range, acc)` over a batch of `n` images in [`CHUNKS`] fixed chunks, in order.
pub(crate) fn chunked_sum(
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

/// Planes per parallel task over `planes` channel planes of `plane` values: enough tasks for
/// every thread to balance, each of at least about 4096 values.
pub(crate) fn planes_per_task(planes: usize, plane: usize) -> usize {
    let tasks = 4 * rayon::current_num_threads().max(1);
    planes
        .div_ceil(tasks)
        .min(4096usize.div_ceil(plane.max(1)))
        .max(1)
}

/// `out[j] = x[row, col0 + j * stride]` of one `h x w` plane, zero where that lies outside
/// the plane.
pub(crate) fn gather_row(
    plane: &[f32],
    (h, w): (usize, usize),
    row: i64,
    col0: i64,
    stride: usize,
    out: &mut [f32],
) {
    if row < 0 || row >= h as i64 {
        out.fill(0.0);
        return;
    }
    let src = &plane[row as usize * w..][..w];
    let (lo, hi) = inside(col0, stride, w, out.len());
    if lo >= hi {
        out.fill(0.0);
        return;
    }
    out[..lo].fill(0.0);
    out[hi..].fill(0.0);
    if stride == 1 {
        let start = (col0 + lo as i64) as usize;
        out[lo..hi].copy_from_slice(&src[start..start + (hi - lo)]);
    } else {
        for (j, v) in out[lo..hi].iter_mut().enumerate() {
            *v = src[(col0 + ((lo + j) * stride) as i64) as usize];
        }
    }
}

/// The range `lo..hi` of `j < len` with `0 <= col0 + j * stride < w`.
pub(crate) fn inside(col0: i64, stride: usize, w: usize, len: usize) -> (usize, usize) {
    let s = stride as i64;
    let lo = if col0 >= 0 { 0 } else { (-col0 + s - 1) / s };
    let hi = if col0 >= w as i64 {
        0
    } else {
        (w as i64 - 1 - col0) / s + 1
    };
    let hi = (hi.max(0) as u64).min(len as u64) as usize;
    let lo = (lo.max(0) as u64).min(hi as u64) as usize;
    (lo, hi)
}

/// Buffers handed back by one forward pass (or training step) for the next one on the same
/// thread: allocating large buffers on every pass costs page faults (a third of a training
/// step's time on a 2-core host before the CPU trainer's tensors came from here).
#[derive(Default)]
pub(crate) struct BufferPool {
    free: Vec<Vec<f32>>,
}

/// Buffers below this many values are left to the allocator (cheap at that size): kept in the
/// pool they filled its places, and the large ones a step needs were dropped instead.
const MIN_POOLED: usize = 1 << 14;

thread_local! {
    static POOL: RefCell<BufferPool> = RefCell::new(BufferPool::default());
}

impl BufferPool {
    /// A buffer of `len` zeros-or-stale values (callers overwrite every element).
    pub(crate) fn take(len: usize) -> Vec<f32> {
        if len < MIN_POOLED {
            return vec![0.0; len];
        }
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

    /// A buffer of `len` zeros.
    pub(crate) fn zeros(len: usize) -> Vec<f32> {
        let mut v = Self::take(len);
        v.fill(0.0);
        v
    }

    /// Return buffers for later passes (at most 256 are kept: a training step's tape; none
    /// smaller than [`MIN_POOLED`]).
    pub(crate) fn give(bufs: impl IntoIterator<Item = Vec<f32>>) {
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            for b in bufs {
                if b.capacity() >= MIN_POOLED && p.free.len() < 256 {
                    p.free.push(b);
                }
            }
        });
    }
}
