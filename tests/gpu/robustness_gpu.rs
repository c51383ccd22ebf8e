//! Bad input, faults and limits (shifts that are NaN, infinite or huge, and device limits and faults): see `robustness_files.rs` for the suite's
//! scope and the classes tested elsewhere.

use crate::bad_input;
use crate::common;
use activeshift::model::{ArchConfig, GpuModel, Model, StageConfig};
use activeshift::{Error, GpuContext, GpuTensor, Shape4, cpu};
use bad_input::*;

// --- shifts that are NaN, infinite or huge ---------------------------------------------------

/// Shifts per channel `(xpos, ypos)`: each non-finite or huge value, and ordinary ones.
fn wild_shifts() -> Vec<(f32, f32)> {
    vec![
        (0.5, 0.25),
        (f32::NAN, 0.5),
        (0.5, f32::NAN),
        (f32::from_bits(0xffc0_0000), -1.5), // negative quiet NaN
        (1.25, f32::from_bits(0x7f80_0001)), // signalling NaN
        (f32::INFINITY, 0.0),
        (0.0, f32::NEG_INFINITY),
        (1e30, -0.5),
        (-0.5, -1e30),
        (3.0e9, 2.0e9),
        (-1.75, 2.5),
    ]
}

/// The definition: a NaN channel reads nothing; other shifts are clamped to +-2^20.
fn defined_shift(v: f32) -> f32 {
    let lim = cpu::SHIFT_LIMIT as f32;
    v.clamp(-lim, lim)
}

#[test]
fn nan_infinite_and_huge_shifts_have_a_defined_result_on_cpu_and_gpu() {
    let ctx = common::gpu("nan_infinite_and_huge_shifts_have_a_defined_result_on_cpu_and_gpu");
    let wild = wild_shifts();
    let c = wild.len();
    for stride in [1, 2] {
        let xs = Shape4::new(2, c, 7, 9);
        let x: Vec<f32> = (0..xs.len()).map(|i| ((i as f32) * 0.61).sin()).collect();
        let os = xs.strided(c, stride);
        let dout: Vec<f32> = (0..os.len()).map(|i| ((i as f32) * 0.37).cos()).collect();
        let shift: Vec<f32> = wild
            .iter()
            .map(|s| s.0)
            .chain(wild.iter().map(|s| s.1))
            .collect();
        let nan_channel = |ch: usize| wild[ch].0.is_nan() || wild[ch].1.is_nan();
        // The reference: NaN channels replaced by zero output; others with clamped shifts.
        let clamped: Vec<f32> = shift
            .iter()
            .map(|&v| if v.is_nan() { 0.0 } else { defined_shift(v) })
            .collect();
        let mut want = cpu::asl_forward(&x, xs, &clamped, stride).unwrap();
        let mut want_dx = cpu::asl_backward_input(&dout, xs, &clamped, stride).unwrap();
        let mut want_g = cpu::asl_backward_shift(&x, xs, &dout, &clamped, stride).unwrap();
        for ch in (0..c).filter(|&ch| nan_channel(ch)) {
            for n in 0..xs.n {
                want[(n * c + ch) * os.plane()..][..os.plane()].fill(0.0);
                want_dx[(n * c + ch) * xs.plane()..][..xs.plane()].fill(0.0);
            }
            want_g[ch] = 0.0;
            want_g[c + ch] = 0.0;
        }
        // Channels 5..=9 are shifted beyond the image: zero output and gradients too.
        for ch in 5..=9 {
            for n in 0..xs.n {
                assert!(
                    want[(n * c + ch) * os.plane()..][..os.plane()]
                        .iter()
                        .all(|&v| v == 0.0)
                );
            }
            assert_eq!((want_g[ch], want_g[c + ch]), (0.0, 0.0), "channel {ch}");
        }
        let got = cpu::asl_forward(&x, xs, &shift, stride).unwrap();
        let got_dx = cpu::asl_backward_input(&dout, xs, &shift, stride).unwrap();
        let got_g = cpu::asl_backward_shift(&x, xs, &dout, &shift, stride).unwrap();
        assert_eq!(got, want, "cpu forward, stride {stride}");
        assert_eq!(got_dx, want_dx, "cpu input gradient, stride {stride}");
        assert_eq!(got_g, want_g, "cpu shift gradient, stride {stride}");

        let Some(ctx) = ctx else { continue };
        let gpu = common::Gpu(ctx);
        use common::Impl;
        let g = gpu.forward(&x, xs, &shift, stride);
        let gdx = gpu.backward_input(&dout, xs, &shift, stride);
        let gg = gpu.backward_shift(&x, xs, &dout, &shift, stride);
        for (what, a, b) in [
            ("forward", &g, &want),
            ("input gradient", &gdx, &want_dx),
            ("shift gradient", &gg, &want_g),
        ] {
            assert!(
                a.iter().all(|v| v.is_finite()),
                "gpu {what}: non-finite output"
            );
            let err = common::rel_err(a, b);
            assert!(
                err <= 1e-5,
                "gpu {what}, stride {stride}: relative error {err}"
            );
        }
        // Exact zeros where the definition says zero.
        for ch in (0..c).filter(|&ch| nan_channel(ch) || (5..=9).contains(&ch)) {
            for n in 0..xs.n {
                assert!(
                    g[(n * c + ch) * os.plane()..][..os.plane()]
                        .iter()
                        .all(|&v| v == 0.0)
                );
                assert!(
                    gdx[(n * c + ch) * xs.plane()..][..xs.plane()]
                        .iter()
                        .all(|&v| v == 0.0)
                );
            }
            assert_eq!(
                (gg[ch], gg[c + ch]),
                (0.0, 0.0),
                "gpu gradient of channel {ch}"
            );
        }
    }
}

/// On a row wider than 2^20 pixels the clamp is visible: +-Inf and +-1e30 read at exactly
/// +-2^20 pixels, while a NaN channel still reads nothing (a NaN clamped to -2^20 would read
/// pixels here).
#[test]
fn shifts_are_clamped_to_2_pow_20_and_nan_reads_nothing_on_a_very_wide_row() {
    let lim = cpu::SHIFT_LIMIT as usize;
    let w = lim + 100;
    let xs = Shape4::new(1, 4, 1, w);
    let x: Vec<f32> = (0..xs.len()).map(|i| 1.0 + (i % 97) as f32).collect();
    let shift = [f32::NAN, f32::INFINITY, -1e30, 5e9, 0.0, 0.0, 0.0, 0.0];
    let want: Vec<f32> = (0..xs.len())
        .map(|i| {
            let (c, j) = (i / w, i % w);
            let src = match c {
                0 => None,
                1 | 3 => j.checked_add(lim).filter(|&k| k < w),
                _ => j.checked_sub(lim),
            };
            src.map_or(0.0, |k| x[c * w + k])
        })
        .collect();
    assert!(want[w..w + 100].iter().all(|&v| v != 0.0));
    assert!(want[2 * w + lim..3 * w].iter().all(|&v| v != 0.0));
    // The first differing element, if any (the vectors are too long to print).
    let first_diff = |got: &[f32]| {
        got.iter()
            .zip(&want)
            .position(|(a, b)| a.to_bits() != b.to_bits())
            .map(|i| (i / w, i % w, got[i], want[i]))
    };
    let cpu_out = cpu::asl_forward(&x, xs, &shift, 1).unwrap();
    assert_eq!(
        first_diff(&cpu_out),
        None,
        "cpu: (channel, column, got, want)"
    );
    if let Some(ctx) =
        common::gpu("shifts_are_clamped_to_2_pow_20_and_nan_reads_nothing_on_a_very_wide_row")
    {
        use common::Impl;
        let gpu_out = common::Gpu(ctx).forward(&x, xs, &shift, 1);
        assert_eq!(
            first_diff(&gpu_out),
            None,
            "gpu: (channel, column, got, want)"
        );
    }
}

#[test]
fn kernel_shapes_whose_element_count_overflows_are_refused() {
    let huge = Shape4::new(1 << 40, 1 << 40, 1 << 40, 1);
    let err = cpu::asl_forward(&[0.0f32], huge, &[0.0; 2], 1).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected a shape whose element count fits in memory"),
        "{err}"
    );
    let err = cpu::affine(&[0.0f32], huge, &[1.0], &[0.0], false).unwrap_err();
    assert!(err.to_string().contains("fits in memory"), "{err}");
}

// --- device limits and faults ----------------------------------------------------------------

#[test]
fn an_activation_larger_than_a_storage_binding_is_refused_clearly() {
    let Some(ctx) = common::gpu("an_activation_larger_than_a_storage_binding_is_refused_clearly")
    else {
        return;
    };
    let limit = ctx.device().limits().max_storage_buffer_binding_size;
    // A 4096-channel stem whose output for one image is just over the limit.
    let side = ((limit / (4096 * 4)) as f64).sqrt() as usize + 1;
    let mut config = ArchConfig::asnet20(4096, 1, 3, side, 2);
    config.expansion = 1;
    config.stages = vec![StageConfig {
        blocks: 1,
        width: 4,
        stride: 1,
    }];
    let model = Model::synthetic(&config, 3).unwrap();
    let mut net = GpuModel::new(ctx, &model).unwrap();
    let input = vec![0.5f32; 3 * side * side];
    let err = pollster::block_on(net.forward(&input)).unwrap_err();
    let needed = (4096 * side * side * 4) as u64;
    match &err {
        Error::DeviceLimit {
            op,
            needed: n,
            limit: l,
            ..
        } => assert_eq!((*op, *n, *l), ("GpuModel", needed, limit)),
        other => panic!("expected a device-limit error, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "GpuModel: bytes for the largest activation of one image (one storage buffer \
             binding) needs {needed}, but the device allows at most {limit}"
        )
    );
}

#[test]
fn batches_over_the_limit_are_split_into_submissions() {
    let Some(ctx) = common::gpu("batches_over_the_limit_are_split_into_submissions") else {
        return;
    };
    let model = Model::synthetic(&tiny_config(), 5).unwrap();
    let input: Vec<f32> = (0..5 * 64).map(|i| ((i as f32) * 0.3).sin()).collect();
    let whole = pollster::block_on(GpuModel::new(ctx, &model).unwrap().forward(&input)).unwrap();
    let mut net = GpuModel::new(ctx, &model).unwrap();
    net.set_batch_limit(2);
    assert_eq!(net.max_batch().unwrap(), 2);
    let split = pollster::block_on(net.forward(&input)).unwrap();
    assert_eq!(split.batch(), 5);
    let err = common::rel_err(&split.logits, &whole.logits);
    assert!(err <= 1e-6, "split batch differs: {err}");
    let cpu = model.forward_cpu(&input).unwrap();
    assert!(common::rel_err(&split.probs, &cpu.probs) <= 1e-4);
    // `record` does not split: it refuses.
    let buf = GpuTensor::zeros(ctx, &[5, 1, 8, 8]).unwrap();
    let mut enc = ctx.device().create_command_encoder(&Default::default());
    let err = net.record(&mut enc, buf.buffer(), 5, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "GpuModel::record: images per recorded batch (record smaller batches) needs 5, but the \
         device allows at most 2"
    );
}

#[test]
fn device_loss_is_an_error_not_a_hang_or_a_panic() {
    if common::gpu("device_loss_is_an_error_not_a_hang_or_a_panic").is_none() {
        return;
    }
    let ctx = pollster::block_on(GpuContext::new()).unwrap();
    let model = Model::synthetic(&tiny_config(), 9).unwrap();
    let mut net = GpuModel::new(&ctx, &model).unwrap();
    let input = vec![0.25f32; 64];
    pollster::block_on(net.forward(&input)).unwrap();
    ctx.device().destroy();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let first = pollster::block_on(net.forward(&input)).map(|_| ());
        let again = pollster::block_on(net.forward(&input)).map(|_| ());
        let _ = tx.send((first, again));
    });
    let (first, again) = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("forward did not return within 2 minutes of the device being destroyed");
    for r in [first, again] {
        match r {
            Err(Error::Device(msg)) => assert!(msg.contains("lost"), "{msg}"),
            Err(Error::Readback(msg)) => assert!(!msg.is_empty()),
            other => panic!("expected a device error, got {other:?}"),
        }
    }
    let err = ctx.submit(|_| Ok(())).unwrap_err();
    assert!(
        err.to_string().starts_with("GPU device error: device lost"),
        "{err}"
    );
}

#[test]
fn wgpu_errors_on_an_owned_device_become_errors_not_panics() {
    if common::gpu("wgpu_errors_on_an_owned_device_become_errors_not_panics").is_none() {
        return;
    }
    // A buffer destroyed before the submission that uses it: wgpu's default handler would
    // panic.
    let ctx = pollster::block_on(GpuContext::new()).unwrap();
    let x = GpuTensor::zeros(&ctx, &[1, 2, 4, 4]).unwrap();
    x.buffer().destroy();
    let shift = GpuTensor::zeros(&ctx, &[2, 2]).unwrap();
    let out = GpuTensor::zeros(&ctx, &[1, 2, 4, 4]).unwrap();
    let err = ctx
        .submit(|enc| {
            ctx.kernels()
                .asl_forward()
                .prepare(&ctx, &x, &shift, 1, &out)
                .map(|d| d.record(enc))
        })
        .unwrap_err();
    match &err {
        Error::Device(msg) => assert!(msg.contains("destroyed"), "{msg}"),
        other => panic!("expected a device error, got {other:?}"),
    }
    // The error is reported once; the context stays usable.
    let ok = GpuTensor::from_slice(&ctx, &[2], &[1.0, 2.0]).unwrap();
    assert_eq!(ok.read_blocking(&ctx).unwrap(), [1.0, 2.0]);
}

#[test]
fn host_buffers_are_checked_before_they_are_bound() {
    let Some(ctx) = common::gpu("host_buffers_are_checked_before_they_are_bound") else {
        return;
    };
    let buffer = |size, usage| {
        ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage,
            mapped_at_creation: false,
        })
    };
    let err =
        GpuTensor::from_buffer(ctx, buffer(64, wgpu::BufferUsages::COPY_DST), &[4, 4]).unwrap_err();
    assert!(
        err.to_string()
            .contains("needs STORAGE usage to be bound by kernels"),
        "{err}"
    );
    let err =
        GpuTensor::from_buffer(ctx, buffer(60, wgpu::BufferUsages::STORAGE), &[4, 4]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tensor from buffer: buffer size: expected at least 64 bytes for shape [4, 4], found 60 bytes"
    );
    // A storage-only buffer cannot be read back: an error, not a wgpu validation panic.
    let t = GpuTensor::from_buffer(ctx, buffer(64, wgpu::BufferUsages::STORAGE), &[4, 4]).unwrap();
    let err = t.read_blocking(ctx).unwrap_err();
    assert!(err.to_string().contains("needs COPY_SRC usage"), "{err}");

    let model = Model::synthetic(&tiny_config(), 2).unwrap();
    let mut net = GpuModel::new(ctx, &model).unwrap();
    let mut enc = ctx.device().create_command_encoder(&Default::default());
    let input = buffer(2 * 64 * 4, wgpu::BufferUsages::STORAGE);
    let err = net.record(&mut enc, &input, 0, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "GpuModel::record: invalid argument: batch must be at least 1 image"
    );
    let err = net.record(&mut enc, &input, 3, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("at least 768 bytes for shape [3, 1, 8, 8]"),
        "{err}"
    );
    let small_out = buffer(8, wgpu::BufferUsages::COPY_DST);
    let err = net
        .record(&mut enc, &input, 2, Some(&small_out))
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "output buffer: expected at least 48 bytes (logits and probabilities of 2 images)"
        ),
        "{err}"
    );
    let wrong_use = buffer(48, wgpu::BufferUsages::STORAGE);
    let err = net
        .record(&mut enc, &input, 2, Some(&wrong_use))
        .unwrap_err();
    assert!(err.to_string().contains("needs COPY_DST usage"), "{err}");
}
