//! The authors' AS-ResNet-w32 ImageNet weights, imported from `../shared`, classify the test
//! photo as the independent reference does.

mod common;

use common::{shared, w32};

use activeshift::model::Model;
use activeshift::preprocess::{decode_image, preprocess};

fn cat_input(model: &Model) -> Vec<f32> {
    let bytes = std::fs::read(format!("{}/images/cat.jpg", shared())).expect("cat.jpg");
    preprocess(&decode_image(&bytes).unwrap(), &model.config.preprocess).unwrap()
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
    let model = w32();
    assert_eq!(model.config.name, "as-resnet-w32");
    assert_eq!(model.labels[285], "Egyptian cat");
    let out = model.forward_cpu(&cat_input(model)).unwrap();
    let top = out.top_k(0, 5);
    eprintln!("cpu top-5: {top:?}");
    check_top5("cpu", &top);
}

#[test]
fn cat_on_gpu() {
    let Some(ctx) = common::gpu("cat_on_gpu") else {
        return;
    };
    let model = w32();
    let mut gm = activeshift::model::GpuModel::new(ctx, model).unwrap();
    let out = pollster::block_on(gm.forward(&cat_input(model))).unwrap();
    let top = out.top_k(0, 5);
    eprintln!("gpu top-5: {top:?}");
    check_top5("gpu", &top);
}

#[test]
fn gpu_and_cpu_logits_agree_for_w32() {
    let Some(ctx) = common::gpu("gpu_and_cpu_logits_agree_for_w32") else {
        return;
    };
    let model = w32();
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
