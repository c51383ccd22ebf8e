//! GPU training: every training kernel against its CPU twin (fresh random inputs, odd sizes,
//! stride 2, outputs poisoned with NaN before the kernel runs), GPU-vs-CPU agreement of every
//! parameter gradient of a whole network, and a short training run on the GPU whose loss falls.

use crate::common;

use activeshift::gpu::kernels::{BnBackward, BnForward, DepthwiseBackward};
use activeshift::model::{ArchConfig, BlockKind, StageConfig};
use activeshift::train::{
    Backend, CpuBackend, CpuTensor, GpuBackend, Session, TrainSettings, Trainer, ops,
};
use activeshift::{GpuContext, GpuTensor, Shape4};
use common::*;
use rand::RngExt;
use rand::rngs::StdRng;

const TOL: f64 = 1e-4;

fn run(ctx: &GpuContext, d: activeshift::gpu::kernels::Dispatch) {
    ctx.submit(|enc| {
        d.record(enc);
        Ok(())
    })
    .expect("submit");
}

fn odd_shape(rng: &mut StdRng) -> Shape4 {
    Shape4::new(
        rng.random_range(1..4),
        rng.random_range(1..7),
        rng.random_range(1..10),
        rng.random_range(1..10),
    )
}

#[test]
fn batchnorm_train_forward_and_backward_match_cpu() {
    let Some(ctx) = gpu("batchnorm_train_forward_and_backward_match_cpu") else {
        return;
    };
    let (mut rng, _) = rng("batchnorm_train");
    for round in 0..6 {
        let xs = if round == 0 {
            // More values per channel than one workgroup has invocations.
            Shape4::new(3, 2, 17, 13)
        } else if round == 1 {
            // A plane longer than one workgroup of the element-wise passes covers (256), not
            // a multiple of 4.
            Shape4::new(2, 3, 29, 31)
        } else {
            odd_shape(&mut rng)
        };
        // An offset mean, so a one-pass variance would lose digits.
        let x = uniform(&mut rng, xs.len(), 2.0, 5.0);
        let gamma = uniform(&mut rng, xs.c, 0.5, 1.5);
        let beta = uniform(&mut rng, xs.c, -0.5, 0.5);
        let dy = uniform(&mut rng, xs.len(), -1.0, 1.0);
        let (y_cpu, stats_cpu) = ops::bn_relu_train(&x, xs, &gamma, &beta);
        let (dx_cpu, dg_cpu, db_cpu) =
            ops::bn_relu_backward(&dy, &x, &y_cpu, xs, &gamma, &stats_cpu);

        let xt = upload(ctx, &xs.dims(), &x);
        let gt = upload(ctx, &[xs.c], &gamma);
        let bt = upload(ctx, &[xs.c], &beta);
        let stats = poisoned(ctx, &[3, xs.c]);
        let y = poisoned(ctx, &xs.dims());
        let k = ctx.kernels().batchnorm_train();
        run(
            ctx,
            k.prepare_forward(
                ctx,
                BnForward {
                    x: &xt,
                    gamma: &gt,
                    beta: &bt,
                    stats: &stats,
                    y: &y,
                },
            )
            .unwrap(),
        );
        let stats_gpu = read(ctx, &stats);
        let y_gpu = read(ctx, &y);
        assert!(
            rel_err(&stats_gpu, &stats_cpu) < TOL,
            "{xs:?}: stats {stats_gpu:?} vs {stats_cpu:?}"
        );
        assert!(rel_err(&y_gpu, &y_cpu) < TOL, "{xs:?}: forward");

        let dyt = upload(ctx, &xs.dims(), &dy);
        let dparams = poisoned(ctx, &[2, xs.c]);
        let dx = poisoned(ctx, &xs.dims());
        // The CPU forward output, so the ReLU masks are the same.
        let yt = upload(ctx, &xs.dims(), &y_cpu);
        let st = upload(ctx, &[3, xs.c], &stats_cpu);
        run(
            ctx,
            k.prepare_backward(
                ctx,
                BnBackward {
                    x: &xt,
                    y: &yt,
                    gamma: &gt,
                    stats: &st,
                    dy: &dyt,
                    dparams: &dparams,
                    dx: &dx,
                },
            )
            .unwrap(),
        );
        let dp = read(ctx, &dparams);
        assert!(rel_err(&dp[..xs.c], &dg_cpu) < TOL, "{xs:?}: dgamma");
        assert!(rel_err(&dp[xs.c..], &db_cpu) < TOL, "{xs:?}: dbeta");
        assert!(rel_err(&read(ctx, &dx), &dx_cpu) < TOL, "{xs:?}: dx");

        // Frozen statistics (fine-tuning): given mean and variance, the same outputs poisoned
        // first, against the CPU twins.
        let mean = uniform(&mut rng, xs.c, 2.0, 5.0);
        let var = uniform(&mut rng, xs.c, 0.2, 3.0);
        let mut frozen = mean.clone();
        frozen.extend(&var);
        frozen.extend(var.iter().map(|v| 1.0 / (v + ops::BN_EPS).sqrt()));
        let yf_cpu = ops::bn_relu_frozen(&x, xs, &gamma, &beta, &frozen);
        let (dxf_cpu, dgf_cpu, dbf_cpu) =
            ops::bn_relu_backward_with(&dy, &x, &yf_cpu, xs, &gamma, &frozen, true);
        let ft = upload(ctx, &[3, xs.c], &frozen);
        let yf = poisoned(ctx, &xs.dims());
        run(
            ctx,
            k.prepare_forward_frozen(
                ctx,
                BnForward {
                    x: &xt,
                    gamma: &gt,
                    beta: &bt,
                    stats: &ft,
                    y: &yf,
                },
            )
            .unwrap(),
        );
        assert!(
            rel_err(&read(ctx, &yf), &yf_cpu) < TOL,
            "{xs:?}: frozen forward"
        );
        assert_eq!(read(ctx, &ft), frozen, "{xs:?}: frozen statistics written");
        let yft = upload(ctx, &xs.dims(), &yf_cpu);
        let (dparams, dx) = (poisoned(ctx, &[2, xs.c]), poisoned(ctx, &xs.dims()));
        run(
            ctx,
            k.prepare_backward_frozen(
                ctx,
                BnBackward {
                    x: &xt,
                    y: &yft,
                    gamma: &gt,
                    stats: &ft,
                    dy: &dyt,
                    dparams: &dparams,
                    dx: &dx,
                },
            )
            .unwrap(),
        );
        let dp = read(ctx, &dparams);
        assert!(
            rel_err(&dp[..xs.c], &dgf_cpu) < TOL,
            "{xs:?}: frozen dgamma"
        );
        assert!(rel_err(&dp[xs.c..], &dbf_cpu) < TOL, "{xs:?}: frozen dbeta");
        assert!(
            rel_err(&read(ctx, &dx), &dxf_cpu) < TOL,
            "{xs:?}: frozen dx"
        );
    }
}

#[test]
fn conv3x3_backward_weight_matches_cpu() {
    let Some(ctx) = gpu("conv3x3_backward_weight_matches_cpu") else {
        return;
    };
    let (mut rng, _) = rng("conv3x3_backward_weight");
    for round in 0..6 {
        let xs = odd_shape(&mut rng);
        let cout = rng.random_range(1..6);
        let s = 1 + round % 2;
        let ys = xs.strided(cout, s);
        let x = uniform(&mut rng, xs.len(), -1.0, 1.0);
        let dy = uniform(&mut rng, ys.len(), -1.0, 1.0);
        let want = ops::conv3x3_backward_weight(&dy, &x, xs, cout, s);
        let dw = poisoned(ctx, &[cout, xs.c, 3, 3]);
        let k = ctx.kernels().conv3x3_backward_weight();
        let (xt, dyt) = (upload(ctx, &xs.dims(), &x), upload(ctx, &ys.dims(), &dy));
        run(ctx, k.prepare(ctx, &dyt, &xt, s, &dw).unwrap());
        let got = read(ctx, &dw);
        assert!(rel_err(&got, &want) < TOL, "{xs:?} cout {cout} stride {s}");
    }
}

#[test]
fn softmax_cross_entropy_matches_cpu() {
    let Some(ctx) = gpu("softmax_cross_entropy_matches_cpu") else {
        return;
    };
    let (mut rng, _) = rng("softmax_cross_entropy");
    for _ in 0..5 {
        let n = rng.random_range(1..70);
        let k = rng.random_range(2..13);
        let logits = uniform(&mut rng, n * k, -6.0, 6.0);
        let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..k) as u32).collect();
        let (d_cpu, db_cpu, per_cpu) = CpuBackend
            .softmax_cross_entropy(&logits.clone().into(), &labels, k)
            .unwrap();
        // Hand check of the twin on the first row: the loss is -log softmax[label].
        let row = &logits[..k];
        let z: f64 = row.iter().map(|&v| f64::from(v).exp()).sum();
        let want = -(f64::from(row[labels[0] as usize]).exp() / z).ln();
        assert!((f64::from(per_cpu[0]) - want).abs() < 1e-4);

        let lt = upload(ctx, &[n, k], &logits);
        let lb = GpuTensor::from_slice(ctx, &[n], bytemuck::cast_slice(&labels)).unwrap();
        let (d, per, db) = (
            poisoned(ctx, &[n, k]),
            poisoned(ctx, &[n, 2]),
            poisoned(ctx, &[k]),
        );
        let kern = ctx.kernels().softmax_cross_entropy();
        run(
            ctx,
            kern.prepare(ctx, &lt, lb.buffer(), &d, &per, &db).unwrap(),
        );
        assert!(rel_err(&read(ctx, &d), &d_cpu) < TOL);
        assert!(rel_err(&read(ctx, &db), &db_cpu) < TOL);
        assert!(rel_err(&read(ctx, &per), &per_cpu) < TOL);
    }
}

#[test]
fn pool_backward_and_add_match_cpu() {
    let Some(ctx) = gpu("pool_backward_and_add_match_cpu") else {
        return;
    };
    let (mut rng, _) = rng("pool_backward_and_add");
    for _ in 0..4 {
        let xs = odd_shape(&mut rng);
        let dy = uniform(&mut rng, xs.n * xs.c, -1.0, 1.0);
        let want = CpuBackend
            .avg_pool_backward(&dy.clone().into(), xs)
            .unwrap();
        let dx = poisoned(ctx, &xs.dims());
        let k = ctx.kernels().global_avg_pool_backward();
        run(
            ctx,
            k.prepare(ctx, &upload(ctx, &[xs.n, xs.c], &dy), &dx)
                .unwrap(),
        );
        assert!(rel_err(&read(ctx, &dx), &want) < TOL);

        let a = uniform(&mut rng, xs.len(), -1.0, 1.0);
        let b = uniform(&mut rng, xs.len(), -1.0, 1.0);
        let mut want = CpuTensor::from(a.clone());
        CpuBackend.add_assign(&mut want, &b.clone().into()).unwrap();
        let at = upload(ctx, &xs.dims(), &a);
        let k = ctx.kernels().add();
        run(
            ctx,
            k.prepare(ctx, &upload(ctx, &xs.dims(), &b), &at).unwrap(),
        );
        assert!(rel_err(&read(ctx, &at), &want) < TOL);
    }
    // Mismatched sizes are an error, not a panic.
    let a = upload(ctx, &[4], &[0.0; 4]);
    let b = upload(ctx, &[5], &[0.0; 5]);
    assert!(ctx.kernels().add().prepare(ctx, &b, &a).is_err());
}

#[test]
fn depthwise_backward_matches_cpu_and_is_deterministic() {
    let Some(ctx) = gpu("depthwise_backward_matches_cpu_and_is_deterministic") else {
        return;
    };
    let (mut rng, seed) = rng("depthwise_backward");
    for round in 0..8 {
        let xs = match round {
            // More output positions per channel than the reduction's workgroup has invocations.
            0 => Shape4::new(3, 2, 19, 23),
            // A single pixel, and a single row.
            1 => Shape4::new(2, 3, 1, 1),
            2 => Shape4::new(1, 2, 1, 9),
            _ => odd_shape(&mut rng),
        };
        for s in [1, 2, 3] {
            let ys = xs.strided(xs.c, s);
            let x = uniform(&mut rng, xs.len(), -1.0, 1.0);
            let dy = uniform(&mut rng, ys.len(), -1.0, 1.0);
            let w = uniform(&mut rng, xs.c * 9, -1.0, 1.0);
            let (dx_cpu, dw_cpu) = ops::depthwise3x3_backward(&x, xs, &dy, &w, s);
            let xt = upload(ctx, &xs.dims(), &x);
            let dyt = upload(ctx, &ys.dims(), &dy);
            let wt = upload(ctx, &[xs.c, 1, 3, 3], &w);
            let k = ctx.kernels().depthwise3x3_backward();
            let mut runs = Vec::new();
            for _ in 0..2 {
                let dx = poisoned(ctx, &xs.dims());
                let dw = poisoned(ctx, &[xs.c, 1, 3, 3]);
                let t = DepthwiseBackward {
                    x: &xt,
                    dy: &dyt,
                    w: &wt,
                    stride: s,
                    dx: &dx,
                    dw: &dw,
                };
                run(ctx, k.prepare(ctx, t).unwrap());
                runs.push((read(ctx, &dx), read(ctx, &dw)));
            }
            let (dx_gpu, dw_gpu) = &runs[0];
            let msg = format!("{xs:?} stride {s} (seed {seed})");
            assert!(rel_err(dx_gpu, &dx_cpu) < TOL, "dx: {msg}");
            assert!(rel_err(dw_gpu, &dw_cpu) < TOL, "dw: {msg}");
            assert_eq!(runs[0], runs[1], "not bitwise reproducible: {msg}");
        }
    }
    // Mismatched shapes and aliasing are errors.
    let x = upload(ctx, &[1, 2, 5, 5], &[0.0; 50]);
    let dy = upload(ctx, &[1, 2, 3, 3], &[0.0; 18]);
    let w = upload(ctx, &[2, 1, 3, 3], &[0.0; 18]);
    let dw = upload(ctx, &[2, 1, 3, 3], &[0.0; 18]);
    let k = ctx.kernels().depthwise3x3_backward();
    let t = |stride, dx, dw| DepthwiseBackward {
        x: &x,
        dy: &dy,
        w: &w,
        stride,
        dx,
        dw,
    };
    let err = k.prepare(ctx, t(1, &x, &dw)).err().unwrap();
    assert!(err.to_string().contains("output gradient"), "{err}");
    let dx = upload(ctx, &[1, 2, 5, 5], &[0.0; 50]);
    let err = k.prepare(ctx, t(2, &dx, &w)).err().unwrap();
    assert!(err.to_string().contains("weight"), "{err}");
}

/// A small network: 1x11x11 input, 4 classes, a stride-1 block and a stride-2 projection block
/// (expansion 2).
fn small(block: BlockKind) -> ArchConfig {
    let mut c = ArchConfig::asnet20(4, 2, 1, 11, 4);
    c.block = block;
    c.stages = vec![
        StageConfig {
            blocks: 1,
            width: 4,
            stride: 1,
        },
        StageConfig {
            blocks: 1,
            width: 6,
            stride: 2,
        },
    ];
    c
}

fn small_trainer(seed: u64, block: BlockKind) -> Trainer {
    let settings = TrainSettings {
        seed,
        augment: false,
        ..TrainSettings::default()
    };
    let mut t = Trainer::new(small(block), vec![], settings).unwrap();
    // Shifts beyond one pixel, some beyond the 11-pixel image, away from integers.
    for (name, v) in t.params.iter_mut() {
        if name.ends_with(".shift") {
            for (i, s) in v.iter_mut().enumerate() {
                *s = ((i * 7 % 9) as f32 - 4.0) * 0.7 + 0.35;
            }
            v[0] = 12.3;
        }
    }
    t
}

/// Fine-tuning a model (its affine layers with frozen statistics): every gradient and the loss
/// on the GPU backend as on the CPU; the statistics do not move.
#[test]
fn frozen_statistics_gradients_agree_with_the_cpu() {
    let Some(ctx) = gpu("frozen_statistics_gradients_agree_with_the_cpu") else {
        return;
    };
    let (mut rng, seed) = rng("frozen_gradients");
    let model = small_trainer(seed, BlockKind::Asl).export().unwrap();
    let mut cpu =
        Trainer::from_model(&model, model.labels.clone(), TrainSettings::default()).unwrap();
    let mut gpu_t = cpu.clone();
    let n = 5;
    let input = uniform(&mut rng, n * 11 * 11, -1.5, 1.5);
    let labels: Vec<u32> = (0..n).map(|i| (i % 4) as u32).collect();
    let mut be = GpuBackend::new(ctx.clone());
    let (st_cpu, g_cpu) = cpu.forward_backward(&input, &labels).unwrap();
    let (st_gpu, g_gpu) = gpu_t.forward_backward_on(&mut be, &input, &labels).unwrap();
    assert_eq!(g_cpu.len(), g_gpu.len());
    for (name, want) in &g_cpu {
        let e = rel_err(&g_gpu[name], want);
        assert!(e < 1e-3, "{name}: relative error {e:.2e} (seed {seed})");
    }
    assert!((st_cpu.loss() - st_gpu.loss()).abs() < 1e-4 * st_cpu.loss().max(1.0));
    for (name, want) in &cpu.params {
        assert_eq!(&gpu_t.params[name], want, "{name} moved");
    }
}

#[test]
fn every_parameter_gradient_agrees_with_the_cpu_after_one_step() {
    let Some(ctx) = gpu("every_parameter_gradient_agrees_with_the_cpu_after_one_step") else {
        return;
    };
    let (mut rng, seed) = rng("gradient_agreement");
    // The ASL network, then the depthwise baseline.
    for block in [BlockKind::Asl, BlockKind::Depthwise] {
        gradients_agree(ctx, &mut rng, seed, block);
    }
}

fn gradients_agree(ctx: &GpuContext, rng: &mut StdRng, seed: u64, block: BlockKind) {
    let n = 5;
    let mut cpu = small_trainer(seed, block);
    let mut gpu_t = cpu.clone();
    let xs = Shape4::new(n, 1, 11, 11);
    let input = uniform(rng, xs.len(), -1.5, 1.5);
    let labels: Vec<u32> = (0..n).map(|i| (i % 4) as u32).collect();
    let mut be = GpuBackend::new(ctx.clone());
    let (st_cpu, g_cpu) = cpu.forward_backward(&input, &labels).unwrap();
    let (st_gpu, g_gpu) = gpu_t.forward_backward_on(&mut be, &input, &labels).unwrap();
    assert_eq!(
        g_cpu.keys().collect::<Vec<_>>(),
        g_gpu.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        g_cpu.len(),
        small(block).param_shapes().len(),
        "a gradient for every parameter"
    );
    for (name, want) in &g_cpu {
        let got = &g_gpu[name];
        let e = rel_err(got, want);
        assert!(
            e < 1e-3,
            "{block:?} {name}: relative error {e:.2e} (seed {seed})"
        );
        assert!(want.iter().any(|&v| v != 0.0), "{name}: gradient is zero");
    }
    assert!((st_cpu.loss() - st_gpu.loss()).abs() < 1e-4 * st_cpu.loss().max(1.0));
    assert_eq!(st_cpu.correct, st_gpu.correct);
    // The running statistics both passes updated (the optimiser steps of GPU and CPU sessions
    // are compared in tests/gpu/gpu_resident.rs).
    for (name, want) in &cpu.params {
        let e = rel_err(&gpu_t.params[name], want);
        assert!(e < 1e-3, "{block:?} {name} after the pass: {e:.2e}");
    }
}

#[test]
fn training_on_the_gpu_lowers_the_loss() {
    let Some(ctx) = gpu("training_on_the_gpu_lowers_the_loss") else {
        return;
    };
    let (mut rng, seed) = rng("gpu_training");
    // Four classes, each a fixed random pattern; images are a pattern plus strong noise.
    let k = 4;
    let side = 11;
    let plane = side * side;
    let patterns: Vec<Vec<f32>> = (0..k)
        .map(|_| uniform(&mut rng, plane, -1.0, 1.0))
        .collect();
    let sample = |rng: &mut StdRng, n: usize| {
        let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..k) as u32).collect();
        let mut x = Vec::with_capacity(n * plane);
        for &l in &labels {
            let noise = uniform(rng, plane, -0.6, 0.6);
            x.extend(patterns[l as usize].iter().zip(noise).map(|(p, e)| p + e));
        }
        (x, labels)
    };
    let t = Trainer::new(
        small(BlockKind::Asl),
        vec![],
        TrainSettings {
            seed,
            lr: 0.1,
            ..TrainSettings::default()
        },
    )
    .unwrap();
    let (held_x, held_y) = sample(&mut rng, 64);
    let held_loss = |t: &Trainer| {
        // Loss on a held-out batch in training mode (no update applied).
        let mut be = GpuBackend::new(ctx.clone());
        let mut probe = t.clone();
        probe
            .forward_backward_on(&mut be, &held_x, &held_y)
            .unwrap()
            .0
            .loss()
    };
    let before = held_loss(&t);
    let mut session = Session::new(t, GpuBackend::new(ctx.clone())).unwrap();
    let steps = 60;
    let mut losses = Vec::new();
    for _ in 0..steps {
        let (x, y) = sample(&mut rng, 16);
        session.step_batch(&x, &y, 0.1).unwrap();
        let stats = session.stats().unwrap();
        assert_eq!(stats.seen, 16);
        assert!(stats.loss().is_finite());
        losses.push(stats.loss());
    }
    let after = held_loss(session.sync().unwrap());
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[steps - 5..].iter().sum::<f64>() / 5.0;
    eprintln!("held-out loss {before:.3} -> {after:.3}; step loss {first:.3} -> {last:.3}");
    assert!(
        after < 0.5 * before,
        "held-out loss {before:.3} -> {after:.3}"
    );
    assert!(last < 0.6 * first, "step loss {first:.3} -> {last:.3}");
}

#[test]
fn conv1x1_weight_gradient_split_over_the_batch_matches_cpu() {
    let Some(ctx) = gpu("conv1x1_weight_gradient_split_over_the_batch_matches_cpu") else {
        return;
    };
    let (mut rng, _) = rng("conv1x1_weight_gradient_split");
    // K = N * Ho * Wo from one chunk to many, odd channel counts across a 64-wide tile edge.
    for (xs, cout, s) in [
        (Shape4::new(3, 67, 37, 29), 5, 1),
        (Shape4::new(4, 3, 41, 23), 70, 2),
        (Shape4::new(1, 9, 5, 3), 11, 1),
    ] {
        let ys = xs.strided(cout, s);
        let x = uniform(&mut rng, xs.len(), -1.0, 1.0);
        let dy = uniform(&mut rng, ys.len(), -1.0, 1.0);
        let want = ops::conv1x1_backward_weight(&dy, &x, xs, cout, s);
        let dw = poisoned(ctx, &[cout, xs.c]);
        let k = ctx.kernels().conv1x1_backward_weight();
        let (xt, dyt) = (upload(ctx, &xs.dims(), &x), upload(ctx, &ys.dims(), &dy));
        run(ctx, k.prepare(ctx, &dyt, &xt, s, &dw).unwrap());
        let e = rel_err(&read(ctx, &dw), &want);
        assert!(e < TOL, "{xs:?} cout {cout} stride {s}: {e:.2e}");
    }
}
