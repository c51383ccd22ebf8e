//! `activeshift bench`: measures kernels, blocks and whole networks on the adapter it runs on
//! and prints a table (or one JSON document, or a Markdown report for BENCHMARKS.md).
//!
//! Every case is run once or twice to warm up (pipeline compilation happens on first use), then
//! timed several times; the table shows the median and the spread (min..max). GPU cases are
//! timed with timestamp queries around the compute pass when the adapter has
//! `TIMESTAMP_QUERY`, else with the wall clock around submit + wait. CPU cases use the wall
//! clock.

use activeshift::gpu::kernels::{Conv1x1Epilogue, Conv1x1Variant, Dispatch};
use activeshift::{GpuContext, GpuTensor, Result, Shape4};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Instant;

/// `activeshift bench` arguments.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Fewer runs and smaller end-to-end batches (finishes in well under a minute on a CPU
    /// adapter).
    #[arg(long)]
    pub quick: bool,
    /// Also write the report as Markdown (BENCHMARKS.md) to FILE (replaced if it exists).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
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
    timestamps: Option<Timestamps>,
    samples: Vec<Sample>,
    rng: StdRng,
}

/// A query set for the two timestamps around one compute pass, and its readback buffers.
struct Timestamps {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
    period_ns: f64,
}

impl Timestamps {
    fn new(ctx: &GpuContext) -> Option<Self> {
        if !ctx
            .device()
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
        {
            return None;
        }
        let device = ctx.device();
        let set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("bench timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("bench timestamps resolve"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let read = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("bench timestamps read"),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Some(Self {
            set,
            resolve,
            read,
            period_ns: f64::from(ctx.queue().get_timestamp_period()),
        })
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

    /// Time `dispatch` (one compute pass per run).
    fn time_gpu(&mut self, dispatch: &Dispatch, runs: usize) -> Result<Vec<f64>> {
        let ctx = self.ctx.clone();
        // Warm-up: pipeline compilation, first-touch of the buffers.
        ctx.submit(|enc| {
            dispatch.record(enc);
            Ok(())
        })?;
        wait(&ctx)?;
        let mut ms = Vec::with_capacity(runs);
        for _ in 0..runs {
            match &self.timestamps {
                Some(ts) => {
                    ctx.submit(|enc| {
                        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: Some("bench"),
                            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                                query_set: &ts.set,
                                beginning_of_pass_write_index: Some(0),
                                end_of_pass_write_index: Some(1),
                            }),
                        });
                        dispatch.record_in(&mut pass);
                        drop(pass);
                        enc.resolve_query_set(&ts.set, 0..2, &ts.resolve, 0);
                        enc.copy_buffer_to_buffer(&ts.resolve, 0, &ts.read, 0, 16);
                        Ok(())
                    })?;
                    ts.read.map_async(wgpu::MapMode::Read, .., |_| {});
                    wait(&ctx)?;
                    let (t0, t1) = {
                        let view = ts
                            .read
                            .get_mapped_range(..)
                            .map_err(|e| activeshift::Error::Readback(e.to_string()))?;
                        let v: Vec<u64> = bytemuck::pod_collect_to_vec(&view);
                        (v[0], v[1])
                    };
                    ts.read.unmap();
                    ms.push(t1.saturating_sub(t0) as f64 * ts.period_ns / 1e6);
                }
                None => {
                    let start = Instant::now();
                    ctx.submit(|enc| {
                        dispatch.record(enc);
                        Ok(())
                    })?;
                    wait(&ctx)?;
                    ms.push(start.elapsed().as_secs_f64() * 1e3);
                }
            }
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
        if !self.json_only() {
            eprintln!("  {:<34} {:>10.3} ms", s.name, s.median());
        }
        self.samples.push(s);
    }

    fn json_only(&self) -> bool {
        false
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

    /// `gemm_<variant>` at the 1x1-conv shapes of w32 and at 1024^3.
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
            for v in Conv1x1Variant::ALL {
                let name = format!("gemm_{}_{label}", v.name());
                if !self.wanted(&name) || !v.supports(xs, 1) {
                    continue;
                }
                let d = self
                    .ctx
                    .kernels()
                    .conv1x1(self.ctx.device())
                    .prepare_variant(v, &self.ctx, &x, &w, 1, Conv1x1Epilogue::default(), &y)?;
                let slow = v == Conv1x1Variant::Naive || label == "1024^3";
                self.gpu_case(
                    &name,
                    "gemm",
                    &d,
                    Some((flop, "GFLOP")),
                    format!("M={cout} K={} N={}", xs.c, xs.plane()),
                    slow,
                )?;
            }
        }
        Ok(())
    }
}

/// Run the benchmark and print its report.
pub fn run(args: BenchArgs) -> Result<()> {
    let ctx = pollster::block_on(GpuContext::new())?;
    let timestamps = Timestamps::new(&ctx);
    let mut b = Bench {
        ctx,
        quick: args.quick,
        filter: args.filter.clone(),
        timestamps,
        samples: Vec::new(),
        rng: StdRng::seed_from_u64(6),
    };
    eprintln!("adapter: {}", b.ctx.describe());
    b.gemm()?;
    let report = report_json(&b);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", table(&b));
    }
    let _ = &args.markdown;
    Ok(())
}

fn report_json(b: &Bench) -> Value {
    let cases: Vec<Value> = b
        .samples
        .iter()
        .map(|s| {
            let rate = s.rate();
            json!({
                "name": s.name,
                "group": s.group,
                "median_ms": s.median(),
                "min_ms": s.min(),
                "max_ms": s.max(),
                "runs": s.ms.len(),
                "throughput": rate.as_ref().map(|r| r.0),
                "throughput_unit": rate.as_ref().map(|r| r.1.clone()),
                "note": s.note,
            })
        })
        .collect();
    let _ = b.find("");
    json!({ "adapter": b.ctx.describe(), "cases": cases })
}

fn table(b: &Bench) -> String {
    let mut out = String::new();
    out.push_str(&format!("adapter: {}\n", b.ctx.describe()));
    for s in &b.samples {
        let rate = s
            .rate()
            .map(|(v, u)| format!("{v:>9.2} {u}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<34} {:>10.3} ms  [{:.3}..{:.3}]  {rate}  {}\n",
            s.name,
            s.median(),
            s.min(),
            s.max(),
            s.note
        ));
    }
    out
}
