//! Convolutions on the CPU: the 1x1 convolution (a GEMM) with its epilogue and both gradients,
//! and the 3x3 pad-1 convolution. Mirrors `shaders/conv1x1*.wgsl`.

use super::check_len;
use crate::error::{Error, Result};
use crate::shape::{Shape4, check_nonempty, check_stride};
use num_traits::Float;

/// What the 1x1 convolution applies to its result, in this order: per-output-channel affine
/// `y = scale[co] * y + bias[co]`, residual add `y += residual`, ReLU.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a, T> {
    /// `(scale, bias)`, each `[Cout]`.
    pub affine: Option<(&'a [T], &'a [T])>,
    /// A tensor of the output's shape added to the result.
    pub residual: Option<&'a [T]>,
    /// Clamp negative results to zero.
    pub relu: bool,
}

impl<T> Default for Epilogue<'_, T> {
    fn default() -> Self {
        Self {
            affine: None,
            residual: None,
            relu: false,
        }
    }
}

/// Flat index of the input pixel that output pixel `p` of a stride-`s` 1x1 conv reads.
fn src_index(p: usize, wo: usize, w: usize, stride: usize) -> usize {
    (p / wo) * stride * w + (p % wo) * stride
}

fn check_weight<T>(op: &'static str, w: &[T], cout: usize, cin: usize) -> Result<()> {
    check_len(op, "weight", w, cout * cin, format!("[{cout}, {cin}]"))
}

/// 1x1 convolution with stride: `y[n, co, i, j] = sum_ci w[co, ci] * x[n, ci, i*s, j*s]`,
/// then the [`Epilogue`]. `w` is `[Cout, Cin]`; returns `[N, Cout, Ho, Wo]`.
pub fn conv1x1<T: Float>(
    x: &[T],
    xs: Shape4,
    w: &[T],
    cout: usize,
    stride: usize,
    epilogue: Epilogue<'_, T>,
) -> Result<Vec<T>> {
    const OP: &str = "conv1x1";
    check_stride(OP, stride)?;
    check_nonempty(OP, "input", xs)?;
    check_len(OP, "input", x, xs.len(), xs)?;
    check_weight(OP, w, cout, xs.c)?;
    let ys = xs.strided(cout, stride);
    if let Some((scale, bias)) = epilogue.affine {
        check_len(OP, "affine scale", scale, cout, format!("[{cout}]"))?;
        check_len(OP, "affine bias", bias, cout, format!("[{cout}]"))?;
    }
    if let Some(r) = epilogue.residual {
        check_len(OP, "residual", r, ys.len(), ys)?;
    }
    let (po, pi) = (ys.plane(), xs.plane());
    let mut y = vec![T::zero(); ys.len()];
    let mut row = vec![T::zero(); po];
    for n in 0..xs.n {
        for co in 0..cout {
            row.iter_mut().for_each(|v| *v = T::zero());
            for ci in 0..xs.c {
                let wv = w[co * xs.c + ci];
                let plane = &x[(n * xs.c + ci) * pi..][..pi];
                for (p, acc) in row.iter_mut().enumerate() {
                    *acc = *acc + wv * plane[src_index(p, ys.w, xs.w, stride)];
                }
            }
            let base = (n * cout + co) * po;
            for (p, &acc) in row.iter().enumerate() {
                let mut v = acc;
                if let Some((scale, bias)) = epilogue.affine {
                    v = scale[co] * v + bias[co];
                }
                if let Some(r) = epilogue.residual {
                    v = v + r[base + p];
                }
                if epilogue.relu {
                    v = v.max(T::zero());
                }
                y[base + p] = v;
            }
        }
    }
    Ok(y)
}

/// Gradient of [`conv1x1`] (without epilogue) with respect to its input: returns `dx` of shape
/// `xs`; pixels the stride skipped get zero.
pub fn conv1x1_backward_input<T: Float>(
    dy: &[T],
    xs: Shape4,
    w: &[T],
    cout: usize,
    stride: usize,
) -> Result<Vec<T>> {
    const OP: &str = "conv1x1_backward_input";
    check_stride(OP, stride)?;
    check_nonempty(OP, "input", xs)?;
    check_weight(OP, w, cout, xs.c)?;
    let ys = xs.strided(cout, stride);
    check_len(OP, "output gradient", dy, ys.len(), ys)?;
    let (po, pi) = (ys.plane(), xs.plane());
    let mut dx = vec![T::zero(); xs.len()];
    for n in 0..xs.n {
        for ci in 0..xs.c {
            let dst = &mut dx[(n * xs.c + ci) * pi..][..pi];
            for co in 0..cout {
                let wv = w[co * xs.c + ci];
                let g = &dy[(n * cout + co) * po..][..po];
                for (p, &gv) in g.iter().enumerate() {
                    let q = src_index(p, ys.w, xs.w, stride);
                    dst[q] = dst[q] + wv * gv;
                }
            }
        }
    }
    Ok(dx)
}

/// Gradient of [`conv1x1`] (without epilogue) with respect to its weights, summed over the
/// batch: returns `[Cout, Cin]`.
pub fn conv1x1_backward_weight<T: Float>(
    dy: &[T],
    x: &[T],
    xs: Shape4,
    cout: usize,
    stride: usize,
) -> Result<Vec<T>> {
    const OP: &str = "conv1x1_backward_weight";
    check_stride(OP, stride)?;
    check_nonempty(OP, "input", xs)?;
    check_len(OP, "input", x, xs.len(), xs)?;
    let ys = xs.strided(cout, stride);
    check_len(OP, "output gradient", dy, ys.len(), ys)?;
    let (po, pi) = (ys.plane(), xs.plane());
    let mut dw = vec![T::zero(); cout * xs.c];
    for co in 0..cout {
        for ci in 0..xs.c {
            let mut acc = T::zero();
            for n in 0..xs.n {
                let g = &dy[(n * cout + co) * po..][..po];
                let plane = &x[(n * xs.c + ci) * pi..][..pi];
                for (p, &gv) in g.iter().enumerate() {
                    acc = acc + gv * plane[src_index(p, ys.w, xs.w, stride)];
                }
            }
            dw[co * xs.c + ci] = acc;
        }
    }
    Ok(dw)
}

/// 3x3 convolution, padding 1, stride `s`, no bias: `w` is `[Cout, Cin, 3, 3]`;
/// `y[n, co, i, j] = sum w[co, ci, ky, kx] * x[n, ci, i*s + ky - 1, j*s + kx - 1]` (zero
/// outside). Returns `[N, Cout, (H-1)/s + 1, (W-1)/s + 1]`.
pub fn conv3x3<T: Float>(
    x: &[T],
    xs: Shape4,
    w: &[T],
    cout: usize,
    stride: usize,
) -> Result<Vec<T>> {
    const OP: &str = "conv3x3";
    check_stride(OP, stride)?;
    check_nonempty(OP, "input", xs)?;
    check_len(OP, "input", x, xs.len(), xs)?;
    if w.len() != cout * xs.c * 9 {
        return Err(Error::shape(
            OP,
            "weight",
            format!("[{cout}, {}, 3, 3]", xs.c),
            format!("{} elements", w.len()),
        ));
    }
    let ys = xs.strided(cout, stride);
    let mut y = vec![T::zero(); ys.len()];
    for n in 0..xs.n {
        for co in 0..cout {
            for i in 0..ys.h {
                for j in 0..ys.w {
                    let mut acc = T::zero();
                    for ci in 0..xs.c {
                        let plane = &x[(n * xs.c + ci) * xs.plane()..][..xs.plane()];
                        for ky in 0..3 {
                            let r = (i * stride + ky) as i64 - 1;
                            if r < 0 || r >= xs.h as i64 {
                                continue;
                            }
                            for kx in 0..3 {
                                let c = (j * stride + kx) as i64 - 1;
                                if c < 0 || c >= xs.w as i64 {
                                    continue;
                                }
                                let wv = w[((co * xs.c + ci) * 3 + ky) * 3 + kx];
                                acc = acc + wv * plane[r as usize * xs.w + c as usize];
                            }
                        }
                    }
                    y[((n * cout + co) * ys.h + i) * ys.w + j] = acc;
                }
            }
        }
    }
    Ok(y)
}

/// The Active Shift Layer fused into the following 1x1 convolution (the twin of
/// `shaders/asl_conv1x1.wgsl`): `y = epilogue(W · ASL(x; shift, stride))`, computed as
/// [`asl_forward`](super::asl_forward) followed by [`conv1x1`] at stride 1. `x` is
/// `[N, C, H, W]`, `shift` `[2, C]`, `w` `[Cout, C]` (Cout is its length over C); returns
/// `[N, Cout, Ho, Wo]`.
pub fn asl_conv1x1<T: Float>(
    x: &[T],
    xs: Shape4,
    shift: &[T],
    stride: usize,
    w: &[T],
    epilogue: Epilogue<'_, T>,
) -> Result<Vec<T>> {
    if xs.c == 0 || w.is_empty() || !w.len().is_multiple_of(xs.c) {
        return Err(Error::shape(
            "asl_conv1x1",
            "weight",
            format!("[Cout, {}] with Cout >= 1", xs.c),
            format!("{} values", w.len()),
        ));
    }
    let cout = w.len() / xs.c;
    let shifted = super::asl_forward(x, xs, shift, stride)?;
    conv1x1(&shifted, xs.strided(xs.c, stride), w, cout, 1, epilogue)
}

/// Depthwise 3x3 convolution, padding 1, stride `s`, no bias: `w` is `[C, 1, 3, 3]`;
/// `y[n, c, i, j] = sum w[c, 0, ky, kx] * x[n, c, i*s + ky - 1, j*s + kx - 1]` (zero outside).
/// Returns `[N, C, (H-1)/s + 1, (W-1)/s + 1]`. Mirrors `shaders/depthwise3x3.wgsl`.
pub fn depthwise3x3<T: Float>(x: &[T], xs: Shape4, w: &[T], stride: usize) -> Result<Vec<T>> {
    const OP: &str = "depthwise3x3";
    check_stride(OP, stride)?;
    check_nonempty(OP, "input", xs)?;
    check_len(OP, "input", x, xs.len(), xs)?;
    check_len(OP, "weight", w, xs.c * 9, format!("[{}, 1, 3, 3]", xs.c))?;
    let ys = xs.strided(xs.c, stride);
    let mut y = vec![T::zero(); ys.len()];
    for n in 0..xs.n {
        for c in 0..xs.c {
            let plane = &x[(n * xs.c + c) * xs.plane()..][..xs.plane()];
            for i in 0..ys.h {
                for j in 0..ys.w {
                    let mut acc = T::zero();
                    for ky in 0..3 {
                        let r = (i * stride + ky) as i64 - 1;
                        if r < 0 || r >= xs.h as i64 {
                            continue;
                        }
                        for kx in 0..3 {
                            let col = (j * stride + kx) as i64 - 1;
                            if col < 0 || col >= xs.w as i64 {
                                continue;
                            }
                            acc = acc
                                + w[c * 9 + ky * 3 + kx] * plane[r as usize * xs.w + col as usize];
                        }
                    }
                    y[((n * xs.c + c) * ys.h + i) * ys.w + j] = acc;
                }
            }
        }
    }
    Ok(y)
}

/// Weight gradient of [`conv3x3`], summed over the batch: `[Cout, Cin, 3, 3]`,
/// `dw[co, ci, ky, kx] = sum dy[n, co, i, j] * x[n, ci, i*s + ky - 1, j*s + kx - 1]`.
/// Mirrors `shaders/conv3x3_backward_weight.wgsl`.
pub fn conv3x3_backward_weight<T: Float>(
    dy: &[T],
    x: &[T],
    xs: Shape4,
    cout: usize,
    stride: usize,
) -> Result<Vec<T>> {
    const OP: &str = "conv3x3_backward_weight";
    check_stride(OP, stride)?;
    check_nonempty(OP, "input", xs)?;
    check_len(OP, "input", x, xs.len(), xs)?;
    let ys = xs.strided(cout, stride);
    check_len(OP, "output gradient", dy, ys.len(), ys)?;
    let mut dw = vec![T::zero(); cout * xs.c * 9];
    for co in 0..cout {
        for ci in 0..xs.c {
            for k in 0..9 {
                let (ky, kx) = (k / 3, k % 3);
                let mut acc = T::zero();
                for n in 0..xs.n {
                    let plane = &x[(n * xs.c + ci) * xs.plane()..][..xs.plane()];
                    let g = &dy[(n * cout + co) * ys.plane()..][..ys.plane()];
                    for i in 0..ys.h {
                        for j in 0..ys.w {
                            let (r, c) =
                                ((i * stride + ky) as i64 - 1, (j * stride + kx) as i64 - 1);
                            if r >= 0 && c >= 0 && r < xs.h as i64 && c < xs.w as i64 {
                                acc = acc + g[i * ys.w + j] * plane[r as usize * xs.w + c as usize];
                            }
                        }
                    }
                }
                dw[(co * xs.c + ci) * 9 + k] = acc;
            }
        }
    }
    Ok(dw)
}

/// Backward of [`depthwise3x3`]: `(dx, dw)`, `dx` of shape `xs` and `dw` `[C, 1, 3, 3]` summed
/// over the batch. Mirrors `shaders/depthwise3x3_backward.wgsl`.
pub fn depthwise3x3_backward<T: Float>(
    x: &[T],
    xs: Shape4,
    dy: &[T],
    w: &[T],
    stride: usize,
) -> Result<(Vec<T>, Vec<T>)> {
    const OP: &str = "depthwise3x3_backward";
    check_stride(OP, stride)?;
    check_nonempty(OP, "input", xs)?;
    check_len(OP, "input", x, xs.len(), xs)?;
    check_len(OP, "weight", w, xs.c * 9, format!("[{}, 1, 3, 3]", xs.c))?;
    let ys = xs.strided(xs.c, stride);
    check_len(OP, "output gradient", dy, ys.len(), ys)?;
    let mut dx = vec![T::zero(); xs.len()];
    let mut dw = vec![T::zero(); xs.c * 9];
    for n in 0..xs.n {
        for c in 0..xs.c {
            let base = (n * xs.c + c) * xs.plane();
            let g = &dy[(n * xs.c + c) * ys.plane()..][..ys.plane()];
            for i in 0..ys.h {
                for j in 0..ys.w {
                    for k in 0..9 {
                        let (r, col) = (
                            (i * stride + k / 3) as i64 - 1,
                            (j * stride + k % 3) as i64 - 1,
                        );
                        if r < 0 || col < 0 || r >= xs.h as i64 || col >= xs.w as i64 {
                            continue;
                        }
                        let at = base + r as usize * xs.w + col as usize;
                        dx[at] = dx[at] + w[c * 9 + k] * g[i * ys.w + j];
                        dw[c * 9 + k] = dw[c * 9 + k] + x[at] * g[i * ys.w + j];
                    }
                }
            }
        }
    }
    Ok((dx, dw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn values(len: usize, seed: u64) -> Vec<f64> {
        (0..len as u64)
            .map(|i| (((i + 3) * 2_246_822_519 + seed * 131) % 997) as f64 / 498.5 - 1.0)
            .collect()
    }

    #[test]
    fn the_1x1_epilogue_applies_affine_then_residual_then_relu() {
        let xs = Shape4::new(1, 2, 2, 2);
        let x = values(xs.len(), 1);
        let w = [0.5, -1.0, 2.0, 0.25];
        let (scale, bias) = ([2.0, -1.0], [0.1, 0.3]);
        let residual = values(8, 2);
        let epilogue = Epilogue {
            affine: Some((&scale[..], &bias[..])),
            residual: Some(&residual),
            relu: true,
        };
        let y = conv1x1(&x, xs, &w, 2, 1, epilogue).unwrap();
        for co in 0..2 {
            for p in 0..4 {
                let sum: f64 = (0..2).map(|ci| w[co * 2 + ci] * x[ci * 4 + p]).sum();
                let want = (scale[co] * sum + bias[co] + residual[co * 4 + p]).max(0.0);
                assert!((y[co * 4 + p] - want).abs() < 1e-12, "({co}, {p})");
            }
        }
    }

    #[test]
    fn the_1x1_gradients_are_the_transposes_of_the_forward_map() {
        for stride in [1, 2] {
            let (xs, cout) = (Shape4::new(2, 3, 5, 4), 4);
            let x = values(xs.len(), 3);
            let w = values(cout * xs.c, 4);
            let g = values(xs.strided(cout, stride).len(), 5);
            let y = conv1x1(&x, xs, &w, cout, stride, Epilogue::default()).unwrap();
            // y is linear in x and in w: <y, g> = <x, dx> = <w, dw>.
            let dx = conv1x1_backward_input(&g, xs, &w, cout, stride).unwrap();
            let dw = conv1x1_backward_weight(&g, &x, xs, cout, stride).unwrap();
            let yg = dot(&y, &g);
            assert!((yg - dot(&x, &dx)).abs() < 1e-9, "stride {stride}: dx");
            assert!((yg - dot(&w, &dw)).abs() < 1e-9, "stride {stride}: dw");
        }
    }

    #[test]
    fn a_3x3_depthwise_of_a_centre_tap_is_the_identity() {
        let xs = Shape4::new(1, 2, 3, 3);
        let x = values(xs.len(), 6);
        let mut w = vec![0.0; 18];
        w[4] = 1.0;
        w[9 + 4] = -2.0;
        let y = depthwise3x3(&x, xs, &w, 1).unwrap();
        for p in 0..9 {
            assert_eq!(y[p], x[p]);
            assert_eq!(y[9 + p], -2.0 * x[9 + p]);
        }
    }

    #[test]
    fn mismatched_weights_are_errors() {
        let xs = Shape4::new(1, 2, 2, 2);
        let x = [0.0f32; 8];
        assert!(conv1x1(&x, xs, &[0.0; 3], 2, 1, Epilogue::default()).is_err());
        assert!(conv1x1(&x, xs, &[0.0; 4], 2, 0, Epilogue::default()).is_err());
        assert!(depthwise3x3(&x, xs, &[0.0; 9], 1).is_err());
    }
}
