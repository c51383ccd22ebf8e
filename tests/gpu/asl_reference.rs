//! The reference tests of docs/design.md §1, each run on the CPU implementation and on the GPU
//! kernels (`cpu_*` and `gpu_*` tests). Finite differences use an independent f64 evaluation
//! of the CPU forward.

use crate::common;

use activeshift::{Shape4, cpu};
use common::*;

/// Generates `cpu_<name>` and `gpu_<name>` tests that run `body` on each implementation.
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn cpu() {
                on_cpu($body);
            }
            #[test]
            fn gpu() {
                on_gpu(concat!(stringify!($name), "::gpu"), $body);
            }
        }
    };
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Exact reference for an integer shift: out(i, j) = x(i*s + dy, j*s + dx), zero outside.
fn translate(x: &[f32], xs: Shape4, dxs: &[i64], dys: &[i64], s: usize) -> Vec<f32> {
    let os = xs.strided(xs.c, s);
    let mut out = vec![0.0; os.len()];
    for n in 0..xs.n {
        for c in 0..xs.c {
            for i in 0..os.h {
                for j in 0..os.w {
                    let (r, q) = ((i * s) as i64 + dys[c], (j * s) as i64 + dxs[c]);
                    if r >= 0 && q >= 0 && r < xs.h as i64 && q < xs.w as i64 {
                        out[((n * xs.c + c) * os.h + i) * os.w + j] =
                            x[((n * xs.c + c) * xs.h + r as usize) * xs.w + q as usize];
                    }
                }
            }
        }
    }
    out
}

both!(identity_at_zero_shift, |k: &dyn Impl| {
    let (mut rng, seed) = rng("identity");
    let xs = Shape4::new(2, 3, 5, 7);
    let x = uniform(&mut rng, xs.len(), -2.0, 2.0);
    let out = k.forward(&x, xs, &[0.0; 6], 1);
    assert_eq!(
        out,
        x,
        "{}: zero shift must be the identity (seed {seed})",
        k.name()
    );
});

both!(integer_shift_is_exact_translation, |k: &dyn Impl| {
    let (mut rng, seed) = rng("translation");
    let xs = Shape4::new(2, 6, 6, 9);
    let x = uniform(&mut rng, xs.len(), -2.0, 2.0);
    // negative, positive, zero and beyond-the-image shifts
    let dxs = [-2i64, 3, 0, -12, 9, 1];
    let dys = [1i64, -3, 0, 2, -7, 6];
    let mut shift: Vec<f32> = dxs.iter().map(|&v| v as f32).collect();
    shift.extend(dys.iter().map(|&v| v as f32));
    for s in [1, 2, 3] {
        let out = k.forward(&x, xs, &shift, s);
        let want = translate(&x, xs, &dxs, &dys, s);
        assert_eq!(out, want, "{}: stride {s} (seed {seed})", k.name());
    }
});

both!(hand_computed_fraction_with_tap_outside, |k: &dyn Impl| {
    // Two channels of [[1, 2], [3, 4]].
    let xs = Shape4::new(1, 2, 2, 2);
    let x = [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0];
    // channel 0: xpos 0.25, ypos 0.5; channel 1: xpos -0.5, ypos -1.25
    let shift = [0.25, -0.5, 0.5, -1.25];
    let out = k.forward(&x, xs, &shift, 1);
    // channel 0, (0,0): 0.5*(0.75*1 + 0.25*2) + 0.5*(0.75*3 + 0.25*4) = 2.25
    // (0,1): column 2 is outside: 0.5*(0.75*2) + 0.5*(0.75*4) = 2.25
    // (1,0): row 2 is outside: 0.5*(0.75*3 + 0.25*4) = 1.625
    // (1,1): 0.5*(0.75*4) = 1.5
    // channel 1 reads rows i-2, i-1 (ty = 0.75) and columns j-1, j (tx = 0.5):
    // (1,0): 0.75*(0.5*0 + 0.5*1) = 0.375; (1,1): 0.75*(0.5*1 + 0.5*2) = 1.125; row 0 all 0.
    let want = [2.25, 2.25, 1.625, 1.5, 0.0, 0.0, 0.375, 1.125];
    for (i, (o, w)) in out.iter().zip(want).enumerate() {
        assert!(
            (o - w).abs() < 1e-6,
            "{}: element {i}: {o} != {w}",
            k.name()
        );
    }
});

both!(stride_equals_stride_one_then_subsample, |k: &dyn Impl| {
    let (mut rng, seed) = rng("stride");
    for (xs, s) in [(Shape4::new(2, 5, 9, 11), 2), (Shape4::new(1, 4, 13, 8), 3)] {
        let x = uniform(&mut rng, xs.len(), -1.0, 1.0);
        let shift = uniform(&mut rng, 2 * xs.c, -3.5, 3.5);
        let full = k.forward(&x, xs, &shift, 1);
        let strided = k.forward(&x, xs, &shift, s);
        let os = xs.strided(xs.c, s);
        let mut want = Vec::with_capacity(os.len());
        for nc in 0..xs.n * xs.c {
            for i in 0..os.h {
                for j in 0..os.w {
                    want.push(full[(nc * xs.h + i * s) * xs.w + j * s]);
                }
            }
        }
        assert!(
            rel_err(&strided, &want) <= 1e-6,
            "{}: stride {s} differs from subsampled stride 1 (seed {seed})",
            k.name()
        );
    }
});

/// Shifts covering negative, integer, fractional and beyond-the-image values.
fn varied_shifts(rng: &mut rand::rngs::StdRng, c: usize, h: usize) -> Vec<f32> {
    let mut shift = uniform(rng, 2 * c, -(h as f32 + 2.0), h as f32 + 2.0);
    // a few exact integers, one far outside
    shift[0] = -2.0;
    shift[c] = 1.0;
    shift[1] = (h + 3) as f32;
    shift[c + 2] = -0.5;
    shift
}

both!(input_gradient_is_the_transpose, |k: &dyn Impl| {
    let (mut rng, seed) = rng("transpose");
    for s in [1, 2, 3] {
        let xs = Shape4::new(2, 5, 7, 10);
        let os = xs.strided(xs.c, s);
        let shift = varied_shifts(&mut rng, xs.c, xs.h);
        let x = uniform(&mut rng, xs.len(), -1.0, 1.0);
        let v = uniform(&mut rng, os.len(), -1.0, 1.0);
        // <forward(x), v> == <x, forward^T(v)>
        let lhs = dot(&f64s(&k.forward(&x, xs, &shift, s)), &f64s(&v));
        let rhs = dot(&f64s(&x), &f64s(&k.backward_input(&v, xs, &shift, s)));
        let scale = f64s(&x).iter().map(|a| a.abs()).sum::<f64>() * 2.0;
        assert!(
            (lhs - rhs).abs() <= 1e-5 * scale,
            "{}: stride {s}: <Ax, v> = {lhs} but <x, A^T v> = {rhs} (seed {seed})",
            k.name()
        );
    }
});

both!(input_gradient_explicit_jacobian, |k: &dyn Impl| {
    // On a tiny size, column by column: backward(e_o)[i] must equal forward(e_i)[o].
    let (mut rng, seed) = rng("jacobian");
    for s in [1, 2, 3] {
        let xs = Shape4::new(1, 3, 4, 5);
        let os = xs.strided(xs.c, s);
        let mut shift = varied_shifts(&mut rng, xs.c, xs.h);
        shift[2] = -1.75;
        let mut jac = vec![0.0f32; xs.len() * os.len()];
        for i in 0..xs.len() {
            let mut e = vec![0.0; xs.len()];
            e[i] = 1.0;
            for (o, v) in k.forward(&e, xs, &shift, s).into_iter().enumerate() {
                jac[o * xs.len() + i] = v;
            }
        }
        for o in 0..os.len() {
            let mut e = vec![0.0; os.len()];
            e[o] = 1.0;
            let row = k.backward_input(&e, xs, &shift, s);
            for i in 0..xs.len() {
                assert!(
                    (row[i] - jac[o * xs.len() + i]).abs() <= 1e-6,
                    "{}: stride {s}: J^T[{i}, {o}] = {} but J[{o}, {i}] = {} (seed {seed})",
                    k.name(),
                    row[i],
                    jac[o * xs.len() + i]
                );
            }
        }
    }
});

/// L(shift) = <forward(x, shift), v>, in f64.
fn loss64(x: &[f64], xs: Shape4, shift: &[f64], v: &[f64], s: usize) -> f64 {
    dot(&cpu::asl_forward(x, xs, shift, s).unwrap(), v)
}

both!(
    shift_gradient_matches_central_differences,
    |k: &dyn Impl| {
        let (mut rng, seed) = rng("shift fd");
        for s in [1, 2] {
            let xs = Shape4::new(2, 4, 9, 8);
            let os = xs.strided(xs.c, s);
            // away from integers: fractional parts in [0.2, 0.8]
            let shift: Vec<f32> = (0..2 * xs.c)
                .map(|_| between(&mut rng, -4.0, 4.0).floor() + between(&mut rng, 0.2, 0.8))
                .collect();
            let x = uniform(&mut rng, xs.len(), -1.0, 1.0);
            let v = uniform(&mut rng, os.len(), -1.0, 1.0);
            let got = k.backward_shift(&x, xs, &v, &shift, s);
            let (x64, v64, s64) = (f64s(&x), f64s(&v), f64s(&shift));
            let h = 1e-4;
            let fd: Vec<f64> = (0..s64.len())
                .map(|p| {
                    let (mut up, mut dn) = (s64.clone(), s64.clone());
                    up[p] += h;
                    dn[p] -= h;
                    (loss64(&x64, xs, &up, &v64, s) - loss64(&x64, xs, &dn, &v64, s)) / (2.0 * h)
                })
                .collect();
            let err = rel_err(&got, &f32s(&fd));
            assert!(
                err <= 1e-3,
                "{}: stride {s}: relative error {err} vs finite differences (seed {seed})",
                k.name()
            );
        }
    }
);

both!(shift_gradient_is_right_sided_at_integers, |k: &dyn Impl| {
    let (mut rng, seed) = rng("shift right-sided");
    let xs = Shape4::new(1, 4, 7, 9);
    let shift = [-1.0f32, 0.0, 2.0, 5.0, 1.0, -3.0, 0.0, -1.0];
    let x = uniform(&mut rng, xs.len(), -1.0, 1.0);
    let v = uniform(&mut rng, xs.len(), -1.0, 1.0);
    let got = k.backward_shift(&x, xs, &v, &shift, 1);
    let (x64, v64, s64) = (f64s(&x), f64s(&v), f64s(&shift));
    let h = 1e-6;
    let base = loss64(&x64, xs, &s64, &v64, 1);
    let fd: Vec<f64> = (0..s64.len())
        .map(|p| {
            let mut up = s64.clone();
            up[p] += h;
            (loss64(&x64, xs, &up, &v64, 1) - base) / h
        })
        .collect();
    let err = rel_err(&got, &f32s(&fd));
    assert!(
        err <= 1e-3,
        "{}: relative error {err} vs right-sided differences (seed {seed})",
        k.name()
    );
});

both!(
    identical_images_give_n_times_the_gradient,
    |k: &dyn Impl| {
        let (mut rng, seed) = rng("n identical");
        let one = Shape4::new(1, 3, 8, 6);
        let n = 4;
        let many = Shape4::new(n, 3, 8, 6);
        let shift = uniform(&mut rng, 6, -2.5, 2.5);
        let x = uniform(&mut rng, one.len(), -1.0, 1.0);
        let v = uniform(&mut rng, one.len(), -1.0, 1.0);
        let xn: Vec<f32> = x.iter().copied().cycle().take(many.len()).collect();
        let vn: Vec<f32> = v.iter().copied().cycle().take(many.len()).collect();
        let g1 = k.backward_shift(&x, one, &v, &shift, 1);
        let gn = k.backward_shift(&xn, many, &vn, &shift, 1);
        let scaled: Vec<f32> = g1.iter().map(|g| g * n as f32).collect();
        let err = rel_err(&gn, &scaled);
        assert!(
            err <= 1e-5,
            "{}: {n} identical images: relative error {err} (seed {seed})",
            k.name()
        );
    }
);

both!(normalized_gradient_has_unit_norm, |k: &dyn Impl| {
    let (mut rng, seed) = rng("normalize");
    let c = 300; // more than one workgroup
    let mut g = uniform(&mut rng, 2 * c, -5.0, 5.0);
    g[3] = 0.0;
    g[c + 3] = 0.0; // a zero pair stays zero
    g[7] = 1e-30; // squares underflow in f32: must still come out as (1, 0)
    g[c + 7] = 0.0;
    g[9] = 3e30; // squares overflow in f32
    g[c + 9] = -4e30;
    let out = k.normalize(&g);
    for ch in 0..c {
        let (gx, gy) = (f64::from(g[ch]), f64::from(g[c + ch]));
        let norm = (gx * gx + gy * gy).sqrt();
        let (wx, wy) = if norm > 0.0 {
            (gx / norm, gy / norm)
        } else {
            (0.0, 0.0)
        };
        assert!(
            (f64::from(out[ch]) - wx).abs() < 1e-6 && (f64::from(out[c + ch]) - wy).abs() < 1e-6,
            "{}: channel {ch}: ({}, {}) != ({wx}, {wy}) (seed {seed})",
            k.name(),
            out[ch],
            out[c + ch]
        );
    }
});

both!(conv3x3_is_nine_shifts_and_a_1x1_conv, |k: &dyn Impl| {
    // Deconstruction: replicate the input 9 times, shift copy (ky, kx) by (ky-1, kx-1), then
    // one 1x1 conv with W'[co, (ky*3 + kx)*C + ci] = W[co, ci, ky, kx].
    let (mut rng, seed) = rng("deconstruction");
    for s in [1, 2] {
        let xs = Shape4::new(2, 3, 9, 7);
        let cout = 5;
        let x = uniform(&mut rng, xs.len(), -1.0, 1.0);
        let w3 = uniform(&mut rng, cout * xs.c * 9, -1.0, 1.0);
        let want = cpu::conv3x3(&f64s(&x), xs, &f64s(&w3), cout, s).unwrap();

        let big = Shape4::new(xs.n, 9 * xs.c, xs.h, xs.w);
        let mut xr = Vec::with_capacity(big.len());
        for n in 0..xs.n {
            for _ in 0..9 {
                xr.extend_from_slice(&x[n * xs.c * xs.plane()..][..xs.c * xs.plane()]);
            }
        }
        let mut shift = vec![0.0; 2 * big.c];
        for k9 in 0..9 {
            for ci in 0..xs.c {
                shift[k9 * xs.c + ci] = (k9 % 3) as f32 - 1.0; // xpos = kx - 1
                shift[big.c + k9 * xs.c + ci] = (k9 / 3) as f32 - 1.0; // ypos = ky - 1
            }
        }
        let mut w1 = vec![0.0; cout * big.c];
        for co in 0..cout {
            for ci in 0..xs.c {
                for k9 in 0..9 {
                    w1[co * big.c + k9 * xs.c + ci] = w3[(co * xs.c + ci) * 9 + k9];
                }
            }
        }
        let shifted = k.forward(&xr, big, &shift, s);
        let got = k.conv1x1(&shifted, big.strided(big.c, s), &w1, cout, 1);
        let err = rel_err(&got, &f32s(&want));
        assert!(
            err <= 1e-5,
            "{}: stride {s}: relative error {err} (seed {seed})",
            k.name()
        );
    }
});
