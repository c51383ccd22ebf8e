//! Whole networks on the GPU against the CPU engine, with random weights.

use crate::common;

use activeshift::model::{ArchConfig, GpuModel, Lowering, Plan};
use common::*;

fn compare(test: &str, config: ArchConfig, batches: &[usize]) {
    let Some(ctx) = gpu(test) else {
        return;
    };
    let (mut rng, seed) = rng(test);
    let model = random_model(&config, &mut rng);
    let mut gm = GpuModel::new(ctx, &model).unwrap();
    let per = config.in_channels * config.input_size[0] * config.input_size[1];
    for &n in batches {
        let input = uniform(&mut rng, n * per, -2.0, 2.0);
        let cpu = model.forward_cpu(&input).unwrap();
        let gpu = pollster::block_on(gm.forward(&input)).unwrap();
        let err = rel_err(&gpu.logits, &cpu.logits);
        assert!(
            err <= 1e-3,
            "{}: batch {n}: logits relative error {err} (seed {seed})",
            config.name
        );
        let err = rel_err(&gpu.probs, &cpu.probs);
        assert!(
            err <= 1e-3,
            "{}: batch {n}: probabilities relative error {err} (seed {seed})",
            config.name
        );
        // Buffers are reused between calls: the same input gives the same logits again.
        let again = pollster::block_on(gm.forward(&input)).unwrap();
        assert_eq!(
            again.logits, gpu.logits,
            "{}: batch {n}: second run differs",
            config.name
        );
    }
}

#[test]
fn asnet20_16x1_gpu_matches_cpu() {
    compare(
        "asnet20_16x1_gpu_matches_cpu",
        ArchConfig::builtin("asnet20-16x1").unwrap(),
        &[3, 1, 3],
    );
}

#[test]
fn asnet20_grayscale_28_gpu_matches_cpu() {
    compare(
        "asnet20_grayscale_28_gpu_matches_cpu",
        ArchConfig::asnet20(16, 3, 1, 28, 10),
        &[2],
    );
}

#[test]
fn depthwise_baseline_network_gpu_matches_cpu() {
    let mut config = ArchConfig::asnet20(8, 2, 1, 28, 10);
    config.block = activeshift::model::BlockKind::Depthwise;
    compare("depthwise_baseline_network_gpu_matches_cpu", config, &[2]);
}

#[test]
fn wrong_input_size_is_an_error() {
    let Some(ctx) = gpu("wrong_input_size_is_an_error") else {
        return;
    };
    let (mut rng, _) = rng("wrong input");
    let model = random_model(&ArchConfig::builtin("asnet20-16x1").unwrap(), &mut rng);
    let mut gm = GpuModel::new(ctx, &model).unwrap();
    let err = pollster::block_on(gm.forward(&[0.0; 100]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("a multiple of 3072 values"), "{err}");
    let err = model.forward_cpu(&[]).unwrap_err().to_string();
    assert!(err.contains("a multiple of 3072 values"), "{err}");
}

/// The fused ASL + GEMM path and the unfused one (ASL kernel, then the GEMM; the default)
/// agree on whole networks, and both match the CPU engine.
#[test]
fn fused_and_unfused_asl_agree_on_whole_models() {
    let test = "fused_and_unfused_asl_agree_on_whole_models";
    let Some(ctx) = gpu(test) else {
        return;
    };
    let (mut rng, seed) = rng(test);
    for config in [
        ArchConfig::builtin("asnet20-16x1").unwrap(),
        ArchConfig::asnet20(16, 3, 1, 28, 10),
    ] {
        let model = random_model(&config, &mut rng);
        let mut gm = GpuModel::new(ctx, &model).unwrap();
        assert_eq!(
            gm.fused(),
            ctx.policy().fused_by_default(),
            "a new model starts with the default"
        );
        let per = config.in_channels * config.input_size[0] * config.input_size[1];
        let input = uniform(&mut rng, 3 * per, -2.0, 2.0);
        gm.set_fused(true);
        // Every block's ASL feeds only its 1x1 convolution: all of them fuse.
        assert_eq!(gm.fused_asls(), config.blocks().len(), "{}", config.name);
        let fused = pollster::block_on(gm.forward(&input)).unwrap();
        gm.set_fused(false);
        assert_eq!(gm.fused_asls(), 0);
        let unfused = pollster::block_on(gm.forward(&input)).unwrap();
        // The CPU engine on the lowered plan the GPU engine ran last.
        let cpu = model.forward_cpu_lowered(&input, gm.lowering()).unwrap();
        let err = rel_err(&fused.logits, &unfused.logits);
        assert!(
            err <= 1e-4,
            "{}: fused vs unfused logits {err} (seed {seed})",
            config.name
        );
        let err = rel_err(&fused.logits, &cpu.logits);
        assert!(
            err <= 1e-3,
            "{}: fused vs cpu logits {err} (seed {seed})",
            config.name
        );
    }
}

/// `op_dispatches` lists the network op by op: recorded in order they compute what `forward`
/// computed (from the input `forward` left in the model's input buffer), fused pairs appear
/// once, and every op is labelled.
#[test]
fn op_dispatches_replay_the_forward_pass() {
    let test = "op_dispatches_replay_the_forward_pass";
    let Some(ctx) = gpu(test) else {
        return;
    };
    let (mut rng, seed) = rng(test);
    let config = ArchConfig::builtin("asnet20-16x1").unwrap();
    let model = random_model(&config, &mut rng);
    let mut gm = GpuModel::new(ctx, &model).unwrap();
    let per = config.in_channels * config.input_size[0] * config.input_size[1];
    let input = uniform(&mut rng, 2 * per, -2.0, 2.0);
    for fused in [false, true] {
        gm.set_fused(fused);
        let want = pollster::block_on(gm.forward(&input)).unwrap();
        let ops = gm.op_dispatches(2).unwrap();
        // The GPU engine runs the plan lowered as its context's policy says (fusion as set
        // here), and lists exactly the lowered ops.
        let lowered = gm.lowered_plan(2);
        let policy = Lowering {
            fuse_asl: fused,
            ..activeshift::model::Lowering::for_policy(ctx.policy())
        };
        assert_eq!(lowered, Plan::new(&config, 2).lower(policy));
        assert_eq!(gm.lowering(), policy);
        assert_eq!(
            ops.iter().map(|o| o.kind).collect::<Vec<_>>(),
            lowered.ops.iter().map(|o| o.kind()).collect::<Vec<_>>()
        );
        let count = |kind: &str| ops.iter().filter(|o| o.kind == kind).count();
        let blocks = config.blocks().len();
        assert_eq!(count("asl"), if fused { 0 } else { blocks });
        assert_eq!(
            count("asl + conv1x1 (fused)"),
            if fused { blocks } else { 0 }
        );
        assert_eq!(count("stem conv3x3"), 1);
        // Every block's pre-activation is folded into the 1x1 convolutions reading it (the
        // expansion, and the projection shortcut where there is one); only the head's
        // affine, read by the pooling, runs on its own.
        assert_eq!(count("affine"), 1);
        let projections = config.blocks().iter().filter(|b| b.projection).count();
        assert_eq!(count("affine + conv1x1"), blocks + projections);
        assert!(ops.iter().all(|o| !o.label.is_empty()));
        // Poison the outputs, then replay.
        let logits = gm.logits().unwrap();
        ctx.submit(|enc| {
            enc.clear_buffer(logits.buffer(), 0, None);
            for o in &ops {
                o.dispatch.record(enc);
            }
            Ok(())
        })
        .unwrap();
        let got = read(ctx, gm.logits().unwrap());
        let err = rel_err(&got, &want.logits);
        assert!(
            err <= 1e-6,
            "fused {fused}: replayed logits differ by {err} (seed {seed})"
        );
    }
    assert!(gm.op_dispatches(0).is_err());
}
