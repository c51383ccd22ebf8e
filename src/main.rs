//! The `activeshift` command-line program.

use activeshift::gpu::kernels::Conv1x1Epilogue;
use activeshift::{GpuContext, GpuTensor, Result, Shape4, cpu};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "activeshift",
    version,
    about = "Active Shift networks on any GPU (wgpu + WGSL)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the GPU adapter activeshift picks (honours WGPU_BACKEND and WGPU_ADAPTER_NAME).
    Info,
    /// Run every kernel once on the GPU and compare it with its CPU twin.
    Selftest,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(),
        Command::Selftest => selftest(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn info() -> Result<()> {
    let ctx = pollster::block_on(GpuContext::new())?;
    println!("adapter: {}", ctx.describe());
    let l = ctx.device().limits();
    println!(
        "limits: {} MiB per storage binding, {} invocations per workgroup, {} KiB workgroup memory",
        l.max_storage_buffer_binding_size >> 20,
        l.max_compute_invocations_per_workgroup,
        l.max_compute_workgroup_storage_size >> 10
    );
    println!("features: {:?}", ctx.device().features());
    Ok(())
}

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

fn selftest() -> Result<()> {
    let ctx = pollster::block_on(GpuContext::new())?;
    println!("adapter: {}", ctx.describe());
    let k = ctx.kernels();
    let dev = ctx.device();
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
        k.asl_forward(dev)
            .prepare(&ctx, &xt, &st, stride, &out)
            .map(|d| d.record(enc))?;
        k.asl_backward_input(dev)
            .prepare(&ctx, &dt, &st, stride, &dx)
            .map(|d| d.record(enc))?;
        k.asl_backward_shift(dev)
            .prepare(&ctx, &xt, &dt, &st, stride, &grad)
            .map(|d| d.record(enc))?;
        k.conv1x1(dev)
            .prepare(&ctx, &xt, &wt, stride, Conv1x1Epilogue::default(), &y)
            .map(|d| d.record(enc))?;
        k.conv1x1_backward_input(dev)
            .prepare(&ctx, &dyt, &wt, stride, &cdx)
            .map(|d| d.record(enc))?;
        k.conv1x1_backward_weight(dev)
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
    if ok {
        println!("all kernels agree with their CPU twins");
        Ok(())
    } else {
        Err(activeshift::Error::Device(
            "a kernel disagrees with its CPU twin".into(),
        ))
    }
}
