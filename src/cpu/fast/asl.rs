//! The Active Shift Layer: forward, and the backward pass that gives the input gradient and
//! the shift gradient together in one sweep. The twins: [`crate::cpu::asl_forward`],
//! [`crate::cpu::asl_backward_input`], [`crate::cpu::asl_backward_shift`]; the same shift
//! rules (a NaN shift gives a zero channel and zero gradients, shifts are clamped to
//! ±[`SHIFT_LIMIT`](crate::cpu::SHIFT_LIMIT)).
//!
//! Each channel plane is bilinear interpolation at one fractional offset: output `(i, j)`
//! reads the four input pixels at rows `i*s + fy + {0, 1}` and columns `j*s + fx + {0, 1}`
//! (zero outside the image). The weights are constant over the plane, so the interpolation
//! splits into a horizontal pass and a vertical one: every input row the plane reads is first
//! interpolated along its columns once (`H[k][j] = (1-tx) x[k+fy][j*s+fx] + tx x[..][..+1]`),
//! then each output row mixes two of those rows (`(1-ty) H[i*s] + ty H[i*s+1]`). When the
//! input width is `s` times the output's (every stride-1 plane, even widths at stride 2) the
//! horizontal pass runs over the flattened plane in one slice-wise loop and only the columns
//! where a tap leaves its row are redone with bounds checks (`shifted_lerp`); at stride 1
//! the vertical pass is one loop over the plane too. Other planes go row by row
//! (`lerp_cols`). The backward pass runs the same passes transposed, and takes the shift
//! gradient from `H` and the column differences.

use super::{inside, planes_per_task};
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

/// The geometry of one plane's interpolation: input `h x w`, output `ho x wo`, stride `s`,
/// and the `rows` interpolated input rows `k` (input row `k + fy`) the output reads.
#[derive(Clone, Copy)]
struct Geom {
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    s: usize,
    rows: usize,
}

impl Geom {
    fn new(xs: Shape4, s: usize) -> Self {
        let os = xs.strided(1, s);
        Self {
            h: xs.h,
            w: xs.w,
            ho: os.h,
            wo: os.w,
            s,
            rows: (os.h.max(1) - 1) * s + 2,
        }
    }

    /// The input row of interpolated row `k`, if inside the image.
    fn input_row(&self, k: usize, t: Taps) -> Option<usize> {
        let r = k as i64 + t.fy;
        (r >= 0 && r < self.h as i64).then_some(r as usize)
    }
}

/// The scratch rows of one task.
#[derive(Default)]
struct Scratch {
    /// The column-interpolated rows `H` (`rows x wo`).
    h: Vec<f32>,
    /// The column differences `x[..][c+1] - x[..][c]` at the same places.
    d: Vec<f32>,
    /// One row of the input gradient before it is spread over the columns.
    row: Vec<f32>,
}

/// `dst[j] = a * row[j*s + off] + b * row[j*s + off + 1]` (zero outside the row), and when
/// `diff` is given `diff[j] = row[j*s + off + 1] - row[j*s + off]`.
fn lerp_cols(
    dst: &mut [f32],
    mut diff: Option<&mut [f32]>,
    row: &[f32],
    off: i64,
    s: usize,
    ab: (f32, f32),
) {
    let (a, b) = ab;
    let n = dst.len();
    // Both taps inside: `0 <= off + j*s < w - 1`.
    let (lo, hi) = inside(off, s, row.len().saturating_sub(1), n);
    let at = |c: i64| {
        if c >= 0 && (c as usize) < row.len() {
            row[c as usize]
        } else {
            0.0
        }
    };
    for j in (0..lo).chain(hi.max(lo)..n) {
        let c = off + (j * s) as i64;
        let (p, q) = (at(c), at(c + 1));
        dst[j] = a * p + b * q;
        if let Some(d) = diff.as_deref_mut() {
            d[j] = q - p;
        }
    }
    if lo >= hi {
        return;
    }
    let start = (off + (lo * s) as i64) as usize;
    if s == 1 {
        let len = hi - lo;
        let (x0, x1) = (&row[start..start + len], &row[start + 1..start + 1 + len]);
        for ((v, &p), &q) in dst[lo..hi].iter_mut().zip(x0).zip(x1) {
            *v = a * p + b * q;
        }
        if let Some(d) = diff {
            for ((v, &p), &q) in d[lo..hi].iter_mut().zip(x0).zip(x1) {
                *v = q - p;
            }
        }
    } else {
        // Stride >= 2: the taps of output j are the first two values of the j-th chunk of
        // `s` values (the last chunk may hold only those two).
        let len = hi - lo;
        let span = &row[start..start + (len - 1) * s + 2];
        let pairs = (0..len).map(|j| (span[j * s], span[j * s + 1]));
        match diff {
            Some(d) => {
                for ((v, dv), (p, q)) in dst[lo..hi].iter_mut().zip(&mut d[lo..hi]).zip(pairs) {
                    *v = a * p + b * q;
                    *dv = q - p;
                }
            }
            None => {
                for (v, (p, q)) in dst[lo..hi].iter_mut().zip(pairs) {
                    *v = a * p + b * q;
                }
            }
        }
    }
}

/// The transpose of [`lerp_cols`] (used at strides above 1): `out[c] = sum over j of
/// a * g[j] where c = j*s + off, and b * g[j] where c = j*s + off + 1`.
fn spread_cols(out: &mut [f32], g: &[f32], off: i64, s: usize, (a, b): (f32, f32)) {
    out.fill(0.0);
    // Both targets inside for `0 <= off + j*s < w - 1`: the first two values of a chunk.
    let (lo, hi) = inside(off, s, out.len().saturating_sub(1), g.len());
    let w = out.len() as i64;
    for j in (0..lo).chain(hi.max(lo)..g.len()) {
        let (c, v) = (off + (j * s) as i64, g[j]);
        if c >= 0 && c < w {
            out[c as usize] += a * v;
        }
        if c + 1 >= 0 && c + 1 < w {
            out[(c + 1) as usize] += b * v;
        }
    }
    if lo < hi {
        let start = (off + (lo * s) as i64) as usize;
        let span = &mut out[start..start + (hi - lo - 1) * s + 2];
        for (j, &v) in g[lo..hi].iter().enumerate() {
            span[j * s] = a * v;
            span[j * s + 1] = b * v;
        }
    }
}

/// The layout of [`shifted_lerp`]'s planes: `out` rows of `wo` values, `src` rows of `w =
/// s * wo` values, stride `s`.
#[derive(Clone, Copy)]
struct Flat {
    wo: usize,
    w: usize,
    s: usize,
}

/// Whole planes: `out[k][j] = a * src[k + dy][j*s + dx] + b * src[k + dy][j*s + dx + 1]`
/// (zero outside `src`), and when `diff` is given `diff[k][j] = src[..][j*s + dx + 1] -
/// src[..][j*s + dx]`. The rows of both planes are contiguous and `w = s * wo`, so one pass
/// over the flattened planes (`out[m]` from `src[s*m + dy*w + dx]` and the value after it) is
/// right everywhere but where a tap leaves its row (at most `|dx| / s + 1` columns a row):
/// those are then rewritten one by one.
fn shifted_lerp(
    out: &mut [f32],
    mut diff: Option<&mut [f32]>,
    src: &[f32],
    f: Flat,
    (dy, dx): (i64, i64),
    (a, b): (f32, f32),
) {
    let Flat { wo, w, s } = f;
    let (rows, hs) = (out.len() / wo, src.len() / w);
    let (wi, si) = (w as i64, s as i64);
    // Rows whose source row is inside `src`; the others are zero.
    let klo = (-dy).clamp(0, rows as i64) as usize;
    let khi = (hs as i64 - dy).clamp(klo as i64, rows as i64) as usize;
    for (lo, hi) in [(0, klo * wo), (khi * wo, out.len())] {
        out[lo..hi].fill(0.0);
        if let Some(d) = diff.as_deref_mut() {
            d[lo..hi].fill(0.0);
        }
    }
    if klo == khi {
        return;
    }
    // The bulk: `0 <= s*m + off` and `s*m + off + 1 < src.len()`.
    let off = dy * wi + dx;
    let m0 = ((klo * wo) as i64).max((-off + si - 1).div_euclid(si));
    let m1 = ((khi * wo) as i64).min((src.len() as i64 - 2 - off).div_euclid(si) + 1);
    if m0 < m1 {
        let (m0, m1) = (m0 as usize, m1 as usize);
        let s0 = (m0 as i64 * si + off) as usize;
        let len = m1 - m0;
        if s == 1 {
            let (x0, x1) = (&src[s0..s0 + len], &src[s0 + 1..s0 + 1 + len]);
            for ((v, &p), &q) in out[m0..m1].iter_mut().zip(x0).zip(x1) {
                *v = a * p + b * q;
            }
            if let Some(d) = diff.as_deref_mut() {
                for ((v, &p), &q) in d[m0..m1].iter_mut().zip(x0).zip(x1) {
                    *v = q - p;
                }
            }
        } else if s == 2 {
            let pairs = src[s0..s0 + 2 * len].as_chunks::<2>().0;
            for (v, &[p, q]) in out[m0..m1].iter_mut().zip(pairs) {
                *v = a * p + b * q;
            }
            if let Some(d) = diff.as_deref_mut() {
                for (v, &[p, q]) in d[m0..m1].iter_mut().zip(pairs) {
                    *v = q - p;
                }
            }
        } else {
            let span = &src[s0..s0 + (len - 1) * s + 2];
            for (m, v) in out[m0..m1].iter_mut().enumerate() {
                *v = a * span[m * s] + b * span[m * s + 1];
            }
            if let Some(d) = diff.as_deref_mut() {
                for (m, v) in d[m0..m1].iter_mut().enumerate() {
                    *v = span[m * s + 1] - span[m * s];
                }
            }
        }
    }
    // The columns where a tap leaves the row: `j*s + dx < 0` or `j*s + dx + 1 >= w`.
    let left = (-dx + si - 1).div_euclid(si).clamp(0, wo as i64) as usize;
    let right = (wi - 1 - dx + si - 1)
        .div_euclid(si)
        .clamp(left as i64, wo as i64) as usize;
    for k in klo..khi {
        let srow = &src[(k as i64 + dy) as usize * w..][..w];
        let at = |c: i64| {
            if c >= 0 && c < wi {
                srow[c as usize]
            } else {
                0.0
            }
        };
        for j in (0..left).chain(right..wo) {
            let c = (j * s) as i64 + dx;
            let (p, q) = (at(c), at(c + 1));
            out[k * wo + j] = a * p + b * q;
            if let Some(d) = diff.as_deref_mut() {
                d[k * wo + j] = q - p;
            }
        }
    }
}

/// Fill `sc.h` (and `sc.d` when `diff`) with the column-interpolated rows of one plane.
fn interpolate_rows(src: &[f32], g: Geom, t: Taps, sc: &mut Scratch, diff: bool) {
    let len = g.rows * g.wo;
    sc.h.resize(len, 0.0);
    if diff {
        sc.d.resize(len, 0.0);
    }
    let ab = (1.0 - t.tx, t.tx);
    if g.w == g.s * g.wo {
        let d = diff.then_some(&mut sc.d[..]);
        let f = Flat {
            wo: g.wo,
            w: g.w,
            s: g.s,
        };
        shifted_lerp(&mut sc.h, d, src, f, (t.fy, t.fx), ab);
        return;
    }
    for k in 0..g.rows {
        let h = &mut sc.h[k * g.wo..][..g.wo];
        let d = diff.then(|| &mut sc.d[k * g.wo..][..g.wo]);
        match g.input_row(k, t) {
            Some(r) => lerp_cols(h, d, &src[r * g.w..][..g.w], t.fx, g.s, ab),
            None => {
                h.fill(0.0);
                if let Some(d) = d {
                    d.fill(0.0);
                }
            }
        }
    }
}

/// `dst = a * top + b * bottom` elementwise.
fn mix(dst: &mut [f32], top: &[f32], bottom: &[f32], (a, b): (f32, f32)) {
    for ((v, &p), &q) in dst.iter_mut().zip(top).zip(bottom) {
        *v = a * p + b * q;
    }
}

/// The ASL forward into `out` (`[N, C, Ho, Wo]`), as [`asl_forward`](crate::cpu::asl_forward)
/// computes it. Parallel over channel planes.
pub fn asl_forward(x: &[f32], xs: Shape4, shift: &[f32], stride: usize, out: &mut [f32]) {
    let os = xs.strided(xs.c, stride);
    let g = Geom::new(xs, stride);
    let per = planes_per_task(xs.n * xs.c, os.plane());
    out.par_chunks_mut(os.plane() * per)
        .enumerate()
        .for_each(|(task, dsts)| {
            let mut sc = Scratch::default();
            for (k, dst) in dsts.chunks_mut(os.plane()).enumerate() {
                let plane_ix = task * per + k;
                let Some(t) = taps(shift, xs.c, plane_ix % xs.c) else {
                    dst.fill(0.0);
                    continue;
                };
                let src = &x[plane_ix * xs.plane()..][..xs.plane()];
                interpolate_rows(src, g, t, &mut sc, false);
                let ab = (1.0 - t.ty, t.ty);
                if stride == 1 {
                    // Output row i mixes rows i and i + 1: the whole plane at once.
                    let n = dst.len();
                    mix(dst, &sc.h[..n], &sc.h[g.wo..g.wo + n], ab);
                    continue;
                }
                for (i, d) in dst.chunks_mut(g.wo).enumerate() {
                    let k0 = i * stride * g.wo;
                    mix(d, &sc.h[k0..k0 + g.wo], &sc.h[k0 + g.wo..k0 + 2 * g.wo], ab);
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
    let geom = Geom::new(xs, s);
    let mut dx = super::BufferPool::take(xs.len());
    let per = planes_per_task(xs.n * xs.c, xs.plane());
    // Per plane: (dxpos, dypos) of that plane.
    let partial: Vec<Vec<(f32, f32)>> = dx
        .par_chunks_mut(xs.plane() * per)
        .enumerate()
        .map(|(task, dxs)| {
            let mut sc = Scratch::default();
            let mut sums = Vec::with_capacity(per);
            for (k, dxp) in dxs.chunks_mut(xs.plane()).enumerate() {
                let plane_ix = task * per + k;
                let Some(t) = taps(shift, xs.c, plane_ix % xs.c) else {
                    dxp.fill(0.0);
                    sums.push((0.0, 0.0));
                    continue;
                };
                let src = &x[plane_ix * xs.plane()..][..xs.plane()];
                let g = &dout[plane_ix * os.plane()..][..os.plane()];
                interpolate_rows(src, geom, t, &mut sc, true);
                sums.push(plane_shift_grad(g, &sc, geom, t));
                plane_input_grad(dxp, g, geom, t, &mut sc.row);
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

/// The rows `(H[k], H[k+1], D[k], D[k+1])` that output rows read, `k = i*s`: for the whole
/// plane at stride 1, one output row's at other strides.
struct Reads<'a> {
    h0: &'a [f32],
    h1: &'a [f32],
    d0: &'a [f32],
    d1: &'a [f32],
}

/// One plane's `(dxpos, dypos)`: `sum g * ((1-ty) D[k] + ty D[k+1])` and
/// `sum g * (H[k+1] - H[k])` (with `D` the column differences: the derivative of `H` along
/// x), in eight f32 lanes.
fn plane_shift_grad(g: &[f32], sc: &Scratch, geom: Geom, t: Taps) -> (f32, f32) {
    let wy = (1.0 - t.ty, t.ty);
    let wo = geom.wo;
    let (mut ax, mut ay) = ([0.0f32; 8], [0.0f32; 8]);
    let mut add = |g: &[f32], r: Reads<'_>| {
        let (bx, by) = shift_grad_lanes(g, r, wy);
        for l in 0..8 {
            ax[l] += bx[l];
            ay[l] += by[l];
        }
    };
    if geom.s == 1 {
        let n = g.len();
        let reads = Reads {
            h0: &sc.h[..n],
            h1: &sc.h[wo..wo + n],
            d0: &sc.d[..n],
            d1: &sc.d[wo..wo + n],
        };
        add(g, reads);
    } else {
        for (i, gi) in g.chunks(wo).enumerate() {
            let k0 = i * geom.s * wo;
            let reads = Reads {
                h0: &sc.h[k0..k0 + wo],
                h1: &sc.h[k0 + wo..k0 + 2 * wo],
                d0: &sc.d[k0..k0 + wo],
                d1: &sc.d[k0 + wo..k0 + 2 * wo],
            };
            add(gi, reads);
        }
    }
    (ax.iter().sum(), ay.iter().sum())
}

/// The eight lanes of `sum g * ((1-ty) D0 + ty D1)` and `sum g * (H1 - H0)` (vectorisable:
/// the lanes are independent).
fn shift_grad_lanes(g: &[f32], r: Reads<'_>, (uy, ty): (f32, f32)) -> ([f32; 8], [f32; 8]) {
    let (mut ax, mut ay) = ([0.0f32; 8], [0.0f32; 8]);
    let n = g.len();
    let (h0, h1, d0, d1) = (&r.h0[..n], &r.h1[..n], &r.d0[..n], &r.d1[..n]);
    let (gc, gt) = g.as_chunks::<8>();
    let (h0c, h0t) = h0.as_chunks::<8>();
    let (h1c, h1t) = h1.as_chunks::<8>();
    let (d0c, d0t) = d0.as_chunks::<8>();
    let (d1c, d1t) = d1.as_chunks::<8>();
    for ((((gv, a0), a1), b0), b1) in gc.iter().zip(h0c).zip(h1c).zip(d0c).zip(d1c) {
        for l in 0..8 {
            ax[l] += gv[l] * (uy * b0[l] + ty * b1[l]);
            ay[l] += gv[l] * (a1[l] - a0[l]);
        }
    }
    for l in 0..gt.len() {
        ax[l] += gt[l] * (uy * d0t[l] + ty * d1t[l]);
        ay[l] += gt[l] * (h1t[l] - h0t[l]);
    }
    (ax, ay)
}

/// One plane's input gradient, the transpose of the forward map: the output gradient rows
/// mixed into the input rows they read (the transposed vertical pass), each spread over the
/// columns (the transposed horizontal pass). Writes every value of `dxp`.
fn plane_input_grad(dxp: &mut [f32], g: &[f32], geom: Geom, t: Taps, row: &mut Vec<f32>) {
    let Geom { w, ho, wo, s, .. } = geom;
    let (uy, ty) = (1.0 - t.ty, t.ty);
    let (ux, tx) = (1.0 - t.tx, t.tx);
    if s == 1 {
        // The vertical pass transposed: interpolated row k gets (1 - ty) g[k] + ty g[k - 1]
        // (rows k = 0..=ho); then the horizontal one: dx[r][c] = (1 - tx) dh[r - fy][c - fx]
        // + tx dh[r - fy][c - fx - 1].
        let n = g.len();
        row.resize(n + wo, 0.0);
        for (v, &p) in row[..wo].iter_mut().zip(g) {
            *v = uy * p;
        }
        mix(&mut row[wo..n], &g[wo..], &g[..n - wo], (uy, ty));
        for (v, &q) in row[n..].iter_mut().zip(&g[n - wo..]) {
            *v = ty * q;
        }
        let f = Flat { wo: w, w, s: 1 };
        shifted_lerp(dxp, None, row, f, (-t.fy, -t.fx - 1), (tx, ux));
        return;
    }
    let grow = |i: usize| &g[i * wo..][..wo];
    for (r, drow) in dxp.chunks_mut(w).enumerate() {
        let k = r as i64 - t.fy;
        if k < 0 || k >= geom.rows as i64 {
            drow.fill(0.0);
            continue;
        }
        let k = k as usize;
        // Output rows reading input row r as their top row (weight 1 - ty) and bottom row.
        let top = (k.is_multiple_of(s) && k / s < ho).then(|| k / s);
        let bottom = (k >= 1 && (k - 1).is_multiple_of(s) && (k - 1) / s < ho).then(|| (k - 1) / s);
        match (top, bottom) {
            (Some(i0), Some(i1)) => {
                row.resize(wo, 0.0);
                mix(row, grow(i0), grow(i1), (uy, ty));
                spread_cols(drow, row, t.fx, s, (ux, tx));
            }
            (Some(i), None) => spread_cols(drow, grow(i), t.fx, s, (uy * ux, uy * tx)),
            (None, Some(i)) => spread_cols(drow, grow(i), t.fx, s, (ty * ux, ty * tx)),
            (None, None) => drow.fill(0.0),
        }
    }
}
