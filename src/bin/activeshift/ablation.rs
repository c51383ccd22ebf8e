//! `activeshift ablation`: the paper's Table 4 (how the shifts are chosen) and Table 2 (the
//! shift against a depthwise 3x3) on Fashion-MNIST, trained with the same recipe, evaluated on
//! the same split and timed on this machine, as one command that resumes where it stopped.

use crate::{BackendChoice, BlockChoice, ScheduleChoice, ShiftChoice, TrainArgs};
use activeshift::data::{self, Dataset, FashionMnist};
use activeshift::train::{CpuBackend, TrainSettings, Trainer, fashion_mnist_config};
use activeshift::{Classifier, Model, Result};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct AblationArgs {
    /// Epochs of every run (the same cosine schedule compressed into them).
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Directory of the runs' checkpoints and models (reused: a finished run is not retrained,
    /// an interrupted one resumes).
    #[arg(long, default_value = "artifacts/ablation")]
    dir: PathBuf,
    /// Also write the table as Markdown to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Replace the Markdown file if it exists.
    #[arg(long)]
    force: bool,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    json: bool,
    /// Time inference on the CPU only, even where a GPU adapter exists.
    #[arg(long)]
    cpu_only: bool,
    /// Train on the first N images of each class only (quick runs; not the documented table).
    #[arg(long)]
    limit: Option<usize>,
}

/// One row of the table.
struct Variant {
    key: &'static str,
    label: &'static str,
    shift: ShiftChoice,
    block: BlockChoice,
}

const VARIANTS: [Variant; 5] = [
    Variant {
        key: "grouped",
        label: "grouped integer shift (ShiftNet), frozen",
        shift: ShiftChoice::Grouped,
        block: BlockChoice::Asl,
    },
    Variant {
        key: "sampled-int",
        label: "sampled integer shift N(0,1), frozen",
        shift: ShiftChoice::SampledInt,
        block: BlockChoice::Asl,
    },
    Variant {
        key: "sampled-real",
        label: "sampled real shift N(0,1), frozen",
        shift: ShiftChoice::SampledReal,
        block: BlockChoice::Asl,
    },
    Variant {
        key: "learned",
        label: "learned real shift (ASL)",
        shift: ShiftChoice::Learned,
        block: BlockChoice::Asl,
    },
    Variant {
        key: "depthwise",
        label: "depthwise 3x3 in place of the shift",
        shift: ShiftChoice::Learned,
        block: BlockChoice::Depthwise,
    },
];

struct Row {
    key: &'static str,
    label: &'static str,
    params: usize,
    mult_adds: u64,
    correct: usize,
    total: usize,
    train_img_s: f64,
    cpu_img_s: f64,
    gpu_img_s: Option<f64>,
}

impl Row {
    fn accuracy(&self) -> f64 {
        self.correct as f64 / self.total.max(1) as f64
    }
}

pub fn run(a: AblationArgs) -> Result<()> {
    if let Some(md) = &a.markdown {
        crate::refuse_overwrite(md, a.force)?;
    }
    std::fs::create_dir_all(&a.dir).map_err(|e| activeshift::Error::Io {
        path: a.dir.display().to_string(),
        source: e,
    })?;
    for v in &VARIANTS {
        train_variant(&a, v)?;
    }
    let data = FashionMnist::load_or_fetch(&FashionMnist::default_cache())?;
    let gpu = match a.cpu_only {
        true => None,
        false => match crate::open_gpu() {
            Ok(ctx) => Some(ctx),
            Err(e) => {
                eprintln!("note: {e}; timing inference on the CPU only");
                None
            }
        },
    };
    let mut rows = Vec::new();
    for v in &VARIANTS {
        eprintln!("evaluating and timing {}", v.key);
        let model = Model::load(a.dir.join(format!("{}.safetensors", v.key)))?;
        let mut clf = Classifier::cpu(model.clone());
        let correct = crate::test_correct(&mut clf, &data.test)?;
        let cpu_img_s = inference_rate(&mut clf, &data.test)?;
        let gpu_img_s = match &gpu {
            Some(ctx) => Some(inference_rate(
                &mut Classifier::gpu(ctx, model.clone())?,
                &data.test,
            )?),
            None => None,
        };
        rows.push(Row {
            key: v.key,
            label: v.label,
            params: model.config.param_count(),
            mult_adds: activeshift::model::Plan::new(&model.config, 1).mult_adds(),
            correct,
            total: data.test.len(),
            train_img_s: training_rate(&model, &data.train)?,
            cpu_img_s,
            gpu_img_s,
        });
    }
    let adapter = gpu.as_ref().map(|c| c.adapter_info().name.clone());
    let table = markdown(&a, &rows, adapter.as_deref());
    if a.json {
        let doc = serde_json::json!({
            "dataset": "fashion-mnist",
            "epochs": a.epochs,
            "threads": rayon::current_num_threads(),
            "adapter": adapter,
            "paper_order_reproduced": paper_order(&rows),
            "rows": rows.iter().map(|r| serde_json::json!({
                "variant": r.key,
                "params": r.params,
                "mult_adds": r.mult_adds,
                "test_correct": r.correct,
                "test_images": r.total,
                "test_accuracy": r.accuracy(),
                "train_images_per_s_cpu": r.train_img_s,
                "inference_images_per_s_cpu": r.cpu_img_s,
                "inference_images_per_s_gpu": r.gpu_img_s,
            })).collect::<Vec<_>>(),
        });
        println!("{doc:#}");
    } else {
        print!("{table}");
    }
    if let Some(md) = &a.markdown {
        activeshift::model::write_atomic(md, table.as_bytes(), a.force)?;
        eprintln!("wrote {}", md.display());
    }
    Ok(())
}

/// Train (or resume, or keep) the run of `v` in `a.dir`.
fn train_variant(a: &AblationArgs, v: &Variant) -> Result<()> {
    let output = a.dir.join(format!("{}.safetensors", v.key));
    let checkpoint = a.dir.join(format!("{}.ckpt", v.key));
    let resume = if checkpoint.exists() {
        let t = Trainer::load_checkpoint(&checkpoint)?;
        if t.settings.epochs != a.epochs {
            return Err(activeshift::Error::invalid(
                "ablation",
                format!(
                    "{} holds a {}-epoch run, not {}: choose another --dir",
                    checkpoint.display(),
                    t.settings.epochs,
                    a.epochs
                ),
            ));
        }
        if t.epoch >= t.settings.epochs && output.exists() {
            eprintln!("{}: finished run in {}", v.key, checkpoint.display());
            return Ok(());
        }
        true
    } else {
        false
    };
    eprintln!("{}: training ({})", v.key, v.label);
    crate::train_cmd::train(TrainArgs {
        dataset: crate::DatasetChoice::FashionMnist,
        arch: "asnet20-16x1".into(),
        epochs: a.epochs,
        batch: 128,
        lr: 0.1,
        weight_decay: 5e-4,
        schedule: ScheduleChoice::Cosine,
        shift: v.shift,
        block: v.block,
        seed: 0,
        limit: a.limit,
        no_augment: false,
        backend: BackendChoice::Cpu,
        checkpoint: Some(checkpoint),
        checkpoint_every: 100,
        resume,
        // Only this command's own model of the run, rewritten after every epoch.
        force: true,
        output,
        // The variant's settings are this command's own: nothing to compare on --resume.
        given: Vec::new(),
    })
}

/// Training images per second on the CPU: 4 steps of 128 after 1 of warm-up, from a fresh
/// network of `model`'s architecture.
fn training_rate(model: &Model, train: &Dataset) -> Result<f64> {
    let mut config = fashion_mnist_config(16, 1);
    config.block = model.config.block;
    let mut t = Trainer::new(config, vec![], TrainSettings::default())?;
    let idx: Vec<usize> = (0..128).map(|i| i * 97 % train.len()).collect();
    let mut be = CpuBackend;
    t.train_step_on(&mut be, train, &idx, 0.01, 0)?;
    let steps = 4;
    let started = Instant::now();
    for s in 0..steps {
        t.train_step_on(&mut be, train, &idx, 0.01, s)?;
    }
    Ok((steps * 128) as f64 / started.elapsed().as_secs_f64())
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

/// Whether the accuracies keep the paper's order: learned > sampled real > sampled integer
/// >= grouped.
fn paper_order(rows: &[Row]) -> bool {
    let acc = |k: &str| {
        rows.iter()
            .find(|r| r.key == k)
            .map_or(f64::NAN, Row::accuracy)
    };
    acc("learned") > acc("sampled-real")
        && acc("sampled-real") > acc("sampled-int")
        && acc("sampled-int") >= acc("grouped")
}

fn markdown(a: &AblationArgs, rows: &[Row], adapter: Option<&str>) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "Generated by `activeshift ablation --epochs {}` (ASNet-20 16x1 on Fashion-MNIST, test = \
         last 1000 images of each class; batch 128, Nesterov, lr 0.1 cosine, wd 5e-4, shift lr \
         x0.01 with normalized gradient, crop-pad-2 + flip, seed 0; trained on the CPU). \
         Throughput on this machine: {} CPU threads{}.\n\n",
        a.epochs,
        rayon::current_num_threads(),
        adapter.map_or(String::new(), |n| format!(", GPU {n}")),
    ));
    s.push_str(
        "| shifts / block | test accuracy | params | mult-adds | train img/s (CPU) | inference img/s (CPU) | inference img/s (GPU) |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.2}% ({}/{}) | {} | {:.2}M | {:.0} | {:.0} | {} |\n",
            r.label,
            r.accuracy() * 100.0,
            r.correct,
            r.total,
            r.params,
            r.mult_adds as f64 / 1e6,
            r.train_img_s,
            r.cpu_img_s,
            r.gpu_img_s.map_or("-".into(), |v| format!("{v:.0}")),
        ));
    }
    s.push_str(&format!(
        "\nPaper's order (learned > sampled real > sampled integer >= grouped): {}.\n",
        if paper_order(rows) {
            "reproduced"
        } else {
            "not reproduced"
        }
    ));
    s
}
