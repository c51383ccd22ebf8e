//! The lowering pass (`Plan::lower`): which ops of a plan fuse (an ASL into the 1x1
//! convolution after it) and fold (a pre-activation affine + ReLU into the 1x1 convolutions
//! reading it) for ASNet-20, the depthwise baseline and the authors' w32 ImageNet network,
//! which ones are left alone (an ASL or affine whose output something else also reads, an ASL
//! too wide for the fused kernels, the head's affine read by the pooling), that every lowered
//! plan is well formed, and that the CPU engine computes the same values from every lowering.

use crate::common;

use activeshift::model::{ArchConfig, BlockKind, LoweredPlan, Lowering, Model, Op, Plan, Prologue};
use common::*;

fn count(l: &LoweredPlan, kind: &str) -> usize {
    l.ops.iter().filter(|o| o.kind() == kind).count()
}

/// Every lowered op reads only slots written before it (or the input), never a slot its
/// lowering skipped; every slot the plan writes is written once at most; logits and
/// probabilities are written.
fn assert_well_formed(l: &LoweredPlan, what: &str) {
    let plan = &l.plan;
    let mut written = vec![false; plan.slots.len()];
    written[plan.input] = true;
    for (i, lo) in l.ops.iter().enumerate() {
        for s in lo.reads() {
            assert!(
                written[s],
                "{what}: lowered op {i} ({}) reads slot {s} unwritten",
                lo.kind()
            );
            assert!(l.writes(s), "{what}: op {i} reads skipped slot {s}");
        }
        if let Some(p) = &lo.prologue {
            assert!(
                !l.writes(p.out()),
                "{what}: prologue output {} is written",
                p.out()
            );
            match (&lo.op, p) {
                (Op::Conv1x1 { input, .. }, Prologue::AffineRelu { out, .. }) => {
                    assert_eq!(input, out)
                }
                (Op::Conv1x1 { input, stride, .. }, Prologue::Shift { out, .. }) => {
                    assert_eq!((input, *stride), (out, 1))
                }
                _ => panic!("{what}: prologue on {}", lo.kind()),
            }
        }
        let out = lo.op.output();
        assert!(!written[out], "{what}: slot {out} written twice");
        written[out] = true;
    }
    assert!(written[plan.logits] && written[plan.probs], "{what}");
}

#[test]
fn every_block_fuses_and_folds_in_asnet20_and_the_w32_imagenet_network() {
    for name in ["asnet20-16x1", "asnet20-16x3", "as-resnet-w32"] {
        let config = ArchConfig::builtin(name).unwrap();
        let blocks = config.blocks().len();
        let projections = config.blocks().iter().filter(|b| b.projection).count();
        assert!(
            projections > 0,
            "{name}: the test wants projection shortcuts"
        );
        let plan = Plan::new(&config, 2);

        let all = plan.clone().lower(Lowering::ALL);
        assert_well_formed(&all, name);
        assert_eq!(all.fused_asls(), blocks, "{name}");
        assert_eq!(all.folded_affines(), blocks, "{name}");
        assert_eq!(all.ops.len(), plan.ops.len() - 2 * blocks, "{name}");
        assert_eq!(count(&all, "asl + conv1x1 (fused)"), blocks, "{name}");
        assert_eq!(count(&all, "asl"), 0, "{name}");
        // The expansion and, where there is one, the projection shortcut read each block's
        // pre-activation; the head's affine feeds the pooling and stays on its own.
        assert_eq!(
            count(&all, "affine + conv1x1"),
            blocks + projections,
            "{name}"
        );
        assert_eq!(count(&all, "affine"), 1, "{name}");
        assert_eq!(count(&all, "conv1x1"), 1, "{name}: the classifier");
        assert_eq!(count(&all, "stem conv3x3"), 1, "{name}");
        // The lowered plan keeps the plan's order: the remaining ops are a subsequence.
        let mut rest = plan.ops.iter();
        assert!(all.ops.iter().all(|o| rest.any(|p| *p == o.op)), "{name}");

        let none = plan.clone().lower(Lowering::NONE);
        assert_well_formed(&none, name);
        assert!(none.ops.iter().all(|o| o.prologue.is_none()), "{name}");
        assert_eq!(
            none.ops.iter().map(|o| o.op.clone()).collect::<Vec<_>>(),
            plan.ops,
            "{name}"
        );

        // Each rewrite on its own.
        let fuse_only = Lowering {
            fold_affine_relu: false,
            ..Lowering::ALL
        };
        let l = plan.clone().lower(fuse_only);
        assert_well_formed(&l, name);
        assert_eq!((l.fused_asls(), l.folded_affines()), (blocks, 0), "{name}");
        assert_eq!(count(&l, "affine"), blocks + 1, "{name}");
        let fold_only = Lowering {
            fuse_asl: false,
            ..Lowering::ALL
        };
        let l = plan.clone().lower(fold_only);
        assert_well_formed(&l, name);
        assert_eq!((l.fused_asls(), l.folded_affines()), (0, blocks), "{name}");
        assert_eq!(count(&l, "asl"), blocks, "{name}");
    }
}

#[test]
fn wide_asls_past_the_fused_kernels_limit_stay_on_their_own() {
    let config = ArchConfig::builtin("as-resnet-w32").unwrap();
    let plan = Plan::new(&config, 1);
    let limit = 200;
    let narrow = config.blocks().iter().filter(|b| b.inner <= limit).count();
    assert!(narrow > 0 && narrow < config.blocks().len());
    let l = plan.lower(Lowering {
        max_fused_channels: limit,
        ..Lowering::ALL
    });
    assert_well_formed(&l, "w32 limited");
    assert_eq!(l.fused_asls(), narrow);
    assert_eq!(count(&l, "asl"), config.blocks().len() - narrow);
    for lo in &l.ops {
        if let Some(Prologue::Shift { input, .. }) = &lo.prologue {
            assert!(l.plan.slots[*input].c <= limit);
        }
    }
}

#[test]
fn an_asl_or_affine_read_twice_is_left_alone() {
    let config = ArchConfig::builtin("asnet20-16x1").unwrap();
    let mut plan = Plan::new(&config, 1);
    // A second reader of the first block's shifted tensor and of its pre-activation: pooling
    // them into slots nothing else reads.
    let shifted = plan
        .ops
        .iter()
        .find_map(|op| match op {
            Op::Shift { out, .. } => Some(*out),
            _ => None,
        })
        .unwrap();
    let pre = plan
        .ops
        .iter()
        .find_map(|op| match op {
            Op::Affine { out, .. } => Some(*out),
            _ => None,
        })
        .unwrap();
    let softmax = plan.ops.pop().unwrap();
    for s in [shifted, pre] {
        let shape = plan.slots[s];
        plan.slots
            .push(activeshift::Shape4::new(shape.n, shape.c, 1, 1));
        let out = plan.slots.len() - 1;
        plan.ops.push(Op::AvgPool { input: s, out });
    }
    plan.ops.push(softmax);

    let blocks = config.blocks().len();
    let l = plan.lower(Lowering::ALL);
    assert_well_formed(&l, "read twice");
    assert_eq!(l.fused_asls(), blocks - 1);
    assert_eq!(l.folded_affines(), blocks - 1);
    let shift_op = l.ops.iter().find(|o| o.kind() == "asl").unwrap();
    assert_eq!(shift_op.op.output(), shifted);
    // The affine runs on its own and both its readers read its output.
    assert!(l.writes(pre) && l.writes(shifted));
    assert!(
        l.ops
            .iter()
            .any(|o| matches!(o.op, Op::Affine { out, .. } if out == pre))
    );
}

#[test]
fn the_depthwise_baseline_folds_but_has_nothing_to_fuse() {
    let mut config = ArchConfig::asnet20(8, 2, 1, 28, 10);
    config.block = BlockKind::Depthwise;
    let blocks = config.blocks().len();
    let l = Plan::new(&config, 3).lower(Lowering::ALL);
    assert_well_formed(&l, "depthwise");
    assert_eq!((l.fused_asls(), l.folded_affines()), (0, blocks));
    assert_eq!(count(&l, "depthwise3x3"), blocks);
}

/// The CPU engine runs a lowered op by its parts, so every lowering gives the same values,
/// bit for bit, and the fast kernels stay within rounding of the plain twins on the plan as
/// written.
#[test]
fn the_cpu_engine_gives_the_same_values_under_every_lowering() {
    let (mut rng, seed) = rng("lowering cpu");
    let mut dw = ArchConfig::asnet20(8, 2, 1, 28, 10);
    dw.block = BlockKind::Depthwise;
    for config in [ArchConfig::builtin("asnet20-16x1").unwrap(), dw] {
        let model: Model = random_model(&config, &mut rng);
        let per = config.in_channels * config.input_size[0] * config.input_size[1];
        let input = uniform(&mut rng, 2 * per, -2.0, 2.0);
        let all = model.forward_cpu_lowered(&input, Lowering::ALL).unwrap();
        for lowering in [
            Lowering::NONE,
            Lowering {
                fuse_asl: false,
                ..Lowering::ALL
            },
            Lowering {
                fold_affine_relu: false,
                ..Lowering::ALL
            },
        ] {
            let other = model.forward_cpu_lowered(&input, lowering).unwrap();
            assert_eq!(other, all, "{} {lowering:?} (seed {seed})", config.name);
        }
        assert_eq!(model.forward_cpu(&input).unwrap(), all);
        let reference = model.forward_cpu_reference(&input).unwrap();
        let err = rel_err(&all.logits, &reference.logits);
        assert!(err <= 1e-4, "{}: {err} (seed {seed})", config.name);
    }
}

/// The slots a fully lowered plan never writes are each block's shifted tensor and
/// pre-activation: the GPU engine allocates no buffer for them.
#[test]
fn lowering_leaves_each_blocks_shifted_tensor_and_pre_activation_unwritten() {
    for name in ["asnet20-16x1", "as-resnet-w32"] {
        let config = ArchConfig::builtin(name).unwrap();
        let plan = Plan::new(&config, 1);
        let bytes = |l: &LoweredPlan| -> usize {
            (0..l.plan.slots.len())
                .filter(|&s| l.writes(s))
                .map(|s| 4 * l.plan.slots[s].len())
                .sum()
        };
        let all = plan.clone().lower(Lowering::ALL);
        let none = plan.clone().lower(Lowering::NONE);
        let skipped = (0..plan.slots.len()).filter(|&s| !all.writes(s)).count();
        assert_eq!(skipped, 2 * config.blocks().len(), "{name}");
        assert!((0..plan.slots.len()).all(|s| none.writes(s)), "{name}");
        let (a, n) = (bytes(&all), bytes(&none));
        assert!(a < n, "{name}");
        println!(
            "{name}: activations of one image {:.2} MiB as written, {:.2} MiB lowered",
            n as f64 / (1 << 20) as f64,
            a as f64 / (1 << 20) as f64
        );
    }
}
