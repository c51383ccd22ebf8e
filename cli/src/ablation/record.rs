//! The files of the ablation's runs: a result file per finished run, a progress file beside
//! the checkpoint of a run under way, both small JSON documents read with a size bound and
//! checked before use.

use super::VARIANTS;
use activeshift::train::Trainer;
use activeshift::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Format tag of result files.
pub const RESULT_FORMAT: &str = "activeshift-ablation-run-v1";
/// Format tag of progress files.
pub const PROGRESS_FORMAT: &str = "activeshift-ablation-progress-v1";
/// Largest result or progress file read.
pub const MAX_RECORD_BYTES: u64 = 1 << 20;
/// Most ASL layers, sessions, characters of a text field a record may hold.
const MAX_ITEMS: usize = 10_000;
const MAX_TEXT: usize = 512;

/// What every run of one ablation shares; runs of different recipes never share a folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub dataset: String,
    /// `asnet20-WxE` (the depthwise variant changes the block, not the name here).
    pub arch: String,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub shift_lr_mult: f32,
    pub schedule: String,
    pub augment: bool,
    /// Training images per class (`--limit`); none: the whole training split.
    pub limit: Option<usize>,
}

impl Recipe {
    /// The recipe of the run `t` holds.
    pub fn of(t: &Trainer, limit: Option<usize>) -> Self {
        let s = &t.settings;
        Recipe {
            dataset: "fashion-mnist".into(),
            arch: t.config.name.trim_end_matches("-depthwise").into(),
            epochs: s.epochs,
            batch: s.batch,
            lr: s.lr,
            momentum: s.momentum,
            weight_decay: s.weight_decay,
            shift_lr_mult: s.shift_lr_mult,
            schedule: format!("{:?}", s.schedule).to_lowercase(),
            augment: s.augment,
            limit,
        }
    }

    /// One line for the document.
    pub fn describe(&self) -> String {
        format!(
            "{} on Fashion-MNIST, {} epoch{}, batch {}, Nesterov {}, lr {} {}, wd {}, shift lr x{} \
             with normalized gradient, {}; training set: {}",
            self.arch,
            self.epochs,
            if self.epochs == 1 { "" } else { "s" },
            self.batch,
            self.momentum,
            self.lr,
            self.schedule,
            self.weight_decay,
            self.shift_lr_mult,
            if self.augment {
                "crop-pad-2 + flip"
            } else {
                "no augmentation"
            },
            self.limit.map_or("all 60,000 images".into(), |n| {
                format!("first {n} images of each class")
            }),
        )
    }
}

/// The machine a stretch of a run was trained on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model (`model name` of /proc/cpuinfo; `unknown` elsewhere).
    pub cpu: String,
    /// Threads the trainer used.
    pub threads: usize,
}

impl Machine {
    pub fn this() -> Self {
        let cpu =
            activeshift::model::read_file_limited(Path::new("/proc/cpuinfo"), 16 << 20, "cpuinfo")
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("model name"))
                        .and_then(|l| l.split_once(':'))
                        .map(|(_, v)| v.trim().to_string())
                })
                .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu,
            threads: rayon::current_num_threads(),
        }
    }
}

/// One process's share of a run (a run interrupted and resumed has several).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub machine: Machine,
    /// The `--backend` asked for (`cpu`, `gpu`, `auto`).
    #[serde(default)]
    pub backend: String,
    /// Seconds of work this session kept (to its last checkpoint).
    pub seconds: f64,
    /// Training steps it took (to its last checkpoint).
    pub steps: u64,
}

/// Where a run's shifts started and ended, for one ASL layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShiftLayer {
    /// The tensor's name (`blocks.3.shift`).
    pub name: String,
    pub channels: usize,
    /// Mean |shift| over both components of every channel at the run's start.
    pub start_mean_abs: f64,
    /// The same at the end.
    pub end_mean_abs: f64,
    /// Mean |end - start| over both components of every channel.
    pub mean_abs_change: f64,
    /// Largest |end - start| of one component.
    pub max_abs_change: f64,
}

/// The shift tensors of a run, by name (empty for the depthwise block).
pub fn shifts_of(t: &Trainer) -> BTreeMap<String, Vec<f32>> {
    t.params
        .iter()
        .filter(|(k, _)| k.ends_with(".shift"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Per-layer movement from `start` to the shifts of `end` (in block order).
pub fn movement(start: &BTreeMap<String, Vec<f32>>, end: &Trainer) -> Result<Vec<ShiftLayer>> {
    let end = shifts_of(end);
    let mut layers = Vec::new();
    for (name, e) in &end {
        let s = start
            .get(name)
            .filter(|s| s.len() == e.len())
            .ok_or_else(|| {
                Error::invalid(
                    "ablation",
                    format!(
                        "the recorded initial shifts have no `{name}` of {} values",
                        e.len()
                    ),
                )
            })?;
        let n = e.len().max(1) as f64;
        let mean = |v: &[f32]| v.iter().map(|x| f64::from(x.abs())).sum::<f64>() / n;
        let change: Vec<f64> = s
            .iter()
            .zip(e)
            .map(|(a, b)| f64::from((b - a).abs()))
            .collect();
        layers.push(ShiftLayer {
            name: name.clone(),
            channels: e.len() / 2,
            start_mean_abs: mean(s),
            end_mean_abs: mean(e),
            mean_abs_change: change.iter().sum::<f64>() / n,
            max_abs_change: change.iter().copied().fold(0.0, f64::max),
        });
    }
    let block = |n: &str| {
        n.strip_prefix("blocks.")
            .and_then(|r| r.split('.').next())
            .and_then(|i| i.parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    };
    layers.sort_by_key(|l| block(&l.name));
    Ok(layers)
}

/// The state of a run under way, kept beside its checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub format: String,
    pub variant: String,
    pub seed: u64,
    pub recipe: Recipe,
    /// How the initial shifts below were obtained.
    pub initial_shifts_source: String,
    /// The shifts at the run's start, by tensor name.
    pub initial_shifts: BTreeMap<String, Vec<f32>>,
    pub epoch: usize,
    pub step_in_epoch: usize,
    pub sessions: Vec<Session>,
    /// Steps taken before this folder knew the run (a checkpoint of `activeshift train` copied
    /// into `in-progress/`): their time is unknown.
    #[serde(default)]
    pub untimed_steps: u64,
}

impl Progress {
    pub fn seconds(&self) -> f64 {
        self.sessions.iter().map(|s| s.seconds).sum()
    }
}

/// The record of a finished run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub format: String,
    pub variant: String,
    pub seed: u64,
    pub recipe: Recipe,
    pub test_correct: usize,
    pub test_total: usize,
    pub accuracy: f64,
    pub params: usize,
    pub mult_adds: u64,
    /// Seconds of training kept over all sessions (per-epoch test evaluation included).
    pub wall_seconds: f64,
    /// Steps whose time is not in `wall_seconds` (taken before the run's progress was recorded).
    #[serde(default)]
    pub untimed_steps: u64,
    /// Training images processed (steps x batch).
    pub train_images: u64,
    /// Timed training images (`train_images` less the untimed steps') / `wall_seconds`.
    pub images_per_second: f64,
    /// Inference images per second on the CPU engine, batch 128, where the run finished.
    pub inference_images_per_second_cpu: f64,
    /// The machine that finished the run.
    pub machine: Machine,
    pub sessions: Vec<Session>,
    /// activeshift's version and the commit of the working tree, where git could tell.
    pub version: String,
    pub commit: Option<String>,
    pub initial_shifts_source: String,
    pub shift_layers: Vec<ShiftLayer>,
}

/// `variant-seedK`, the stem of a run's files.
pub fn run_name(variant: &str, seed: u64) -> String {
    format!("{variant}-seed{seed}")
}

/// The variant and seed a file stem names, if it names a run.
pub fn parse_run_name(stem: &str) -> Option<(&'static str, u64)> {
    let (variant, seed) = stem.rsplit_once("-seed")?;
    let v = VARIANTS.iter().find(|v| v.key == variant)?;
    if seed.is_empty() || !seed.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((v.key, seed.parse().ok()?))
}

fn bad(path: &Path, format: &'static str, msg: impl std::fmt::Display) -> Error {
    Error::Format {
        format,
        msg: format!("{}: {msg}", path.display()),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, format: &'static str) -> Result<T> {
    let bytes = activeshift::model::read_file_limited(path, MAX_RECORD_BYTES, format).map_err(
        |e| match e {
            Error::Format { msg, .. } => bad(path, format, msg),
            e => e,
        },
    )?;
    serde_json::from_slice(&bytes).map_err(|e| bad(path, format, e))
}

fn check_text(path: &Path, format: &'static str, what: &str, s: &str) -> Result<()> {
    if s.chars().count() > MAX_TEXT {
        return Err(bad(
            path,
            format,
            format!("{what} is longer than {MAX_TEXT} characters"),
        ));
    }
    Ok(())
}

/// Largest number a record's measurement may hold (seconds, images per second, shift sizes):
/// far past any real run (30 years in seconds), small enough to print as it is.
const MAX_NUMBER: f64 = 1e9;

fn check_number(path: &Path, format: &'static str, what: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && (0.0..=MAX_NUMBER).contains(&v)) {
        return Err(bad(
            path,
            format,
            format!("{what} must be a number in 0..={MAX_NUMBER:e}, found {v:?}"),
        ));
    }
    Ok(())
}

fn check_recipe(path: &Path, format: &'static str, r: &Recipe) -> Result<()> {
    for (what, s) in [
        ("recipe.dataset", &r.dataset),
        ("recipe.arch", &r.arch),
        ("recipe.schedule", &r.schedule),
    ] {
        check_text(path, format, what, s)?;
    }
    if r.epochs == 0 || r.batch == 0 {
        return Err(bad(path, format, "recipe: epochs and batch must be >= 1"));
    }
    for (what, v) in [
        ("recipe.lr", r.lr),
        ("recipe.momentum", r.momentum),
        ("recipe.weight_decay", r.weight_decay),
        ("recipe.shift_lr_mult", r.shift_lr_mult),
    ] {
        check_number(path, format, what, f64::from(v))?;
    }
    Ok(())
}

fn check_sessions(path: &Path, format: &'static str, sessions: &[Session]) -> Result<()> {
    if sessions.len() > MAX_ITEMS {
        return Err(bad(path, format, "too many sessions"));
    }
    for s in sessions {
        check_text(path, format, "sessions.machine.cpu", &s.machine.cpu)?;
        check_text(path, format, "sessions.backend", &s.backend)?;
        check_number(path, format, "sessions.seconds", s.seconds)?;
    }
    Ok(())
}

/// The file name (without `.json`) must name the run the file holds.
fn check_name(path: &Path, format: &'static str, variant: &str, seed: u64) -> Result<()> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let known = VARIANTS.iter().any(|v| v.key == variant);
    if !known {
        return Err(bad(
            path,
            format,
            format!(
                "unknown variant `{}`",
                variant.chars().take(64).collect::<String>()
            ),
        ));
    }
    if stem != run_name(variant, seed) {
        return Err(bad(
            path,
            format,
            format!(
                "holds {variant} seed {seed}, but the file is named for another run (expected {}.json)",
                run_name(variant, seed)
            ),
        ));
    }
    Ok(())
}

impl RunResult {
    /// Read and check the result file `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let r: RunResult = read_json(path, "ablation result")?;
        r.check(path)?;
        Ok(r)
    }

    /// The checks [`RunResult::load`] makes, against the file `path` it came from.
    pub fn check(&self, path: &Path) -> Result<()> {
        let f = "ablation result";
        if self.format != RESULT_FORMAT {
            return Err(bad(path, f, format!("format must be `{RESULT_FORMAT}`")));
        }
        check_name(path, f, &self.variant, self.seed)?;
        check_recipe(path, f, &self.recipe)?;
        if self.test_total == 0 || self.test_correct > self.test_total {
            return Err(bad(
                path,
                f,
                format!(
                    "test_correct {} of test_total {} (need 0 < total, correct <= total)",
                    self.test_correct, self.test_total
                ),
            ));
        }
        let acc = self.test_correct as f64 / self.test_total as f64;
        if (self.accuracy - acc).abs() > 1e-9 {
            return Err(bad(
                path,
                f,
                format!(
                    "accuracy {:?} is not test_correct / test_total = {acc}",
                    self.accuracy
                ),
            ));
        }
        for (what, v) in [
            ("wall_seconds", self.wall_seconds),
            ("images_per_second", self.images_per_second),
            (
                "inference_images_per_second_cpu",
                self.inference_images_per_second_cpu,
            ),
        ] {
            check_number(path, f, what, v)?;
        }
        check_text(path, f, "machine.cpu", &self.machine.cpu)?;
        check_text(path, f, "version", &self.version)?;
        check_text(path, f, "commit", self.commit.as_deref().unwrap_or(""))?;
        check_text(
            path,
            f,
            "initial_shifts_source",
            &self.initial_shifts_source,
        )?;
        check_sessions(path, f, &self.sessions)?;
        // The parameters and shift layers must be those of the network the recipe and the
        // variant build, so the report's movement table covers every run it counts.
        let block = super::variant(&self.variant)?.block;
        let config = crate::train_cmd::arch_config(&self.recipe.arch, block)
            .map_err(|e| bad(path, f, format!("recipe.arch: {e}")))?;
        if self.params != config.param_count() {
            return Err(bad(
                path,
                f,
                format!(
                    "params {} is not the {} parameters of {}",
                    self.params,
                    config.param_count(),
                    config.name
                ),
            ));
        }
        let want: Vec<(String, usize)> = config
            .param_shapes()
            .into_iter()
            .filter(|(name, _)| name.ends_with(".shift"))
            .map(|(name, dims)| (name, dims[1]))
            .collect();
        let have: Vec<(String, usize)> = self
            .shift_layers
            .iter()
            .map(|l| (l.name.clone(), l.channels))
            .collect();
        if have != want {
            let list = |v: &[(String, usize)]| {
                let names: Vec<String> = v
                    .iter()
                    .take(16)
                    .map(|(n, c)| format!("{} ({c})", crate::printable(n)))
                    .collect();
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            };
            return Err(bad(
                path,
                f,
                format!(
                    "shift_layers must be those of {}: {}; found {}",
                    config.name,
                    list(&want),
                    list(&have)
                ),
            ));
        }
        for l in &self.shift_layers {
            for (what, v) in [
                ("start_mean_abs", l.start_mean_abs),
                ("end_mean_abs", l.end_mean_abs),
                ("mean_abs_change", l.mean_abs_change),
                ("max_abs_change", l.max_abs_change),
            ] {
                check_number(path, f, what, v)?;
            }
        }
        Ok(())
    }

    /// Write the file atomically (replacing `path`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid("ablation", e.to_string()))?;
        text.push('\n');
        activeshift::model::write_atomic(path, text.as_bytes(), true)
    }
}

impl Progress {
    /// Read and check the progress file `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let f = "ablation progress";
        let p: Progress = read_json(path, f)?;
        if p.format != PROGRESS_FORMAT {
            return Err(bad(path, f, format!("format must be `{PROGRESS_FORMAT}`")));
        }
        check_name(path, f, &p.variant, p.seed)?;
        check_recipe(path, f, &p.recipe)?;
        check_text(path, f, "initial_shifts_source", &p.initial_shifts_source)?;
        check_sessions(path, f, &p.sessions)?;
        if p.epoch > p.recipe.epochs {
            return Err(bad(
                path,
                f,
                format!(
                    "epoch {} is past the recipe's {} epochs",
                    p.epoch, p.recipe.epochs
                ),
            ));
        }
        if p.initial_shifts.len() > MAX_ITEMS {
            return Err(bad(path, f, "too many shift tensors"));
        }
        for (name, v) in &p.initial_shifts {
            check_text(path, f, "initial_shifts", name)?;
            if v.iter().any(|x| !x.is_finite()) {
                return Err(bad(
                    path,
                    f,
                    format!("initial shift `{name}` is not finite"),
                ));
            }
        }
        Ok(p)
    }

    /// Write the file atomically (replacing `path`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text =
            serde_json::to_string(self).map_err(|e| Error::invalid("ablation", e.to_string()))?;
        activeshift::model::write_atomic(path, text.as_bytes(), true)
    }
}

/// The commit of the working tree in the current folder, where git can tell.
pub fn commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty() && s.len() <= 64).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RunResult {
        RunResult {
            format: RESULT_FORMAT.into(),
            variant: "learned".into(),
            seed: 2,
            recipe: Recipe {
                dataset: "fashion-mnist".into(),
                arch: "asnet20-16x1".into(),
                epochs: 17,
                batch: 128,
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 5e-4,
                shift_lr_mult: 0.01,
                schedule: "cosine".into(),
                augment: true,
                limit: None,
            },
            test_correct: 9353,
            test_total: 10000,
            accuracy: 0.9353,
            params: 35098,
            mult_adds: 4_330_000,
            wall_seconds: 4800.5,
            untimed_steps: 0,
            train_images: 17 * 468 * 128,
            images_per_second: 212.1,
            inference_images_per_second_cpu: 1400.0,
            machine: Machine {
                cpu: "AMD EPYC".into(),
                threads: 2,
            },
            sessions: vec![Session {
                machine: Machine {
                    cpu: "AMD EPYC".into(),
                    threads: 2,
                },
                backend: "cpu".into(),
                seconds: 4800.5,
                steps: 17 * 468,
            }],
            version: "0.1.0".into(),
            commit: Some("abcdef123456".into()),
            initial_shifts_source: "recorded at the run's start".into(),
            shift_layers: (0..9)
                .map(|i| ShiftLayer {
                    name: format!("blocks.{i}.shift"),
                    channels: 16 << (i / 3),
                    start_mean_abs: 0.5,
                    end_mean_abs: 0.52,
                    mean_abs_change: 0.03,
                    max_abs_change: 0.1,
                })
                .collect(),
        }
    }

    #[test]
    fn a_result_file_round_trips_and_is_checked() {
        let dir = std::env::temp_dir().join(format!("ablation-record-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = sample();
        let path = dir.join("learned-seed2.json");
        r.save(&path).unwrap();
        assert_eq!(RunResult::load(&path).unwrap(), r);
        // The same content under another run's name is refused.
        let other = dir.join("learned-seed3.json");
        std::fs::copy(&path, &other).unwrap();
        let e = RunResult::load(&other).unwrap_err().to_string();
        assert!(e.contains("named for another run"), "{e}");
        // An accuracy that is not correct / total is refused.
        let mut wrong = r.clone();
        wrong.accuracy = 0.99;
        wrong.save(&path).unwrap();
        let e = RunResult::load(&path).unwrap_err().to_string();
        assert!(e.contains("accuracy"), "{e}");
        // Shift layers of another network are refused: the depthwise block has none.
        let mut depthwise = r.clone();
        depthwise.variant = "depthwise".into();
        depthwise.seed = 0;
        depthwise.params = 37450;
        let path = dir.join("depthwise-seed0.json");
        depthwise.save(&path).unwrap();
        let e = RunResult::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("asnet20-16x1-depthwise: none; found blocks.0.shift (16)"),
            "{e}"
        );
        depthwise.shift_layers.clear();
        depthwise.save(&path).unwrap();
        assert_eq!(RunResult::load(&path).unwrap(), depthwise);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn run_names_parse_back() {
        assert_eq!(
            parse_run_name("sampled-real-seed12"),
            Some(("sampled-real", 12))
        );
        assert_eq!(parse_run_name("learned-seed"), None);
        assert_eq!(parse_run_name("learned-seed-1"), None);
        assert_eq!(parse_run_name("other-seed1"), None);
        assert_eq!(run_name("grouped", 0), "grouped-seed0");
    }
}
