//! The kernels a hardware GPU runs (workgroup-tiled GEMM, direct 3x3 stem, vec4 ASL, the ASL
//! fused into the tiled GEMM by default) on whatever adapter the tests have (lavapipe in CI),
//! selected with `GpuContext::with_kernel_family`: whole networks, fused and unfused, against
//! the CPU engine. Without a hardware GPU in CI this is the only end-to-end run of that set.

use crate::common;

use activeshift::gpu::kernels::KernelChoice;
use activeshift::gpu::{KernelFamily, KernelPolicy};
use activeshift::model::{ArchConfig, BlockKind, GpuModel, Model};
use common::*;

const TEST: &str = "hardware_gpu_kernels_run_whole_networks";

/// Every fused setting of `model` on the GPU against the CPU engine, for `n` random images.
fn check(ctx: &activeshift::GpuContext, model: &Model, n: usize, rng: &mut rand::rngs::StdRng) {
    let config = &model.config;
    let per = config.in_channels * config.input_size[0] * config.input_size[1];
    let input = uniform(rng, n * per, -2.0, 2.0);
    let cpu = model.forward_cpu(&input).unwrap();
    let mut gm = GpuModel::new(ctx, model).unwrap();
    assert_eq!(gm.fused(), ctx.policy().fused_by_default());
    for fused in [true, false] {
        gm.set_fused(fused);
        let want_fused = if fused && config.block == BlockKind::Asl {
            config.blocks().len()
        } else {
            0
        };
        assert_eq!(gm.fused_asls(), want_fused, "{}", config.name);
        let gpu = pollster::block_on(gm.forward(&input)).unwrap();
        let err = rel_err(&gpu.logits, &cpu.logits);
        assert!(
            err <= 1e-3,
            "{} (fused: {fused}): logits relative error {err}",
            config.name
        );
    }
}

#[test]
fn hardware_gpu_kernels_run_whole_networks() {
    let Some(shared) = gpu(TEST) else {
        return;
    };
    let ctx = &shared.clone().with_kernel_family(Some(KernelFamily::Gpu));
    assert_eq!(ctx.kernel_family(), KernelFamily::Gpu);
    let k = KernelChoice::of(ctx);
    assert!(!k.register_tiled, "{k}");
    if *ctx.policy_overrides() == KernelPolicy::builder().family(Some(KernelFamily::Gpu)) {
        assert!(k.fused, "hardware GPUs fuse by default: {k}");
        assert!(k.to_string().starts_with("workgroup-tiled GEMM"), "{k}");
    }
    let (mut rng, seed) = rng(TEST);
    eprintln!("{TEST}: kernels {k} (seed {seed})");
    for config in [
        ArchConfig::builtin("asnet20-16x1").unwrap(),
        ArchConfig::asnet20(16, 3, 1, 28, 10),
    ] {
        let model = random_model(&config, &mut rng);
        check(ctx, &model, 3, &mut rng);
    }
    let mut depthwise = ArchConfig::asnet20(8, 2, 1, 28, 10);
    depthwise.block = BlockKind::Depthwise;
    let model = random_model(&depthwise, &mut rng);
    check(ctx, &model, 2, &mut rng);
    // The authors' w32: 224² input, stride-2 shifts, 7x7 layers of 256 channels.
    if let Some(w32) = w32(TEST) {
        check(ctx, w32, 1, &mut rng);
    }
}
