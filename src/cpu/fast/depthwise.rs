//! The 3x3 depthwise convolution (pad 1, stride `s`, weight `[C, 1, 3, 3]`): the paper's
//! baseline block in the ASL's place. The twins: [`crate::cpu::depthwise3x3`],
//! [`crate::cpu::depthwise3x3_backward`].

use super::{gather_row, planes_per_task};
use crate::shape::Shape4;
use rayon::prelude::*;

/// The depthwise convolution into `out` (`[N, C, Ho, Wo]`), parallel over channel planes.
pub fn depthwise3x3(x: &[f32], xs: Shape4, w: &[f32], s: usize, out: &mut [f32]) {
    let ys = xs.strided(xs.c, s);
    let per = planes_per_task(xs.n * xs.c, ys.plane());
    out.par_chunks_mut(ys.plane() * per)
        .enumerate()
        .for_each(|(task, dsts)| {
            let mut row = vec![0.0; ys.w];
            for (k, dst) in dsts.chunks_mut(ys.plane()).enumerate() {
                let plane_ix = task * per + k;
                let wc = &w[(plane_ix % xs.c) * 9..][..9];
                let src = &x[plane_ix * xs.plane()..][..xs.plane()];
                for (i, d) in dst.chunks_mut(ys.w).enumerate() {
                    d.fill(0.0);
                    for ky in 0..3 {
                        let r = (i * s + ky) as i64 - 1;
                        if r < 0 || r >= xs.h as i64 {
                            continue;
                        }
                        for kx in 0..3 {
                            gather_row(src, (xs.h, xs.w), r, kx as i64 - 1, s, &mut row);
                            let wv = wc[ky * 3 + kx];
                            d.iter_mut().zip(&row).for_each(|(v, q)| *v += wv * q);
                        }
                    }
                }
            }
        });
}

/// Backward of [`depthwise3x3`]: `(dx, dw)`, the weight gradient summed per plane and then
/// over the images in order.
pub fn depthwise3x3_backward(
    x: &[f32],
    xs: Shape4,
    dy: &[f32],
    w: &[f32],
    s: usize,
) -> (Vec<f32>, Vec<f32>) {
    let ys = xs.strided(xs.c, s);
    let mut dx = super::BufferPool::zeros(xs.len());
    let per = planes_per_task(xs.n * xs.c, xs.plane());
    // One [9] partial weight gradient per (image, channel) plane.
    let partial: Vec<Vec<[f32; 9]>> = dx
        .par_chunks_mut(xs.plane() * per)
        .enumerate()
        .map(|(task, dxs)| {
            let mut out = Vec::with_capacity(per);
            for (k, dxp) in dxs.chunks_mut(xs.plane()).enumerate() {
                let k = task * per + k;
                let xp = &x[k * xs.plane()..][..xs.plane()];
                let dyp = &dy[k * ys.plane()..][..ys.plane()];
                out.push(plane_backward(
                    xp,
                    dyp,
                    &w[(k % xs.c) * 9..][..9],
                    xs,
                    s,
                    dxp,
                ));
            }
            out
        })
        .collect();
    let mut dw = vec![0.0; xs.c * 9];
    for (k, p) in partial.into_iter().flatten().enumerate() {
        let c = k % xs.c;
        for (t, v) in dw[c * 9..][..9].iter_mut().zip(p) {
            *t += v;
        }
    }
    (dx, dw)
}

/// One plane: its input gradient into `dxp`, its `[9]` weight gradient returned.
fn plane_backward(
    xp: &[f32],
    dyp: &[f32],
    wc: &[f32],
    xs: Shape4,
    s: usize,
    dxp: &mut [f32],
) -> [f32; 9] {
    let ys = xs.strided(1, s);
    let mut dw = [0.0f32; 9];
    for i in 0..ys.h {
        for j in 0..ys.w {
            let g = dyp[i * ys.w + j];
            for ky in 0..3 {
                let Some(r) = (i * s + ky).checked_sub(1).filter(|&r| r < xs.h) else {
                    continue;
                };
                for kx in 0..3 {
                    let Some(col) = (j * s + kx).checked_sub(1).filter(|&q| q < xs.w) else {
                        continue;
                    };
                    dxp[r * xs.w + col] += wc[ky * 3 + kx] * g;
                    dw[ky * 3 + kx] += xp[r * xs.w + col] * g;
                }
            }
        }
    }
    dw
}
