//! Training: whole-network gradient check against finite differences, the optimiser, export
//! and checkpoints.

use activeshift::model::{ArchConfig, BlockKind, StageConfig};
use activeshift::train::{CpuBackend, NormMode, Session, ShiftMode, TrainSettings, Trainer};
use std::collections::BTreeMap;

/// A tiny network: 1x9x9 input, 3 classes, one stride-1 block of width 4 (expansion 2) and one
/// stride-2 projection block of width 6.
fn tiny() -> ArchConfig {
    let mut c = ArchConfig::asnet20(4, 2, 1, 9, 3);
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

/// `t` after `steps` SGD steps on one batch at learning rate `lr`, run the way training runs
/// them (a [`Session`] on the CPU backend).
fn stepped(t: Trainer, input: &[f32], labels: &[u32], lr: f32, steps: usize) -> Trainer {
    let mut s = Session::new(t, CpuBackend).unwrap();
    for _ in 0..steps {
        s.step_batch(input, labels, lr).unwrap();
    }
    s.into_trainer().unwrap()
}

fn trainer(seed: u64) -> Trainer {
    trainer_with_beta(seed, 0.0)
}

/// With a large BatchNorm beta no ReLU clips, so the loss is smooth everywhere and finite
/// differences match to high accuracy; with beta near 0 some ReLUs sit near their kink.
fn trainer_with_beta(seed: u64, beta: f32) -> Trainer {
    trainer_of(tiny(), seed, beta)
}

fn trainer_of(config: ArchConfig, seed: u64, beta: f32) -> Trainer {
    trainer_in_mode(config, seed, beta, ShiftMode::Learned)
}

/// A trainer whose shifts are set by `mode`; learned ones are moved away from integers.
fn trainer_in_mode(config: ArchConfig, seed: u64, beta: f32, mode: ShiftMode) -> Trainer {
    let settings = TrainSettings {
        seed,
        augment: false,
        shift: mode,
        ..TrainSettings::default()
    };
    let mut t = Trainer::new(config, vec![], settings).unwrap();
    // Shifts away from integers (fractional parts in [0.2, 0.8]), some beyond one pixel.
    for (name, v) in t.params.iter_mut() {
        if name.ends_with(".shift") && mode == ShiftMode::Learned {
            for (i, s) in v.iter_mut().enumerate() {
                *s = ((i * 37 % 11) as f32 - 5.0) * 0.45 + 0.2 + 0.6 * ((i * 13 % 7) as f32 / 7.0);
                if (*s - s.round()).abs() < 0.2 {
                    *s += 0.3;
                }
            }
        }
        // A confident classifier: larger gradients, far above the finite differences' f32 noise.
        if name == "fc.weight" {
            v.iter_mut().for_each(|w| *w *= 20.0);
        }
        // Non-trivial BatchNorm parameters.
        if name.ends_with(".scale") {
            v.iter_mut()
                .enumerate()
                .for_each(|(i, s)| *s = 0.8 + 0.1 * (i % 5) as f32);
        }
        if name.ends_with(".bias") && !name.starts_with("fc") {
            v.iter_mut()
                .enumerate()
                .for_each(|(i, s)| *s = beta + 0.05 * (i % 3) as f32);
        }
    }
    t
}

fn batch() -> (Vec<f32>, Vec<u32>) {
    let n = 5;
    let input = (0..n * 81)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let labels = (0..n).map(|i| (i % 3) as u32).collect();
    (input, labels)
}

/// For every tensor, the directional derivative of the loss along the (normalized) analytic
/// gradient, by central differences, against the gradient's norm (what it must equal); and
/// the same along a fixed pseudo-random direction. Returns (relative error, size, description),
/// worst first.
fn gradient_errors(mut t: Trainer, h: f32) -> Vec<(f64, f64, String)> {
    let (input, labels) = batch();
    let (_, grads) = t.forward_backward(&input, &labels).unwrap();
    assert!(grads.len() >= 20, "{:?}", grads.keys());
    let mut errors = Vec::new();
    for (name, g) in &grads {
        let norm = g.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
        let random: Vec<f32> = (0..g.len())
            .map(|i| ((i * 7919 + 13) % 17) as f32 - 8.0)
            .collect();
        let rnorm = random
            .iter()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            .sqrt();
        for (kind, dir, want) in [
            (
                "gradient",
                g.iter()
                    .map(|v| (f64::from(*v) / norm.max(1e-30)) as f32)
                    .collect::<Vec<_>>(),
                norm,
            ),
            (
                "random",
                random
                    .iter()
                    .map(|v| (f64::from(*v) / rnorm) as f32)
                    .collect(),
                g.iter()
                    .zip(&random)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum::<f64>()
                    / rnorm,
            ),
        ] {
            let orig = t.params[name].clone();
            let mut loss_at = |sign: f32| {
                let p = t.params.get_mut(name).unwrap();
                for ((w, o), d) in p.iter_mut().zip(&orig).zip(&dir) {
                    *w = o + sign * h * d;
                }
                t.forward_backward(&input, &labels).unwrap().0.loss()
            };
            let fd = (loss_at(1.0) - loss_at(-1.0)) / (2.0 * f64::from(h));
            *t.params.get_mut(name).unwrap() = orig;
            let size = fd.abs().max(want.abs());
            let err = (fd - want).abs() / size.max(1e-30);
            errors.push((
                err,
                size,
                format!("{name} along {kind}: analytic {want:.6}, finite difference {fd:.6}"),
            ));
        }
    }
    errors.sort_by(|a, b| b.0.total_cmp(&a.0));
    errors
}

/// At least 30 directions checked, every one within 5% of its finite difference.
fn assert_all_within_5_percent(errors: &[(f64, String)]) {
    assert!(
        errors.len() >= 30,
        "only {} directions checked",
        errors.len()
    );
    assert!(
        errors[0].0 < 0.05,
        "worst mismatch {:.4}: {}",
        errors[0].0,
        errors[0].1
    );
}

/// Directional derivatives large enough to stand far above the f32 noise of the finite
/// differences (about 1e-6 in the loss).
fn significant(errors: Vec<(f64, f64, String)>, min: f64) -> Vec<(f64, String)> {
    errors
        .into_iter()
        .filter(|e| e.1 >= min)
        .map(|e| (e.0, e.2))
        .collect()
}

#[test]
fn whole_network_gradient_matches_finite_differences() {
    // Smooth network (BatchNorm beta 3: no ReLU clips): every significant direction within 5%
    // (most agree to well under 1%; the step of 1e-2 leaves some curvature).
    let errors = significant(gradient_errors(trainer_with_beta(3, 3.0), 1e-2), 5e-3);
    if std::env::var("GRAD_REPORT").is_ok() {
        eprintln!("{} checked: {:?}", errors.len(), &errors[..6]);
    }
    assert_all_within_5_percent(&errors);
    // With ReLUs active, some directions cross a kink within the step; nine in ten still agree
    // within 3% here (four in five required), and all within 25%.
    let errors = significant(gradient_errors(trainer(3), 2e-3), 5e-3);
    assert!(
        errors.len() >= 30,
        "only {} directions checked",
        errors.len()
    );
    let within = errors.iter().filter(|e| e.0 < 0.03).count();
    assert!(
        within * 5 >= errors.len() * 4,
        "{within} of {} within 3%: {:?}",
        errors.len(),
        &errors[..5]
    );
    assert!(
        errors[0].0 < 0.25,
        "worst mismatch {:.4}: {}",
        errors[0].0,
        errors[0].1
    );
}

#[test]
fn gradient_matches_finite_differences_in_every_shift_mode() {
    // The frozen modes train everything but the shifts through the same plan. Their integer
    // shifts (grouped, sampled integer) sit where the shift gradient is one-sided, so the
    // shift directions are checked only for the real-valued sampled shifts.
    for mode in [
        ShiftMode::Grouped,
        ShiftMode::SampledInt,
        ShiftMode::SampledReal,
    ] {
        let t = trainer_in_mode(tiny(), 6, 3.0, mode);
        let has_integer_shifts = mode != ShiftMode::SampledReal;
        // Directions of at least 1e-2, as for the depthwise network.
        let errors: Vec<(f64, String)> = significant(gradient_errors(t, 1e-2), 1e-2)
            .into_iter()
            .filter(|e| !(has_integer_shifts && e.1.contains(".shift along")))
            .collect();
        assert!(
            errors.len() >= 20,
            "{mode:?}: only {} directions checked",
            errors.len()
        );
        if mode == ShiftMode::SampledReal {
            assert!(errors.iter().any(|e| e.1.contains(".shift along")));
        }
        assert!(
            errors[0].0 < 0.05,
            "{mode:?}: worst mismatch {:.4}: {}",
            errors[0].0,
            errors[0].1
        );
    }
}

#[test]
fn loss_falls_on_a_fixed_batch_and_export_matches() {
    let (input, labels) = batch();
    let mut t = trainer(5);
    let (first, _) = t.forward_backward(&input, &labels).unwrap();
    let mut t = stepped(t, &input, &labels, 0.05, 30);
    let (last, _) = t.forward_backward(&input, &labels).unwrap();
    assert!(
        last.loss() < 0.5 * first.loss(),
        "loss {} -> {}",
        first.loss(),
        last.loss()
    );
    // The trainer's eval-mode logits (the plan with BatchNorm folded, run by the fast CPU engine)
    // are those of the plain CPU twins running the exported model.
    let model = t.export().unwrap();
    let want = model.forward_cpu_reference(&input).unwrap().logits;
    let got = t.forward_eval(&input).unwrap();
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-4 * scale.max(1.0), "{a} vs {b}");
    }
}

#[test]
fn frozen_shift_modes_do_not_move_and_grouped_is_shiftnet() {
    let (input, labels) = batch();
    for mode in [
        ShiftMode::Grouped,
        ShiftMode::SampledInt,
        ShiftMode::SampledReal,
    ] {
        let settings = TrainSettings {
            shift: mode,
            augment: false,
            ..TrainSettings::default()
        };
        let t = Trainer::new(tiny(), vec![], settings).unwrap();
        let before: BTreeMap<_, _> = t
            .params
            .iter()
            .filter(|(k, _)| k.ends_with(".shift"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let t = stepped(t, &input, &labels, 0.1, 1);
        for (k, v) in &before {
            assert_eq!(&t.params[k], v, "{mode:?}: {k} moved");
        }
        if mode == ShiftMode::SampledInt {
            assert!(before.values().flatten().all(|s| s.fract() == 0.0));
        }
        if mode == ShiftMode::Grouped {
            // 8 inner channels: the first 0 groups of 9 are shifted, the rest stay at 0; with
            // the 12-channel block the first 9 are the 3x3 neighbourhood.
            let s = &before["blocks.1.shift"];
            let c = s.len() / 2;
            assert_eq!(c, 12);
            let xs: Vec<f32> = s[..9].to_vec();
            let ys: Vec<f32> = s[c..c + 9].to_vec();
            assert_eq!(xs, [-1.0, 0.0, 1.0, -1.0, 0.0, 1.0, -1.0, 0.0, 1.0]);
            assert_eq!(ys, [-1.0, -1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
            assert!(s[9..c].iter().chain(&s[c + 9..]).all(|v| *v == 0.0));
        }
    }
}

#[test]
fn learned_normal_starts_where_sampled_real_starts_and_learns() {
    let (input, labels) = batch();
    let of = |shift: ShiftMode| {
        let settings = TrainSettings {
            shift,
            augment: false,
            seed: 3,
            ..TrainSettings::default()
        };
        Trainer::new(tiny(), vec![], settings).unwrap()
    };
    let (normal, frozen) = (of(ShiftMode::LearnedNormal), of(ShiftMode::SampledReal));
    assert_eq!(normal.params, frozen.params, "the same start");
    assert!(ShiftMode::LearnedNormal.learns() && !ShiftMode::SampledReal.learns());
    let (normal, frozen) = (
        stepped(normal, &input, &labels, 0.5, 1),
        stepped(frozen, &input, &labels, 0.5, 1),
    );
    for (name, start) in &of(ShiftMode::SampledReal).params {
        if name.ends_with(".shift") {
            assert_eq!(&frozen.params[name], start, "{name}: frozen");
            assert_ne!(&normal.params[name], start, "{name}: learned");
        }
    }
}

#[test]
fn learned_shifts_move_by_the_normalized_step() {
    let (input, labels) = batch();
    let mut t = trainer(9);
    t.settings.momentum = 0.0;
    let before = t.params["blocks.0.shift"].clone();
    let t = stepped(t, &input, &labels, 0.5, 1);
    let after = &t.params["blocks.0.shift"];
    let c = before.len() / 2;
    for ch in 0..c {
        let (dx, dy) = (after[ch] - before[ch], after[c + ch] - before[c + ch]);
        let step = (dx * dx + dy * dy).sqrt();
        // lr 0.5 x multiplier 0.01 x a unit-norm gradient
        assert!(
            (step - 0.005).abs() < 1e-5 || step == 0.0,
            "channel {ch}: step {step}"
        );
    }
}

#[test]
fn checkpoints_round_trip_and_resume_identically() {
    let (input, labels) = batch();
    let mut a = stepped(trainer(11), &input, &labels, 0.1, 1);
    a.epoch = 2;
    a.step_in_epoch = 7;
    let dir = std::env::temp_dir().join(format!("activeshift-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.ckpt");
    a.save_checkpoint(&path).unwrap();
    let b = Trainer::load_checkpoint(&path).unwrap();
    assert_eq!(a, b);
    // the same next step from both
    let a = stepped(a, &input, &labels, 0.1, 1);
    let b = stepped(b, &input, &labels, 0.1, 1);
    assert_eq!(a.params, b.params);
    assert_eq!(a.velocity, b.velocity);
    // a truncated checkpoint is an error, not a panic
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(Trainer::load_checkpoint(&path).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn depthwise_block_gradient_matches_finite_differences_and_exports() {
    let mut config = tiny();
    config.block = BlockKind::Depthwise;
    let names: Vec<String> = config.param_shapes().into_iter().map(|p| p.0).collect();
    assert!(names.contains(&"blocks.1.depthwise.weight".to_string()));
    assert!(!names.iter().any(|n| n.ends_with(".shift")));
    let t = trainer_of(config.clone(), 4, 3.0);
    // Directions of at least 1e-2 (the loss's f32 noise over the step of 1e-2 is about 5e-4).
    let errors = significant(gradient_errors(t, 1e-2), 1e-2);
    assert!(
        errors.iter().any(|e| e.1.contains("depthwise.weight")),
        "{errors:?}"
    );
    assert_all_within_5_percent(&errors);
    // A few steps, then the trainer's eval-mode logits match the CPU twins running the exported
    // model (its plan runs the depthwise op).
    let (input, labels) = batch();
    let t = stepped(trainer_of(config, 4, 0.0), &input, &labels, 0.05, 5);
    let model = t.export().unwrap();
    let want = model.forward_cpu_reference(&input).unwrap().logits;
    let got = t.forward_eval(&input).unwrap();
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-4 * scale.max(1.0), "{a} vs {b}");
    }
}

/// A "trained" model of the tiny network: a few steps of a fresh run with BatchNorm beta 3
/// (no ReLU clips, so finite differences stay smooth), exported (BatchNorm folded).
fn trained_model(seed: u64) -> activeshift::Model {
    let (input, labels) = batch();
    stepped(trainer_with_beta(seed, 3.0), &input, &labels, 0.02, 3)
        .export()
        .unwrap()
}

#[test]
fn fine_tuning_a_whole_model_starts_from_it_and_exports_back_bit_for_bit() {
    let model = trained_model(11);
    let t = Trainer::from_model(&model, model.labels.clone(), TrainSettings::default()).unwrap();
    assert_eq!(t.settings.norm, NormMode::Frozen);
    // Unfolded and folded back: every tensor exactly as it was.
    let back = t.export().unwrap();
    for (name, want) in &model.params {
        assert_eq!(&back.params[name], want, "{name}");
    }
    // Training mode with frozen statistics computes the model's own function: the training
    // pass's loss is the exported model's.
    let (input, labels) = batch();
    let mut t2 = t.clone();
    let (stats, _) = t2.forward_backward(&input, &labels).unwrap();
    let logits = model.forward_cpu(&input).unwrap().logits;
    let k = model.config.classes;
    let mut loss = 0.0f64;
    for (i, &l) in labels.iter().enumerate() {
        let row = &logits[i * k..][..k];
        let m = row.iter().fold(f32::MIN, |a, &b| a.max(b));
        let z: f64 = row.iter().map(|&v| f64::from(v - m).exp()).sum();
        loss += z.ln() - f64::from(row[l as usize] - m);
    }
    let loss = loss / labels.len() as f64;
    assert!(
        (stats.loss() - loss).abs() < 1e-4,
        "{} vs {loss}",
        stats.loss()
    );
    // New classes: a new classifier, the rest kept.
    let labels4: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
    let t4 = Trainer::from_model(&model, labels4.clone(), TrainSettings::default()).unwrap();
    assert_eq!(t4.config.classes, 4);
    assert_eq!(
        t4.params["fc.weight"].len(),
        4 * model.params["fc.weight"].dims[1]
    );
    assert_eq!(t4.params["stem.weight"], model.params["stem.weight"].data);
    assert_eq!(t4.export().unwrap().labels, labels4);
}

#[test]
fn frozen_statistics_gradient_matches_finite_differences_and_stays_frozen() {
    let model = trained_model(12);
    let t = Trainer::from_model(&model, model.labels.clone(), TrainSettings::default()).unwrap();
    let errors = significant(gradient_errors(t.clone(), 1e-2), 5e-3);
    assert_all_within_5_percent(&errors);
    // Training moves the weights and the affine layers' scale and bias, never the statistics,
    // and the loss falls.
    let (input, labels) = batch();
    let mut first = t.clone();
    let (before, _) = first.forward_backward(&input, &labels).unwrap();
    let mut after = stepped(t.clone(), &input, &labels, 0.005, 20);
    let (now, _) = after.forward_backward(&input, &labels).unwrap();
    assert!(
        now.loss() < 0.7 * before.loss(),
        "{} -> {}",
        before.loss(),
        now.loss()
    );
    for (name, v) in &t.params {
        if name.ends_with("running_mean") || name.ends_with("running_var") {
            assert_eq!(&after.params[name], v, "{name} moved");
        }
    }
    assert_ne!(after.params["stem.weight"], t.params["stem.weight"]);
}

#[test]
fn frozen_blocks_keep_the_stem_and_the_first_blocks() {
    let model = trained_model(13);
    let settings = TrainSettings {
        frozen_blocks: 1,
        ..TrainSettings::default()
    };
    let t = Trainer::from_model(&model, model.labels.clone(), settings).unwrap();
    let (input, labels) = batch();
    let after = stepped(t.clone(), &input, &labels, 0.005, 5);
    for (name, v) in &t.params {
        let frozen = name.starts_with("stem.") || name.starts_with("blocks.0.");
        let moved = &after.params[name] != v;
        let learnable = !name.contains("running_");
        assert_eq!(moved, learnable && !frozen, "{name}: moved {moved}");
    }
    // More frozen blocks than the network has: refused.
    let too_many = TrainSettings {
        frozen_blocks: 3,
        ..TrainSettings::default()
    };
    assert!(Trainer::from_model(&model, model.labels.clone(), too_many).is_err());
}
