//! The Active Shift Layer: forward, and the backward pass that gives the input gradient and
//! the shift gradient together in one sweep. The twins: [`crate::cpu::asl_forward`],
//! [`crate::cpu::asl_backward_input`], [`crate::cpu::asl_backward_shift`]; the same shift
//! rules (a NaN shift gives a zero channel and zero gradients, shifts are clamped to
//! ±[`SHIFT_LIMIT`](crate::cpu::SHIFT_LIMIT)).
//!
//! Each channel plane is bilinear interpolation at one fractional offset: output `(i, j)`
//! reads the four input pixels at rows `i*s + fy + {0, 1}` and columns `j*s + fx + {0, 1}`
//! (zero outside the image), so each output row is computed from four gathered rows.

use super::{gather_row, inside, planes_per_task};
use crate::error::Result;
use crate::shape::Shape4;
use rayon::prelude::*;

/// One channel's integer offsets and fractions, or `None` for a NaN shift.
#[derive(Clone, Copy)]
struct Taps {
    fx: i64,
    fy: i64,
    tx: f32,
    ty: f32,
}

fn taps(shift: &[f32], c: usize, ch: usize) -> Option<Taps> {
    let (xp, yp) = (shift[ch], shift[c + ch]);
    if xp.is_nan() || yp.is_nan() {
        return None;
    }
    let lim = crate::cpu::SHIFT_LIMIT as f32;
    let (xp, yp) = (xp.clamp(-lim, lim), yp.clamp(-lim, lim));
    let (fx, fy) = (xp.floor(), yp.floor());
    Some(Taps {
        fx: fx as i64,
        fy: fy as i64,
        tx: xp - fx,
        ty: yp - fy,
    })
}

/// The four rows `(q00, q01, q10, q11)` that output row `i` reads, each `wo` long.
struct Quad {
    q: [Vec<f32>; 4],
}

impl Quad {
    fn new(wo: usize) -> Self {
        Self {
            q: std::array::from_fn(|_| vec![0.0; wo]),
        }
    }

    fn gather(&mut self, plane: &[f32], xs: Shape4, s: usize, t: Taps, i: usize) {
        let row = (i * s) as i64 + t.fy;
        for (k, q) in self.q.iter_mut().enumerate() {
            let (a, b) = ((k / 2) as i64, (k % 2) as i64);
            gather_row(plane, (xs.h, xs.w), row + a, t.fx + b, s, q);
        }
    }
}

/// The ASL forward into `out` (`[N, C, Ho, Wo]`), as [`asl_forward`](crate::cpu::asl_forward)
/// computes it. Parallel over channel planes.
pub fn asl_forward(x: &[f32], xs: Shape4, shift: &[f32], stride: usize, out: &mut [f32]) {
    let os = xs.strided(xs.c, stride);
    let per = planes_per_task(xs.n * xs.c, os.plane());
    out.par_chunks_mut(os.plane() * per)
        .enumerate()
        .for_each(|(task, dsts)| {
            let mut quad = Quad::new(os.w);
            for (k, dst) in dsts.chunks_mut(os.plane()).enumerate() {
                let plane_ix = task * per + k;
                let Some(t) = taps(shift, xs.c, plane_ix % xs.c) else {
                    dst.fill(0.0);
                    continue;
                };
                let src = &x[plane_ix * xs.plane()..][..xs.plane()];
                let (ux, uy) = (1.0 - t.tx, 1.0 - t.ty);
                for (i, d) in dst.chunks_mut(os.w).enumerate() {
                    quad.gather(src, xs, stride, t, i);
                    let [q00, q01, q10, q11] = &quad.q;
                    for j in 0..os.w {
                        let top = ux * q00[j] + t.tx * q01[j];
                        let bottom = ux * q10[j] + t.tx * q11[j];
                        d[j] = uy * top + t.ty * bottom;
                    }
                }
            }
        });
}

/// Backward of [`asl_forward`]: `(dx, dshift)`, the input gradient (shape `xs`) and the shift
/// gradient `[2, C]` summed over the batch (per image in f32, then over the images in order
/// in f64). At an exact integer shift the shift gradient is the right-sided derivative.
pub fn shift_backward(
    x: &[f32],
    xs: Shape4,
    dout: &[f32],
    shift: &[f32],
    s: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    crate::cpu::check_len(
        "shift_backward",
        "shift",
        shift,
        2 * xs.c,
        format!("[2, {}]", xs.c),
    )?;
    let os = xs.strided(xs.c, s);
    let mut dx = super::BufferPool::zeros(xs.len());
    let per = planes_per_task(xs.n * xs.c, xs.plane());
    // Per plane: (dxpos, dypos) of that plane.
    let partial: Vec<Vec<(f32, f32)>> = dx
        .par_chunks_mut(xs.plane() * per)
        .enumerate()
        .map(|(task, dxs)| {
            let mut quad = Quad::new(os.w);
            let mut sums = Vec::with_capacity(per);
            for (k, dxp) in dxs.chunks_mut(xs.plane()).enumerate() {
                let plane_ix = task * per + k;
                let Some(t) = taps(shift, xs.c, plane_ix % xs.c) else {
                    sums.push((0.0, 0.0));
                    continue;
                };
                let src = &x[plane_ix * xs.plane()..][..xs.plane()];
                let g = &dout[plane_ix * os.plane()..][..os.plane()];
                sums.push(plane_shift_grad(src, xs, g, s, t, &mut quad));
                plane_input_grad(dxp, xs, g, s, t);
            }
            sums
        })
        .collect();
    let mut dsh = vec![0.0f64; 2 * xs.c];
    for (plane_ix, (gx, gy)) in partial.into_iter().flatten().enumerate() {
        let c = plane_ix % xs.c;
        dsh[c] += f64::from(gx);
        dsh[xs.c + c] += f64::from(gy);
    }
    Ok((dx, dsh.into_iter().map(|v| v as f32).collect()))
}

/// One plane's `(dxpos, dypos)`: `sum d * ((1-ty)(q01-q00) + ty(q11-q10))` and
/// `sum d * ((1-tx)(q10-q00) + tx(q11-q01))`, in eight lanes.
fn plane_shift_grad(
    src: &[f32],
    xs: Shape4,
    g: &[f32],
    s: usize,
    t: Taps,
    quad: &mut Quad,
) -> (f32, f32) {
    let wo = quad.q[0].len();
    let (ux, uy) = (1.0 - t.tx, 1.0 - t.ty);
    let (mut ax, mut ay) = ([0.0f32; 8], [0.0f32; 8]);
    for (i, grow) in g.chunks(wo).enumerate() {
        quad.gather(src, xs, s, t, i);
        let [q00, q01, q10, q11] = &quad.q;
        for j in 0..wo {
            let d = grow[j];
            let l = j % 8;
            ax[l] += d * (uy * (q01[j] - q00[j]) + t.ty * (q11[j] - q10[j]));
            ay[l] += d * (ux * (q10[j] - q00[j]) + t.tx * (q11[j] - q01[j]));
        }
    }
    (ax.iter().sum(), ay.iter().sum())
}

/// One plane's input gradient, the transpose of the forward map: every output gradient
/// spread to its four taps (tap by tap, in the order the twin sums them).
fn plane_input_grad(dxp: &mut [f32], xs: Shape4, g: &[f32], s: usize, t: Taps) {
    let wo = xs.strided(1, s).w;
    let wy = [1.0 - t.ty, t.ty];
    let wx = [1.0 - t.tx, t.tx];
    for (a, wya) in wy.iter().enumerate() {
        for (b, wxb) in wx.iter().enumerate() {
            let w = wya * wxb;
            let col0 = t.fx + b as i64;
            let (lo, hi) = inside(col0, s, xs.w, wo);
            if lo >= hi {
                continue;
            }
            for (i, grow) in g.chunks(wo).enumerate() {
                let row = (i * s) as i64 + t.fy + a as i64;
                if row < 0 || row >= xs.h as i64 {
                    continue;
                }
                let drow = &mut dxp[row as usize * xs.w..][..xs.w];
                if s == 1 {
                    let start = (col0 + lo as i64) as usize;
                    let d = &mut drow[start..start + (hi - lo)];
                    for (v, gv) in d.iter_mut().zip(&grow[lo..hi]) {
                        *v += w * gv;
                    }
                } else {
                    for (j, gv) in grow.iter().enumerate().take(hi).skip(lo) {
                        drow[(col0 + (j * s) as i64) as usize] += w * gv;
                    }
                }
            }
        }
    }
}
