//! The authors' AS-ResNet-w32 ImageNet weights (from `ACTIVESHIFT_SHARED_DATA`, or the copy
//! `--model as-resnet-w32` keeps in the cache) classify the test photo as the independent
//! reference does. Reported as not run without the authors' data.

use crate::common;

use common::{shared_data, w32};

use activeshift::model::Model;
use activeshift::preprocess::{decode_image, preprocess};

/// w32 and the preprocessed test photo, or `None` (reported) without the authors' data.
fn w32_and_cat(test: &str) -> Option<(&'static Model, Vec<f32>)> {
    let shared = shared_data(test)?;
    let model = w32(test)?;
    let bytes = std::fs::read(shared.cat()).expect("cat.jpg");
    let input = preprocess(&decode_image(&bytes).unwrap(), &model.config.preprocess).unwrap();
    Some((model, input))
}

/// Top-5 classes and probabilities of the reference run (docs/design.md §4).
const TOP5: [(usize, f32); 5] = [
    (285, 0.251),
    (281, 0.197),
    (282, 0.095),
    (284, 0.081),
    (151, 0.060),
];

fn check_top5(backend: &str, top: &[(usize, f32)]) {
    let classes: Vec<usize> = top.iter().map(|t| t.0).collect();
    assert_eq!(classes, TOP5.map(|t| t.0), "{backend}: top-5 {top:?}");
    for ((c, p), (_, want)) in top.iter().zip(TOP5) {
        assert!(
            (p - want).abs() <= 0.02,
            "{backend}: class {c}: p = {p}, reference {want}"
        );
    }
}

#[test]
fn cat_on_cpu() {
    let Some((model, input)) = w32_and_cat("imagenet::cat_on_cpu") else {
        return;
    };
    assert_eq!(model.config.name, "as-resnet-w32");
    assert_eq!(model.labels[285], "Egyptian cat");
    let out = model.forward_cpu(&input).unwrap();
    let top = out.top_k(0, 5);
    eprintln!("cpu top-5: {top:?}");
    check_top5("cpu", &top);
}

#[test]
fn cat_on_gpu() {
    let Some(ctx) = common::gpu("cat_on_gpu") else {
        return;
    };
    let Some((model, input)) = w32_and_cat("imagenet::cat_on_gpu") else {
        return;
    };
    let mut gm = activeshift::model::GpuModel::new(ctx, model).unwrap();
    let out = pollster::block_on(gm.forward(&input)).unwrap();
    let top = out.top_k(0, 5);
    eprintln!("gpu top-5: {top:?}");
    check_top5("gpu", &top);
}

#[test]
fn gpu_and_cpu_logits_agree_for_w32() {
    let Some(ctx) = common::gpu("gpu_and_cpu_logits_agree_for_w32") else {
        return;
    };
    let Some(model) = w32("imagenet::gpu_and_cpu_logits_agree_for_w32") else {
        return;
    };
    let (mut rng, seed) = common::rng("w32 logits");
    // Two random images (batch 2) in the range preprocessing produces.
    let input = common::uniform(&mut rng, 2 * 3 * 224 * 224, -2.0, 2.0);
    let cpu = model.forward_cpu(&input).unwrap();
    let mut gm = activeshift::model::GpuModel::new(ctx, model).unwrap();
    let gpu = pollster::block_on(gm.forward(&input)).unwrap();
    let err = common::rel_err(&gpu.logits, &cpu.logits);
    assert!(
        err <= 1e-3,
        "w32 logits: relative error {err} (seed {seed})"
    );
    let err = common::rel_err(&gpu.probs, &cpu.probs);
    assert!(
        err <= 1e-3,
        "w32 probabilities: relative error {err} (seed {seed})"
    );
}
