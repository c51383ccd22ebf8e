//! `activeshift bench`: measures kernels, blocks and whole networks on the adapter it runs on
//! and prints a table (or one JSON document, or a Markdown report for BENCHMARKS.md).
//!
//! Every case is run once or twice to warm up (pipeline compilation happens on first use), then
//! timed several times; the table shows the median and the spread (min..max). GPU cases are
//! timed with timestamp queries around the compute pass when the adapter has
//! `TIMESTAMP_QUERY`, else with the wall clock around submit + wait. CPU cases use the wall
//! clock.

use activeshift::gpu::kernels::{
    AslConv1x1, AslConv1x1Args, AslConv1x1Variant, Conv1x1, Conv1x1Args, Conv1x1Epilogue,
    Conv1x1Variant, Dispatch,
};
use activeshift::model::GpuModel;
use activeshift::{ArchConfig, GpuContext, GpuTensor, Model, Result, Shape4};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Instant;

mod report;
mod train;
use report::{chart_groups, markdown, report_json, table};

/// `activeshift bench` arguments.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Fewer runs and smaller end-to-end batches (every case still runs: on a CPU adapter such
    /// as lavapipe on 2 cores, 1.5 minutes on an idle host and several on a busy one).
    #[arg(long)]
    pub quick: bool,
    /// Also write the report as Markdown (BENCHMARKS.md) to FILE.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Replace the Markdown file if it exists.
    #[arg(long)]
    pub force: bool,
    /// Only the cases whose name contains this text (ratios need their cases).
    #[arg(long)]
    pub filter: Option<String>,
}

/// Timings of one case, in milliseconds.
struct Sample {
    name: String,
    group: &'static str,
    /// Sorted run times.
    ms: Vec<f64>,
    /// What one run processes: `(amount, unit)` for the throughput column, e.g. GFLOP or GB.
    work: Option<(f64, &'static str)>,
    note: String,
}

impl Sample {
    fn median(&self) -> f64 {
        let n = self.ms.len();
        if n == 0 {
            return f64::NAN;
        }
        if n % 2 == 1 {
            self.ms[n / 2]
        } else {
            0.5 * (self.ms[n / 2 - 1] + self.ms[n / 2])
        }
    }
    fn min(&self) -> f64 {
        self.ms.first().copied().unwrap_or(f64::NAN)
    }
    fn max(&self) -> f64 {
        self.ms.last().copied().unwrap_or(f64::NAN)
    }
    /// Throughput at the median: `(value, unit/s)`.
    fn rate(&self) -> Option<(f64, String)> {
        self.work
            .map(|(amount, unit)| (amount / (self.median() / 1e3), format!("{unit}/s")))
    }
}

/// Runs and times cases on one context.
struct Bench {
    ctx: GpuContext,
    quick: bool,
    filter: Option<String>,
    timer: activeshift::gpu::DispatchTimer,
    samples: Vec<Sample>,
    /// Where one forward pass spends its time, op by op ([`Bench::layers`]).
    layers: Option<LayerProfile>,
    rng: StdRng,
}

/// Per-op GPU times of one network at batch 1.
struct LayerProfile {
    model: String,
    /// `(kind, label, median ms)` in execution order.
    ops: Vec<(&'static str, String, f64)>,
}

impl LayerProfile {
    /// `(kind, total ms, ops)` per kind, the most expensive first.
    fn kinds(&self) -> Vec<(&'static str, f64, usize)> {
        let mut kinds: Vec<(&'static str, f64, usize)> = Vec::new();
        for (kind, _, ms) in &self.ops {
            match kinds.iter_mut().find(|k| k.0 == *kind) {
                Some(k) => {
                    k.1 += ms;
                    k.2 += 1;
                }
                None => kinds.push((kind, *ms, 1)),
            }
        }
        kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
        kinds
    }
    fn total(&self) -> f64 {
        self.ops.iter().map(|o| o.2).sum()
    }
}

fn wait(ctx: &GpuContext) -> Result<()> {
    ctx.device()
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| activeshift::Error::Device(format!("waiting for the GPU: {e}")))?;
    ctx.check_device()
}

impl Bench {
    fn wanted(&self, name: &str) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| name.contains(f.as_str()))
    }

    fn runs(&self, slow: bool) -> usize {
        match (self.quick, slow) {
            (true, true) => 3,
            (true, false) => 5,
            (false, true) => 5,
            (false, false) => 11,
        }
    }

    /// Time `dispatch` (one compute pass per run) after a warm-up run.
    /// Launches that read parameters only (weight packing, shift taps) run once first, as
    /// inference runs them once per batch size; the timed runs are the rest.
    fn time_gpu(&mut self, dispatch: &Dispatch, runs: usize) -> Result<Vec<f64>> {
        let ctx = self.ctx.clone();
        let (setup, dispatch) = dispatch.clone().split_setup();
        let dispatch = &dispatch;
        if setup.launches() > 0 {
            ctx.submit(|enc| {
                setup.record(enc);
                Ok(())
            })?;
            wait(&ctx)?;
        }
        // Warm-up: pipeline compilation, first-touch of the buffers.
        ctx.submit(|enc| {
            dispatch.record(enc);
            Ok(())
        })?;
        wait(&ctx)?;
        let mut ms = Vec::with_capacity(runs);
        for _ in 0..runs {
            ms.push(self.timer.time_blocking(dispatch)?);
        }
        Ok(ms)
    }

    fn push(
        &mut self,
        name: String,
        group: &'static str,
        mut ms: Vec<f64>,
        work: Option<(f64, &'static str)>,
        note: String,
    ) {
        ms.sort_by(f64::total_cmp);
        let s = Sample {
            name,
            group,
            ms,
            work,
            note,
        };
        // Progress on stderr (stdout carries the table or the JSON document).
        eprintln!("  {:<34} {:>10.3} ms", s.name, s.median());
        self.samples.push(s);
    }

    fn gpu_case(
        &mut self,
        name: &str,
        group: &'static str,
        dispatch: &Dispatch,
        work: Option<(f64, &'static str)>,
        note: String,
        slow: bool,
    ) -> Result<()> {
        let runs = self.runs(slow);
        let ms = self.time_gpu(dispatch, runs)?;
        self.push(name.to_string(), group, ms, work, note);
        Ok(())
    }

    fn random(&mut self, dims: &[usize], lo: f32, hi: f32) -> Result<GpuTensor> {
        let len: usize = dims.iter().product();
        let data: Vec<f32> = (0..len).map(|_| self.rng.random_range(lo..hi)).collect();
        GpuTensor::from_slice(&self.ctx, dims, &data)
    }

    fn find(&self, name: &str) -> Option<&Sample> {
        self.samples.iter().find(|s| s.name == name)
    }

    // -----------------------------------------------------------------------------------------
    // Cases

    /// `copy`: the bandwidth ceiling, on the activation of the paper's layer (64 x 224²).
    fn copy(&mut self) -> Result<()> {
        if !self.wanted("copy") {
            return Ok(());
        }
        let xs = LAYER;
        let x = self.random(&xs.dims(), -1.0, 1.0)?;
        let y = GpuTensor::zeros(&self.ctx, &xs.dims())?;
        let d = self.ctx.kernels().copy().prepare(&self.ctx, &x, &y)?;
        let gb = 2.0 * 4.0 * xs.len() as f64 / 1e9;
        self.gpu_case(
            "copy",
            "memory",
            &d,
            Some((gb, "GB")),
            format!("{xs} f32, read + write"),
            false,
        )
    }

    /// `gemm_tiled_*` (the variant `Conv1x1::prepare` picks) and, in a full run,
    /// every variant (`gemm_variant_*`) at the 1x1-conv shapes of w32 and at 1024³.
    fn gemm(&mut self) -> Result<()> {
        // (label, input shape, output channels)
        let shapes = [
            ("32x32@112", Shape4::new(1, 32, 112, 112), 32),
            ("256x256@7", Shape4::new(1, 256, 7, 7), 256),
            ("1024^3", Shape4::new(1, 1024, 32, 32), 1024),
        ];
        for (label, xs, cout) in shapes {
            let x = self.random(&xs.dims(), -1.0, 1.0)?;
            let w = self.random(&[cout, xs.c], -1.0, 1.0)?;
            let y = GpuTensor::zeros(&self.ctx, &xs.strided(cout, 1).dims())?;
            let flop = 2.0 * (xs.plane() * xs.c * cout) as f64 / 1e9;
            let chosen = Conv1x1::choose(self.ctx.policy(), xs, cout, 1);
            // The rules' pick against the policy's (the tuned pick where the tuning cache of
            // `activeshift tune` has this shape).
            let rule = self.ctx.policy().rule(&activeshift::gpu::tune::TuneKey {
                op: activeshift::gpu::tune::TunedOp::Conv1x1,
                xs,
                cout,
                stride: 1,
            });
            let mut runs: Vec<(String, Conv1x1Variant)> =
                vec![(format!("gemm_tiled_{label}"), chosen)];
            if !self.quick {
                for v in Conv1x1Variant::ALL {
                    if v.supports(xs, 1) {
                        runs.push((format!("gemm_variant_{}_{label}", v.name()), v));
                    }
                }
            }
            // `gemm_tiled_*` is also a `gemm_variant_*` case in a full run:
            // each variant is timed once per shape and its samples reported under every name.
            let mut timed: Vec<(Conv1x1Variant, Vec<f64>)> = Vec::new();
            for (name, v) in runs {
                if !self.wanted(&name) {
                    continue;
                }
                let note = format!(
                    "{}: M={cout} K={} N={}; rule {rule}, policy {}",
                    v.name(),
                    xs.c,
                    xs.plane(),
                    chosen.name()
                );
                if let Some((_, ms)) = timed.iter().find(|(t, _)| *t == v) {
                    let ms = ms.clone();
                    self.push(name, "gemm", ms, Some((flop, "GFLOP")), note);
                    continue;
                }
                let args = Conv1x1Args {
                    x: &x,
                    weight: &w,
                    stride: 1,
                    epilogue: Conv1x1Epilogue::default(),
                    y: &y,
                };
                let d = self
                    .ctx
                    .kernels()
                    .conv1x1()
                    .prepare_variant(v, &self.ctx, args)?;
                let runs = self.runs(label == "1024^3");
                let ms = self.time_gpu(&d, runs)?;
                timed.push((v, ms.clone()));
                self.push(name, "gemm", ms, Some((flop, "GFLOP")), note);
            }
        }
        Ok(())
    }

    /// `asl_forward`, the blocks of the paper's Table 1 (224², 64 channels): `conv1x1_plain`,
    /// `asl_block_fused`, `asl_block_unfused`, `dw3x3_block`.
    fn blocks(&mut self) -> Result<()> {
        let xs = LAYER;
        let ctx = self.ctx.clone();
        let k = ctx.kernels();
        let x = self.random(&xs.dims(), -1.0, 1.0)?;
        let shift = self.random(&[2, xs.c], -2.0, 2.0)?;
        let w = self.random(&[xs.c, xs.c], -0.2, 0.2)?;
        let dw = self.random(&[xs.c, 1, 3, 3], -0.3, 0.3)?;
        let mid = GpuTensor::zeros(&ctx, &xs.dims())?;
        let y = GpuTensor::zeros(&ctx, &xs.dims())?;
        let ep = Conv1x1Epilogue::default();
        let gb = 2.0 * 4.0 * xs.len() as f64 / 1e9;
        let flop = 2.0 * (xs.plane() * xs.c * xs.c) as f64 / 1e9;
        let note = format!("{xs}, 64 -> 64");
        if self.wanted("asl_forward") {
            let d = k.asl_forward().prepare(&ctx, &x, &shift, 1, &y)?;
            self.gpu_case(
                "asl_forward",
                "memory",
                &d,
                Some((gb, "GB")),
                format!("{xs}, read + write"),
                false,
            )?;
        }
        if self.wanted("conv1x1_plain") {
            let d = k.conv1x1().prepare(&ctx, &x, &w, 1, ep, &y)?;
            self.gpu_case(
                "conv1x1_plain",
                "block",
                &d,
                Some((flop, "GFLOP")),
                note.clone(),
                false,
            )?;
        }
        if self.wanted("asl_block") {
            let chosen = AslConv1x1::choose(ctx.policy(), xs, xs.c, 1);
            let fused = AslConv1x1Args {
                x: &x,
                shift: &shift,
                stride: 1,
                weight: &w,
                epilogue: ep,
                y: &y,
            };
            let d = k.asl_conv1x1().prepare_variant(chosen, &ctx, fused)?;
            self.gpu_case(
                "asl_block_fused",
                "block",
                &d,
                Some((flop, "GFLOP")),
                format!("{note}, ASL fused into the GEMM ({})", chosen.name()),
                false,
            )?;
            // In a full run, the other fused GEMMs too (which one pays is per adapter).
            for v in AslConv1x1Variant::ALL {
                if self.quick || v == chosen || !v.supports(xs, 1) {
                    continue;
                }
                let d = k.asl_conv1x1().prepare_variant(v, &ctx, fused)?;
                self.gpu_case(
                    &format!("asl_block_fused_variant_{}", v.name()),
                    "block",
                    &d,
                    Some((flop, "GFLOP")),
                    format!("{note}, ASL fused into the GEMM ({})", v.name()),
                    false,
                )?;
            }
            let d = k
                .asl_forward()
                .prepare(&ctx, &x, &shift, 1, &mid)?
                .then(k.conv1x1().prepare(&ctx, &mid, &w, 1, ep, &y)?);
            self.gpu_case(
                "asl_block_unfused",
                "block",
                &d,
                Some((flop, "GFLOP")),
                format!("{note}, ASL kernel then GEMM"),
                false,
            )?;
        }
        if self.wanted("conv3x3_stem") {
            let xs = Shape4::new(1, 3, 224, 224);
            let img = self.random(&xs.dims(), -2.0, 2.0)?;
            let w3 = self.random(&[32, 3, 3, 3], -0.3, 0.3)?;
            let out = GpuTensor::zeros(&ctx, &xs.strided(32, 2).dims())?;
            let d = k.conv3x3().prepare(&ctx, &img, &w3, 2, &out)?;
            let flop = 2.0 * (112 * 112 * 32 * 27) as f64 / 1e9;
            self.gpu_case(
                "conv3x3_stem",
                "block",
                &d,
                Some((flop, "GFLOP")),
                "w32 stem: 3 -> 32, 224² stride 2".into(),
                false,
            )?;
        }
        if self.wanted("dw3x3_block") {
            let d = k
                .depthwise3x3()
                .prepare(&ctx, &x, &dw, 1, &mid)?
                .then(k.conv1x1().prepare(&ctx, &mid, &w, 1, ep, &y)?);
            self.gpu_case(
                "dw3x3_block",
                "block",
                &d,
                Some((flop, "GFLOP")),
                format!("{note}, depthwise 3x3 then GEMM"),
                false,
            )?;
        }
        Ok(())
    }

    /// End-to-end inference on the GPU (`e2e_gpu_*`) and the CPU engine (`e2e_cpu_*`): wall
    /// clock around `forward` (upload, every kernel, readback), synthetic weights.
    fn end_to_end(&mut self) -> Result<()> {
        let models: &[(&str, &[usize])] = &[
            ("as-resnet-w32", &[1, 8]),
            ("as-resnet-w50", &[1, 8]),
            ("as-resnet-w68", &[1, 8]),
            ("asnet20-16x1", &[1, 8]),
        ];
        for (name, batches) in models {
            let config = ArchConfig::builtin(name)?;
            let model = Model::synthetic(&config, 7)?;
            let per = config.in_channels * config.input_size[0] * config.input_size[1];
            let mut gm = GpuModel::new(&self.ctx, &model)?;
            for &n in *batches {
                let case = format!("e2e_gpu_{name}_b{n}");
                if !self.wanted(&case) {
                    continue;
                }
                let input: Vec<f32> = (0..n * per)
                    .map(|_| self.rng.random_range(-2.0..2.0))
                    .collect();
                let big = n > 1 && name.starts_with("as-resnet");
                let runs = if big && self.quick { 1 } else { self.runs(big) };
                let ms = time_wall(runs, || pollster::block_on(gm.forward(&input)).map(|_| ()))?;
                self.push(
                    case,
                    "end-to-end",
                    ms,
                    Some((n as f64, "images")),
                    format!(
                        "{} batch {n}, {}",
                        shape_of(&config),
                        if gm.fused() {
                            "fused ASL"
                        } else {
                            "ASL then GEMM"
                        }
                    ),
                );
            }
            // The CPU engine at batch 1.
            let case = format!("e2e_cpu_{name}_b1");
            if self.wanted(&case)
                && (!self.quick || *name == "as-resnet-w32" || *name == "asnet20-16x1")
            {
                let input: Vec<f32> = (0..per).map(|_| self.rng.random_range(-2.0..2.0)).collect();
                let runs = if self.quick { 2 } else { 3 };
                let ms = time_wall(runs, || model.forward_cpu(&input).map(|_| ()))?;
                self.push(
                    case,
                    "end-to-end",
                    ms,
                    Some((1.0, "images")),
                    format!(
                        "{} batch 1, CPU engine ({} threads)",
                        shape_of(&config),
                        rayon::current_num_threads()
                    ),
                );
            }
        }
        Ok(())
    }

    /// Where AS-ResNet-w32's forward pass at batch 1 spends its GPU time: every op's launches
    /// timed on their own (`layers_*` in the filter's terms), summed per kind.
    fn layers(&mut self) -> Result<()> {
        let name = "as-resnet-w32";
        if !self.wanted(&format!("layers_{name}")) {
            return Ok(());
        }
        let config = ArchConfig::builtin(name)?;
        let model = Model::synthetic(&config, 7)?;
        let mut gm = GpuModel::new(&self.ctx, &model)?;
        let runs = if self.quick { 3 } else { 5 };
        let mut ops = Vec::new();
        for op in gm.op_dispatches(1)? {
            // A longer warm-up than the other cases: on lavapipe the first runs of a freshly
            // prepared op (the stem especially) take up to twice as long.
            self.time_gpu(&op.dispatch, 2)?;
            let mut ms = self.time_gpu(&op.dispatch, runs)?;
            ms.sort_by(f64::total_cmp);
            ops.push((op.kind, op.label, ms[ms.len() / 2]));
        }
        let profile = LayerProfile {
            model: name.to_string(),
            ops,
        };
        eprintln!(
            "  layers_{name:<27} {:>10.3} ms (sum of {} ops)",
            profile.total(),
            profile.ops.len()
        );
        self.layers = Some(profile);
        Ok(())
    }
}

/// The activation of the paper's layer timing (Table 1): 64 channels at 224².
const LAYER: Shape4 = Shape4::new(1, 64, 224, 224);

/// The input of one image, `CxHxW`.
fn shape_of(c: &ArchConfig) -> String {
    format!("{}x{}x{}", c.in_channels, c.input_size[0], c.input_size[1])
}

/// Wall-clock milliseconds of `runs` calls of `f` after one warm-up call.
fn time_wall(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    f()?;
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f()?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(ms)
}

/// A ratio of the report: its name, value, the goal and what it compares.
struct Ratio {
    name: &'static str,
    value: Option<f64>,
    goal: &'static str,
    met: Option<bool>,
    what: &'static str,
}

fn ratios(b: &Bench) -> Vec<Ratio> {
    let med = |n: &str| b.find(n).map(Sample::median);
    let div = |a: Option<f64>, c: Option<f64>| match (a, c) {
        (Some(a), Some(c)) if c > 0.0 => Some(a / c),
        _ => None,
    };
    let asl_vs_copy = div(med("copy"), med("asl_forward"));
    let fused_vs_plain = div(med("asl_block_fused"), med("conv1x1_plain"));
    // The block as inference runs it by default (see `KernelPolicy::fused_by_default`).
    let default_block = if b.ctx.policy().fused_by_default() {
        "asl_block_fused"
    } else {
        "asl_block_unfused"
    };
    let asl_vs_dw = div(med(default_block), med("dw3x3_block"));
    let train_vs_torch = div(
        med("train_torch_twin_asnet20-16x1"),
        med("train_cpu_asnet20-16x1"),
    );
    let finetune_vs_torch = div(
        med("finetune_whole_w32_torch_twin"),
        med("finetune_whole_w32_cpu"),
    );
    let folder_vs_builtin = div(
        med("train_cpu_builtin_data_asnet20-16x1"),
        med("train_cpu_folder_data_asnet20-16x1"),
    );
    vec![
        Ratio {
            name: "asl_forward_vs_copy",
            value: asl_vs_copy,
            goal: ">= 0.8",
            met: asl_vs_copy.map(|v| v >= 0.8),
            what: "asl_forward GB/s / copy GB/s",
        },
        Ratio {
            name: "fused_block_vs_plain_1x1",
            value: fused_vs_plain,
            goal: "<= 1.05",
            met: fused_vs_plain.map(|v| v <= 1.05),
            what: "asl_block_fused time / conv1x1_plain time",
        },
        Ratio {
            name: "asl_block_vs_dw_block",
            value: asl_vs_dw,
            goal: "<= 0.6",
            met: asl_vs_dw.map(|v| v <= 0.6),
            what: if default_block == "asl_block_fused" {
                "asl_block_fused time / dw3x3_block time (the block inference runs by default)"
            } else {
                "asl_block_unfused time / dw3x3_block time (the block inference runs by default)"
            },
        },
        Ratio {
            name: "train_cpu_vs_torch_twin",
            value: train_vs_torch,
            goal: ">= 1.0",
            met: train_vs_torch.map(|v| v >= 1.0),
            what: "CPU trainer images/s / PyTorch twin images/s (tools/torch_twin, same batch, 2 threads; needs ACTIVESHIFT_TORCH_PYTHON)",
        },
        Ratio {
            name: "finetune_whole_w32_vs_torch_twin",
            value: finetune_vs_torch,
            goal: ">= 1.0",
            met: finetune_vs_torch.map(|v| v >= 1.0),
            what: "whole-network fine-tuning of w32 at 224x224, batch 32: CPU trainer images/s / PyTorch twin images/s (needs ACTIVESHIFT_TORCH_PYTHON)",
        },
        Ratio {
            name: "folder_vs_builtin_training",
            value: folder_vs_builtin,
            goal: ">= 0.9",
            met: folder_vs_builtin.map(|v| v >= 0.9),
            what: "CPU training images/s from a folder of PNGs / from a Dataset filled directly (same images, batches and steps)",
        },
    ]
}

/// Run the benchmark and print its report.
pub fn run(args: BenchArgs) -> Result<()> {
    // The Markdown report and its picture beside it (BENCHMARKS.md, BENCHMARKS.svg).
    let chart = args.markdown.as_ref().map(|p| p.with_extension("svg"));
    for path in args.markdown.iter().chain(&chart) {
        crate::refuse_overwrite(path, args.force)?;
        // Fail now rather than after the run.
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir.filter(|d| !d.is_dir()) {
            return Err(activeshift::Error::invalid(
                "bench",
                format!("{}: no such directory for the report", dir.display()),
            ));
        }
    }
    let started = Instant::now();
    let ctx = crate::open_gpu()?;
    let timer = activeshift::gpu::DispatchTimer::new(&ctx);
    let mut b = Bench {
        ctx,
        quick: args.quick,
        filter: args.filter.clone(),
        timer,
        samples: Vec::new(),
        layers: None,
        rng: StdRng::seed_from_u64(6),
    };
    eprintln!("adapter: {}", b.ctx.describe());
    b.copy()?;
    b.gemm()?;
    b.blocks()?;
    b.end_to_end()?;
    b.layers()?;
    b.training()?;
    let seconds = started.elapsed().as_secs_f64();
    let command = std::iter::once("activeshift".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    if args.json {
        let report = report_json(&b, seconds);
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", table(&b));
    }
    if let (Some(path), Some(chart)) = (&args.markdown, &chart) {
        let svg = crate::plot::bars_svg(
            &format!("activeshift bench on {}", b.ctx.adapter_name()),
            &chart_groups(&b),
        )?;
        activeshift::model::write_atomic(chart, svg.as_bytes(), args.force)?;
        let name = chart.file_name().map(|n| n.to_string_lossy().into_owned());
        let md = markdown(&b, &command, seconds, name.as_deref());
        activeshift::model::write_atomic(path, md.as_bytes(), args.force)?;
        eprintln!("wrote {} and {}", path.display(), chart.display());
    }
    Ok(())
}
