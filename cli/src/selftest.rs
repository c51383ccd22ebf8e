//! `activeshift selftest`: this adapter's kernels against their CPU twins, one by one, then a
//! training step of a small network and a whole ASNet-20 forward pass.

use super::*;

/// Deterministic test values in [-1, 1).
fn pattern(len: usize, seed: f32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i as f32 * 0.7548 + seed) * 12.9898).sin())
        .collect()
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

pub(crate) fn selftest() -> Result<()> {
    let ctx = open_gpu()?;
    println!("adapter: {}", ctx.describe());
    let k = ctx.kernels();
    let (xs, stride, cout) = (Shape4::new(2, 13, 17, 15), 2, 21);
    let os = xs.strided(xs.c, stride);
    let x = pattern(xs.len(), 0.1);
    let shift: Vec<f32> = pattern(2 * xs.c, 0.2).iter().map(|v| v * 4.0).collect();
    let dout = pattern(os.len(), 0.3);
    let w = pattern(cout * xs.c, 0.4);
    let dy = pattern(xs.strided(cout, stride).len(), 0.5);

    let xt = GpuTensor::from_slice(&ctx, &xs.dims(), &x)?;
    let st = GpuTensor::from_slice(&ctx, &[2, xs.c], &shift)?;
    let dt = GpuTensor::from_slice(&ctx, &os.dims(), &dout)?;
    let wt = GpuTensor::from_slice(&ctx, &[cout, xs.c], &w)?;
    let dyt = GpuTensor::from_slice(&ctx, &xs.strided(cout, stride).dims(), &dy)?;
    let out = GpuTensor::filled(&ctx, &os.dims(), f32::NAN)?;
    let dx = GpuTensor::filled(&ctx, &xs.dims(), f32::NAN)?;
    let grad = GpuTensor::filled(&ctx, &[2, xs.c], f32::NAN)?;
    let y = GpuTensor::filled(&ctx, &xs.strided(cout, stride).dims(), f32::NAN)?;
    let cdx = GpuTensor::filled(&ctx, &xs.dims(), f32::NAN)?;
    let cdw = GpuTensor::filled(&ctx, &[cout, xs.c], f32::NAN)?;
    ctx.submit(|enc| {
        k.asl_forward()
            .prepare(&ctx, &xt, &st, stride, &out)
            .map(|d| d.record(enc))?;
        k.asl_backward_input()
            .prepare(&ctx, &dt, &st, stride, &dx)
            .map(|d| d.record(enc))?;
        k.asl_backward_shift()
            .prepare(&ctx, &xt, &dt, &st, stride, &grad)
            .map(|d| d.record(enc))?;
        k.conv1x1()
            .prepare(&ctx, &xt, &wt, stride, Conv1x1Epilogue::default(), &y)
            .map(|d| d.record(enc))?;
        k.conv1x1_backward_input()
            .prepare(&ctx, &dyt, &wt, stride, &cdx)
            .map(|d| d.record(enc))?;
        k.conv1x1_backward_weight()
            .prepare(&ctx, &dyt, &xt, stride, &cdw)
            .map(|d| d.record(enc))
    })?;
    let checks = [
        (
            "asl_forward",
            out.read_blocking(&ctx)?,
            cpu::asl_forward(&x, xs, &shift, stride)?,
        ),
        (
            "asl_backward_input",
            dx.read_blocking(&ctx)?,
            cpu::asl_backward_input(&dout, xs, &shift, stride)?,
        ),
        (
            "asl_backward_shift",
            grad.read_blocking(&ctx)?,
            cpu::asl_backward_shift(&x, xs, &dout, &shift, stride)?,
        ),
        (
            "conv1x1",
            y.read_blocking(&ctx)?,
            cpu::conv1x1(&x, xs, &w, cout, stride, Default::default())?,
        ),
        (
            "conv1x1_backward_input",
            cdx.read_blocking(&ctx)?,
            cpu::conv1x1_backward_input(&dy, xs, &w, cout, stride)?,
        ),
        (
            "conv1x1_backward_weight",
            cdw.read_blocking(&ctx)?,
            cpu::conv1x1_backward_weight(&dy, &x, xs, cout, stride)?,
        ),
    ];
    let mut ok = true;
    println!("{:<26} {:>14}", "kernel", "rel. error");
    for (name, gpu, cpu) in &checks {
        let err = max_rel(gpu, cpu);
        let pass = err <= 1e-4;
        ok &= pass;
        println!(
            "{name:<26} {err:>14.2e} {}",
            if pass { "ok" } else { "FAIL" }
        );
    }
    // One training step of a small network on both backends: every parameter gradient.
    let mut config = activeshift::train::fashion_mnist_config(4, 2);
    config.input_size = [11, 11];
    config.preprocess.crop = [11, 11];
    config.stages.truncate(2);
    let mut cpu_t = activeshift::train::Trainer::new(config, vec![], Default::default())?;
    let mut gpu_t = cpu_t.clone();
    let n = 6;
    let input = pattern(n * 121, 0.6);
    let labels: Vec<u32> = (0..n).map(|i| (i % 10) as u32).collect();
    let (_, g_cpu) = cpu_t.forward_backward(&input, &labels)?;
    let mut be = activeshift::train::GpuBackend::new(ctx.clone());
    let (_, g_gpu) = gpu_t.forward_backward_on(&mut be, &input, &labels)?;
    let worst = g_cpu
        .iter()
        .map(|(name, want)| (max_rel(&g_gpu[name], want), name))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((err, name)) = worst {
        let pass = err <= 1e-3;
        ok &= pass;
        println!(
            "{:<26} {err:>14.2e} {} ({} gradients, worst {name})",
            "training step",
            if pass { "ok" } else { "FAIL" },
            g_cpu.len()
        );
    }
    // A whole network through this adapter's inference kernels (the kernel family and fusion
    // that `classify --backend gpu` uses), against the CPU engine.
    let model = Model::synthetic(&ArchConfig::builtin("asnet20-16x1")?, 7)?;
    let [h, w] = model.config.input_size;
    let input = pattern(2 * model.config.in_channels * h * w, 0.7);
    let want = model.forward_cpu(&input)?.logits;
    let got = Classifier::gpu(&ctx, model)?.run_blocking(&input)?.logits;
    let err = max_rel(&got, &want);
    let pass = err <= 1e-3;
    ok &= pass;
    println!(
        "{:<26} {err:>14.2e} {} (asnet20-16x1, batch 2, logits)",
        "network forward",
        if pass { "ok" } else { "FAIL" }
    );
    if ok {
        println!("the GPU agrees with the CPU on every check");
        Ok(())
    } else {
        Err(activeshift::Error::Device(
            "a kernel disagrees with its CPU twin".into(),
        ))
    }
}
