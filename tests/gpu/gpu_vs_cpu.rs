//! Every GPU kernel against its CPU twin (evaluated in f64 from the same f32 inputs) on fresh
//! random inputs: odd sizes that are not multiples of any tile, stride 1 and 2, shifts up to
//! ±(H+2), outputs poisoned with NaN before each kernel runs. Relative error ≤ 1e-4.

use crate::common;

use activeshift::gpu::kernels::Conv1x1Epilogue;
use activeshift::{Shape4, cpu};
use common::*;

const TOL: f64 = 1e-4;

fn shapes() -> Vec<Shape4> {
    let mut v = Vec::new();
    for (n, c) in [(1, 3), (2, 17), (1, 33)] {
        for hw in [7, 13, 28] {
            v.push(Shape4::new(n, c, hw, hw));
        }
    }
    v.push(Shape4::new(3, 5, 1, 1));
    v.push(Shape4::new(2, 4, 6, 19));
    v
}

#[test]
fn asl_kernels_match_cpu_on_random_inputs() {
    let Some(ctx) = gpu("asl_kernels_match_cpu_on_random_inputs") else {
        return;
    };
    let k = Gpu(ctx);
    let (mut rng, seed) = rng("asl random");
    for xs in shapes() {
        for s in [1, 2] {
            let reach = xs.h.max(xs.w) as f32 + 2.0;
            let shift = uniform(&mut rng, 2 * xs.c, -reach, reach);
            let x = uniform(&mut rng, xs.len(), -1.0, 1.0);
            let os = xs.strided(xs.c, s);
            let v = uniform(&mut rng, os.len(), -1.0, 1.0);
            let (x64, v64, s64) = (f64s(&x), f64s(&v), f64s(&shift));
            let ctxmsg = format!("shape {xs}, stride {s}, seed {seed}");

            let want = cpu::asl_forward(&x64, xs, &s64, s).unwrap();
            let err = rel_err(&k.forward(&x, xs, &shift, s), &f32s(&want));
            assert!(err <= TOL, "asl_forward: relative error {err} ({ctxmsg})");

            let want = cpu::asl_backward_input(&v64, xs, &s64, s).unwrap();
            let err = rel_err(&k.backward_input(&v, xs, &shift, s), &f32s(&want));
            assert!(
                err <= TOL,
                "asl_backward_input: relative error {err} ({ctxmsg})"
            );

            let mut want = cpu::asl_backward_shift(&x64, xs, &v64, &s64, s).unwrap();
            let got = k.backward_shift(&x, xs, &v, &shift, s);
            let err = rel_err(&got, &f32s(&want));
            assert!(
                err <= TOL,
                "asl_backward_shift: relative error {err} ({ctxmsg})"
            );

            cpu::normalize_shift_grad(&mut want).unwrap();
            let err = rel_err(&k.normalize(&got), &f32s(&want));
            assert!(
                err <= TOL,
                "shift_grad_normalize: relative error {err} ({ctxmsg})"
            );
        }
    }
}

#[test]
fn shift_gradient_is_bitwise_reproducible() {
    let Some(ctx) = gpu("shift_gradient_is_bitwise_reproducible") else {
        return;
    };
    let k = Gpu(ctx);
    let (mut rng, seed) = rng("determinism");
    // 4 * 37 * 41 = 6068 positions per channel: several partial-sum chunks.
    let xs = Shape4::new(4, 6, 37, 41);
    let x = uniform(&mut rng, xs.len(), -1.0, 1.0);
    let v = uniform(&mut rng, xs.len(), -1.0, 1.0);
    let shift = uniform(&mut rng, 2 * xs.c, -3.0, 3.0);
    let a = k.backward_shift(&x, xs, &v, &shift, 1);
    let b = k.backward_shift(&x, xs, &v, &shift, 1);
    let bits = |g: &[f32]| g.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b), "two runs differ (seed {seed})");
    assert!(
        a.iter().all(|g| g.is_finite() && *g != 0.0),
        "degenerate gradient {a:?}"
    );
}

fn conv_shapes() -> Vec<(Shape4, usize)> {
    vec![
        (Shape4::new(1, 3, 7, 7), 17),
        (Shape4::new(2, 17, 13, 13), 33),
        (Shape4::new(1, 33, 28, 28), 3),
        (Shape4::new(2, 70, 9, 11), 65),
        (Shape4::new(1, 16, 1, 1), 130),
        (Shape4::new(3, 5, 10, 3), 1),
    ]
}

#[test]
fn conv1x1_matches_cpu_with_every_epilogue() {
    let Some(ctx) = gpu("conv1x1_matches_cpu_with_every_epilogue") else {
        return;
    };
    let (mut rng, seed) = rng("conv1x1 random");
    let conv = ctx.kernels().conv1x1();
    for (xs, cout) in conv_shapes() {
        for s in [1, 2] {
            let ys = xs.strided(cout, s);
            let x = uniform(&mut rng, xs.len(), -1.0, 1.0);
            let w = uniform(&mut rng, cout * xs.c, -1.0, 1.0);
            let scale = uniform(&mut rng, cout, 0.5, 1.5);
            let bias = uniform(&mut rng, cout, -0.5, 0.5);
            let res = uniform(&mut rng, ys.len(), -1.0, 1.0);
            let (xt, wt) = (upload(ctx, &xs.dims(), &x), upload(ctx, &[cout, xs.c], &w));
            let (st, bt) = (upload(ctx, &[cout], &scale), upload(ctx, &[cout], &bias));
            let rt = upload(ctx, &ys.dims(), &res);
            let (x64, w64, sc64, b64, r64) =
                (f64s(&x), f64s(&w), f64s(&scale), f64s(&bias), f64s(&res));
            for (affine, residual, relu) in [
                (false, false, false),
                (true, false, true),
                (false, true, false),
                (true, true, true),
            ] {
                let want = cpu::conv1x1(
                    &x64,
                    xs,
                    &w64,
                    cout,
                    s,
                    cpu::Epilogue {
                        affine: affine.then_some((&sc64[..], &b64[..])),
                        residual: residual.then_some(&r64[..]),
                        relu,
                    },
                )
                .unwrap();
                let y = poisoned(ctx, &ys.dims());
                let ep = Conv1x1Epilogue {
                    affine: affine.then_some((&st, &bt)),
                    residual: residual.then_some(&rt),
                    relu,
                    input_affine_relu: None,
                };
                ctx.submit(|enc| {
                    conv.prepare(ctx, &xt, &wt, s, ep, &y)
                        .map(|d| d.record(enc))
                })
                .unwrap();
                let err = rel_err(&read(ctx, &y), &f32s(&want));
                assert!(
                    err <= TOL,
                    "conv1x1 {xs} -> {cout}, stride {s}, affine {affine}, residual {residual}, \
                     relu {relu}: relative error {err} (seed {seed})"
                );
            }
        }
    }
}

#[test]
fn conv1x1_gradients_match_cpu() {
    let Some(ctx) = gpu("conv1x1_gradients_match_cpu") else {
        return;
    };
    let (mut rng, seed) = rng("conv1x1 gradients");
    let kernels = ctx.kernels();
    for (xs, cout) in conv_shapes() {
        for s in [1, 2] {
            let ys = xs.strided(cout, s);
            let x = uniform(&mut rng, xs.len(), -1.0, 1.0);
            let w = uniform(&mut rng, cout * xs.c, -1.0, 1.0);
            let dy = uniform(&mut rng, ys.len(), -1.0, 1.0);
            let (xt, wt, dyt) = (
                upload(ctx, &xs.dims(), &x),
                upload(ctx, &[cout, xs.c], &w),
                upload(ctx, &ys.dims(), &dy),
            );
            let dx = poisoned(ctx, &xs.dims());
            // The direct kernel too where the policy picks the forward GEMM (stride 1 on CPU
            // adapters).
            let dx_direct = poisoned(ctx, &xs.dims());
            let dw = poisoned(ctx, &[cout, xs.c]);
            ctx.submit(|enc| {
                kernels
                    .conv1x1_backward_input()
                    .prepare(ctx, &dyt, &wt, s, &dx)
                    .map(|d| d.record(enc))?;
                kernels
                    .conv1x1_backward_input()
                    .prepare_direct(ctx, &dyt, &wt, s, &dx_direct)
                    .map(|d| d.record(enc))?;
                kernels
                    .conv1x1_backward_weight()
                    .prepare(ctx, &dyt, &xt, s, &dw)
                    .map(|d| d.record(enc))
            })
            .unwrap();
            let (x64, w64, dy64) = (f64s(&x), f64s(&w), f64s(&dy));
            let want_dx = cpu::conv1x1_backward_input(&dy64, xs, &w64, cout, s).unwrap();
            let want_dw = cpu::conv1x1_backward_weight(&dy64, &x64, xs, cout, s).unwrap();
            let e1 = rel_err(&read(ctx, &dx), &f32s(&want_dx));
            let e2 = rel_err(&read(ctx, &dw), &f32s(&want_dw));
            let e3 = rel_err(&read(ctx, &dx_direct), &f32s(&want_dx));
            let msg = format!("{xs} -> {cout}, stride {s}, seed {seed}");
            assert!(
                e3 <= TOL,
                "conv1x1_backward_input (direct kernel): relative error {e3} ({msg})"
            );
            assert!(
                e1 <= TOL,
                "conv1x1_backward_input: relative error {e1} ({msg})"
            );
            assert!(
                e2 <= TOL,
                "conv1x1_backward_weight: relative error {e2} ({msg})"
            );
        }
    }
}

#[test]
fn conv1x1_gradients_are_the_transpose() {
    // Independent of the CPU twin: <conv(x), v> == <x, dX(v)> and == <W, dW(v, x)>.
    let Some(ctx) = gpu("conv1x1_gradients_are_the_transpose") else {
        return;
    };
    let (mut rng, seed) = rng("conv1x1 adjoint");
    let kernels = ctx.kernels();
    let (xs, cout, s) = (Shape4::new(2, 19, 11, 9), 23, 2);
    let ys = xs.strided(cout, s);
    let x = uniform(&mut rng, xs.len(), -1.0, 1.0);
    let w = uniform(&mut rng, cout * xs.c, -1.0, 1.0);
    let v = uniform(&mut rng, ys.len(), -1.0, 1.0);
    let (xt, wt, vt) = (
        upload(ctx, &xs.dims(), &x),
        upload(ctx, &[cout, xs.c], &w),
        upload(ctx, &ys.dims(), &v),
    );
    let (y, dx, dw) = (
        poisoned(ctx, &ys.dims()),
        poisoned(ctx, &xs.dims()),
        poisoned(ctx, &[cout, xs.c]),
    );
    ctx.submit(|enc| {
        kernels
            .conv1x1()
            .prepare(ctx, &xt, &wt, s, Conv1x1Epilogue::default(), &y)
            .map(|d| d.record(enc))?;
        kernels
            .conv1x1_backward_input()
            .prepare(ctx, &vt, &wt, s, &dx)
            .map(|d| d.record(enc))?;
        kernels
            .conv1x1_backward_weight()
            .prepare(ctx, &vt, &xt, s, &dw)
            .map(|d| d.record(enc))
    })
    .unwrap();
    let dot = |a: &[f32], b: &[f32]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(p, q)| f64::from(*p) * f64::from(*q))
            .sum()
    };
    let yv = dot(&read(ctx, &y), &v);
    let xdx = dot(&x, &read(ctx, &dx));
    let wdw = dot(&w, &read(ctx, &dw));
    let tol = 1e-4 * yv.abs().max(1.0);
    assert!(
        (yv - xdx).abs() <= tol,
        "<Wx, v> = {yv}, <x, W^T v> = {xdx} (seed {seed})"
    );
    assert!(
        (yv - wdw).abs() <= tol,
        "<Wx, v> = {yv}, <W, v x^T> = {wdw} (seed {seed})"
    );
}

#[test]
fn kernels_reject_wrong_shapes() {
    let Some(ctx) = gpu("kernels_reject_wrong_shapes") else {
        return;
    };
    let x = upload(ctx, &[1, 3, 4, 4], &[0.0; 48]);
    let bad_shift = upload(ctx, &[2, 4], &[0.0; 8]);
    let out = upload(ctx, &[1, 3, 4, 4], &[0.0; 48]);
    let err = ctx
        .submit(|enc| {
            ctx.kernels()
                .asl_forward()
                .prepare(ctx, &x, &bad_shift, 1, &out)
                .map(|d| d.record(enc))
        })
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("asl_forward: shift: expected [2, 3], found [2, 4]"),
        "{err}"
    );
    let shift = upload(ctx, &[2, 3], &[0.0; 6]);
    let err = ctx
        .submit(|enc| {
            ctx.kernels()
                .asl_forward()
                .prepare(ctx, &x, &shift, 2, &out)
                .map(|d| d.record(enc))
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("output: expected [1, 3, 2, 2]"),
        "{err}"
    );
    let err = ctx
        .submit(|enc| {
            ctx.kernels()
                .asl_forward()
                .prepare(ctx, &x, &shift, 0, &out)
                .map(|d| d.record(enc))
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("stride must be at least 1"),
        "{err}"
    );
    let w = upload(ctx, &[5, 4], &[0.0; 20]);
    let y = upload(ctx, &[1, 5, 4, 4], &[0.0; 80]);
    let err = ctx
        .submit(|enc| {
            ctx.kernels()
                .conv1x1()
                .prepare(ctx, &x, &w, 1, Conv1x1Epilogue::default(), &y)
                .map(|d| d.record(enc))
        })
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("conv1x1: weight: expected [Cout, 3]"),
        "{err}"
    );
    let err = activeshift::GpuTensor::from_slice(ctx, &[2, 3], &[0.0; 5]).unwrap_err();
    assert!(err.to_string().contains("expected 6 elements"), "{err}");
    let huge = activeshift::GpuTensor::zeros(ctx, &[1 << 20, 1 << 20]).unwrap_err();
    assert!(
        matches!(huge, activeshift::Error::DeviceLimit { .. }),
        "{huge}"
    );
}

/// Each ASL forward kernel (`AslForwardVariant`: scalar, vec4, rows) against the CPU twin on
/// the shapes it handles: partial strips and row chunks of the rows kernel (W = 20, 36;
/// H = 37 > 16 rows per invocation), a single row, shifts up to ±(H+2), integer shifts, and
/// NaN, infinite and huge shifts; outputs poisoned first.
#[test]
fn every_asl_forward_variant_matches_cpu() {
    let Some(ctx) = gpu("every_asl_forward_variant_matches_cpu") else {
        return;
    };
    use activeshift::gpu::kernels::{AslForward, AslForwardVariant};
    let (mut rng, seed) = rng("asl forward variants");
    let shapes = [
        Shape4::new(1, 9, 37, 20),
        Shape4::new(2, 5, 4, 4),
        Shape4::new(1, 7, 1, 8),
        Shape4::new(2, 3, 19, 36),
        Shape4::new(1, 6, 17, 16),
        Shape4::new(2, 4, 9, 7),
        // Either side of the scalar kernel's small-plane entry point (planes <= 192 pixels).
        Shape4::new(1, 3, 12, 16),
        Shape4::new(1, 3, 193, 1),
    ];
    let mut ran = std::collections::HashSet::new();
    for xs in shapes {
        for stride in [1, 2] {
            let reach = xs.h.max(xs.w) as f32 + 2.0;
            let mut shift = uniform(&mut rng, 2 * xs.c, -reach, reach);
            // Channel 0: integer shifts; 1: NaN; 2: infinite; 3: huge (past the image).
            shift[0] = shift[0].round();
            shift[xs.c] = shift[xs.c].round();
            shift[1] = f32::NAN;
            shift[2] = f32::INFINITY;
            shift[xs.c + 2] = f32::NEG_INFINITY;
            if xs.c > 3 {
                shift[3] = 1e30;
            }
            let x = uniform(&mut rng, xs.len(), -1.0, 1.0);
            let want = f32s(&cpu::asl_forward(&f64s(&x), xs, &f64s(&shift), stride).unwrap());
            let xt = upload(ctx, &xs.dims(), &x);
            let st = upload(ctx, &[2, xs.c], &shift);
            for variant in AslForwardVariant::ALL {
                if !variant.supports(xs, stride) {
                    continue;
                }
                ran.insert(variant);
                let out = poisoned(ctx, &xs.strided(xs.c, stride).dims());
                ctx.submit(|enc| {
                    ctx.kernels()
                        .asl_forward()
                        .prepare_variant(variant, ctx, &xt, &st, stride, &out)
                        .map(|d| d.record(enc))
                })
                .unwrap();
                let got = read(ctx, &out);
                let err = rel_err(&got, &want);
                assert!(
                    err <= TOL,
                    "asl_forward {}: relative error {err} (shape {xs}, stride {stride}, seed {seed})",
                    variant.name()
                );
            }
        }
    }
    assert_eq!(ran.len(), AslForwardVariant::ALL.len(), "every variant ran");
    // A variant refuses what it does not handle.
    let xs = Shape4::new(1, 2, 5, 6);
    let x = upload(ctx, &xs.dims(), &vec![0.0; xs.len()]);
    let s = upload(ctx, &[2, 2], &[0.0; 4]);
    let out = upload(ctx, &xs.dims(), &vec![0.0; xs.len()]);
    let err = ctx
        .kernels()
        .asl_forward()
        .prepare_variant(AslForwardVariant::Rows, ctx, &x, &s, 1, &out)
        .unwrap_err();
    assert!(err.to_string().contains("width divisible by 4"), "{err}");
    assert_eq!(
        AslForward::choose(ctx.policy(), xs, 1),
        AslForwardVariant::Scalar,
        "width 6 has no vectorised kernel"
    );
}
