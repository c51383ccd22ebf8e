//! Small networks holding each op combination that training covers beyond the network of
//! blocks (affine layers without ReLU, biases on spatial outputs, BatchNorm epilogues with a
//! residual or without ReLU, ReLU without BatchNorm, 3x3 convolutions after the stem), built
//! with `PlanBuilder`: tests/cpu/train.rs checks their gradients against finite differences,
//! tests/gpu/gpu_train.rs the GPU backend's against the CPU backend's.
//!
//! Parameter ids only name tensors here: `Expand(0)` may be a 3x3 weight, `Bias(Mid(1))` a
//! convolution's bias; `Plan::params` gives each its dimensions from the op reading it.

use activeshift::Shape4;
use activeshift::model::{Norm, Op, ParamId, Plan, PlanBuilder, Slot};
use rand::RngExt;
use rand::rngs::StdRng;
use std::collections::BTreeMap;

/// Classes of every plan here.
pub const CLASSES: usize = 4;

/// A 1x1 convolution's operands for [`conv1x1`].
#[derive(Clone, Copy, Default)]
struct C1 {
    cout: usize,
    stride: usize,
    affine: Option<Norm>,
    bias: Option<ParamId>,
    residual: Option<Slot>,
    relu: bool,
}

fn conv1x1(b: &mut PlanBuilder, input: Slot, weight: ParamId, c: C1) -> Slot {
    let shape = b.shape(input).strided(c.cout, c.stride.max(1));
    b.push(shape, |out| Op::Conv1x1 {
        input,
        weight,
        stride: c.stride.max(1),
        affine: c.affine,
        bias: c.bias,
        residual: c.residual,
        relu: c.relu,
        out,
    })
}

fn conv3x3(b: &mut PlanBuilder, input: Slot, weight: ParamId, cout: usize, stride: usize) -> Slot {
    let shape = b.shape(input).strided(cout, stride);
    b.push(shape, |out| Op::Conv3x3 {
        input,
        weight,
        stride,
        out,
    })
}

/// The stem (3x3, 3 -> 5 channels, odd 7x9 images), `body` on its output, global average
/// pooling and a classifier with bias.
fn network(n: usize, body: impl FnOnce(&mut PlanBuilder, Slot) -> Slot) -> Plan {
    let mut b = PlanBuilder::new(Shape4::new(n, 3, 7, 9));
    let stem = conv3x3(&mut b, 0, ParamId::StemWeight, 5, 1);
    let x = body(&mut b, stem);
    let xs = b.shape(x);
    let pooled = b.push(Shape4::new(n, xs.c, 1, 1), |out| Op::AvgPool {
        input: x,
        out,
    });
    let logits = conv1x1(
        &mut b,
        pooled,
        ParamId::FcWeight,
        C1 {
            cout: CLASSES,
            bias: Some(ParamId::FcBias),
            ..C1::default()
        },
    );
    b.finish(logits)
}

/// Every case: its name and its plan for batches of `n` images.
pub fn cases(n: usize) -> Vec<(&'static str, Plan)> {
    let bias = Some(ParamId::Bias(Norm::Mid(1)));
    vec![
        (
            "affine without ReLU",
            network(n, |b, x| {
                let t = b.push(b.shape(x), |out| Op::Affine {
                    input: x,
                    norm: Norm::Pre(0),
                    relu: false,
                    out,
                });
                let c = C1 {
                    cout: 6,
                    ..C1::default()
                };
                conv1x1(b, t, ParamId::Expand(0), c)
            }),
        ),
        (
            "bias on a spatial output, then ReLU",
            network(n, |b, x| {
                let c = C1 {
                    cout: 6,
                    bias,
                    relu: true,
                    ..C1::default()
                };
                conv1x1(b, x, ParamId::Expand(0), c)
            }),
        ),
        (
            "bias with stride 2 and a residual",
            network(n, |b, x| {
                let sc = C1 {
                    cout: 6,
                    stride: 2,
                    ..C1::default()
                };
                let r = conv1x1(b, x, ParamId::Shortcut(0), sc);
                let c = C1 {
                    cout: 6,
                    stride: 2,
                    bias,
                    residual: Some(r),
                    ..C1::default()
                };
                conv1x1(b, x, ParamId::Expand(0), c)
            }),
        ),
        (
            "BatchNorm epilogue without ReLU",
            network(n, |b, x| {
                let c = C1 {
                    cout: 6,
                    affine: Some(Norm::Mid(0)),
                    ..C1::default()
                };
                conv1x1(b, x, ParamId::Expand(0), c)
            }),
        ),
        (
            "BatchNorm epilogue, residual, ReLU",
            network(n, |b, x| {
                let c = C1 {
                    cout: 5,
                    affine: Some(Norm::Mid(0)),
                    residual: Some(x),
                    relu: true,
                    ..C1::default()
                };
                conv1x1(b, x, ParamId::Expand(0), c)
            }),
        ),
        (
            "BatchNorm epilogue with stride 2 and a residual, no ReLU",
            network(n, |b, x| {
                let sc = C1 {
                    cout: 6,
                    stride: 2,
                    ..C1::default()
                };
                let r = conv1x1(b, x, ParamId::Shortcut(0), sc);
                let c = C1 {
                    cout: 6,
                    stride: 2,
                    affine: Some(Norm::Mid(0)),
                    residual: Some(r),
                    ..C1::default()
                };
                conv1x1(b, x, ParamId::Expand(0), c)
            }),
        ),
        (
            "ReLU without BatchNorm",
            network(n, |b, x| {
                let c = C1 {
                    cout: 6,
                    relu: true,
                    ..C1::default()
                };
                conv1x1(b, x, ParamId::Expand(0), c)
            }),
        ),
        (
            "3x3 convolution after the stem, stride 1",
            network(n, |b, x| conv3x3(b, x, ParamId::Expand(0), 6, 1)),
        ),
        (
            "3x3 convolution after the stem, stride 2",
            network(n, |b, x| conv3x3(b, x, ParamId::Expand(0), 4, 2)),
        ),
    ]
}

/// Random values for every parameter of `plan`: affine scales in [0.5, 1.5), everything else
/// in [-0.5, 0.5).
pub fn random_params(plan: &Plan, rng: &mut StdRng) -> BTreeMap<ParamId, Vec<f32>> {
    plan.params()
        .into_iter()
        .map(|(id, dims)| {
            let len = dims.iter().product();
            let (lo, hi) = match id {
                ParamId::Scale(_) => (0.5, 1.5),
                _ => (-0.5, 0.5),
            };
            (id, (0..len).map(|_| rng.random_range(lo..hi)).collect())
        })
        .collect()
}

/// Random running statistics (mean in [-0.5, 0.5), variance in [0.5, 2)) for every affine
/// layer of `plan`: what `NormMode::Frozen` normalizes with.
pub fn random_running(plan: &Plan, rng: &mut StdRng) -> activeshift::train::RunningStats {
    plan.params()
        .into_iter()
        .filter_map(|(id, dims)| match id {
            ParamId::Scale(norm) => {
                let mean = (0..dims[0]).map(|_| rng.random_range(-0.5..0.5)).collect();
                let var = (0..dims[0]).map(|_| rng.random_range(0.5..2.0)).collect();
                Some((norm, (mean, var)))
            }
            _ => None,
        })
        .collect()
}
