//! Helpers shared by the integration tests: one GPU context per test binary, fresh random
//! inputs with a printed seed, and error measures.
#![allow(dead_code)]

use activeshift::{GpuContext, GpuTensor};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::io::Write;
use std::sync::OnceLock;

/// The shared GPU context, or `None` when no adapter exists and the run does not require one.
///
/// With `ACTIVESHIFT_REQUIRE_GPU=1` (as in CI) a missing adapter fails the test instead of
/// skipping it. With `ACTIVESHIFT_GPU_TEST_LOG=FILE` every GPU test that runs appends one line
/// to FILE (`test<TAB>adapter<TAB>backend`), so CI can report how many ran, and on what.
pub fn gpu(test: &str) -> Option<&'static GpuContext> {
    static CTX: OnceLock<Result<GpuContext, String>> = OnceLock::new();
    let ctx = CTX.get_or_init(|| {
        pollster::block_on(GpuContext::new())
            .map(|ctx| ctx.with_policy(policy_from_env()))
            .map_err(|e| e.to_string())
    });
    match ctx {
        Ok(ctx) => {
            if let Ok(path) = std::env::var("ACTIVESHIFT_GPU_TEST_LOG") {
                // One write per line so parallel tests never interleave.
                let info = ctx.adapter_info();
                let line = format!("{test}\t{}\t{:?}\n", info.name, info.backend);
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            Some(ctx)
        }
        Err(e) => {
            if std::env::var("ACTIVESHIFT_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("ACTIVESHIFT_REQUIRE_GPU=1 but no GPU adapter is usable: {e}");
            }
            eprintln!("skipping {test}: no GPU adapter ({e})");
            None
        }
    }
}

/// The kernel policy overrides of `ACTIVESHIFT_KERNELS=gpu|cpu` and `ACTIVESHIFT_FUSED=1|0`,
/// as the `activeshift` program reads them (tools/device-check.sh runs the tests both ways).
pub fn policy_from_env() -> activeshift::gpu::KernelPolicyBuilder {
    use activeshift::gpu::{KernelFamily, KernelPolicy};
    let family = match std::env::var("ACTIVESHIFT_KERNELS").as_deref() {
        Ok("gpu") => Some(KernelFamily::Gpu),
        Ok("cpu") => Some(KernelFamily::Cpu),
        Ok("") | Err(_) => None,
        Ok(other) => panic!("ACTIVESHIFT_KERNELS: expected gpu or cpu, found {other:?}"),
    };
    let fused = match std::env::var("ACTIVESHIFT_FUSED").as_deref() {
        Ok("1") => Some(true),
        Ok("0") => Some(false),
        Ok("") | Err(_) => None,
        Ok(other) => panic!("ACTIVESHIFT_FUSED: expected 1 or 0, found {other:?}"),
    };
    KernelPolicy::builder().family(family).fused(fused)
}

/// A random generator with a fresh seed (or `ACTIVESHIFT_TEST_SEED`), printed so a failure can
/// be replayed.
pub fn rng(test: &str) -> (StdRng, u64) {
    let seed = std::env::var("ACTIVESHIFT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("{test}: seed {seed} (replay with ACTIVESHIFT_TEST_SEED={seed})");
    (StdRng::seed_from_u64(seed), seed)
}

/// `len` values uniform in `[lo, hi)`.
pub fn uniform(rng: &mut StdRng, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

/// A value uniform in `[lo, hi)`.
pub fn between(rng: &mut StdRng, lo: f32, hi: f32) -> f32 {
    rng.random_range(lo..hi)
}

/// `len` values uniform in `[lo, hi)`, as f64.
pub fn uniform64(rng: &mut StdRng, len: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

/// Relative error `max |a - b| / max |b|` (infinity norms); NaN anywhere gives infinity.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "compared slices differ in length");
    let mut diff = 0.0f64;
    let mut scale = 0.0f64;
    for (&x, &y) in a.iter().zip(b) {
        if !x.is_finite() || !y.is_finite() {
            return f64::INFINITY;
        }
        diff = diff.max((f64::from(x) - f64::from(y)).abs());
        scale = scale.max(f64::from(y).abs());
    }
    if scale == 0.0 { diff } else { diff / scale }
}

/// Convert to f64.
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// Convert to f32.
pub fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Upload a tensor.
pub fn upload(ctx: &GpuContext, dims: &[usize], data: &[f32]) -> GpuTensor {
    GpuTensor::from_slice(ctx, dims, data).expect("upload")
}

/// A tensor poisoned with NaN, to be overwritten by a kernel.
pub fn poisoned(ctx: &GpuContext, dims: &[usize]) -> GpuTensor {
    GpuTensor::filled(ctx, dims, f32::NAN).expect("poisoned tensor")
}

/// Read a tensor back.
pub fn read(ctx: &GpuContext, t: &GpuTensor) -> Vec<f32> {
    t.read_blocking(ctx).expect("readback")
}

use activeshift::Shape4;
use activeshift::cpu;
use activeshift::gpu::kernels::Conv1x1Epilogue;

/// The kernels under test, behind one interface so every reference test runs on the CPU
/// implementation and on the GPU kernels alike. All f32.
pub trait Impl {
    /// Name for messages.
    fn name(&self) -> String;
    /// ASL forward.
    fn forward(&self, x: &[f32], xs: Shape4, shift: &[f32], s: usize) -> Vec<f32>;
    /// ASL input gradient; `xs` is the forward input's shape.
    fn backward_input(&self, dout: &[f32], xs: Shape4, shift: &[f32], s: usize) -> Vec<f32>;
    /// ASL shift gradient.
    fn backward_shift(
        &self,
        x: &[f32],
        xs: Shape4,
        dout: &[f32],
        shift: &[f32],
        s: usize,
    ) -> Vec<f32>;
    /// Normalized shift gradient.
    fn normalize(&self, grad: &[f32]) -> Vec<f32>;
    /// 1x1 convolution without epilogue.
    fn conv1x1(&self, x: &[f32], xs: Shape4, w: &[f32], cout: usize, s: usize) -> Vec<f32>;
}

/// The CPU implementation (f32).
pub struct Cpu;

impl Impl for Cpu {
    fn name(&self) -> String {
        "cpu".into()
    }
    fn forward(&self, x: &[f32], xs: Shape4, shift: &[f32], s: usize) -> Vec<f32> {
        cpu::asl_forward(x, xs, shift, s).expect("cpu asl_forward")
    }
    fn backward_input(&self, dout: &[f32], xs: Shape4, shift: &[f32], s: usize) -> Vec<f32> {
        cpu::asl_backward_input(dout, xs, shift, s).expect("cpu asl_backward_input")
    }
    fn backward_shift(
        &self,
        x: &[f32],
        xs: Shape4,
        dout: &[f32],
        shift: &[f32],
        s: usize,
    ) -> Vec<f32> {
        cpu::asl_backward_shift(x, xs, dout, shift, s).expect("cpu asl_backward_shift")
    }
    fn normalize(&self, grad: &[f32]) -> Vec<f32> {
        let mut g = grad.to_vec();
        cpu::normalize_shift_grad(&mut g).expect("cpu normalize");
        g
    }
    fn conv1x1(&self, x: &[f32], xs: Shape4, w: &[f32], cout: usize, s: usize) -> Vec<f32> {
        cpu::conv1x1(x, xs, w, cout, s, Default::default()).expect("cpu conv1x1")
    }
}

/// The GPU kernels; every output is poisoned with NaN before the kernel runs.
pub struct Gpu(pub &'static GpuContext);

impl Impl for Gpu {
    fn name(&self) -> String {
        format!("gpu ({})", self.0.adapter_info().name)
    }
    fn forward(&self, x: &[f32], xs: Shape4, shift: &[f32], s: usize) -> Vec<f32> {
        let ctx = self.0;
        let xt = upload(ctx, &xs.dims(), x);
        let st = upload(ctx, &[2, xs.c], shift);
        let out = poisoned(ctx, &xs.strided(xs.c, s).dims());
        ctx.submit(|enc| {
            ctx.kernels()
                .asl_forward()
                .prepare(ctx, &xt, &st, s, &out)
                .map(|d| d.record(enc))
        })
        .expect("gpu asl_forward");
        read(ctx, &out)
    }
    fn backward_input(&self, dout: &[f32], xs: Shape4, shift: &[f32], s: usize) -> Vec<f32> {
        let ctx = self.0;
        let dt = upload(ctx, &xs.strided(xs.c, s).dims(), dout);
        let st = upload(ctx, &[2, xs.c], shift);
        let dx = poisoned(ctx, &xs.dims());
        ctx.submit(|enc| {
            ctx.kernels()
                .asl_backward_input()
                .prepare(ctx, &dt, &st, s, &dx)
                .map(|d| d.record(enc))
        })
        .expect("gpu asl_backward_input");
        read(ctx, &dx)
    }
    fn backward_shift(
        &self,
        x: &[f32],
        xs: Shape4,
        dout: &[f32],
        shift: &[f32],
        s: usize,
    ) -> Vec<f32> {
        let ctx = self.0;
        let xt = upload(ctx, &xs.dims(), x);
        let dt = upload(ctx, &xs.strided(xs.c, s).dims(), dout);
        let st = upload(ctx, &[2, xs.c], shift);
        let g = poisoned(ctx, &[2, xs.c]);
        ctx.submit(|enc| {
            ctx.kernels()
                .asl_backward_shift()
                .prepare(ctx, &xt, &dt, &st, s, &g)
                .map(|d| d.record(enc))
        })
        .expect("gpu asl_backward_shift");
        read(ctx, &g)
    }
    fn normalize(&self, grad: &[f32]) -> Vec<f32> {
        let ctx = self.0;
        let g = upload(ctx, &[2, grad.len() / 2], grad);
        ctx.submit(|enc| {
            ctx.kernels()
                .shift_grad_normalize()
                .prepare(ctx, &g)
                .map(|d| d.record(enc))
        })
        .expect("gpu normalize");
        read(ctx, &g)
    }
    fn conv1x1(&self, x: &[f32], xs: Shape4, w: &[f32], cout: usize, s: usize) -> Vec<f32> {
        let ctx = self.0;
        let xt = upload(ctx, &xs.dims(), x);
        let wt = upload(ctx, &[cout, xs.c], w);
        let y = poisoned(ctx, &xs.strided(cout, s).dims());
        ctx.submit(|enc| {
            ctx.kernels()
                .conv1x1()
                .prepare(ctx, &xt, &wt, s, Conv1x1Epilogue::default(), &y)
                .map(|d| d.record(enc))
        })
        .expect("gpu conv1x1");
        read(ctx, &y)
    }
}

/// Run `body` on the CPU implementation.
pub fn on_cpu(body: impl Fn(&dyn Impl)) {
    body(&Cpu);
}

/// Run `body` on the GPU kernels (skips only when no adapter and not required).
pub fn on_gpu(test: &str, body: impl Fn(&dyn Impl)) {
    if let Some(ctx) = gpu(test) {
        body(&Gpu(ctx));
    }
}

/// The authors' files some tests read (never part of the repository): the folder that
/// `ACTIVESHIFT_SHARED_DATA` names, holding `pretrained/AS-ResNet-w32.caffemodel`,
/// `pretrained/AS-ResNet-w32.deploy.prototxt`, `imagenet_classes.txt` and `images/cat.jpg`.
pub struct SharedData(std::path::PathBuf);

/// The files a `SharedData` folder must hold.
const SHARED_FILES: [&str; 4] = [
    "pretrained/AS-ResNet-w32.caffemodel",
    "pretrained/AS-ResNet-w32.deploy.prototxt",
    "imagenet_classes.txt",
    "images/cat.jpg",
];

impl SharedData {
    /// The file `rel` of the folder, as a string (for command lines and messages).
    pub fn file(&self, rel: &str) -> String {
        self.0.join(rel).display().to_string()
    }
    /// The authors' w32 weights (Caffe protobuf).
    pub fn caffemodel(&self) -> String {
        self.file(SHARED_FILES[0])
    }
    /// w32's deploy prototxt.
    pub fn deploy(&self) -> String {
        self.file(SHARED_FILES[1])
    }
    /// The 1000 ImageNet class names.
    pub fn labels(&self) -> String {
        self.file(SHARED_FILES[2])
    }
    /// The test photo (w32 top-1: 285, Egyptian cat).
    pub fn cat(&self) -> String {
        self.file(SHARED_FILES[3])
    }
}

/// Appends `test<TAB>what` to `ACTIVESHIFT_SHARED_TEST_LOG` when set (CI counts the lines).
fn shared_log(test: &str, what: &str) {
    if let Ok(path) = std::env::var("ACTIVESHIFT_SHARED_TEST_LOG")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = f.write_all(format!("{test}\t{what}\n").as_bytes());
    }
}

/// A test that cannot run without the authors' data: a failure with
/// `ACTIVESHIFT_REQUIRE_SHARED_DATA=1` (as in CI), otherwise one line on the real stderr (not
/// captured by the test harness, so `cargo test` shows it) and the log.
fn not_run(test: &str) {
    let why = "needs the authors' data (set ACTIVESHIFT_SHARED_DATA=DIR, see README.md)";
    if std::env::var("ACTIVESHIFT_REQUIRE_SHARED_DATA").is_ok_and(|v| v == "1") {
        panic!("ACTIVESHIFT_REQUIRE_SHARED_DATA=1 but {test} {why}");
    }
    let _ = writeln!(std::io::stderr(), "skipped {test}: {why}");
    shared_log(test, "skipped");
}

/// The authors' data for `test`, or `None` (reported, see [`not_run`]) when
/// `ACTIVESHIFT_SHARED_DATA` is unset. A folder named but lacking a file fails the test.
pub fn shared_data(test: &str) -> Option<SharedData> {
    let Some(dir) = std::env::var_os("ACTIVESHIFT_SHARED_DATA").filter(|d| !d.is_empty()) else {
        not_run(test);
        return None;
    };
    let dir = std::path::PathBuf::from(dir);
    for file in SHARED_FILES {
        assert!(
            dir.join(file).is_file(),
            "ACTIVESHIFT_SHARED_DATA={}: {file} is missing",
            dir.display()
        );
    }
    shared_log(test, "ran");
    Some(SharedData(dir))
}

/// The converted w32 model (converted once per test binary): from the authors' weights in
/// `ACTIVESHIFT_SHARED_DATA`, else the copy `--model as-resnet-w32` keeps in the program's cache
/// folder (`ACTIVESHIFT_CACHE_DIR`, else the user's cache folder); `None` (reported) without
/// either.
pub fn w32(test: &str) -> Option<&'static activeshift::Model> {
    static MODEL: OnceLock<activeshift::Model> = OnceLock::new();
    if let Some(model) = MODEL.get() {
        shared_log(test, "ran");
        return Some(model);
    }
    let model = if std::env::var_os("ACTIVESHIFT_SHARED_DATA").is_some_and(|d| !d.is_empty()) {
        let shared = shared_data(test)?;
        let layers = activeshift::caffe::read_caffemodel(shared.caffemodel().as_ref())
            .expect("read the authors' caffemodel");
        let labels = activeshift::model::read_labels(
            &std::fs::read_to_string(shared.labels()).expect("labels"),
        );
        activeshift::model::import_caffe(&layers, labels).expect("import w32")
    } else {
        let cached = activeshift::data::cache_dir()
            .map(|d| d.join("as-resnet-w32.safetensors"))
            .filter(|f| f.is_file());
        let Some(cached) = cached else {
            not_run(test);
            return None;
        };
        let model = activeshift::Model::load(&cached)
            .unwrap_or_else(|e| panic!("{}: {e}", cached.display()));
        assert_eq!(model.config.name, "as-resnet-w32", "{}", cached.display());
        shared_log(test, "ran (cached w32)");
        model
    };
    Some(MODEL.get_or_init(|| model))
}

/// A model with random weights of a realistic scale (affine scales near 1, shifts in ±2).
pub fn random_model(
    config: &activeshift::model::ArchConfig,
    rng: &mut StdRng,
) -> activeshift::Model {
    let params: std::collections::BTreeMap<String, activeshift::model::HostTensor> = config
        .param_shapes()
        .into_iter()
        .map(|(name, dims)| {
            let len: usize = dims.iter().product();
            let fan_in = if dims.len() > 1 {
                dims[1..].iter().product::<usize>()
            } else {
                1
            };
            let data = if name.ends_with(".scale") {
                uniform(rng, len, 0.5, 1.5)
            } else if name.ends_with(".bias") {
                uniform(rng, len, -0.2, 0.2)
            } else if name.ends_with(".shift") {
                uniform(rng, len, -2.0, 2.0)
            } else {
                let a = (3.0 / fan_in as f32).sqrt();
                uniform(rng, len, -a, a)
            };
            (
                name,
                activeshift::model::HostTensor::new(dims, data).unwrap(),
            )
        })
        .collect();
    activeshift::Model::new(config.clone(), Vec::new(), params).unwrap()
}

/// A small synthetic dataset in the cache format in `dir` (no download): class k is a bright
/// band at row 2k + 3.
pub fn synthetic_fashion(dir: &std::path::Path, train: usize, test: usize) {
    use activeshift::data::{Dataset, FashionMnist, PIXELS};
    let make = |n: usize| {
        let mut set = Dataset::default();
        for i in 0..n {
            let class = i % 10;
            let mut img = vec![0u8; PIXELS];
            for c in 0..28 {
                img[(2 * class + 3) * 28 + c] = 200;
            }
            set.pixels.extend(img);
            set.labels.push(class as u32);
        }
        set
    };
    FashionMnist {
        train: make(train),
        test: make(test),
    }
    .save_cache(&dir.join("fashion-mnist.bin"))
    .unwrap();
}

/// A fresh, empty folder for one test, unique to this test binary and process.
pub fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "activeshift-{}-{name}-{}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The `activeshift` program built for these tests: the CLI crate's (cli/tests/) build it;
/// the library's test crates have no program to run.
pub fn bin() -> std::process::Command {
    match option_env!("CARGO_BIN_EXE_activeshift") {
        Some(exe) => std::process::Command::new(exe),
        None => panic!("only the CLI crate's tests (cli/tests/) run the activeshift program"),
    }
}

/// Run `cmd` to the end: (success, stdout, stderr).
pub fn run(cmd: &mut std::process::Command) -> (bool, String, String) {
    let out = cmd.output().expect("run activeshift");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run `cmd`: `(exit code, stdout, stderr)` (-1 when a signal ended it).
pub fn run_code(cmd: &mut std::process::Command) -> (i32, String, String) {
    let out = cmd.output().expect("run activeshift");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Shapes with C in {1, 3, 17, 33} and H, W in {1, 7, 13, 28}, square and not.
pub fn layer_shapes() -> Vec<activeshift::Shape4> {
    let mut v = Vec::new();
    for (n, c) in [(1, 1), (2, 3), (1, 17), (2, 33)] {
        for hw in [1, 7, 13, 28] {
            v.push(activeshift::Shape4::new(n, c, hw, hw));
        }
    }
    v.push(activeshift::Shape4::new(2, 3, 7, 28));
    v.push(activeshift::Shape4::new(1, 17, 13, 1));
    v
}
