//! Embedding in a host's wgpu frame: `examples/embed.rs` (host-owned device, host compute pass,
//! model recorded into the host's encoder, one submission) gives exactly what the standalone
//! API gives on the same input; `record` reads whichever host buffer it is given.

use crate::common;

#[allow(dead_code)]
#[path = "../../examples/embed.rs"]
mod example;

use activeshift::model::{ArchConfig, GpuModel, Model};
use activeshift::{Classifier, GpuTensor};

#[test]
fn the_embed_example_equals_the_standalone_api() {
    let Some(ctx) = common::gpu("the_embed_example_equals_the_standalone_api") else {
        return;
    };
    // The example's default model.
    let model = Model::synthetic(&ArchConfig::builtin("asnet20-16x1").unwrap(), 2024).unwrap();
    let frame = example::run_frame(&model, 3).expect("host frame");
    // The host's shader drew something that is not trivial.
    let spread = frame.input.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(spread > 1.0 && frame.input.iter().all(|v| v.is_finite()));
    assert_eq!(frame.output.batch(), 3);

    // Same adapter, same kernels, same input: bit-identical.
    let mut net = GpuModel::new(ctx, &model).unwrap();
    let standalone = pollster::block_on(net.forward(&frame.input)).unwrap();
    assert_eq!(frame.output, standalone);
    let mut clf = Classifier::gpu(ctx, model.clone()).unwrap();
    assert_eq!(
        pollster::block_on(clf.run(&frame.input)).unwrap(),
        standalone
    );
    // And the CPU engine agrees within rounding.
    let cpu = model.forward_cpu(&frame.input).unwrap();
    let err = common::rel_err(&frame.output.logits, &cpu.logits);
    assert!(err <= 1e-3, "embedded logits vs cpu: relative error {err}");
}

#[test]
fn record_reads_whichever_host_buffer_it_is_given() {
    let Some(ctx) = common::gpu("record_reads_whichever_host_buffer_it_is_given") else {
        return;
    };
    let model = Model::synthetic(&ArchConfig::asnet20(4, 1, 3, 12, 5), 11).unwrap();
    let mut net = GpuModel::new(ctx, &model).unwrap();
    let per = 3 * 12 * 12;
    let a: Vec<f32> = (0..2 * per).map(|i| ((i as f32) * 0.13).sin()).collect();
    let b: Vec<f32> = (0..2 * per).map(|i| ((i as f32) * 0.29).cos()).collect();
    let host_a = GpuTensor::from_slice(ctx, &[2, 3, 12, 12], &a).unwrap();
    let host_b = GpuTensor::from_slice(ctx, &[2, 3, 12, 12], &b).unwrap();
    let scores = GpuTensor::filled(ctx, &[4, 5], f32::NAN).unwrap();
    for (host, data) in [(&host_a, &a), (&host_b, &b), (&host_a, &a)] {
        ctx.submit(|enc| net.record(enc, host.buffer(), 2, Some(scores.buffer())))
            .unwrap();
        let got = scores.read_blocking(ctx).unwrap();
        let want = model.forward_cpu(data).unwrap();
        assert!(common::rel_err(&got[..10], &want.logits) <= 1e-4);
        assert!(common::rel_err(&got[10..], &want.probs) <= 1e-4);
        // Without an output buffer, the model's own output tensors hold the result.
        ctx.submit(|enc| net.record(enc, host.buffer(), 2, None))
            .unwrap();
        let probs = net.probs().unwrap().read_blocking(ctx).unwrap();
        assert_eq!(probs, got[10..]);
    }
    // forward() and record() share the prepared batch and give the same numbers.
    let fwd = pollster::block_on(net.forward(&b)).unwrap();
    ctx.submit(|enc| net.record(enc, host_b.buffer(), 2, Some(scores.buffer())))
        .unwrap();
    assert_eq!(scores.read_blocking(ctx).unwrap()[..10], fwd.logits);
}
