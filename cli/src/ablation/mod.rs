//! `activeshift ablation`: the paper's Table 4 (how the shifts are chosen) and Table 2 (the
//! shift against a depthwise 3x3) on Fashion-MNIST, trained with the same recipe over several
//! seeds, one run at a time, each resumable. Finished runs leave a small result file and their
//! model in `--dir` (committed, so no finished run is trained again on another machine); runs
//! under way keep their checkpoint and progress in `--dir/in-progress/`. `--report` writes the
//! document from the result files alone.

mod record;
mod report;

use crate::{BackendChoice, BlockChoice, ScheduleChoice, ShiftChoice, TrainArgs};
use activeshift::data::{self, Dataset, FashionMnist};
use activeshift::train::{ShiftMode, Trainer};
use activeshift::{Classifier, Error, Model, Result};
use record::{Machine, Progress, Recipe, RunResult, Session, run_name};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct AblationArgs {
    /// Epochs of every run (17: the authors' recipe, the length of the first shipped model, 16x1).
    #[arg(long, default_value_t = 17, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
    epochs: usize,
    /// Seeds of the plan: `0,1,2` or `0-2` for every variant, `VARIANT:SEEDS` for one
    /// (repeatable; later values win). Default: learned and sampled-real 0-2; grouped,
    /// sampled-int and depthwise 0.
    #[arg(long, value_name = "[VARIANT:]SEEDS")]
    seeds: Vec<String>,
    /// Train only this variant's planned seeds, or only the run VARIANT:SEED.
    #[arg(long, value_name = "VARIANT[:SEED]")]
    only: Option<String>,
    /// Folder of the runs: `VARIANT-seedK.json` (result) and `.safetensors` (model) of every
    /// finished run, `in-progress/` the checkpoints of runs under way. Commit it: a finished
    /// run is never trained again, an interrupted one resumes (also after a git pull).
    #[arg(long, default_value = "results/ablation")]
    dir: PathBuf,
    /// Train nothing: write the report from the result files in --dir alone (to --markdown,
    /// default docs/ablation.md).
    #[arg(long)]
    report: bool,
    /// Write the report as Markdown to this file. A file this command did not generate is
    /// replaced only with --force.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Replace the Markdown file even if this command did not generate it.
    #[arg(long)]
    force: bool,
    /// Print the report as one JSON document instead of Markdown.
    #[arg(long)]
    json: bool,
    /// Train on the first N images of each class only (quick runs; not the documented table;
    /// use another --dir).
    #[arg(long)]
    limit: Option<usize>,
    /// Training backend (cpu: the documented runs).
    #[arg(long, value_enum, default_value_t = BackendChoice::Cpu)]
    backend: BackendChoice,
    /// Steps between checkpoints within an epoch.
    #[arg(long, default_value_t = 100)]
    checkpoint_every: usize,
    /// The shifts' learning-rate multiplier of every run (the authors' 0.01). Another value is
    /// another recipe: give it its own --dir.
    #[arg(long, default_value_t = 0.01)]
    shift_lr_mult: f32,
}

/// One row of the table.
pub struct Variant {
    pub key: &'static str,
    pub label: &'static str,
    shift: ShiftChoice,
    block: BlockChoice,
    /// Seeds of the default plan.
    default_seeds: usize,
}

pub const VARIANTS: [Variant; 6] = [
    Variant {
        key: "grouped",
        label: "grouped integer shift (ShiftNet), frozen",
        shift: ShiftChoice::Grouped,
        block: BlockChoice::Asl,
        default_seeds: 1,
    },
    Variant {
        key: "sampled-int",
        label: "sampled integer shift N(0,1), frozen",
        shift: ShiftChoice::SampledInt,
        block: BlockChoice::Asl,
        default_seeds: 1,
    },
    Variant {
        key: "sampled-real",
        label: "sampled real shift N(0,1), frozen",
        shift: ShiftChoice::SampledReal,
        block: BlockChoice::Asl,
        default_seeds: 3,
    },
    Variant {
        key: "learned",
        label: "learned real shift (ASL)",
        shift: ShiftChoice::Learned,
        block: BlockChoice::Asl,
        default_seeds: 3,
    },
    Variant {
        key: "learned-normal",
        label: "learned real shift from N(0,1) (diagnostic)",
        shift: ShiftChoice::LearnedNormal,
        block: BlockChoice::Asl,
        default_seeds: 0,
    },
    Variant {
        key: "depthwise",
        label: "depthwise 3x3 in place of the shift",
        shift: ShiftChoice::Learned,
        block: BlockChoice::Depthwise,
        default_seeds: 1,
    },
];

/// The planned seeds of every variant, in [`VARIANTS`] order.
pub type Plan = Vec<(&'static Variant, Vec<u64>)>;

fn usage(msg: String) -> Error {
    Error::invalid("ablation", msg)
}

fn variant(key: &str) -> Result<&'static Variant> {
    VARIANTS.iter().find(|v| v.key == key).ok_or_else(|| {
        let keys: Vec<&str> = VARIANTS.iter().map(|v| v.key).collect();
        usage(format!(
            "unknown variant `{}` (one of {})",
            crate::printable(key),
            keys.join(", ")
        ))
    })
}

/// `0,1,2`, `0-4`, `0-2,7`: at most 1000 seeds, in increasing order, each once.
fn parse_seeds(s: &str) -> Result<Vec<u64>> {
    let bad = || {
        usage(format!(
            "seeds must look like `0,1,2` or `0-2`, found `{}`",
            crate::printable(s)
        ))
    };
    let mut seeds = std::collections::BTreeSet::new();
    for item in s.split(',') {
        let (lo, hi) = match item.split_once('-') {
            Some((a, b)) => (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            ),
            None => {
                let n: u64 = item.trim().parse().map_err(|_| bad())?;
                (n, n)
            }
        };
        if lo > hi || hi - lo >= 1000 || seeds.len() as u64 + (hi - lo) >= 1000 {
            return Err(bad());
        }
        seeds.extend(lo..=hi);
    }
    Ok(seeds.into_iter().collect())
}

/// The plan `--seeds` describes (the default plan without it).
fn plan_of(seeds: &[String]) -> Result<Plan> {
    let mut plan: Plan = VARIANTS
        .iter()
        .map(|v| (v, (0..v.default_seeds as u64).collect()))
        .collect();
    for s in seeds {
        match s.split_once(':') {
            Some((key, list)) => {
                let v = variant(key)?;
                let list = parse_seeds(list)?;
                if let Some(e) = plan.iter_mut().find(|(p, _)| p.key == v.key) {
                    e.1 = list;
                }
            }
            None => {
                let list = parse_seeds(s)?;
                for e in &mut plan {
                    e.1 = list.clone();
                }
            }
        }
    }
    Ok(plan)
}

/// The runs `--only` selects from `plan` (all of them without it).
fn selected(plan: &Plan, only: Option<&str>) -> Result<Vec<(&'static Variant, u64)>> {
    let all = plan
        .iter()
        .flat_map(|(v, s)| s.iter().map(move |&k| (*v, k)));
    let Some(only) = only else {
        return Ok(all.collect());
    };
    Ok(match only.split_once(':') {
        Some((key, seed)) => {
            let seed = seed.parse::<u64>().map_err(|_| {
                usage(format!(
                    "--only takes VARIANT or VARIANT:SEED, found `{}`",
                    crate::printable(only)
                ))
            })?;
            vec![(variant(key)?, seed)]
        }
        None => {
            let v = variant(only)?;
            all.filter(|(p, _)| p.key == v.key).collect()
        }
    })
}

/// The marker that starts a document this command wrote (what it may replace without --force).
pub const GENERATED: &str = "<!-- generated by `activeshift ablation --report`";

/// Refuse to replace `md` unless it is missing, a document this command wrote, or `force`.
fn check_markdown_target(md: &Path, force: bool) -> Result<()> {
    if force || std::fs::symlink_metadata(md).is_err() {
        return crate::refuse_overwrite(md, true);
    }
    crate::refuse_overwrite(md, true)?;
    let head = activeshift::model::read_file_limited(md, 16 << 20, "markdown")?;
    if head.starts_with(GENERATED.as_bytes()) {
        return Ok(());
    }
    Err(crate::io_err(
        md,
        std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "file exists and was not generated by `activeshift ablation` (pass --force to replace it)",
        ),
    ))
}

pub fn run(a: AblationArgs) -> Result<()> {
    let plan = plan_of(&a.seeds)?;
    let runs = selected(&plan, a.only.as_deref())?;
    let md = a
        .markdown
        .clone()
        .or_else(|| a.report.then(|| PathBuf::from("docs/ablation.md")));
    if let Some(md) = &md {
        check_markdown_target(md, a.force)?;
    }
    if !a.report {
        std::fs::create_dir_all(a.dir.join("in-progress")).map_err(|e| crate::io_err(&a.dir, e))?;
        let data = crate::train_cmd::fashion_mnist()?;
        for (v, seed) in runs {
            run_one(&a, &data, v, seed)?;
        }
    }
    let gathered = report::gather(&a.dir, &plan)?;
    let text = report::markdown(&gathered, &a.dir);
    if a.json {
        println!("{:#}", report::json(&gathered));
    } else {
        print!("{text}");
    }
    if let Some(md) = &md {
        activeshift::model::write_atomic(md, text.as_bytes(), true)?;
        eprintln!("wrote {}", md.display());
    }
    Ok(())
}

fn backend_name(b: BackendChoice) -> &'static str {
    match b {
        BackendChoice::Auto => "auto",
        BackendChoice::Gpu => "gpu",
        BackendChoice::Cpu => "cpu",
    }
}

fn mismatch(path: &Path, what: String) -> Error {
    usage(format!(
        "{} holds {what}: choose another --dir (one recipe per folder)",
        path.display()
    ))
}

/// Train (or resume, or keep) the run `v`, `seed` in `a.dir`, then record it.
fn run_one(a: &AblationArgs, data: &FashionMnist, v: &Variant, seed: u64) -> Result<()> {
    let name = run_name(v.key, seed);
    let result_path = a.dir.join(format!("{name}.json"));
    let in_progress = a.dir.join("in-progress");
    let ckpt = in_progress.join(format!("{name}.ckpt"));
    let progress_path = in_progress.join(format!("{name}.json"));
    let model_tmp = in_progress.join(format!("{name}.safetensors"));
    let mut args = TrainArgs {
        dataset: crate::DatasetChoice::FashionMnist,
        arch: "asnet20-16x1".into(),
        epochs: a.epochs,
        batch: 128,
        lr: 0.1,
        weight_decay: 5e-4,
        schedule: ScheduleChoice::Cosine,
        shift: v.shift,
        shift_lr_mult: a.shift_lr_mult,
        block: v.block,
        seed,
        limit: a.limit,
        images: None,
        size: None,
        gray: false,
        rgb: false,
        val_fraction: 0.1,
        from: None,
        freeze: crate::FreezeChoice::Backbone,
        no_augment: false,
        backend: a.backend,
        checkpoint: Some(ckpt.clone()),
        checkpoint_every: a.checkpoint_every,
        resume: false,
        // Only this command's own model of the run, rewritten after every epoch.
        force: true,
        output: model_tmp.clone(),
        // The run's settings are this command's own: nothing to compare on resume.
        given: Vec::new(),
        driver: None,
    };
    let fresh = crate::train_cmd::new_trainer(&args)?;
    let recipe = Recipe::of(&fresh, a.limit);
    if std::fs::symlink_metadata(&result_path).is_ok() {
        let r = RunResult::load(&result_path)?;
        if r.recipe != recipe {
            return Err(mismatch(
                &result_path,
                format!("a run of another recipe ({})", r.recipe.describe()),
            ));
        }
        // Left over if a process stopped between writing the result and deleting them.
        remove_files(&[&ckpt, &progress_path, &model_tmp])?;
        eprintln!(
            "{name}: finished run in {} ({:.2}%), not trained again",
            result_path.display(),
            r.accuracy * 100.0
        );
        return Ok(());
    }
    let n_train = match a.limit {
        Some(n) => data.train.per_class(n).len(),
        None => data.train.len(),
    };
    let steps_per_epoch = fresh.steps_per_epoch(n_train);
    let mut progress = if ckpt.exists() {
        let t = Trainer::load_checkpoint(&ckpt)?;
        let same = t.settings.seed == seed
            && t.settings.shift == ShiftMode::from(v.shift)
            && t.config == fresh.config
            && Recipe::of(&t, a.limit) == recipe;
        if !same {
            return Err(mismatch(
                &ckpt,
                format!(
                    "a run with other settings ({:?} shifts, seed {}, {} epochs)",
                    t.settings.shift, t.settings.seed, t.settings.epochs
                ),
            ));
        }
        args.resume = true;
        if std::fs::symlink_metadata(&progress_path).is_ok() {
            let p = Progress::load(&progress_path)?;
            if p.recipe != recipe {
                return Err(mismatch(
                    &progress_path,
                    format!("a run of another recipe ({})", p.recipe.describe()),
                ));
            }
            p
        } else {
            // No progress file (e.g. a checkpoint of `activeshift train` with the same
            // settings, copied here): the initial shifts are a function of the settings; the
            // time of the steps taken so far is unknown.
            let start = Trainer::new(t.config.clone(), t.labels.clone(), t.settings.clone())?;
            let mut p = new_progress(
                v,
                seed,
                &recipe,
                &start,
                "recomputed from the seed (no progress file)",
            );
            p.epoch = t.epoch;
            p.step_in_epoch = t.step_in_epoch;
            p.untimed_steps = (t.epoch * steps_per_epoch + t.step_in_epoch) as u64;
            p
        }
    } else {
        new_progress(v, seed, &recipe, &fresh, "recorded at the run's start")
    };
    progress.sessions.push(Session {
        machine: Machine::this(),
        backend: backend_name(a.backend).into(),
        seconds: 0.0,
        steps: 0,
    });
    progress.save(&progress_path)?;
    let first_step = progress.epoch * steps_per_epoch + progress.step_in_epoch;
    let progress = Rc::new(RefCell::new(progress));
    let started = Instant::now();
    let record = {
        let (progress, path) = (progress.clone(), progress_path.clone());
        move |t: &Trainer| -> Result<()> {
            let mut p = progress.borrow_mut();
            let step = t.epoch * steps_per_epoch + t.step_in_epoch;
            if let Some(s) = p.sessions.last_mut() {
                s.seconds = started.elapsed().as_secs_f64();
                s.steps = step.saturating_sub(first_step) as u64;
            }
            p.epoch = t.epoch;
            p.step_in_epoch = t.step_in_epoch;
            p.save(&path)
        }
    };
    let record = Rc::new(record);
    args.driver = Some(crate::train_cmd::Driver {
        on_checkpoint: Box::new({
            let record = record.clone();
            move |t| record(t)
        }),
        resume_command: std::env::args()
            .map(|w| crate::train_cmd::shell_quote(&w))
            .collect::<Vec<_>>()
            .join(" "),
    });
    eprintln!(
        "{name}: {} ({}), seed {seed}",
        if args.resume { "resuming" } else { "training" },
        v.label
    );
    crate::train_cmd::train(args)?;
    let t = Trainer::load_checkpoint(&ckpt)?;
    record(&t)?;
    let progress = progress.borrow().clone();
    let shift_layers = record::movement(&progress.initial_shifts, &t)?;
    let model = Model::load(&model_tmp)?;
    let mut clf = Classifier::cpu(model.clone());
    let correct = crate::test_correct(&mut clf, &data.test)?;
    let inference = inference_rate(&mut clf, &data.test)?;
    let total = data.test.len();
    let wall = progress.seconds();
    let train_images = (t.epoch * steps_per_epoch * t.settings.batch) as u64;
    let result = RunResult {
        format: record::RESULT_FORMAT.into(),
        variant: v.key.into(),
        seed,
        recipe,
        test_correct: correct,
        test_total: total,
        accuracy: correct as f64 / total.max(1) as f64,
        params: model.config.param_count(),
        mult_adds: activeshift::model::Plan::new(&model.config, 1).mult_adds(),
        wall_seconds: wall,
        untimed_steps: progress.untimed_steps,
        train_images,
        images_per_second: train_images
            .saturating_sub(progress.untimed_steps * t.settings.batch as u64)
            as f64
            / wall.max(1e-9),
        inference_images_per_second_cpu: inference,
        machine: Machine::this(),
        sessions: progress.sessions.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        commit: record::commit(),
        initial_shifts_source: progress.initial_shifts_source.clone(),
        shift_layers,
    };
    // The model first, then the result (the mark of a finished run), then the run's state.
    let model_path = a.dir.join(format!("{name}.safetensors"));
    std::fs::rename(&model_tmp, &model_path).map_err(|e| crate::io_err(&model_path, e))?;
    result.save(&result_path)?;
    remove_files(&[&ckpt, &progress_path])?;
    eprintln!(
        "{name}: {:.2}% ({correct}/{total}) in {:.0} s; wrote {} and {}",
        result.accuracy * 100.0,
        wall,
        result_path.display(),
        model_path.display()
    );
    Ok(())
}

/// Delete the files that exist of `paths`.
fn remove_files(paths: &[&Path]) -> Result<()> {
    for p in paths {
        if let Err(e) = std::fs::remove_file(p)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(crate::io_err(p, e));
        }
    }
    Ok(())
}

fn new_progress(
    v: &Variant,
    seed: u64,
    recipe: &Recipe,
    start: &Trainer,
    source: &str,
) -> Progress {
    Progress {
        format: record::PROGRESS_FORMAT.into(),
        variant: v.key.into(),
        seed,
        recipe: recipe.clone(),
        initial_shifts_source: source.into(),
        initial_shifts: record::shifts_of(start),
        epoch: 0,
        step_in_epoch: 0,
        sessions: Vec::new(),
        untimed_steps: 0,
    }
}

/// Inference images per second at batch 128 (median of 3 after a warm-up).
fn inference_rate(clf: &mut Classifier, set: &Dataset) -> Result<f64> {
    let idx: Vec<usize> = (0..128).map(|i| i % set.len().max(1)).collect();
    let mut input = Vec::new();
    data::batch(set, &idx, None, &mut input);
    pollster::block_on(clf.run(&input))?;
    let mut times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        pollster::block_on(clf.run(&input))?;
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(128.0 / times[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_plan_and_seed_lists() {
        let plan = plan_of(&[]).unwrap();
        let seeds = |p: &Plan, k: &str| p.iter().find(|(v, _)| v.key == k).unwrap().1.clone();
        assert_eq!(seeds(&plan, "learned"), [0, 1, 2]);
        assert_eq!(seeds(&plan, "sampled-real"), [0, 1, 2]);
        for k in ["grouped", "sampled-int", "depthwise"] {
            assert_eq!(seeds(&plan, k), [0]);
        }
        let plan = plan_of(&["0-1".into(), "learned:0-2,7".into()]).unwrap();
        assert_eq!(seeds(&plan, "learned"), [0, 1, 2, 7]);
        assert_eq!(seeds(&plan, "grouped"), [0, 1]);
        for bad in ["", "a", "2-1", "0-5000", "x:1", "learned:"] {
            assert!(plan_of(&[bad.into()]).is_err(), "{bad}");
        }
        let only = selected(&plan_of(&[]).unwrap(), Some("learned")).unwrap();
        assert_eq!(only.len(), 3);
        let only = selected(&plan_of(&[]).unwrap(), Some("grouped:4")).unwrap();
        assert_eq!((only[0].0.key, only[0].1), ("grouped", 4));
        assert!(selected(&plan_of(&[]).unwrap(), Some("grouped:x")).is_err());
    }
}
