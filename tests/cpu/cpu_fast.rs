//! The fast CPU path of `Model::forward_cpu` (multi-threaded, GEMMs through matrixmultiply,
//! reused buffers) against the reference path through the plain CPU twins, on whole networks
//! with synthetic weights: every layer type, stride 2, projection shortcuts, batches > 1, a
//! NaN shift, and repeated calls (the reused buffers must not leak stale values).

use crate::common;

use activeshift::model::{ArchConfig, HostTensor, Model};
use common::*;

fn check(model: &Model, batches: &[usize], seed: u64) {
    let config = &model.config;
    let per = config.in_channels * config.input_size[0] * config.input_size[1];
    let (mut rng, _) = rng("cpu fast input");
    for &n in batches {
        let input = uniform(&mut rng, n * per, -2.0, 2.0);
        let fast = model.forward_cpu(&input).unwrap();
        let reference = model.forward_cpu_reference(&input).unwrap();
        let err = rel_err(&fast.logits, &reference.logits);
        assert!(
            err <= 1e-4,
            "{} batch {n}: logits relative error {err} (seed {seed})",
            config.name
        );
        let again = model.forward_cpu(&input).unwrap();
        assert_eq!(
            again.logits, fast.logits,
            "{} batch {n}: repeat differs",
            config.name
        );
    }
}

#[test]
fn fast_cpu_path_matches_the_reference() {
    let (_, seed) = rng("cpu fast");
    for (config, batches) in [
        (ArchConfig::builtin("asnet20-16x1").unwrap(), vec![1, 3]),
        (ArchConfig::asnet20(16, 3, 1, 28, 10), vec![2]),
        (ArchConfig::builtin("as-resnet-w32").unwrap(), vec![1]),
    ] {
        let model = Model::synthetic(&config, seed).unwrap();
        check(&model, &batches, seed);
    }
}

#[test]
fn fast_cpu_path_handles_nan_shifts_like_the_reference() {
    let (_, seed) = rng("cpu fast nan");
    let config = ArchConfig::builtin("asnet20-16x1").unwrap();
    let mut model = Model::synthetic(&config, seed).unwrap();
    let name = config
        .param_shapes()
        .into_iter()
        .map(|(n, _)| n)
        .find(|n| n.ends_with(".shift"))
        .unwrap();
    let t = model.params.get(&name).unwrap().clone();
    let mut data = t.data.clone();
    data[0] = f32::NAN;
    data[t.data.len() - 1] = f32::INFINITY;
    model
        .params
        .insert(name, HostTensor::new(t.dims.clone(), data).unwrap());
    check(&model, &[2], seed);
}
