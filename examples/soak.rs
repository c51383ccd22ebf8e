//! Soak test: many inferences of one model in one process, checking that memory stays flat
//! (the GPU allocations do not grow after warm-up, nor the resident set size).
//!
//! ```text
//! cargo run --release --example soak -- [ITERATIONS (10000)] [BATCH (1)]
//! ```
//!
//! Prints, every tenth of the run, the resident set size (`VmRSS` of `/proc/self/status`,
//! Linux only) and wgpu's allocator report (live GPU allocations and their bytes; backends
//! without a report print `-`), and exits non-zero if the GPU allocations grew after warm-up.
//! `tests/gpu/soak.rs` runs the same loop for a few hundred iterations.

use activeshift::model::{ArchConfig, GpuModel, Model};
use activeshift::{GpuContext, Output};
use std::error::Error;
use std::time::Instant;

/// Memory at one point of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size in KiB (`None` where `/proc` is absent).
    pub rss_kib: Option<u64>,
    /// Live GPU allocations and their bytes, from wgpu's allocator report (`None` where the
    /// backend has none).
    pub gpu: Option<(usize, u64)>,
}

/// What a soak run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// Iterations run.
    pub iterations: usize,
    /// Memory after warm-up (first tenth of the run, at least 10 iterations).
    pub warm: Memory,
    /// Memory at the end.
    pub end: Memory,
    /// Mean milliseconds per inference after warm-up.
    pub ms_per_inference: f64,
    /// Output of the first and of the last iteration (identical input: must be equal).
    pub first: Output,
    /// See `first`.
    pub last: Output,
}

/// Current memory use.
pub fn memory(ctx: &GpuContext) -> Memory {
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        });
    // Let wgpu free what finished submissions released before counting.
    let _ = ctx.device().poll(wgpu::PollType::wait_indefinitely());
    let gpu = ctx
        .device()
        .generate_allocator_report()
        .map(|r| (r.allocations.len(), r.total_allocated_bytes));
    Memory { rss_kib, gpu }
}

fn show(m: &Memory) -> String {
    let rss = m
        .rss_kib
        .map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    let gpu = m.gpu.map_or("-".into(), |(n, b)| {
        format!("{n} allocations, {:.2} MiB", b as f64 / 1048576.0)
    });
    format!("rss {rss:>10}   gpu {gpu}")
}

/// Run `iterations` forward passes of `model` at batch `batch`, same input each time, printing
/// progress when `verbose`.
pub fn soak(
    ctx: &GpuContext,
    model: &Model,
    iterations: usize,
    batch: usize,
    verbose: bool,
) -> Result<Report, Box<dyn Error>> {
    let mut net = GpuModel::new(ctx, model)?;
    let len: usize = net.input_dims(batch).iter().product();
    let input: Vec<f32> = (0..len).map(|i| ((i as f32) * 0.37).sin() * 2.0).collect();
    let warmup = (iterations / 10).max(10).min(iterations);
    let step = (iterations / 10).max(1);
    let mut first = None;
    let mut last = None;
    let mut warm = memory(ctx);
    let mut start = Instant::now();
    for i in 1..=iterations {
        let out = pollster::block_on(net.forward(&input))?;
        if first.is_none() {
            first = Some(out.clone());
        }
        if i == warmup {
            warm = memory(ctx);
            start = Instant::now();
            if verbose {
                println!("{i:>7} (warm) {}", show(&warm));
            }
        } else if verbose && i % step == 0 {
            println!("{i:>7}        {}", show(&memory(ctx)));
        }
        last = Some(out);
    }
    let timed = iterations - warmup;
    let ms_per_inference = start.elapsed().as_secs_f64() * 1e3 / timed.max(1) as f64;
    let (Some(first), Some(last)) = (first, last) else {
        return Err("no iteration ran".into());
    };
    Ok(Report {
        iterations,
        warm,
        end: memory(ctx),
        ms_per_inference,
        first,
        last,
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let iterations: usize = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let batch: usize = args.next().map_or(Ok(1), |a| a.parse())?;
    let ctx = pollster::block_on(GpuContext::new())?;
    let model = Model::synthetic(&ArchConfig::builtin("asnet20-16x1")?, 7)?;
    println!(
        "soak: {iterations} inferences of {} at batch {batch} on {}",
        model.config.name,
        ctx.describe()
    );
    let r = soak(&ctx, &model, iterations, batch, true)?;
    println!("after warm-up: {}", show(&r.warm));
    println!("at the end:    {}", show(&r.end));
    println!("{:.2} ms per inference after warm-up", r.ms_per_inference);
    if r.first != r.last {
        return Err("the last output differs from the first (same input)".into());
    }
    if r.end.gpu != r.warm.gpu {
        return Err("GPU allocations grew after warm-up".into());
    }
    println!("flat: GPU allocations unchanged after warm-up; outputs identical");
    Ok(())
}
