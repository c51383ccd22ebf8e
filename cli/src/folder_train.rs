//! `activeshift train --images DIR`: a folder of labelled images (`DIR/<class>/...`) read with
//! `activeshift::image_folder` (a progress bar while decoding, the images cached in the
//! program's cache folder), as the data of a new network; and `--from MODEL`, the classifier of
//! a trained model fine-tuned on the folder's classes with the rest of the model frozen.

use super::*;
use activeshift::data::Dataset;
use activeshift::image_folder::{self, FolderData, FolderOptions};
use activeshift::model::{ArchConfig, ColorOrder, Preprocess};

/// Smallest and largest input side `--size` chooses by default for a new network.
const DEFAULT_SIDE: std::ops::RangeInclusive<usize> = 28..=64;

/// Read `dir` as `opts` says, with a progress bar (a line now and then without a terminal);
/// reports every file that could not be used and what came from the cache.
pub(crate) fn load(dir: &Path, mut opts: FolderOptions) -> Result<FolderData> {
    opts.cache_dir = activeshift::data::cache_dir().map(|d| d.join("images"));
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "reading images [{bar:30}] {pos}/{len} {msg} ({elapsed})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let progress = |p: image_folder::Progress| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        bar.set_message(format!("({} from the cache)", p.cached));
    };
    let data = image_folder::load(dir, &opts, &progress);
    bar.finish_and_clear();
    let data = data?;
    for (path, why) in &data.skipped {
        eprintln!("skipped {}: {why}", path.display());
    }
    if let Some(warning) = &data.cache_warning {
        eprintln!("note: the image cache was not used: {warning}");
    }
    eprintln!(
        "{}: {} classes, {} training and {} held-out images at {}x{}x{} ({} decoded, {} from \
         the cache{})",
        dir.display(),
        data.classes.len(),
        data.train.len(),
        data.val.len(),
        opts.channels,
        opts.height,
        opts.width,
        data.decoded,
        data.cached,
        if data.skipped.is_empty() {
            String::new()
        } else {
            format!(", {} skipped", data.skipped.len())
        }
    );
    Ok(data)
}

/// The input side of a new network on `dir`: `--size`, else the images' typical shorter side
/// within [`DEFAULT_SIDE`].
pub(crate) fn side_for(dir: &Path, size: Option<usize>) -> Result<usize> {
    if let Some(side) = size {
        return Ok(side);
    }
    let (h, _) = image_folder::suggest_size(dir)?;
    let side = h.clamp(*DEFAULT_SIDE.start(), *DEFAULT_SIDE.end());
    eprintln!(
        "input size {side}x{side} (from the images' sizes; --size N chooses another, up to 224)"
    );
    Ok(side)
}

/// The input channels of a new network on `dir`: 1 with `--gray`, 3 with `--rgb`, else 1 when
/// every image is stored as grayscale.
pub(crate) fn channels_for(dir: &Path, gray: bool, rgb: bool) -> Result<usize> {
    if gray || rgb {
        return Ok(if gray { 1 } else { 3 });
    }
    let channels = image_folder::suggest_channels(dir)?;
    if channels == 1 {
        eprintln!("grayscale input (every image is grayscale; --rgb trains an RGB network)");
    }
    Ok(channels)
}

/// Per-channel mean and `1 / std` of the training pixels (the normalization a new network's
/// preprocessing stores), in the stored channel order.
fn channel_stats(set: &Dataset) -> (Vec<f32>, Vec<f32>) {
    let [c, h, w] = set.shape;
    let plane = h * w;
    let (mut mean, mut scale) = (Vec::new(), Vec::new());
    for ch in 0..c {
        let (mut s, mut s2, mut n) = (0f64, 0f64, 0f64);
        for i in 0..set.len() {
            for &p in &set.image(i)[ch * plane..][..plane] {
                let v = f64::from(p);
                s += v;
                s2 += v * v;
                n += 1.0;
            }
        }
        let m = s / n.max(1.0);
        let std = (s2 / n.max(1.0) - m * m).max(0.0).sqrt().max(1.0);
        mean.push(m as f32);
        scale.push((1.0 / std) as f32);
    }
    (mean, scale)
}

/// The network `--arch`/`--block` builds for images of `train`'s shape and `classes` classes,
/// its preprocessing the folder's resize and crop and the training pixels' statistics.
pub(crate) fn config_for(
    arch: &str,
    block: BlockChoice,
    train: &Dataset,
    resize_short: Option<usize>,
    classes: usize,
) -> Result<ArchConfig> {
    let mut config = train_cmd::arch_config(arch, block)?;
    let [c, h, w] = train.shape;
    let (mean, scale) = channel_stats(train);
    config.in_channels = c;
    config.input_size = [h, w];
    config.classes = classes;
    config.preprocess = Preprocess {
        resize_short,
        crop: [h, w],
        color: if c == 1 {
            ColorOrder::Gray
        } else {
            ColorOrder::Rgb
        },
        mean,
        scale,
    };
    config.validate()?;
    Ok(config)
}

/// The folder options that read images as `config` takes them (a resumed run's network, or a
/// model being fine-tuned).
pub(crate) fn options_for(config: &ArchConfig, a: &TrainArgs) -> FolderOptions {
    FolderOptions {
        val_fraction: a.val_fraction,
        seed: a.seed,
        ..FolderOptions::for_network(config)
    }
}

/// Refuse a folder whose classes are not those of the run being continued.
pub(crate) fn check_classes(classes: &[String], labels: &[String], what: &str) -> Result<()> {
    if classes == labels {
        return Ok(());
    }
    Err(activeshift::Error::invalid(
        "train",
        format!(
            "the folder's classes ({}) are not those of {what} ({})",
            classes.join(", "),
            labels.join(", ")
        ),
    ))
}

/// The model `--from` names: a file, a pretrained name, or `default` (the embedded model).
pub(crate) fn load_start(from: &Path) -> Result<Model> {
    if from == Path::new("default") {
        Model::embedded_default()
    } else {
        load_model(Some(from))
    }
}

/// `train --images DIR --from MODEL`: the model's layers up to the classifier frozen, each
/// image's pooled features computed once (and those of its mirror image, unless
/// `--no-augment`), a new classifier trained on them for the folder's classes; the model with
/// that classifier and the folder's class names written to OUTPUT.
pub(crate) fn finetune(a: &TrainArgs, dir: &Path, from: &Path) -> Result<()> {
    use activeshift::train::head;
    refuse_overwrite(&a.output, a.force)?;
    let started = std::time::Instant::now();
    let model = load_start(from)?;
    let data = load(dir, options_for(&model.config, a))?;
    let (train, val) = (Dataset::from(data.train), Dataset::from(data.val));
    let classes = data.classes;
    let features = head::feature_model(&model)?;
    let device = gpu_for(a.backend, "computing features")?;
    let mut clf = match &device {
        Some(ctx) => Classifier::gpu(ctx, features)?,
        None => Classifier::cpu(features),
    };
    let bar = indicatif::ProgressBar::new((train.len() + val.len()) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("features [{bar:30}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let run = |clf: &mut Classifier, input: &[f32]| Ok(clf.run_blocking(input)?.logits);
    let train_f = head::extract_features(
        &model,
        &train,
        !a.no_augment,
        |input, _| run(&mut clf, input),
        |done, _| bar.set_position(done as u64),
    )?;
    let val_f = head::extract_features(
        &model,
        &val,
        false,
        |input, _| run(&mut clf, input),
        |done, _| bar.set_position((train.len() + done) as u64),
    )?;
    bar.finish_and_clear();
    let frozen = started.elapsed();
    eprintln!(
        "fine-tuning the classifier of {} ({} features) for {} classes on {} images{}, the rest \
         frozen ({:.1} s to here)",
        model.config.name,
        train_f.dim,
        classes.len(),
        train_f.len(),
        if train_f.views > 1 {
            " and their mirror images"
        } else {
            ""
        },
        frozen.as_secs_f64()
    );
    let settings = activeshift::train::TrainSettings {
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        weight_decay: a.weight_decay,
        seed: a.seed,
        ..activeshift::train::TrainSettings::default()
    };
    let mut be = activeshift::train::CpuBackend;
    let trained = head::train_head(&mut be, &train_f, classes.len(), &settings, |epoch, s| {
        if epoch + 1 == settings.epochs || (epoch + 1).is_multiple_of(10) || epoch == 0 {
            eprintln!(
                "epoch {}/{}: train loss {:.4} acc {:.2}%",
                epoch + 1,
                settings.epochs,
                s.loss(),
                s.accuracy() * 100.0
            );
        }
        Ok(())
    })?;
    if !val_f.is_empty() {
        let s = trained.evaluate(&val_f)?;
        eprintln!(
            "held-out: loss {:.4} acc {:.2}% ({} of {} images)",
            s.loss(),
            s.accuracy() * 100.0,
            s.correct,
            s.seen
        );
    }
    let out = trained.into_model(&model, classes)?;
    out.save(&a.output, a.force)?;
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    println!("wrote {}", a.output.display());
    Ok(())
}
