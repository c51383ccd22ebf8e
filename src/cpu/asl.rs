//! Active Shift Layer on the CPU: forward, both gradients, gradient normalization.
//! Mirrors `shaders/asl_forward.wgsl`, `asl_backward_input.wgsl`, `asl_backward_shift.wgsl`
//! and `shift_grad_normalize.wgsl`.

use super::check_len;
use crate::error::{Error, Result};
use crate::shape::{Shape4, check_nonempty, check_stride};
use num_traits::Float;

/// Shifts are clamped to `±SHIFT_LIMIT` pixels before use (CPU and WGSL alike), `±Inf`
/// included. A larger shift already reads only zero fill (for images narrower than 2^20
/// pixels); the clamp keeps integer index arithmetic far from overflow. A NaN `xpos` or `ypos`
/// makes its channel read nothing: its output is 0 and both its gradients are 0.
pub const SHIFT_LIMIT: f64 = 1_048_576.0;

/// Integer and fractional parts of one channel's shift.
struct Taps<T> {
    fx: i64,
    fy: i64,
    tx: T,
    ty: T,
}

/// The taps of channel `c`, or `None` when its shift is NaN (the channel reads nothing).
fn taps<T: Float>(shift: &[T], channels: usize, c: usize) -> Option<Taps<T>> {
    let (xp, yp) = (shift[c], shift[channels + c]);
    if xp.is_nan() || yp.is_nan() {
        return None;
    }
    let lim = T::from(SHIFT_LIMIT).unwrap_or_else(T::max_value);
    let (xp, yp) = (xp.max(-lim).min(lim), yp.max(-lim).min(lim));
    let (fx, fy) = (xp.floor(), yp.floor());
    Some(Taps {
        fx: fx.to_i64().unwrap_or(0),
        fy: fy.to_i64().unwrap_or(0),
        tx: xp - fx,
        ty: yp - fy,
    })
}

/// `x[row, col]` of one channel plane, zero outside the image.
fn sample<T: Float>(plane: &[T], h: usize, w: usize, row: i64, col: i64) -> T {
    if row < 0 || col < 0 || row >= h as i64 || col >= w as i64 {
        return T::zero();
    }
    plane[row as usize * w + col as usize]
}

/// The four taps `(q00, q01, q10, q11)` read by output `(i, j)`.
fn quad<T: Float>(
    plane: &[T],
    s: Shape4,
    stride: usize,
    t: &Taps<T>,
    i: usize,
    j: usize,
) -> [T; 4] {
    let row = (i * stride) as i64 + t.fy;
    let col = (j * stride) as i64 + t.fx;
    [
        sample(plane, s.h, s.w, row, col),
        sample(plane, s.h, s.w, row, col + 1),
        sample(plane, s.h, s.w, row + 1, col),
        sample(plane, s.h, s.w, row + 1, col + 1),
    ]
}

/// ASL forward (docs/design.md §1). `x` is NCHW with shape `xs`, `shift` is `[2, C]` (all `xpos`,
/// then all `ypos`). Returns the output of shape `xs.strided(C, stride)`.
pub fn asl_forward<T: Float>(x: &[T], xs: Shape4, shift: &[T], stride: usize) -> Result<Vec<T>> {
    const OP: &str = "asl_forward";
    check_generic(OP, xs, shift.len(), stride)?;
    check_len(OP, "input", x, xs.len(), xs)?;
    let os = xs.strided(xs.c, stride);
    let mut out = vec![T::zero(); os.len()];
    let one = T::one();
    for n in 0..xs.n {
        for c in 0..xs.c {
            let Some(t) = taps(shift, xs.c, c) else {
                continue;
            };
            let plane = &x[(n * xs.c + c) * xs.plane()..][..xs.plane()];
            let dst = &mut out[(n * os.c + c) * os.plane()..][..os.plane()];
            for i in 0..os.h {
                for j in 0..os.w {
                    let [q00, q01, q10, q11] = quad(plane, xs, stride, &t, i, j);
                    let top = (one - t.tx) * q00 + t.tx * q01;
                    let bottom = (one - t.tx) * q10 + t.tx * q11;
                    dst[i * os.w + j] = (one - t.ty) * top + t.ty * bottom;
                }
            }
        }
    }
    Ok(out)
}

/// Output index along one axis whose tap `a` lands on input coordinate `p`, if any.
fn source_index(p: i64, f: i64, a: i64, stride: usize, extent: usize) -> Option<usize> {
    let d = p - f - a;
    let s = stride as i64;
    if d < 0 || d % s != 0 || d / s >= extent as i64 {
        return None;
    }
    Some((d / s) as usize)
}

/// Gradient of [`asl_forward`] with respect to its input, written as a gather (the exact
/// transpose of the forward map). `dout` has the forward output's shape; returns `dx` of shape
/// `xs`.
pub fn asl_backward_input<T: Float>(
    dout: &[T],
    xs: Shape4,
    shift: &[T],
    stride: usize,
) -> Result<Vec<T>> {
    const OP: &str = "asl_backward_input";
    check_generic(OP, xs, shift.len(), stride)?;
    let os = xs.strided(xs.c, stride);
    check_len(OP, "output gradient", dout, os.len(), os)?;
    let mut dx = vec![T::zero(); xs.len()];
    let one = T::one();
    for n in 0..xs.n {
        for c in 0..xs.c {
            let Some(t) = taps(shift, xs.c, c) else {
                continue;
            };
            let g = &dout[(n * os.c + c) * os.plane()..][..os.plane()];
            let dst = &mut dx[(n * xs.c + c) * xs.plane()..][..xs.plane()];
            for p in 0..xs.h {
                for q in 0..xs.w {
                    let mut acc = T::zero();
                    for a in 0..2 {
                        let Some(i) = source_index(p as i64, t.fy, a, stride, os.h) else {
                            continue;
                        };
                        let wy = if a == 1 { t.ty } else { one - t.ty };
                        for b in 0..2 {
                            let Some(j) = source_index(q as i64, t.fx, b, stride, os.w) else {
                                continue;
                            };
                            let wx = if b == 1 { t.tx } else { one - t.tx };
                            acc = acc + wy * wx * g[i * os.w + j];
                        }
                    }
                    dst[p * xs.w + q] = acc;
                }
            }
        }
    }
    Ok(dx)
}

/// Gradient of [`asl_forward`] with respect to the shift, summed over the batch and all
/// output positions: returns `[2, C]` (all `dxpos`, then all `dypos`). At an exact integer
/// shift this is the right-sided derivative.
pub fn asl_backward_shift<T: Float>(
    x: &[T],
    xs: Shape4,
    dout: &[T],
    shift: &[T],
    stride: usize,
) -> Result<Vec<T>> {
    const OP: &str = "asl_backward_shift";
    check_generic(OP, xs, shift.len(), stride)?;
    check_len(OP, "input", x, xs.len(), xs)?;
    let os = xs.strided(xs.c, stride);
    check_len(OP, "output gradient", dout, os.len(), os)?;
    let mut grad = vec![T::zero(); 2 * xs.c];
    let one = T::one();
    for c in 0..xs.c {
        let Some(t) = taps(shift, xs.c, c) else {
            continue;
        };
        let (mut gx, mut gy) = (T::zero(), T::zero());
        for n in 0..xs.n {
            let plane = &x[(n * xs.c + c) * xs.plane()..][..xs.plane()];
            let g = &dout[(n * os.c + c) * os.plane()..][..os.plane()];
            for i in 0..os.h {
                for j in 0..os.w {
                    let [q00, q01, q10, q11] = quad(plane, xs, stride, &t, i, j);
                    let d = g[i * os.w + j];
                    gx = gx + d * ((one - t.ty) * (q01 - q00) + t.ty * (q11 - q10));
                    gy = gy + d * ((one - t.tx) * (q10 - q00) + t.tx * (q11 - q01));
                }
            }
        }
        grad[c] = gx;
        grad[xs.c + c] = gy;
    }
    Ok(grad)
}

/// The normalized shift gradient the authors trained with: every channel's `(dxpos, dypos)`
/// is scaled to unit L2 norm in place (a zero pair is left alone). `grad` is `[2, C]`.
/// Tiny and huge pairs are normalized exactly too (no underflow or overflow).
pub fn normalize_shift_grad<T: Float>(grad: &mut [T]) -> Result<()> {
    if !grad.len().is_multiple_of(2) {
        return Err(Error::shape(
            "normalize_shift_grad",
            "gradient",
            "[2, C] (an even number of elements)",
            format!("{} elements", grad.len()),
        ));
    }
    let c = grad.len() / 2;
    for k in 0..c {
        let (gx, gy) = (grad[k], grad[c + k]);
        // Divide by the larger magnitude first so squaring neither underflows nor overflows.
        let m = gx.abs().max(gy.abs());
        if m > T::zero() {
            let (a, b) = (gx / m, gy / m);
            let norm = (a * a + b * b).sqrt();
            grad[k] = a / norm;
            grad[c + k] = b / norm;
        }
    }
    Ok(())
}

fn check_generic(op: &'static str, xs: Shape4, shift_len: usize, stride: usize) -> Result<()> {
    check_stride(op, stride)?;
    check_nonempty(op, "input", xs)?;
    if shift_len != 2 * xs.c {
        return Err(Error::shape(
            op,
            "shift",
            format!("[2, {}] ({} elements)", xs.c, 2 * xs.c),
            format!("{shift_len} elements"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `<a, b>` in f64.
    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// Deterministic, irregular values (no two alike), so a misplaced index shows.
    fn values(len: usize, seed: u64) -> Vec<f64> {
        (0..len as u64)
            .map(|i| (((i + 1) * 2_654_435_761 + seed * 97) % 1000) as f64 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn integer_shifts_translate_with_zero_fill() {
        let xs = Shape4::new(1, 2, 3, 4);
        let x = values(xs.len(), 1);
        // Channel 0 reads one column right, channel 1 one row up (ypos = -1).
        let shift = [1.0, 0.0, 0.0, -1.0];
        let y = asl_forward(&x, xs, &shift, 1).unwrap();
        let at = |c: usize, i: i64, j: i64| {
            if i < 0 || j < 0 || i >= 3 || j >= 4 {
                0.0
            } else {
                x[(c * 3 + i as usize) * 4 + j as usize]
            }
        };
        for i in 0..3 {
            for j in 0..4 {
                assert_eq!(y[i * 4 + j], at(0, i as i64, j as i64 + 1), "c0 ({i}, {j})");
                assert_eq!(
                    y[12 + i * 4 + j],
                    at(1, i as i64 - 1, j as i64),
                    "c1 ({i}, {j})"
                );
            }
        }
    }

    #[test]
    fn a_half_pixel_shift_averages_neighbours_and_stride_subsamples() {
        let xs = Shape4::new(1, 1, 4, 4);
        let x = values(xs.len(), 2);
        let y = asl_forward(&x, xs, &[0.5, 0.0], 2).unwrap();
        assert_eq!(y.len(), 4);
        for i in 0..2 {
            for j in 0..2 {
                let (r, c) = (2 * i, 2 * j);
                let want = (x[r * 4 + c] + x[r * 4 + c + 1]) / 2.0;
                assert!((y[i * 2 + j] - want).abs() < 1e-12, "({i}, {j})");
            }
        }
    }

    #[test]
    fn the_input_gradient_is_the_transpose_of_the_forward_map() {
        for (shift, stride) in [
            (vec![0.3, -1.7, 2.25, -0.4, 0.9, 0.0], 1),
            (vec![-0.6, 1.2, 0.0, 3.5, -2.1, 0.75], 2),
        ] {
            let xs = Shape4::new(2, 3, 5, 6);
            let x = values(xs.len(), 3);
            let g = values(xs.strided(3, stride).len(), 4);
            let y = asl_forward(&x, xs, &shift, stride).unwrap();
            let dx = asl_backward_input(&g, xs, &shift, stride).unwrap();
            let (lhs, rhs) = (dot(&y, &g), dot(&x, &dx));
            assert!(
                (lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0),
                "{lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn the_shift_gradient_matches_finite_differences() {
        let xs = Shape4::new(1, 2, 5, 5);
        let x = values(xs.len(), 5);
        let g = values(xs.len(), 6);
        // Away from integers: the map is smooth there.
        let shift = vec![0.3, -1.4, 0.6, 1.2];
        let loss = |s: &[f64]| dot(&asl_forward(&x, xs, s, 1).unwrap(), &g);
        let grad = asl_backward_shift(&x, xs, &g, &shift, 1).unwrap();
        for k in 0..shift.len() {
            let h = 1e-6;
            let (mut up, mut down) = (shift.clone(), shift.clone());
            up[k] += h;
            down[k] -= h;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * h);
            assert!(
                (grad[k] - numeric).abs() < 1e-6,
                "{k}: {} vs {numeric}",
                grad[k]
            );
        }
    }

    #[test]
    fn a_wrong_shift_length_is_an_error() {
        let xs = Shape4::new(1, 2, 3, 3);
        assert!(asl_forward(&[0.0f32; 18], xs, &[0.0; 3], 1).is_err());
        assert!(asl_forward(&[0.0f32; 17], xs, &[0.0; 4], 1).is_err());
        assert!(asl_forward(&[0.0f32; 18], xs, &[0.0; 4], 0).is_err());
    }
}
