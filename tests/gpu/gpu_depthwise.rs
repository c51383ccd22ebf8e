//! The depthwise 3x3 convolution (the paper's baseline block) and the copy kernel against their
//! CPU twins: fresh random inputs with odd sizes and both strides, outputs poisoned with NaN
//! before the kernel runs, and the shapes they refuse.

use crate::common;

use activeshift::{GpuContext, Shape4, cpu};
use common::*;

const TOL: f64 = 1e-4;

fn gpu_depthwise(ctx: &GpuContext, x: &[f32], xs: Shape4, w: &[f32], s: usize) -> Vec<f32> {
    let xt = upload(ctx, &xs.dims(), x);
    let wt = upload(ctx, &[xs.c, 1, 3, 3], w);
    let y = poisoned(ctx, &xs.strided(xs.c, s).dims());
    ctx.submit(|enc| {
        ctx.kernels()
            .depthwise3x3()
            .prepare(ctx, &xt, &wt, s, &y)
            .map(|d| d.record(enc))
    })
    .expect("gpu depthwise3x3");
    read(ctx, &y)
}

#[test]
fn depthwise3x3_matches_cpu_on_random_inputs() {
    let Some(ctx) = gpu("depthwise3x3_matches_cpu_on_random_inputs") else {
        return;
    };
    let (mut rng, seed) = rng("depthwise3x3 random");
    // Output widths around the kernel's 4-pixel runs, a 224x224 plane, 1-pixel images.
    let mut shapes = layer_shapes();
    shapes.push(Shape4::new(1, 3, 5, 16));
    shapes.push(Shape4::new(2, 2, 3, 9));
    shapes.push(Shape4::new(1, 2, 224, 224));
    for xs in shapes {
        for s in [1, 2, 3] {
            let x = uniform(&mut rng, xs.len(), -1.0, 1.0);
            let w = uniform(&mut rng, xs.c * 9, -1.0, 1.0);
            let want = cpu::depthwise3x3(&f64s(&x), xs, &f64s(&w), s).unwrap();
            let got = gpu_depthwise(ctx, &x, xs, &w, s);
            let err = rel_err(&got, &f32s(&want));
            assert!(
                err <= TOL,
                "depthwise3x3 {xs}, stride {s}: relative error {err} (seed {seed})"
            );
        }
    }
}

/// The depthwise convolution equals the full 3x3 convolution whose weight is zero between
/// different channels (an independent check of the CPU twin).
#[test]
fn depthwise3x3_cpu_is_a_block_diagonal_conv3x3() {
    let (mut rng, seed) = rng("depthwise3x3 vs conv3x3");
    for xs in [Shape4::new(2, 3, 7, 9), Shape4::new(1, 5, 4, 4)] {
        for s in [1, 2] {
            let x = f64s(&uniform(&mut rng, xs.len(), -1.0, 1.0));
            let w = f64s(&uniform(&mut rng, xs.c * 9, -1.0, 1.0));
            let mut full = vec![0.0f64; xs.c * xs.c * 9];
            for c in 0..xs.c {
                full[(c * xs.c + c) * 9..][..9].copy_from_slice(&w[c * 9..][..9]);
            }
            let a = cpu::depthwise3x3(&x, xs, &w, s).unwrap();
            let b = cpu::conv3x3(&x, xs, &full, xs.c, s).unwrap();
            assert_eq!(a.len(), b.len());
            for (p, q) in a.iter().zip(&b) {
                assert!(
                    (p - q).abs() <= 1e-12,
                    "{xs} stride {s}: {p} vs {q} (seed {seed})"
                );
            }
        }
    }
}

#[test]
fn depthwise3x3_rejects_bad_shapes() {
    let Some(ctx) = gpu("depthwise3x3_rejects_bad_shapes") else {
        return;
    };
    let k = ctx.kernels().depthwise3x3();
    let x = upload(ctx, &[1, 2, 4, 4], &[0.0; 32]);
    let w = upload(ctx, &[2, 1, 3, 3], &[0.0; 18]);
    let bad_w = upload(ctx, &[2, 2, 3, 3], &[0.0; 36]);
    let y = poisoned(ctx, &[1, 2, 2, 2]);
    assert!(k.prepare(ctx, &x, &w, 2, &y).is_ok());
    assert!(k.prepare(ctx, &x, &w, 0, &y).is_err());
    assert!(k.prepare(ctx, &x, &w, 1, &y).is_err());
    assert!(k.prepare(ctx, &x, &bad_w, 2, &y).is_err());
    assert!(k.prepare(ctx, &x, &w, 2, &x).is_err());
}

#[test]
fn copy_matches_cpu() {
    let Some(ctx) = gpu("copy_matches_cpu") else {
        return;
    };
    let (mut rng, seed) = rng("copy");
    for len in [1, 255, 257, 1024, 100_003, 100_004] {
        let x = uniform(&mut rng, len, -1.0, 1.0);
        let xt = upload(ctx, &[len], &x);
        let y = poisoned(ctx, &[len]);
        ctx.submit(|enc| {
            ctx.kernels()
                .copy()
                .prepare(ctx, &xt, &y)
                .map(|d| d.record(enc))
        })
        .expect("gpu copy");
        assert_eq!(read(ctx, &y), cpu::copy(&x), "copy of {len} (seed {seed})");
    }
    let x = upload(ctx, &[4], &[0.0; 4]);
    let y = poisoned(ctx, &[5]);
    assert!(ctx.kernels().copy().prepare(ctx, &x, &y).is_err());
}
