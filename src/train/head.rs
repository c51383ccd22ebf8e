//! Fine-tuning a trained model's classifier alone on new classes: every layer up to the global
//! average pool stays as trained (frozen), so each image's pooled features are computed once by
//! an inference engine, and only the new fully connected layer learns, with the run's
//! optimiser ([`SgdRule`], the same rule and code as whole-network training) on a [`Backend`].
//! With augmentation, every image also contributes its horizontally flipped copy (the one
//! augmentation that a frozen backbone's features can be computed for ahead of time); each
//! epoch draws one of the two views per image.

use super::backend::{Backend, LinearArgs, SgdStep};
use super::optim::SgdRule;
use super::{Stats, TrainSettings, learning_rate, shuffled};
use crate::data::{self, Dataset, Normalize};
use crate::error::{Error, Result};
use crate::model::{HostTensor, Model, ParamId};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Pooled features of a set of images, as the frozen backbone of a model computes them.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    /// Values per image (the width of the model's last stage).
    pub dim: usize,
    /// Views per image: 1, or 2 with the horizontally flipped copy (`values` holds view `v` of
    /// image `i` at row `i * views + v`).
    pub views: usize,
    /// `[images * views, dim]`.
    pub values: Vec<f32>,
    /// One class per image.
    pub labels: Vec<u32>,
}

impl Features {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// `model` with its classifier replaced by the identity: its "logits" are the pooled features
/// the classifier reads, so either inference engine computes them (`classes` = that width,
/// bias 0; the identity product is exact).
///
/// # Errors
/// When the model's classifier tensor is missing or not `[classes, features]`.
pub fn feature_model(model: &Model) -> Result<Model> {
    let fc = model
        .params
        .get(&ParamId::FcWeight.name())
        .filter(|t| t.dims.len() == 2)
        .ok_or_else(|| {
            Error::invalid(
                "fine-tune",
                "the model has no [classes, features] classifier",
            )
        })?;
    let dim = fc.dims[1];
    let mut config = model.config.clone();
    config.classes = dim;
    let mut eye = vec![0.0; dim * dim];
    for i in 0..dim {
        eye[i * dim + i] = 1.0;
    }
    let mut params = model.params.clone();
    params.insert(
        ParamId::FcWeight.name(),
        HostTensor::new(vec![dim, dim], eye)?,
    );
    params.insert(
        ParamId::FcBias.name(),
        HostTensor::new(vec![dim], vec![0.0; dim])?,
    );
    Model::new(config, Vec::new(), params)
}

/// The pooled features of every image of `set` under `model`'s frozen backbone, computed by
/// `run(input, n)` giving the `[n, dim]` logits of [`feature_model`]`(model)` for a
/// preprocessed batch (the CPU engine, or a GPU classifier). With `flip`, the horizontally
/// flipped copy of each image too. `progress(done, total)` after every batch.
///
/// # Errors
/// When `set` is not of the model's input shape, or `run` fails or returns another length.
pub fn extract_features(
    model: &Model,
    set: &Dataset,
    flip: bool,
    mut run: impl FnMut(&[f32], usize) -> Result<Vec<f32>>,
    mut progress: impl FnMut(usize, usize),
) -> Result<Features> {
    let c = &model.config;
    let want = [c.in_channels, c.input_size[0], c.input_size[1]];
    if set.shape != want {
        return Err(Error::shape(
            "fine-tune",
            "images",
            format!("{want:?} ([channels, height, width])"),
            format!("{:?}", set.shape),
        ));
    }
    set.validate(usize::MAX)?;
    let dim = model
        .params
        .get(&ParamId::FcWeight.name())
        .map(|t| t.dims[t.dims.len() - 1])
        .unwrap_or(0);
    let norm = Normalize::of(&c.preprocess, set.shape[0])?;
    let views = if flip { 2 } else { 1 };
    let mut values = vec![0.0; set.len() * views * dim];
    let idx: Vec<usize> = (0..set.len()).collect();
    // At most 2M input values a batch (8 MiB), at least one image.
    let per_batch = ((1 << 21) / set.image_len().max(1)).clamp(1, 64);
    let mut input = Vec::new();
    let w = set.shape[2];
    for chunk in idx.chunks(per_batch) {
        data::batch_with(set, chunk, &norm, None, &mut input);
        for view in 0..views {
            if view == 1 {
                for row in input.chunks_exact_mut(w) {
                    row.reverse();
                }
            }
            let out = run(&input, chunk.len())?;
            if out.len() != chunk.len() * dim {
                return Err(Error::shape(
                    "fine-tune",
                    "features",
                    format!("{} values", chunk.len() * dim),
                    format!("{} values", out.len()),
                ));
            }
            for (k, &i) in chunk.iter().enumerate() {
                let row = (i * views + view) * dim;
                values[row..row + dim].copy_from_slice(&out[k * dim..][..dim]);
            }
        }
        progress(chunk[chunk.len() - 1] + 1, set.len());
    }
    Ok(Features {
        dim,
        views,
        values,
        labels: set.labels.clone(),
    })
}

/// A classifier `[classes, dim]` weight and `[classes]` bias trained by [`train_head`].
#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    /// `[classes, dim]`.
    pub weight: Vec<f32>,
    /// `[classes]`.
    pub bias: Vec<f32>,
    /// Number of classes.
    pub classes: usize,
    /// Features per image.
    pub dim: usize,
}

impl Head {
    /// Logits `[n, classes]` of the first view of each image of `f`.
    pub fn logits(&self, f: &Features) -> Vec<f32> {
        let mut out = vec![0.0; f.len() * self.classes];
        for i in 0..f.len() {
            let x = &f.values[i * f.views * f.dim..][..f.dim];
            for k in 0..self.classes {
                let wk = &self.weight[k * self.dim..][..self.dim];
                out[i * self.classes + k] =
                    self.bias[k] + wk.iter().zip(x).map(|(a, b)| a * b).sum::<f32>();
            }
        }
        out
    }

    /// Loss and top-1 accuracy on the first view of `f`.
    ///
    /// # Errors
    /// When a label is not a class of the head.
    pub fn evaluate(&self, f: &Features) -> Result<Stats> {
        super::score(&self.logits(f), &f.labels, self.classes)
    }

    /// `model` with this head as its classifier, for `labels` (one per class).
    ///
    /// # Errors
    /// When the head does not fit the model's features or the labels are not one per class.
    pub fn into_model(self, model: &Model, labels: Vec<String>) -> Result<Model> {
        let mut config = model.config.clone();
        config.classes = self.classes;
        let mut params = model.params.clone();
        params.insert(
            ParamId::FcWeight.name(),
            HostTensor::new(vec![self.classes, self.dim], self.weight)?,
        );
        params.insert(
            ParamId::FcBias.name(),
            HostTensor::new(vec![self.classes], self.bias)?,
        );
        Model::new(config, labels, params)
    }
}

/// Train a new classifier for `classes` classes on `train` with `settings` (epochs, batch,
/// learning rate and schedule, momentum, weight decay on the weight, seed; a batch larger than
/// the set is the whole set, and the last partial batch of an epoch is kept) on backend `be`,
/// starting from zeros. `on_epoch(epoch, stats)` after every epoch with the epoch's training
/// loss and accuracy.
///
/// # Errors
/// When the features are empty or inconsistent, a label is not a class, or the backend fails.
pub fn train_head<B: Backend>(
    be: &mut B,
    train: &Features,
    classes: usize,
    settings: &TrainSettings,
    mut on_epoch: impl FnMut(usize, Stats) -> Result<()>,
) -> Result<Head> {
    settings.validate()?;
    let (n, dim) = (train.len(), train.dim);
    if n == 0 || dim == 0 || train.views == 0 {
        return Err(Error::invalid("fine-tune", "no training features"));
    }
    if train.values.len() != n * train.views * dim {
        return Err(Error::shape(
            "fine-tune",
            "features",
            format!("{} values", n * train.views * dim),
            format!("{} values", train.values.len()),
        ));
    }
    super::backend::check_labels(&train.labels, classes)?;
    let batch = settings.batch.min(n);
    let steps = n.div_ceil(batch);
    let total = steps * settings.epochs;
    let rule = |id| {
        SgdRule::of(settings, id)
            .ok_or_else(|| Error::invalid("fine-tune", "the classifier does not learn"))
    };
    let (w_rule, b_rule) = (rule(ParamId::FcWeight)?, rule(ParamId::FcBias)?);
    let mut w = be.upload(&[classes, dim], &vec![0.0; classes * dim])?;
    let mut b = be.upload(&[classes], &vec![0.0; classes])?;
    let mut vw = be.upload(&[classes, dim], &vec![0.0; classes * dim])?;
    let mut vb = be.upload(&[classes], &vec![0.0; classes])?;
    let mut x = vec![0.0; batch * dim];
    let mut step = 0;
    for epoch in 0..settings.epochs {
        let order = shuffled(n, settings.seed, epoch);
        let mut rng = StdRng::seed_from_u64(settings.seed ^ 0x5eed_f1a9 ^ epoch as u64);
        let mut stats = Stats::default();
        for idx in order.chunks(batch) {
            let m = idx.len();
            x.resize(m * dim, 0.0);
            let mut labels = Vec::with_capacity(m);
            for (k, &i) in idx.iter().enumerate() {
                let view = if train.views > 1 {
                    rng.random_range(0..train.views)
                } else {
                    0
                };
                let row = (i * train.views + view) * dim;
                x[k * dim..][..dim].copy_from_slice(&train.values[row..row + dim]);
                labels.push(train.labels[i]);
            }
            be.begin_step()?;
            let xt = be.upload_batch(&[m, dim], &x)?;
            let args = || LinearArgs {
                x: &xt,
                w: &w,
                n: m,
                c: dim,
                k: classes,
            };
            let logits = be.linear(args(), &b)?;
            let (dlogits, db, per_image) = be.softmax_cross_entropy(&logits, &labels, classes)?;
            let (_, dw) = be.linear_backward(&dlogits, args())?;
            let lr = learning_rate(settings, step, total);
            be.sgd_step(SgdStep {
                weight: &mut w,
                velocity: &mut vw,
                grad: &dw,
                grad_offset: 0,
                rule: w_rule,
                lr,
            })?;
            be.sgd_step(SgdStep {
                weight: &mut b,
                velocity: &mut vb,
                grad: &db,
                grad_offset: 0,
                rule: b_rule,
                lr,
            })?;
            let per_image = be.download(&[&per_image])?.remove(0);
            for pair in per_image.chunks_exact(2) {
                stats.loss_sum += f64::from(pair[0]);
                stats.correct += usize::from(pair[1] > 0.5);
                stats.seen += 1;
            }
            step += 1;
        }
        on_epoch(epoch, stats)?;
    }
    let mut host = be.download(&[&w, &b])?.into_iter();
    let (weight, bias) = (
        host.next().unwrap_or_default(),
        host.next().unwrap_or_default(),
    );
    Ok(Head {
        weight,
        bias,
        classes,
        dim,
    })
}

/// A model whose classifier [`finetune`] trained, with what it measured.
#[derive(Clone, Debug)]
pub struct FineTuned {
    /// The starting model with the new classifier and the new class names.
    pub model: Model,
    /// Loss and accuracy on the held-out images (`None` when there are none).
    pub val: Option<Stats>,
}

/// Fine-tune `model`'s classifier on a folder's images ([`crate::image_folder::load`] with
/// [`FolderOptions::for_network`](crate::image_folder::FolderOptions::for_network) of the
/// model): the pooled features of every image (and, with `settings.augment`, of its mirror
/// image) computed once on the CPU engine, a new classifier for `data.classes` trained by
/// [`train_head`] on the CPU backend, `on_epoch` called after every epoch. The GPU engine
/// computes the same features through [`extract_features`] with a GPU classifier.
///
/// # Errors
/// When the images are not of the model's input, or training fails.
pub fn finetune(
    model: &Model,
    data: &crate::image_folder::FolderData,
    settings: &TrainSettings,
    on_epoch: impl FnMut(usize, Stats) -> Result<()>,
) -> Result<FineTuned> {
    let as_set = |s: &crate::image_folder::ImageSet| Dataset {
        pixels: s.pixels.clone(),
        labels: s.labels.clone(),
        shape: [s.channels, s.height, s.width],
    };
    let (train, val) = (as_set(&data.train), as_set(&data.val));
    let features = feature_model(model)?;
    let run = |input: &[f32], _| Ok(features.forward_cpu(input)?.logits);
    let train_f = extract_features(model, &train, settings.augment, run, |_, _| {})?;
    let val_f = extract_features(model, &val, false, run, |_, _| {})?;
    let head = train_head(
        &mut super::CpuBackend,
        &train_f,
        data.classes.len(),
        settings,
        on_epoch,
    )?;
    let val = (!val_f.is_empty())
        .then(|| head.evaluate(&val_f))
        .transpose()?;
    Ok(FineTuned {
        model: head.into_model(model, data.classes.clone())?,
        val,
    })
}
