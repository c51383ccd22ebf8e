//! GPU training with the run's state resident on the device ([`Session`] over [`GpuBackend`]):
//! nothing allocated and only the batch moved after the first step, the same parameters,
//! momentum and running statistics as the CPU after the optimiser step, bitwise reproducible
//! runs, the optimiser kernel against its CPU twin, and checkpoints that resume on either
//! backend.

use crate::common;

use activeshift::gpu::kernels::{RunningStatsDispatch, SgdDispatch};
use activeshift::model::{ArchConfig, BlockKind, ParamId, StageConfig};
use activeshift::train::{
    Backend, CpuBackend, GpuBackend, Session, SgdRule, ShiftMode, TrainSettings, Trainer, ops,
    sgd_update,
};
use activeshift::{GpuContext, GpuTensor};
use common::*;
use rand::RngExt;
use rand::rngs::StdRng;
use std::collections::BTreeMap;

/// A two-stage network on 11x11 one-channel images, 4 classes.
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

fn trainer(seed: u64, block: BlockKind, shift: ShiftMode) -> Trainer {
    let settings = TrainSettings {
        seed,
        augment: false,
        shift,
        ..TrainSettings::default()
    };
    Trainer::new(small(block), vec![], settings).unwrap()
}

/// `steps` batches of `n` random images with labels.
fn batches(rng: &mut StdRng, steps: usize, n: usize) -> Vec<(Vec<f32>, Vec<u32>)> {
    (0..steps)
        .map(|_| {
            let x = uniform(rng, n * 121, -1.5, 1.5);
            let y = (0..n).map(|_| rng.random_range(0..4u32)).collect();
            (x, y)
        })
        .collect()
}

fn lr_of(step: usize) -> f32 {
    // A rate that changes every step, as the cosine schedule does.
    0.05 * (1.0 - step as f32 / 40.0)
}

/// One optimiser step of `t` on the host: each parameter's [`SgdRule`] by [`sgd_update`].
fn apply_on_host(t: &mut Trainer, grads: &BTreeMap<String, Vec<f32>>, lr: f32) {
    for (id, _) in t.config.params() {
        let (Some(rule), Some(g)) = (SgdRule::of(&t.settings, id), grads.get(&id.name())) else {
            continue;
        };
        let (w, v) = (t.params.get_mut(&id.name()), t.velocity.get_mut(&id.name()));
        let (Some(w), Some(v)) = (w, v) else {
            panic!("{} has no state", id.name());
        };
        sgd_update(&rule, lr, w, v, g).unwrap();
    }
}

/// Every tensor of the run, by checkpoint name (parameters, running statistics, velocities).
fn state(t: &Trainer) -> Vec<(String, Vec<f32>)> {
    let mut all: Vec<(String, Vec<f32>)> = t.params.clone().into_iter().collect();
    all.extend(
        t.velocity
            .iter()
            .map(|(k, v)| (format!("velocity/{k}"), v.clone())),
    );
    all
}

#[test]
fn after_the_first_step_a_step_creates_no_buffer_and_moves_only_the_batch() {
    if gpu("after_the_first_step_a_step_creates_no_buffer").is_none() {
        return;
    }
    // A context of its own: the counters are the context's, and other tests share theirs.
    let ctx = pollster::block_on(GpuContext::new()).expect("a second context on the adapter");
    let (mut rng, seed) = rng("resident_counts");
    let n = 6;
    let data = batches(&mut rng, 4, n);
    let t = trainer(seed, BlockKind::Asl, ShiftMode::Learned);
    let mut session = Session::new(t, GpuBackend::new(ctx.clone())).unwrap();
    let (x, y) = &data[0];
    let before = ctx.transfers();
    session.step_batch(x, y, lr_of(0)).unwrap();
    let first = ctx.transfers() - before;
    assert!(
        first.buffers_created > 20,
        "the first step allocates its storage and launches: {first:?}"
    );
    session.stats().unwrap();
    for (i, (x, y)) in data.iter().enumerate().skip(1) {
        let before = ctx.transfers();
        session.step_batch(x, y, lr_of(i)).unwrap();
        let moved = ctx.transfers() - before;
        assert_eq!(moved.buffers_created, 0, "step {i}: buffers created");
        // The images, the labels (u32 each) and the learning rate go in; nothing comes out.
        assert_eq!(
            moved.bytes_uploaded,
            (4 * x.len() + 4 * n + 4) as u64,
            "step {i}: bytes uploaded"
        );
        assert_eq!(moved.bytes_downloaded, 0, "step {i}: bytes downloaded");
        // Reading the loss and accuracy (here every other step): the two sums come out and
        // are set back to zero.
        if i % 2 == 0 {
            let before = ctx.transfers();
            let stats = session.stats().unwrap();
            let moved = ctx.transfers() - before;
            assert!(stats.loss().is_finite() && stats.seen == 2 * n, "{stats:?}");
            assert!(stats.correct <= stats.seen);
            assert_eq!(moved.buffers_created, 0);
            assert_eq!((moved.bytes_downloaded, moved.bytes_uploaded), (8, 8));
        }
    }
    // A checkpoint reads the state back: that is when it moves.
    let before = ctx.transfers();
    session.sync().unwrap();
    let moved = ctx.transfers() - before;
    let state_bytes: usize = state(session.trainer())
        .iter()
        .map(|(_, v)| 4 * v.len())
        .sum();
    assert_eq!(moved.bytes_downloaded, state_bytes as u64);
}

/// One step of the same batch in a CPU and a GPU session, then `steps - 1` more: every
/// parameter, velocity and running statistic agrees (relative 1e-3).
fn sessions_agree(ctx: &GpuContext, seed: u64, block: BlockKind, shift: ShiftMode, steps: usize) {
    let mut rng = rand::SeedableRng::seed_from_u64(seed);
    let data = batches(&mut rng, steps, 5);
    let t = trainer(seed, block, shift);
    let initial = t.clone();
    let mut cpu = Session::new(t.clone(), CpuBackend).unwrap();
    let mut gpu_s = Session::new(t, GpuBackend::new(ctx.clone())).unwrap();
    // The first step by hand: gradients downloaded, the optimiser's CPU twin on the host.
    let mut host = initial.clone();
    for (i, (x, y)) in data.iter().enumerate() {
        cpu.step_batch(x, y, lr_of(i)).unwrap();
        gpu_s.step_batch(x, y, lr_of(i)).unwrap();
        let (a, b) = (cpu.stats().unwrap(), gpu_s.stats().unwrap());
        assert_eq!(a.correct, b.correct, "{block:?} {shift:?} step {i}");
        assert!((a.loss() - b.loss()).abs() < 1e-4 * a.loss().max(1.0));
        if i == 0 {
            let (s, g) = host.forward_backward(x, y).unwrap();
            apply_on_host(&mut host, &g, lr_of(0));
            assert_eq!(s.correct, a.correct);
            // The CPU session runs the host's rule: the same state, bit for bit.
            assert_eq!(
                state(cpu.sync().unwrap()),
                state(&host),
                "{block:?} {shift:?}"
            );
        }
    }
    let (want, got) = (state(cpu.sync().unwrap()), state(gpu_s.sync().unwrap()));
    for ((name, w), (_, g)) in want.iter().zip(&got) {
        let e = rel_err(g, w);
        assert!(
            e < 1e-3,
            "{block:?} {shift:?} {name} after {steps} steps: relative error {e:.2e} (seed {seed})"
        );
    }
    // Frozen shifts stay where they were, with no momentum; learned ones move.
    for (name, v) in &gpu_s.trainer().params {
        if name.ends_with(".shift") {
            let moved = *v != initial.params[name];
            assert_eq!(moved, shift == ShiftMode::Learned, "{name} under {shift:?}");
            let still = gpu_s.trainer().velocity[name].iter().all(|&v| v == 0.0);
            assert_eq!(still, shift != ShiftMode::Learned, "{name} velocity");
        }
    }
}

#[test]
fn gpu_parameters_momentum_and_running_statistics_agree_with_the_cpu() {
    let Some(ctx) = gpu("gpu_parameters_momentum_and_running_statistics_agree_with_the_cpu") else {
        return;
    };
    let (_, seed) = rng("resident_vs_cpu");
    sessions_agree(ctx, seed, BlockKind::Asl, ShiftMode::Learned, 1);
    sessions_agree(ctx, seed, BlockKind::Asl, ShiftMode::Learned, 3);
    sessions_agree(ctx, seed, BlockKind::Asl, ShiftMode::Grouped, 2);
    sessions_agree(ctx, seed, BlockKind::Depthwise, ShiftMode::Learned, 2);
}

#[test]
fn two_gpu_runs_of_20_steps_give_bitwise_identical_parameters() {
    let Some(ctx) = gpu("two_gpu_runs_of_20_steps_give_bitwise_identical_parameters") else {
        return;
    };
    let (mut rng, seed) = rng("resident_bitwise");
    let data = batches(&mut rng, 20, 4);
    let run = || {
        let t = trainer(seed, BlockKind::Asl, ShiftMode::Learned);
        let mut s = Session::new(t, GpuBackend::new(ctx.clone())).unwrap();
        for (i, (x, y)) in data.iter().enumerate() {
            s.step_batch(x, y, lr_of(i)).unwrap();
        }
        s.into_trainer().unwrap()
    };
    let (a, b) = (run(), run());
    assert_eq!(state(&a), state(&b), "seed {seed}");
    let start = trainer(seed, BlockKind::Asl, ShiftMode::Learned);
    assert_ne!(state(&a), state(&start), "the runs trained");
}

#[test]
fn optimizer_kernel_matches_its_cpu_twin() {
    let Some(ctx) = gpu("optimizer_kernel_matches_its_cpu_twin") else {
        return;
    };
    let (mut rng, seed) = rng("optimizer_kernel");
    let settings = TrainSettings::default();
    // The rules: decay on weights only, the shifts' rate multiplier and normalization, frozen
    // shifts under every mode but Learned.
    let w_rule = SgdRule::of(&settings, ParamId::FcWeight).unwrap();
    assert_eq!(w_rule.weight_decay, settings.weight_decay);
    for id in [ParamId::FcBias, ParamId::Shift(0)] {
        assert_eq!(
            SgdRule::of(&settings, id).unwrap().weight_decay,
            0.0,
            "{id}"
        );
    }
    let shift_rule = SgdRule::of(&settings, ParamId::Shift(0)).unwrap();
    assert!(shift_rule.normalize_shift && shift_rule.lr_mult == settings.shift_lr_mult);
    for mode in [
        ShiftMode::Grouped,
        ShiftMode::SampledInt,
        ShiftMode::SampledReal,
    ] {
        let s = TrainSettings {
            shift: mode,
            ..TrainSettings::default()
        };
        assert_eq!(SgdRule::of(&s, ParamId::Shift(1)), None, "{mode:?}");
    }
    let lr_buf = GpuTensor::zeros(ctx, &[1]).unwrap();
    for case in 0..6 {
        let c = rng.random_range(1..40);
        let len = 2 * c;
        let (rule, offset) = match case % 3 {
            0 => (w_rule, 0),
            1 => (SgdRule::of(&settings, ParamId::FcBias).unwrap(), len),
            _ => (shift_rule, rng.random_range(1..5)),
        };
        let lr = between(&mut rng, 0.001, 0.5);
        let w = uniform(&mut rng, len, -2.0, 2.0);
        let v = uniform(&mut rng, len, -1.0, 1.0);
        let mut g = uniform(&mut rng, len, -3.0, 3.0);
        if rule.normalize_shift {
            // A zero pair stays zero; a tiny one is still normalized.
            g[0] = 0.0;
            g[c] = 0.0;
            if c > 1 {
                g[1] = 1e-30;
                g[c + 1] = -2e-30;
            }
        }
        // The gradient inside a larger buffer, NaN around it.
        let mut grad_buf = vec![f32::NAN; offset + len + 3];
        grad_buf[offset..offset + len].copy_from_slice(&g);
        let (mut w_cpu, mut v_cpu) = (w.clone(), v.clone());
        sgd_update(&rule, lr, &mut w_cpu, &mut v_cpu, &g).unwrap();
        let wt = upload(ctx, &[len], &w);
        let vt = upload(ctx, &[len], &v);
        let gt = upload(ctx, &[grad_buf.len()], &grad_buf);
        lr_buf.write(ctx, &[lr]).unwrap();
        let d = ctx
            .kernels()
            .optimizer()
            .prepare_sgd(
                ctx,
                SgdDispatch {
                    lr: lr_buf.buffer(),
                    grad: &gt,
                    grad_offset: offset,
                    weight: &wt,
                    velocity: &vt,
                    lr_mult: rule.lr_mult,
                    momentum: rule.momentum,
                    weight_decay: rule.weight_decay,
                    shift_channels: rule.normalize_shift.then_some(c),
                },
            )
            .unwrap();
        ctx.submit(|enc| {
            d.record(enc);
            Ok(())
        })
        .unwrap();
        let msg = format!("case {case} {rule:?} offset {offset} (seed {seed})");
        assert!(rel_err(&read(ctx, &wt), &w_cpu) < 1e-5, "weight: {msg}");
        assert!(rel_err(&read(ctx, &vt), &v_cpu) < 1e-5, "velocity: {msg}");
        assert_ne!(w_cpu, w, "the step moved the weight: {msg}");
    }
    // The running statistics.
    let c = 37;
    let batch = uniform(&mut rng, 3 * c, 0.0, 2.0);
    let (mean, var) = (
        uniform(&mut rng, c, -1.0, 1.0),
        uniform(&mut rng, c, 0.1, 2.0),
    );
    let (mut m_cpu, mut v_cpu) = (mean.clone(), var.clone());
    ops::update_running_stats(&mut m_cpu, &mut v_cpu, &batch, 121);
    let (bt, mt, vt) = (
        upload(ctx, &[3, c], &batch),
        upload(ctx, &[c], &mean),
        upload(ctx, &[c], &var),
    );
    let d = ctx
        .kernels()
        .optimizer()
        .prepare_running_stats(
            ctx,
            RunningStatsDispatch {
                batch: &bt,
                mean: &mt,
                var: &vt,
                count: 121,
            },
        )
        .unwrap();
    ctx.submit(|enc| {
        d.record(enc);
        Ok(())
    })
    .unwrap();
    assert!(rel_err(&read(ctx, &mt), &m_cpu) < 1e-6);
    assert!(rel_err(&read(ctx, &vt), &v_cpu) < 1e-6);
    // Mismatched operands are errors.
    let k = ctx.kernels().optimizer();
    let short = upload(ctx, &[3], &[0.0; 3]);
    let bad = SgdDispatch {
        lr: lr_buf.buffer(),
        grad: &short,
        grad_offset: 0,
        weight: &mt,
        velocity: &vt,
        lr_mult: 1.0,
        momentum: 0.9,
        weight_decay: 0.0,
        shift_channels: None,
    };
    assert!(k.prepare_sgd(ctx, bad).is_err());
    let aliased = SgdDispatch { grad: &mt, ..bad };
    assert!(k.prepare_sgd(ctx, aliased).is_err());
}

#[test]
fn a_checkpoint_of_a_gpu_run_resumes_on_the_cpu_and_the_gpu() {
    let Some(ctx) = gpu("a_checkpoint_of_a_gpu_run_resumes_on_the_cpu_and_the_gpu") else {
        return;
    };
    let (mut rng, seed) = rng("resident_checkpoint");
    let data = batches(&mut rng, 5, 4);
    let t = trainer(seed, BlockKind::Asl, ShiftMode::Learned);
    let mut run = Session::new(t, GpuBackend::new(ctx.clone())).unwrap();
    for (i, (x, y)) in data[..3].iter().enumerate() {
        run.step_batch(x, y, lr_of(i)).unwrap();
    }
    run.set_position(0, 3);
    let bytes = run.sync().unwrap().checkpoint_bytes().unwrap();
    let resumed = Trainer::from_checkpoint_bytes(&bytes).unwrap();
    assert_eq!(&resumed, run.trainer());
    assert_eq!(resumed.step_in_epoch, 3);
    // The rest of the run three ways: on, from the checkpoint on the GPU, on the CPU.
    let mut again = Session::new(resumed.clone(), GpuBackend::new(ctx.clone())).unwrap();
    let mut cpu = Session::new(resumed, CpuBackend).unwrap();
    for (i, (x, y)) in data.iter().enumerate().skip(3) {
        run.step_batch(x, y, lr_of(i)).unwrap();
        again.step_batch(x, y, lr_of(i)).unwrap();
        cpu.step_batch(x, y, lr_of(i)).unwrap();
    }
    let (a, b, c) = (
        state(&run.into_trainer().unwrap()),
        state(&again.into_trainer().unwrap()),
        state(&cpu.into_trainer().unwrap()),
    );
    assert_eq!(a, b, "resuming on the GPU changes nothing (seed {seed})");
    for ((name, want), (_, got)) in a.iter().zip(&c) {
        let e = rel_err(got, want);
        assert!(e < 1e-3, "{name} resumed on the CPU: {e:.2e} (seed {seed})");
    }
}

#[test]
fn the_cpu_backend_is_a_backend_for_sessions() {
    // No GPU needed: a CPU session's steps are the host path's, bit for bit; statistics not
    // read add up until they are.
    let (mut rng, seed) = rng("cpu_session");
    let data = batches(&mut rng, 2, 3);
    let t = trainer(seed, BlockKind::Asl, ShiftMode::Learned);
    let mut host = t.clone();
    let mut s = Session::new(t, CpuBackend).unwrap();
    for (i, (x, y)) in data.iter().enumerate() {
        s.step_batch(x, y, lr_of(i)).unwrap();
        let a = s.stats().unwrap();
        let (b, g) = host.forward_backward(x, y).unwrap();
        apply_on_host(&mut host, &g, lr_of(i));
        assert_eq!(a.correct, b.correct);
        assert!((a.loss() - b.loss()).abs() < 1e-5 * b.loss().max(1.0));
    }
    assert_eq!(state(&s.sync().unwrap().clone()), state(&host));
    let (x, y) = &data[0];
    s.step_batch(x, y, 0.0).unwrap();
    s.step_batch(x, y, 0.0).unwrap();
    let both = s.stats().unwrap();
    assert_eq!(both.seen, 2 * y.len());
    assert_eq!(s.stats().unwrap(), Default::default(), "read once");
    assert!(CpuBackend.describe().contains("CPU"));
}
