//! The inference layers around the ASL blocks: 3x3 convolution (the stem), per-channel affine
//! with optional ReLU, global average pooling and softmax.
//!
//! Every GPU kernel is compared with its CPU twin evaluated in f64 from the same f32 inputs, on
//! fresh random inputs with odd sizes, outputs poisoned with NaN before the kernel runs
//! (relative error ≤ 1e-4). Independent checks pin the CPU twins themselves down: hand-computed
//! values and properties that hold whatever the implementation.

use crate::common;

use activeshift::{GpuContext, Shape4, cpu};
use common::*;

const TOL: f64 = 1e-4;

// ---------------------------------------------------------------------------------------------
// GPU runners (each output is poisoned before its kernel runs)

fn gpu_conv3x3(
    ctx: &GpuContext,
    x: &[f32],
    xs: Shape4,
    w: &[f32],
    cout: usize,
    s: usize,
) -> Vec<f32> {
    gpu_conv3x3_with(ctx, x, xs, w, cout, s, false)
}

/// The im2col GEMM (`direct == false`, what `prepare` uses on CPU adapters) or the direct
/// kernel.
fn gpu_conv3x3_with(
    ctx: &GpuContext,
    x: &[f32],
    xs: Shape4,
    w: &[f32],
    cout: usize,
    s: usize,
    direct: bool,
) -> Vec<f32> {
    let xt = upload(ctx, &xs.dims(), x);
    let wt = upload(ctx, &[cout, xs.c, 3, 3], w);
    let y = poisoned(ctx, &xs.strided(cout, s).dims());
    ctx.submit(|enc| {
        let k = ctx.kernels().conv3x3();
        let d = if direct {
            k.prepare_direct(ctx, &xt, &wt, s, &y)
        } else {
            k.prepare_gemm(ctx, &xt, &wt, s, &y)
        };
        d.map(|d| d.record(enc))
    })
    .expect("gpu conv3x3");
    read(ctx, &y)
}

fn gpu_affine(
    ctx: &GpuContext,
    x: &[f32],
    xs: Shape4,
    scale: &[f32],
    bias: &[f32],
    relu: bool,
    in_place: bool,
) -> Vec<f32> {
    let xt = upload(ctx, &xs.dims(), x);
    let st = upload(ctx, &[xs.c], scale);
    let bt = upload(ctx, &[xs.c], bias);
    let y = if in_place {
        xt.clone()
    } else {
        poisoned(ctx, &xs.dims())
    };
    ctx.submit(|enc| {
        ctx.kernels()
            .affine()
            .prepare(ctx, &xt, &st, &bt, relu, &y)
            .map(|d| d.record(enc))
    })
    .expect("gpu affine");
    read(ctx, &y)
}

fn gpu_pool(ctx: &GpuContext, x: &[f32], xs: Shape4) -> Vec<f32> {
    let xt = upload(ctx, &xs.dims(), x);
    let y = poisoned(ctx, &[xs.n, xs.c, 1, 1]);
    ctx.submit(|enc| {
        ctx.kernels()
            .global_avg_pool()
            .prepare(ctx, &xt, &y)
            .map(|d| d.record(enc))
    })
    .expect("gpu global_avg_pool");
    read(ctx, &y)
}

fn gpu_softmax(ctx: &GpuContext, x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let xt = upload(ctx, &[rows, cols], x);
    let y = poisoned(ctx, &[rows, cols]);
    ctx.submit(|enc| {
        ctx.kernels()
            .softmax()
            .prepare(ctx, &xt, &y)
            .map(|d| d.record(enc))
    })
    .expect("gpu softmax");
    read(ctx, &y)
}

// ---------------------------------------------------------------------------------------------
// 3x3 convolution

#[test]
fn conv3x3_matches_cpu_on_random_inputs() {
    let Some(ctx) = gpu("conv3x3_matches_cpu_on_random_inputs") else {
        return;
    };
    let (mut rng, seed) = rng("conv3x3 random");
    // (input shape, output channels): Cin and Cout around the kernel's 16-channel blocks, output
    // widths around its 8-pixel runs.
    let cases = [
        (Shape4::new(1, 1, 1, 1), 1),
        (Shape4::new(1, 1, 7, 7), 17),
        (Shape4::new(2, 3, 7, 13), 33),
        (Shape4::new(1, 3, 28, 28), 16),
        (Shape4::new(1, 17, 13, 13), 3),
        (Shape4::new(2, 17, 28, 7), 17),
        (Shape4::new(1, 33, 13, 28), 33),
        (Shape4::new(1, 33, 1, 7), 1),
        (Shape4::new(3, 5, 2, 2), 7),
        // Output widths that are exact multiples of the 8-pixel runs of an invocation.
        (Shape4::new(1, 3, 5, 16), 16),
        (Shape4::new(2, 2, 3, 33), 5),
        // More than one 512-column chunk of the im2col GEMM (9 * 60 > 512), 64+ outputs.
        (Shape4::new(1, 60, 5, 6), 70),
    ];
    for (xs, cout) in cases {
        for s in [1, 2, 3] {
            let x = uniform(&mut rng, xs.len(), -1.0, 1.0);
            let w = uniform(&mut rng, cout * xs.c * 9, -1.0, 1.0);
            let want = cpu::conv3x3(&f64s(&x), xs, &f64s(&w), cout, s).unwrap();
            for direct in [false, true] {
                let got = gpu_conv3x3_with(ctx, &x, xs, &w, cout, s, direct);
                let err = rel_err(&got, &f32s(&want));
                assert!(
                    err <= TOL,
                    "conv3x3 (direct: {direct}) {xs} -> {cout}, stride {s}: relative error {err} \
                     (seed {seed})"
                );
            }
        }
    }
}

#[test]
fn conv3x3_matches_cpu_on_the_imagenet_stem() {
    let Some(ctx) = gpu("conv3x3_matches_cpu_on_the_imagenet_stem") else {
        return;
    };
    let (mut rng, seed) = rng("conv3x3 stem");
    let (xs, cout, s) = (Shape4::new(1, 3, 224, 224), 32, 2);
    let x = uniform(&mut rng, xs.len(), -2.0, 2.0);
    let w = uniform(&mut rng, cout * xs.c * 9, -0.5, 0.5);
    let want = cpu::conv3x3(&f64s(&x), xs, &f64s(&w), cout, s).unwrap();
    assert_eq!(want.len(), 32 * 112 * 112);
    let got = gpu_conv3x3(ctx, &x, xs, &w, cout, s);
    let err = rel_err(&got, &f32s(&want));
    assert!(
        err <= TOL,
        "stem conv3x3: relative error {err} (seed {seed})"
    );
}

/// x = [[1, 2, 3], [4, 5, 6], [7, 8, 9]] (one channel).
const NINE: [f32; 9] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];

/// Hand-computed cases: (weight [1, 1, 3, 3], stride, expected output).
fn conv3x3_hand_cases() -> Vec<([f32; 9], usize, Vec<f32>)> {
    vec![
        // All-ones kernel: each output is the sum of the 3x3 neighbourhood, zero padded.
        (
            [1.0; 9],
            1,
            vec![12.0, 21.0, 16.0, 27.0, 45.0, 33.0, 24.0, 39.0, 28.0],
        ),
        // Stride 2 keeps rows and columns 0 and 2 of the stride-1 result.
        ([1.0; 9], 2, vec![12.0, 16.0, 24.0, 28.0]),
        // A single tap at (ky, kx) = (0, 2): y[i, j] = x[i - 1, j + 1] (cross-correlation,
        // as in Caffe, not a flipped convolution).
        (
            [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            1,
            vec![0.0, 0.0, 0.0, 2.0, 3.0, 0.0, 5.0, 6.0, 0.0],
        ),
        // Centre tap 2, bottom-left tap -1: y[i, j] = 2 x[i, j] - x[i + 1, j - 1].
        (
            [0.0, 0.0, 0.0, 0.0, 2.0, 0.0, -1.0, 0.0, 0.0],
            1,
            vec![2.0, 0.0, 1.0, 8.0, 3.0, 4.0, 14.0, 16.0, 18.0],
        ),
    ]
}

#[test]
fn conv3x3_cpu_matches_hand_computed_values() {
    let xs = Shape4::new(1, 1, 3, 3);
    for (w, s, want) in conv3x3_hand_cases() {
        let got = cpu::conv3x3(&f64s(&NINE), xs, &f64s(&w), 1, s).unwrap();
        assert_eq!(got, f64s(&want), "weight {w:?}, stride {s}");
    }
    // Two input channels add up; two output channels are independent.
    let xs2 = Shape4::new(1, 2, 3, 3);
    let x2: Vec<f64> = NINE
        .iter()
        .chain(NINE.iter())
        .map(|&v| f64::from(v))
        .collect();
    let mut w2 = vec![0.0f64; 2 * 2 * 9];
    w2[4] = 1.0; // out 0 <- in 0, centre
    w2[9 + 4] = 10.0; // out 0 <- in 1, centre
    w2[18 + 9] = 1.0; // out 1 <- in 1, top-left
    let got = cpu::conv3x3(&x2, xs2, &w2, 2, 1).unwrap();
    let out0: Vec<f64> = NINE.iter().map(|&v| 11.0 * f64::from(v)).collect();
    let out1 = [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 4.0, 5.0];
    assert_eq!(&got[..9], &out0[..]);
    assert_eq!(&got[9..], &out1[..]);
}

#[test]
fn conv3x3_gpu_matches_hand_computed_values() {
    let Some(ctx) = gpu("conv3x3_gpu_matches_hand_computed_values") else {
        return;
    };
    let xs = Shape4::new(1, 1, 3, 3);
    for (w, s, want) in conv3x3_hand_cases() {
        let got = gpu_conv3x3(ctx, &NINE, xs, &w, 1, s);
        assert_eq!(got, want, "weight {w:?}, stride {s}");
    }
}

// ---------------------------------------------------------------------------------------------
// Affine

#[test]
fn affine_matches_cpu_on_random_inputs() {
    let Some(ctx) = gpu("affine_matches_cpu_on_random_inputs") else {
        return;
    };
    let (mut rng, seed) = rng("affine random");
    for xs in layer_shapes() {
        for relu in [false, true] {
            for in_place in [false, true] {
                let x = uniform(&mut rng, xs.len(), -2.0, 2.0);
                let scale = uniform(&mut rng, xs.c, -1.5, 1.5);
                let bias = uniform(&mut rng, xs.c, -1.0, 1.0);
                let want = cpu::affine(&f64s(&x), xs, &f64s(&scale), &f64s(&bias), relu).unwrap();
                let got = gpu_affine(ctx, &x, xs, &scale, &bias, relu, in_place);
                let err = rel_err(&got, &f32s(&want));
                assert!(
                    err <= TOL,
                    "affine {xs}, relu {relu}, in place {in_place}: relative error {err} \
                     (seed {seed})"
                );
            }
        }
    }
}

#[test]
fn affine_covers_more_workgroups_than_one_dispatch_dimension() {
    // 3 * 2401 * 2401 = 17,294,403 elements = 67,557 workgroups of 256: more than the 65,535
    // a dispatch dimension allows, so the kernel runs on a two-dimensional grid (the plane is
    // odd: the scalar entry point, one element per invocation).
    let Some(ctx) = gpu("affine_covers_more_workgroups_than_one_dispatch_dimension") else {
        return;
    };
    let (mut rng, seed) = rng("affine large");
    let xs = Shape4::new(1, 3, 2401, 2401);
    let x = uniform(&mut rng, xs.len(), -2.0, 2.0);
    let (scale, bias) = ([0.5f32, -2.0, 1.25], [0.25f32, 0.5, -0.75]);
    let want = cpu::affine(&f64s(&x), xs, &f64s(&scale), &f64s(&bias), true).unwrap();
    let got = gpu_affine(ctx, &x, xs, &scale, &bias, true, false);
    let err = rel_err(&got, &f32s(&want));
    assert!(
        err <= TOL,
        "affine {xs}: relative error {err} (seed {seed})"
    );
}

#[test]
fn affine_cpu_matches_hand_computed_values() {
    // x: 1 image, 2 channels of 2 pixels; y = [2x - 1, -x + 0.5].
    let xs = Shape4::new(1, 2, 1, 2);
    let x = [1.0, -1.0, 2.0, -3.0];
    let (scale, bias) = ([2.0, -1.0], [-1.0, 0.5]);
    let y = cpu::affine(&x, xs, &scale, &bias, false).unwrap();
    assert_eq!(y, [1.0, -3.0, -1.5, 3.5]);
    let y = cpu::affine(&x, xs, &scale, &bias, true).unwrap();
    assert_eq!(y, [1.0, 0.0, 0.0, 3.5]);
    // The channel index wraps with the batch: image 1 uses the same scale and bias.
    let xs2 = Shape4::new(2, 2, 1, 2);
    let x2 = [x, x].concat();
    let y = cpu::affine(&x2, xs2, &scale, &bias, false).unwrap();
    assert_eq!(y, [[1.0, -3.0, -1.5, 3.5], [1.0, -3.0, -1.5, 3.5]].concat());
}

// ---------------------------------------------------------------------------------------------
// Global average pooling

#[test]
fn global_avg_pool_matches_cpu_on_random_inputs() {
    let Some(ctx) = gpu("global_avg_pool_matches_cpu_on_random_inputs") else {
        return;
    };
    let (mut rng, seed) = rng("global_avg_pool random");
    let mut shapes = layer_shapes();
    shapes.push(Shape4::new(1, 3, 224, 224));
    for xs in shapes {
        // Offset inputs so the mean is not close to zero (a relative error means something).
        let x = uniform(&mut rng, xs.len(), -1.0, 3.0);
        let want = cpu::global_avg_pool(&f64s(&x), xs).unwrap();
        let got = gpu_pool(ctx, &x, xs);
        let err = rel_err(&got, &f32s(&want));
        assert!(
            err <= TOL,
            "global_avg_pool {xs}: relative error {err} (seed {seed})"
        );
    }
}

#[test]
fn global_avg_pool_is_bitwise_reproducible() {
    let Some(ctx) = gpu("global_avg_pool_is_bitwise_reproducible") else {
        return;
    };
    let (mut rng, seed) = rng("global_avg_pool determinism");
    let xs = Shape4::new(2, 5, 37, 41);
    let x = uniform(&mut rng, xs.len(), -1.0, 1.0);
    let bits = |v: Vec<f32>| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    let a = bits(gpu_pool(ctx, &x, xs));
    let b = bits(gpu_pool(ctx, &x, xs));
    assert_eq!(a, b, "two runs differ (seed {seed})");
}

fn constant_planes() -> [(Shape4, f32); 3] {
    [
        (Shape4::new(1, 1, 1, 1), 3.5),
        (Shape4::new(2, 3, 7, 13), -0.25),
        (Shape4::new(1, 2, 28, 28), 0.125),
    ]
}

#[test]
fn global_avg_pool_of_a_constant_is_the_constant() {
    for (xs, v) in constant_planes() {
        let got = cpu::global_avg_pool(&vec![f64::from(v); xs.len()], xs).unwrap();
        assert_eq!(got, vec![f64::from(v); xs.n * xs.c], "{xs}");
    }
    // And by hand: the mean of 1..9 is 5, of 10, 20, ..., 90 it is 50.
    let x: Vec<f64> = (1..=9)
        .map(f64::from)
        .chain((1..=9).map(|v| 10.0 * f64::from(v)))
        .collect();
    let got = cpu::global_avg_pool(&x, Shape4::new(1, 2, 3, 3)).unwrap();
    assert_eq!(got, [5.0, 50.0]);
}

#[test]
fn gpu_global_avg_pool_of_a_constant_is_the_constant() {
    let Some(ctx) = gpu("gpu_global_avg_pool_of_a_constant_is_the_constant") else {
        return;
    };
    for (xs, v) in constant_planes() {
        // The partial sums are exact; only the final division may round (WGSL allows 2.5 ulp).
        let got = gpu_pool(ctx, &vec![v; xs.len()], xs);
        let err = rel_err(&got, &vec![v; xs.n * xs.c]);
        assert!(err <= 1e-6, "{xs}: {got:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Softmax

#[test]
fn softmax_of_overflowing_logits_is_a_distribution_on_the_gpu() {
    let Some(ctx) = gpu("softmax_of_overflowing_logits_is_a_distribution_on_the_gpu") else {
        return;
    };
    let inf = f32::INFINITY;
    // Rows of 3 (one invocation each element) and a row of 300 (strided over the workgroup)
    // holding the same values: the logits of weights near 3e38 overflow to +-Inf.
    let rows: [&[f32]; 5] = [
        &[3e38, -3e38, 0.0],
        &[inf, 1.0, inf],
        &[-inf, -inf, -inf],
        &[f32::NAN, 1.0, 2.0],
        &[-inf, inf, f32::NAN],
    ];
    let x: Vec<f32> = rows.concat();
    let got = gpu_softmax(ctx, &x, rows.len(), 3);
    let want = cpu::softmax(&x, rows.len(), 3).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-6, "gpu {got:?}\ncpu {want:?}");
    }
    let mut long = vec![-inf; 300];
    long[7] = inf;
    long[299] = inf;
    long[100] = f32::NAN;
    let got = gpu_softmax(ctx, &long, 1, 300);
    assert!(got.iter().all(|v| v.is_finite()), "{got:?}");
    assert_eq!((got[7], got[299], got[100]), (0.5, 0.5, 0.0));
}

#[test]
fn softmax_matches_cpu_on_random_inputs() {
    let Some(ctx) = gpu("softmax_matches_cpu_on_random_inputs") else {
        return;
    };
    let (mut rng, seed) = rng("softmax random");
    for rows in [1, 3, 17] {
        for cols in [1, 2, 7, 10, 255, 256, 257, 1000, 1001, 4099] {
            let x = uniform(&mut rng, rows * cols, -8.0, 8.0);
            let want = cpu::softmax(&f64s(&x), rows, cols).unwrap();
            let got = gpu_softmax(ctx, &x, rows, cols);
            let err = rel_err(&got, &f32s(&want));
            assert!(
                err <= TOL,
                "softmax [{rows}, {cols}]: relative error {err} (seed {seed})"
            );
        }
    }
    // Logits far beyond exp's range: the row maximum keeps everything finite.
    let x: Vec<f32> = uniform(&mut rng, 3 * 1000, -5.0, 5.0)
        .iter()
        .enumerate()
        .map(|(i, v)| v + [1000.0, -1000.0, 80.0][i / 1000])
        .collect();
    let want = cpu::softmax(&f64s(&x), 3, 1000).unwrap();
    let got = gpu_softmax(ctx, &x, 3, 1000);
    let err = rel_err(&got, &f32s(&want));
    assert!(
        err <= TOL,
        "softmax of large logits: relative error {err} (seed {seed})"
    );
}

#[test]
fn softmax_rows_sum_to_one_and_ignore_a_constant_offset() {
    let (mut rng, seed) = rng("softmax properties");
    let (rows, cols) = (4, 1000);
    let x = uniform64(&mut rng, rows * cols, -10.0, 10.0);
    let shifted: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, v)| v + [3.0, -7.5, 500.0, 0.0][i / cols])
        .collect();
    let p = cpu::softmax(&x, rows, cols).unwrap();
    let q = cpu::softmax(&shifted, rows, cols).unwrap();
    for r in 0..rows {
        let row = &p[r * cols..][..cols];
        let sum: f64 = row.iter().sum();
        assert!(
            (sum - 1.0).abs() < 1e-12,
            "row {r} sums to {sum} (seed {seed})"
        );
        assert!(
            row.iter().all(|&v| v > 0.0 && v < 1.0),
            "row {r} (seed {seed})"
        );
        // The largest input gets the largest probability.
        let arg = |v: &[f64]| (0..cols).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
        assert_eq!(
            arg(row),
            arg(&x[r * cols..][..cols]),
            "row {r} (seed {seed})"
        );
    }
    for (a, b) in p.iter().zip(&q) {
        assert!(
            (a - b).abs() <= 1e-10 * a,
            "offset changed {a} to {b} (seed {seed})"
        );
    }
    // Hand-computed: softmax([0, ln 3]) = [1/4, 3/4], also at +1000 (no overflow).
    let l3 = 3.0f64.ln();
    let p = cpu::softmax(&[0.0, l3, 1000.0, 1000.0 + l3], 2, 2).unwrap();
    for (got, want) in p.iter().zip([0.25, 0.75, 0.25, 0.75]) {
        assert!((got - want).abs() < 1e-12, "{p:?}");
    }
    assert_eq!(cpu::softmax(&[42.0f32], 1, 1).unwrap(), [1.0]);
}

#[test]
fn gpu_softmax_rows_sum_to_one_and_ignore_a_constant_offset() {
    let Some(ctx) = gpu("gpu_softmax_rows_sum_to_one_and_ignore_a_constant_offset") else {
        return;
    };
    let (mut rng, seed) = rng("gpu softmax properties");
    let (rows, cols) = (3, 1000);
    let x = uniform(&mut rng, rows * cols, -10.0, 10.0);
    // x + offset rounds to the f32 grid at the offset's magnitude (up to 4e-6 here).
    let shifted: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, v)| v + [4.0, -8.0, 64.0][i / cols])
        .collect();
    let p = gpu_softmax(ctx, &x, rows, cols);
    let q = gpu_softmax(ctx, &shifted, rows, cols);
    for r in 0..rows {
        let sum: f64 = p[r * cols..][..cols].iter().map(|&v| f64::from(v)).sum();
        assert!(
            (sum - 1.0).abs() < 1e-5,
            "row {r} sums to {sum} (seed {seed})"
        );
    }
    let err = rel_err(&q, &p);
    assert!(
        err <= TOL,
        "offset changed the result by {err} (seed {seed})"
    );
    // Hand-computed: softmax([0, ln 3]) = [1/4, 3/4]. At +1000 the input 1000 + ln 3 rounds to
    // the f32 grid (spacing 6e-5 there), so compare with the exact softmax of what was stored.
    let l3 = 3.0f32.ln();
    let x = [0.0, l3, 1000.0, 1000.0 + l3];
    let p = gpu_softmax(ctx, &x, 2, 2);
    let err = rel_err(&p[..2], &[0.25, 0.75]);
    assert!(err <= 1e-6, "{p:?}");
    let d = f64::from(x[3]) - 1000.0;
    let want = [1.0 / (1.0 + d.exp()), d.exp() / (1.0 + d.exp())];
    let err = rel_err(&p[2..], &f32s(&want));
    assert!(err <= 1e-6, "{p:?}, want {want:?}");
}

// ---------------------------------------------------------------------------------------------
// Shape errors

fn assert_err<T: std::fmt::Debug>(r: activeshift::Result<T>, needles: &[&str]) {
    let err = r.expect_err("expected an error");
    let msg = err.to_string();
    for n in needles {
        assert!(msg.contains(n), "error `{msg}` does not mention `{n}`");
    }
}

#[test]
fn cpu_layers_return_shape_errors() {
    let xs = Shape4::new(1, 2, 3, 3);
    let x = vec![0.0f32; 18];
    assert_err(
        cpu::conv3x3(&x, xs, &[0.0; 17], 1, 1),
        &["conv3x3", "weight", "[1, 2, 3, 3]"],
    );
    assert_err(
        cpu::conv3x3(&x[..17], xs, &[0.0; 18], 1, 1),
        &["conv3x3", "input"],
    );
    assert_err(
        cpu::conv3x3(&x, xs, &[0.0; 18], 1, 0),
        &["conv3x3", "stride"],
    );
    assert_err(
        cpu::affine(&x, xs, &[1.0; 3], &[0.0; 2], false),
        &["affine", "scale"],
    );
    assert_err(
        cpu::affine(&x, xs, &[1.0; 2], &[0.0; 1], true),
        &["affine", "bias"],
    );
    assert_err(
        cpu::affine(&x[..5], xs, &[1.0; 2], &[0.0; 2], true),
        &["affine", "input"],
    );
    assert_err(
        cpu::global_avg_pool(&x[..9], xs),
        &["global_avg_pool", "input"],
    );
    assert_err(
        cpu::global_avg_pool(&x, Shape4::new(1, 0, 3, 3)),
        &["global_avg_pool", "non-empty"],
    );
    assert_err(cpu::softmax(&x, 4, 5), &["softmax", "input", "20 elements"]);
    assert_err(cpu::softmax(&x, 18, 0), &["softmax", "non-empty"]);
}

#[test]
fn gpu_layers_return_shape_errors() {
    let Some(ctx) = gpu("gpu_layers_return_shape_errors") else {
        return;
    };
    let k = ctx.kernels();
    let t = |dims: &[usize]| upload(ctx, dims, &vec![0.0; dims.iter().product()]);
    let run = |f: &dyn Fn(&mut wgpu::CommandEncoder) -> activeshift::Result<()>| {
        ctx.submit(|enc| f(enc)).map(|_| ())
    };
    let x = t(&[1, 3, 8, 8]);

    // conv3x3
    let w = t(&[4, 3, 3, 3]);
    let y = t(&[1, 4, 4, 4]);
    assert_err(
        run(&|e| {
            k.conv3x3()
                .prepare(ctx, &x, &t(&[4, 2, 3, 3]), 2, &y)
                .map(|d| d.record(e))
        }),
        &[
            "conv3x3",
            "weight",
            "expected [Cout, 3, 3, 3]",
            "found [4, 2, 3, 3]",
        ],
    );
    assert_err(
        run(&|e| {
            k.conv3x3()
                .prepare(ctx, &x, &t(&[4, 3, 1, 1]), 2, &y)
                .map(|d| d.record(e))
        }),
        &["conv3x3", "weight"],
    );
    assert_err(
        run(&|e| k.conv3x3().prepare(ctx, &x, &w, 1, &y).map(|d| d.record(e))),
        &["conv3x3", "output", "expected [1, 4, 8, 8]"],
    );
    assert_err(
        run(&|e| k.conv3x3().prepare(ctx, &x, &w, 0, &y).map(|d| d.record(e))),
        &["conv3x3", "stride"],
    );
    assert_err(
        run(&|e| {
            k.conv3x3()
                .prepare(ctx, &t(&[3, 8, 8]), &w, 2, &y)
                .map(|d| d.record(e))
        }),
        &["conv3x3", "input", "4-d"],
    );
    run(&|e| k.conv3x3().prepare(ctx, &x, &w, 2, &y).map(|d| d.record(e)))
        .expect("the right shapes work");
    // Stride 1 and Cin == Cout: the output has the input's shape but cannot be the input.
    assert_err(
        run(&|e| {
            k.conv3x3()
                .prepare(ctx, &x, &t(&[3, 3, 3, 3]), 1, &x)
                .map(|d| d.record(e))
        }),
        &["conv3x3", "different tensor from the input"],
    );

    // affine
    let (s3, b3) = (t(&[3]), t(&[3]));
    assert_err(
        run(&|e| {
            k.affine()
                .prepare(ctx, &x, &t(&[4]), &b3, false, &x)
                .map(|d| d.record(e))
        }),
        &["affine", "scale", "expected [3]", "found [4]"],
    );
    assert_err(
        run(&|e| {
            k.affine()
                .prepare(ctx, &x, &s3, &t(&[1, 3]), false, &x)
                .map(|d| d.record(e))
        }),
        &["affine", "bias"],
    );
    assert_err(
        run(&|e| {
            k.affine()
                .prepare(ctx, &x, &s3, &b3, true, &t(&[1, 3, 8, 7]))
                .map(|d| d.record(e))
        }),
        &["affine", "output", "expected [1, 3, 8, 8]"],
    );
    assert_err(
        run(&|e| {
            k.affine()
                .prepare(ctx, &t(&[3, 64]), &s3, &b3, true, &t(&[3, 64]))
                .map(|d| d.record(e))
        }),
        &["affine", "input"],
    );

    // global_avg_pool
    assert_err(
        run(&|e| {
            k.global_avg_pool()
                .prepare(ctx, &x, &t(&[1, 3]))
                .map(|d| d.record(e))
        }),
        &["global_avg_pool", "output", "expected [1, 3, 1, 1]"],
    );
    assert_err(
        run(&|e| {
            k.global_avg_pool()
                .prepare(ctx, &t(&[3, 64]), &t(&[3, 1, 1, 1]))
                .map(|d| d.record(e))
        }),
        &["global_avg_pool", "input"],
    );

    let one_pixel = t(&[2, 3, 1, 1]);
    assert_err(
        run(&|e| {
            k.global_avg_pool()
                .prepare(ctx, &one_pixel, &one_pixel)
                .map(|d| d.record(e))
        }),
        &["global_avg_pool", "different tensor from the input"],
    );

    // softmax
    let logits = t(&[2, 10]);
    assert_err(
        run(&|e| {
            k.softmax()
                .prepare(ctx, &logits, &t(&[2, 11]))
                .map(|d| d.record(e))
        }),
        &["softmax", "output", "expected [2, 10]"],
    );
    assert_err(
        run(&|e| {
            k.softmax()
                .prepare(ctx, &x, &t(&[1, 3, 8, 8]))
                .map(|d| d.record(e))
        }),
        &["softmax", "input", "[N, K]"],
    );
    assert_err(
        run(&|e| {
            k.softmax()
                .prepare(ctx, &logits, &logits)
                .map(|d| d.record(e))
        }),
        &["softmax", "different tensor"],
    );
    // A rejected record leaves nothing behind: the next submission still works.
    let probs = poisoned(ctx, &[2, 10]);
    run(&|e| {
        k.softmax()
            .prepare(ctx, &logits, &probs)
            .map(|d| d.record(e))
    })
    .expect("the right shapes work");
    let err = rel_err(&read(ctx, &probs), &[0.1; 20]);
    assert!(err <= 1e-6, "softmax of zeros: relative error {err}");
}
