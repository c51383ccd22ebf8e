//! Training AS-ResNet / ASNet end to end on the CPU: BatchNorm with batch statistics, the
//! authors' optimiser (SGD with Nesterov momentum 0.9, weight decay on weights only, the
//! normalized shift gradient with learning-rate multiplier 0.01 and no decay), checkpoints that
//! resume exactly, and export to an inference [`Model`] (BatchNorm folded into the affine
//! layers).

pub mod backend;
mod cpu_tensor;
#[cfg(not(target_arch = "wasm32"))]
mod gpu_backend;
mod graph;
pub mod head;
pub mod ops;
pub mod optim;
mod session;

pub use backend::{Backend, CpuBackend};
pub use cpu_tensor::CpuTensor;
#[cfg(not(target_arch = "wasm32"))]
pub use gpu_backend::GpuBackend;
pub use optim::{SgdRule, sgd_update};
pub use session::Session;

use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::model::{ArchConfig, HostTensor, Model, Norm, ParamId, Plan};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// How the shifts are set and whether they learn (the paper's Table 4 ablation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShiftMode {
    /// Initialised U[-1, 1] and trained (the Active Shift Layer).
    Learned,
    /// Initialised N(0, 1), as [`ShiftMode::SampledReal`] draws them, and trained: learning
    /// from the frozen variant's start (a diagnostic of the ablation, not in the paper).
    LearnedNormal,
    /// ShiftNet's fixed grouped integer shifts (frozen).
    Grouped,
    /// Integer shifts sampled from N(0, 1), rounded (frozen).
    SampledInt,
    /// Real shifts sampled from N(0, 1) (frozen).
    SampledReal,
}

impl ShiftMode {
    /// Whether the shifts are trained (else frozen at their start).
    pub fn learns(self) -> bool {
        matches!(self, ShiftMode::Learned | ShiftMode::LearnedNormal)
    }
}

/// Learning-rate schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Cosine decay from the base rate to 0 over the run.
    Cosine,
    /// Divide by 10 at 50% and 75% of the run (the authors' CIFAR steps at 32k and 48k of 64k).
    Step,
}

/// Settings of a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// Epochs over the training set.
    pub epochs: usize,
    /// Images per step.
    pub batch: usize,
    /// Base learning rate.
    pub lr: f32,
    /// Nesterov momentum.
    pub momentum: f32,
    /// Weight decay on convolution and classifier weights.
    pub weight_decay: f32,
    /// Learning-rate multiplier of the shifts.
    pub shift_lr_mult: f32,
    /// Shift ablation mode.
    pub shift: ShiftMode,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Random crop (pad 2) and horizontal flip.
    pub augment: bool,
    /// Seed of initialisation, shuffling and augmentation.
    pub seed: u64,
    /// How the affine layers normalize: BatchNorm on each batch's statistics (training from
    /// scratch), or frozen statistics (fine-tuning a model whose BatchNorm is folded).
    #[serde(default)]
    pub norm: NormMode,
    /// The stem and the first `frozen_blocks` residual blocks keep their values (fine-tuning
    /// the later layers only); 0 freezes nothing.
    #[serde(default)]
    pub frozen_blocks: usize,
}

/// How a training run's affine layers (BatchNorm) use statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NormMode {
    /// BatchNorm: each batch's mean and variance, the running averages updated for inference.
    #[default]
    Batch,
    /// The running mean and variance as they are (never updated): each affine layer is the
    /// per-channel `scale * x + bias` the model was exported with, its scale and bias trained.
    /// For fine-tuning a trained model, whose file holds BatchNorm folded into affine layers
    /// (see [`Trainer::from_model`]).
    Frozen,
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            epochs: 17,
            batch: 128,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 5e-4,
            shift_lr_mult: 0.01,
            shift: ShiftMode::Learned,
            schedule: Schedule::Cosine,
            augment: true,
            seed: 0,
            norm: NormMode::Batch,
            frozen_blocks: 0,
        }
    }
}

/// Most epochs a run may ask for (a bound so step counts never overflow).
pub const MAX_EPOCHS: usize = 1_000_000;
/// Most images per step.
pub const MAX_BATCH: usize = 1 << 16;

impl TrainSettings {
    /// Check that the settings can drive a run: 1..=[`MAX_BATCH`] images per step, at most
    /// [`MAX_EPOCHS`] epochs, finite non-negative rates, momentum in [0, 1).
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::invalid("train settings", msg));
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return bad(format!(
                "batch must be 1..={MAX_BATCH} images, found {}",
                self.batch
            ));
        }
        if self.epochs > MAX_EPOCHS {
            return bad(format!(
                "epochs must be at most {MAX_EPOCHS}, found {}",
                self.epochs
            ));
        }
        for (name, v) in [
            ("lr", self.lr),
            ("weight_decay", self.weight_decay),
            ("shift_lr_mult", self.shift_lr_mult),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name} must be finite and >= 0, found {v}"));
            }
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(format!(
                "momentum must be in [0, 1), found {}",
                self.momentum
            ));
        }
        Ok(())
    }
}

/// The ASNet-20 `WxE` configuration for Fashion-MNIST (1 x 28 x 28, 10 classes), with the
/// dataset's normalization as its preprocessing.
pub fn fashion_mnist_config(w: usize, e: usize) -> ArchConfig {
    let mut c = ArchConfig::asnet20(w, e, 1, data::SIDE, 10);
    c.preprocess.mean = vec![data::MEAN];
    c.preprocess.scale = vec![data::SCALE];
    c
}

/// Complete state of a run: parameters, BatchNorm running statistics, momentum, position.
#[derive(Clone, Debug, PartialEq)]
pub struct Trainer {
    /// The architecture.
    pub config: ArchConfig,
    /// Class labels.
    pub labels: Vec<String>,
    /// Settings.
    pub settings: TrainSettings,
    /// Learnable tensors (names as in [`ArchConfig::param_shapes`]; `*.scale`/`*.bias` of the
    /// affine layers are BatchNorm's gamma and beta) and running statistics
    /// (`*.running_mean`, `*.running_var`).
    pub params: BTreeMap<String, Vec<f32>>,
    /// Momentum buffers of the learnable tensors.
    pub velocity: BTreeMap<String, Vec<f32>>,
    /// Completed epochs.
    pub epoch: usize,
    /// Completed steps within the current epoch.
    pub step_in_epoch: usize,
}

/// What one step or evaluation measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    /// Summed cross-entropy.
    pub loss_sum: f64,
    /// Correct top-1 predictions.
    pub correct: usize,
    /// Images seen.
    pub seen: usize,
}

impl Stats {
    /// Mean loss.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.seen.max(1) as f64
    }
    /// Top-1 accuracy in [0, 1].
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.seen.max(1) as f64
    }
    /// Add the counts of `o`.
    pub fn add(&mut self, o: Stats) {
        self.loss_sum += o.loss_sum;
        self.correct += o.correct;
        self.seen += o.seen;
    }
}

/// ShiftNet's grouped shift of channel `c` of `channels` (docs/design.md §2): `(dx, dy)`.
pub fn grouped_shift(c: usize, channels: usize) -> (f32, f32) {
    if c < 9 * (channels / 9) {
        ((c % 3) as f32 - 1.0, ((c / 3) % 3) as f32 - 1.0)
    } else {
        (0.0, 0.0)
    }
}

fn normal(rng: &mut StdRng) -> f32 {
    // Box-Muller
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// The largest f32 variance `v` with `v + eps == 1` exactly (so `1 / sqrt(v + eps)` is 1 and a
/// folded affine layer unfolds and folds back bit for bit).
fn unit_variance() -> f32 {
    let mut v = 1.0f32 - ops::BN_EPS;
    while v + ops::BN_EPS < 1.0 {
        v = f32::from_bits(v.to_bits() + 1);
    }
    while v + ops::BN_EPS > 1.0 {
        v = f32::from_bits(v.to_bits() - 1);
    }
    v
}

/// Learning rate of `settings`' schedule at global step `step` of `total`.
pub fn learning_rate(settings: &TrainSettings, step: usize, total: usize) -> f32 {
    let f = step as f32 / total.max(1) as f32;
    match settings.schedule {
        Schedule::Cosine => settings.lr * 0.5 * (1.0 + (std::f32::consts::PI * f).cos()),
        Schedule::Step => {
            settings.lr
                * if f < 0.5 {
                    1.0
                } else if f < 0.75 {
                    0.1
                } else {
                    0.01
                }
        }
    }
}

/// The order `0..n` shuffled for epoch `epoch` of a run seeded `seed` (a function of the seed
/// and the epoch only, so a resumed run sees the same batches).
pub fn shuffled(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng =
        StdRng::seed_from_u64(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(epoch as u64 + 1)));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    order
}

impl Trainer {
    /// A fresh run: He-normal convolutions, uniform classifier, BatchNorm gamma 1 and beta 0,
    /// shifts per [`ShiftMode`].
    pub fn new(config: ArchConfig, labels: Vec<String>, settings: TrainSettings) -> Result<Self> {
        config.validate()?;
        settings.validate()?;
        let blocks: usize = config.stages.iter().map(|s| s.blocks).sum();
        if settings.frozen_blocks > blocks {
            return Err(Error::invalid(
                "train settings",
                format!(
                    "frozen_blocks {} of a network with {blocks} blocks",
                    settings.frozen_blocks
                ),
            ));
        }
        if !labels.is_empty() && labels.len() != config.classes {
            return Err(Error::invalid(
                "train",
                format!("{} labels for {} classes", labels.len(), config.classes),
            ));
        }
        let mut rng = StdRng::seed_from_u64(settings.seed);
        let mut params = BTreeMap::new();
        for (id, dims) in config.params() {
            let len: usize = dims.iter().product();
            let data: Vec<f32> = match id {
                ParamId::Shift(_) => {
                    let c = dims[1];
                    let mut v = vec![0.0; 2 * c];
                    for ch in 0..c {
                        let (x, y) = match settings.shift {
                            ShiftMode::Learned => {
                                (rng.random_range(-1.0..=1.0), rng.random_range(-1.0..=1.0))
                            }
                            ShiftMode::Grouped => grouped_shift(ch, c),
                            ShiftMode::SampledInt => {
                                (normal(&mut rng).round(), normal(&mut rng).round())
                            }
                            ShiftMode::SampledReal | ShiftMode::LearnedNormal => {
                                (normal(&mut rng), normal(&mut rng))
                            }
                        };
                        v[ch] = x;
                        v[c + ch] = y;
                    }
                    v
                }
                ParamId::Scale(_) => vec![1.0; len],
                ParamId::Bias(_) | ParamId::FcBias => vec![0.0; len],
                ParamId::FcWeight => {
                    let a = (6.0 / (dims[0] + dims[1]) as f32).sqrt();
                    (0..len).map(|_| rng.random_range(-a..a)).collect()
                }
                ParamId::StemWeight
                | ParamId::Expand(_)
                | ParamId::Depthwise(_)
                | ParamId::Reduce(_)
                | ParamId::Shortcut(_) => {
                    let fan_in: usize = dims[1..].iter().product();
                    let std = (2.0 / fan_in as f32).sqrt();
                    (0..len).map(|_| normal(&mut rng) * std).collect()
                }
            };
            params.insert(id.name(), data);
        }
        let mut stats = BTreeMap::new();
        for (id, dims) in config.params() {
            if let ParamId::Scale(norm) = id {
                stats.insert(norm.running_mean_name(), vec![0.0; dims[0]]);
                stats.insert(norm.running_var_name(), vec![1.0; dims[0]]);
            }
        }
        let velocity = params
            .iter()
            .map(|(k, v)| (k.clone(), vec![0.0; v.len()]))
            .collect();
        params.extend(stats);
        Ok(Self {
            config,
            labels,
            settings,
            params,
            velocity,
            epoch: 0,
            step_in_epoch: 0,
        })
    }

    /// A run that fine-tunes the whole of `model` for the classes `labels`: every layer starts
    /// as trained, the classifier too when `labels` are the model's own, else a new one
    /// (initialised as [`Trainer::new`] does, seeded by `settings.seed`). The model's affine
    /// layers are BatchNorm folded into `scale * x + bias`; they become BatchNorm layers with
    /// gamma = scale, beta = bias and running statistics mean 0, variance `1 - eps` (so that
    /// `var + eps` is exactly 1), trained with those statistics frozen
    /// ([`NormMode::Frozen`], forced here): the run starts from exactly the model's function,
    /// and [`Trainer::export`] folds the layers back into the same form. Recomputing statistics
    /// on the new images instead would change what every later layer sees before any step.
    ///
    /// # Errors
    /// When the settings are invalid, a tensor of the model is missing, or `labels` is empty.
    pub fn from_model(model: &Model, labels: Vec<String>, settings: TrainSettings) -> Result<Self> {
        if labels.is_empty() {
            return Err(Error::invalid("fine-tune", "no classes"));
        }
        let settings = TrainSettings {
            norm: NormMode::Frozen,
            ..settings
        };
        let same_classes = labels == model.labels;
        let mut config = model.config.clone();
        config.classes = labels.len();
        // A fresh run of the same network: its classifier is the new one's start, the rest is
        // replaced by the model's tensors.
        let mut t = Self::new(config.clone(), labels, settings)?;
        for (id, dims) in config.params() {
            let name = id.name();
            if let ParamId::Scale(norm) = id {
                t.params
                    .insert(norm.running_mean_name(), vec![0.0; dims[0]]);
                t.params
                    .insert(norm.running_var_name(), vec![unit_variance(); dims[0]]);
            }
            if matches!(id, ParamId::FcWeight | ParamId::FcBias) && !same_classes {
                continue;
            }
            let data = model
                .params
                .get(&name)
                .map(|t| t.data.clone())
                .ok_or_else(|| {
                    Error::invalid("fine-tune", format!("tensor `{name}` is missing"))
                })?;
            t.params.insert(name, data);
        }
        Ok(t)
    }

    fn p(&self, name: &str) -> &[f32] {
        self.params.get(name).map(|v| &v[..]).unwrap_or(&[])
    }

    fn param(&self, id: ParamId) -> &[f32] {
        self.p(&id.name())
    }

    /// Steps per epoch for a training set of `n` images (the last partial batch is dropped).
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        (n / self.settings.batch).max(1)
    }

    /// Learning rate at global step `step` of `total`.
    pub fn lr_at(&self, step: usize, total: usize) -> f32 {
        learning_rate(&self.settings, step, total)
    }

    /// The shuffled image order of epoch `epoch` (a function of the seed and the epoch only,
    /// so a resumed run sees the same batches).
    pub fn epoch_order(&self, n: usize, epoch: usize) -> Vec<usize> {
        shuffled(n, self.settings.seed, epoch)
    }

    /// How this network turns the images of `set` into input values (its preprocessing's mean
    /// and scale, in its channel order), after checking that `set` holds images of the network's
    /// input shape with labels of its classes.
    fn normalize_for(&self, set: &Dataset) -> Result<data::Normalize> {
        let c = &self.config;
        let want = [c.in_channels, c.input_size[0], c.input_size[1]];
        if set.shape != want {
            return Err(Error::shape(
                "train",
                "images",
                format!("{want:?} ([channels, height, width])"),
                format!("{:?}", set.shape),
            ));
        }
        set.validate(c.classes)?;
        data::Normalize::of(&c.preprocess, set.shape[0])
    }

    /// The preprocessed (and, with [`TrainSettings::augment`], augmented by a generator seeded
    /// with `step_seed`) images `idx` of `set`, and their labels.
    ///
    /// # Errors
    /// When `set`'s images are not of the network's input shape, or a label is not a class of
    /// it.
    pub fn batch_of(
        &self,
        set: &Dataset,
        idx: &[usize],
        step_seed: u64,
    ) -> Result<(Vec<f32>, Vec<u32>)> {
        let norm = self.normalize_for(set)?;
        let mut input = Vec::new();
        let mut rng = StdRng::seed_from_u64(step_seed);
        data::batch_with(
            set,
            idx,
            &norm,
            self.settings.augment.then_some(&mut rng),
            &mut input,
        );
        Ok((input, idx.iter().map(|&i| set.labels[i]).collect()))
    }

    /// Test-set accuracy with the running statistics (inference mode), on the CPU: the plan
    /// run by the CPU engine with BatchNorm folded into the affine layers ([`Trainer::export`]).
    pub fn evaluate(&self, set: &Dataset) -> Result<Stats> {
        let model = self.export()?;
        self.evaluate_with(set, |input, _| Ok(model.forward_cpu(input)?.logits))
    }

    /// Loss and accuracy on `set` with `logits_of(input, n)` computing the `[n, classes]`
    /// logits of a preprocessed batch (e.g. the GPU engine running [`Trainer::export`]).
    pub fn evaluate_with(
        &self,
        set: &Dataset,
        mut logits_of: impl FnMut(&[f32], usize) -> Result<Vec<f32>>,
    ) -> Result<Stats> {
        let norm = self.normalize_for(set)?;
        let mut total = Stats::default();
        let mut input = Vec::new();
        let idx: Vec<usize> = (0..set.len()).collect();
        // 500 images a batch, fewer for large images (at most 4M input values, 16 MiB).
        let per_batch = ((1 << 22) / set.image_len().max(1)).clamp(1, 500);
        for chunk in idx.chunks(per_batch) {
            data::batch_with(set, chunk, &norm, None, &mut input);
            let labels: Vec<u32> = chunk.iter().map(|&i| set.labels[i]).collect();
            let logits = logits_of(&input, chunk.len())?;
            total.add(score(&logits, &labels, self.config.classes)?);
        }
        Ok(total)
    }

    /// Inference-mode logits `[N, classes]` (the CPU engine running [`Trainer::export`]).
    pub fn forward_eval(&self, input: &[f32]) -> Result<Vec<f32>> {
        Ok(self.export()?.forward_cpu(input)?.logits)
    }

    /// Forward and backward of one batch in training mode on the CPU: stats and gradients by
    /// name, to look at (gradient checks, one backend against another); training steps go
    /// through a [`Session`], which keeps the run's state on its backend. Updates the
    /// BatchNorm running statistics.
    pub fn forward_backward(
        &mut self,
        input: &[f32],
        labels: &[u32],
    ) -> Result<(Stats, BTreeMap<String, Vec<f32>>)> {
        self.forward_backward_on(&mut CpuBackend, input, labels)
    }

    /// Forward and backward of one batch in training mode on the backend `be`: the network's
    /// [`Plan`] run forward with BatchNorm on the batch's statistics, then backward, one rule
    /// per op (the same code for every backend and block kind; [`plan_gradients`]). Returns the
    /// stats and the gradients by parameter name, on the host; updates the BatchNorm running
    /// statistics.
    pub fn forward_backward_on<B: Backend>(
        &mut self,
        be: &mut B,
        input: &[f32],
        labels: &[u32],
    ) -> Result<(Stats, BTreeMap<String, Vec<f32>>)> {
        let plan = self.plan_for(input, labels)?;
        let params: BTreeMap<ParamId, Vec<f32>> = self
            .config
            .params()
            .into_iter()
            .map(|(id, _)| (id, self.param(id).to_vec()))
            .collect();
        let running = self.frozen_running_stats()?;
        let pass = plan_gradients(be, &plan, &params, running.as_ref(), input, labels)?;
        let grads = pass
            .grads
            .into_iter()
            .map(|(id, g)| (id.name(), g))
            .collect();
        for (norm, (batch, m)) in &pass.batch_stats {
            let (mean, var) = (norm.running_mean_name(), norm.running_var_name());
            let mut rm = self.params.remove(&mean).unwrap_or_default();
            let mut rv = self.params.remove(&var).unwrap_or_default();
            ops::update_running_stats(&mut rm, &mut rv, batch, *m);
            self.params.insert(mean, rm);
            self.params.insert(var, rv);
        }
        Ok((pass.stats, grads))
    }

    /// With [`NormMode::Frozen`], each affine layer's running mean and variance (checked to be
    /// there); `None` with [`NormMode::Batch`].
    fn frozen_running_stats(&self) -> Result<Option<RunningStats>> {
        if self.settings.norm != NormMode::Frozen {
            return Ok(None);
        }
        let mut out = BTreeMap::new();
        for (id, dims) in self.config.params() {
            if let ParamId::Scale(norm) = id {
                let (mean, var) = (
                    self.p(&norm.running_mean_name()),
                    self.p(&norm.running_var_name()),
                );
                if mean.len() != dims[0] || var.len() != dims[0] {
                    return Err(Error::invalid(
                        "train",
                        format!(
                            "the running statistics of `{}` are missing",
                            norm.running_mean_name()
                        ),
                    ));
                }
                out.insert(norm, (mean.to_vec(), var.to_vec()));
            }
        }
        Ok(Some(out))
    }

    /// With [`NormMode::Frozen`], each affine layer's statistics `[3, C]` (the running mean,
    /// variance and `1 / sqrt(var + eps)`) on `be`; `None` with [`NormMode::Batch`].
    pub(crate) fn frozen_stats_on<B: Backend>(
        &self,
        be: &mut B,
    ) -> Result<Option<BTreeMap<Norm, B::Tensor>>> {
        let Some(running) = self.frozen_running_stats()? else {
            return Ok(None);
        };
        let mut out = BTreeMap::new();
        for (norm, (mean, var)) in running {
            out.insert(
                norm,
                be.upload(&[3, mean.len()], &frozen_stats(&mean, &var))?,
            );
        }
        Ok(Some(out))
    }

    /// The training plan for `labels.len()` images, after checking that `input` holds them.
    fn plan_for(&self, input: &[f32], labels: &[u32]) -> Result<Plan> {
        let n = labels.len();
        let plan = Plan::new(&self.config, n);
        let in_shape = plan.slots[plan.input];
        if input.len() != in_shape.len() || n == 0 {
            return Err(Error::shape(
                "train",
                "input",
                in_shape,
                format!("{} values for {n} labels", input.len()),
            ));
        }
        Ok(plan)
    }

    /// The inference model: BatchNorm folded into the affine layers.
    pub fn export(&self) -> Result<Model> {
        let folded = |norm: Norm| {
            ops::fold_bn(
                self.param(ParamId::Scale(norm)),
                self.param(ParamId::Bias(norm)),
                self.p(&norm.running_mean_name()),
                self.p(&norm.running_var_name()),
            )
        };
        let mut params = BTreeMap::new();
        for (id, dims) in self.config.params() {
            let data = match id {
                ParamId::Scale(norm) => folded(norm).0,
                ParamId::Bias(norm) => folded(norm).1,
                _ => self.param(id).to_vec(),
            };
            params.insert(id.name(), HostTensor::new(dims, data)?);
        }
        Model::new(self.config.clone(), self.labels.clone(), params)
    }

    /// Write a checkpoint atomically (temporary file, then rename), replacing `path`.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        self.save_checkpoint_to(path, true)
    }

    /// Write a checkpoint atomically; an existing `path` is replaced only with `overwrite`
    /// (checked at the rename, see [`crate::model::write_atomic`]).
    pub fn save_checkpoint_to(&self, path: &Path, overwrite: bool) -> Result<()> {
        crate::model::write_atomic(path, &self.checkpoint_bytes()?, overwrite)
    }

    /// The checkpoint file's bytes (safetensors: parameters, velocities and the run's state;
    /// byte-reproducible).
    pub fn checkpoint_bytes(&self) -> Result<Vec<u8>> {
        let mut tensors: BTreeMap<String, HostTensor> = BTreeMap::new();
        for (k, v) in &self.params {
            tensors.insert(
                format!("param/{k}"),
                HostTensor::new(vec![v.len()], v.clone())?,
            );
        }
        for (k, v) in &self.velocity {
            tensors.insert(
                format!("velocity/{k}"),
                HostTensor::new(vec![v.len()], v.clone())?,
            );
        }
        let meta = serde_json::json!({
            "config": self.config,
            "labels": self.labels,
            "settings": self.settings,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
        });
        let meta = BTreeMap::from([
            ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
            ("state".to_string(), meta.to_string()),
        ]);
        crate::model::encode_tensors(&tensors, meta)
    }

    /// Read a checkpoint written by [`Trainer::save_checkpoint`] (at most 2 GiB, a regular
    /// file), validated as [`Trainer::from_checkpoint_bytes`] says.
    pub fn load_checkpoint(path: &Path) -> Result<Self> {
        let bytes = crate::error::read_file_limited(
            path,
            2 * crate::model::MAX_MODEL_FILE_BYTES,
            "safetensors",
        )?;
        Self::parse_checkpoint(&bytes, &path.display().to_string())
    }

    /// A checkpoint from its bytes, validated before anything is allocated for it or run:
    /// the config builds, the settings can drive a run ([`TrainSettings::validate`]), there is
    /// one label per class, and every parameter, running statistic and velocity is present with
    /// the length the config gives it, finite, and nothing else is.
    pub fn from_checkpoint_bytes(bytes: &[u8]) -> Result<Self> {
        Self::parse_checkpoint(bytes, "checkpoint")
    }

    fn parse_checkpoint(bytes: &[u8], shown: &str) -> Result<Self> {
        let (tensors, meta) = crate::model::parse_tensors(bytes, CHECKPOINT_FORMAT, shown)?;
        #[derive(Deserialize)]
        struct Meta {
            config: ArchConfig,
            labels: Vec<String>,
            settings: TrainSettings,
            epoch: usize,
            step_in_epoch: usize,
        }
        let bad = |msg: String| Error::Format {
            format: "checkpoint",
            msg: format!("{shown}: {msg}"),
        };
        let m: Meta = serde_json::from_str(&meta).map_err(|e| bad(format!("state: {e}")))?;
        m.config.validate().map_err(|e| bad(e.to_string()))?;
        m.settings.validate().map_err(|e| bad(e.to_string()))?;
        // The length of every tensor a run of this config holds (as `Trainer::new` names them),
        // checked against the file before the network is allocated: a config can ask for far
        // more memory than the file holds.
        let mut lengths = BTreeMap::new();
        for (name, dims) in m.config.param_shapes() {
            let n: usize = dims.iter().product();
            if let Some(prefix) = name.strip_suffix(".scale") {
                lengths.insert(format!("param/{prefix}.running_mean"), dims[0]);
                lengths.insert(format!("param/{prefix}.running_var"), dims[0]);
            }
            lengths.insert(format!("velocity/{name}"), n);
            lengths.insert(format!("param/{name}"), n);
        }
        for (key, tensor) in &tensors {
            let want = *lengths
                .get(key)
                .ok_or_else(|| bad(format!("unexpected tensor `{key}`")))?;
            if tensor.data.len() != want {
                return Err(bad(format!(
                    "tensor `{key}` holds {} values, expected {want}",
                    tensor.data.len()
                )));
            }
            if let Some(i) = tensor.data.iter().position(|v| !v.is_finite()) {
                return Err(bad(format!(
                    "tensor `{key}`: element {i} is {} (must be finite)",
                    tensor.data[i]
                )));
            }
        }
        if let Some(key) = lengths.keys().find(|k| !tensors.contains_key(*k)) {
            let name = key.split_once('/').map_or(key.as_str(), |(_, n)| n);
            return Err(bad(format!("tensor `{name}` is missing")));
        }
        let mut t = Trainer::new(m.config, m.labels, m.settings).map_err(|e| bad(e.to_string()))?;
        for (key, tensor) in tensors {
            let slot = match key.split_once('/') {
                Some(("param", name)) => t.params.get_mut(name),
                Some((_, name)) => t.velocity.get_mut(name),
                None => None,
            };
            match slot {
                Some(s) => *s = tensor.data,
                // `lengths` and `Trainer::new` disagree on the names: a bug, not a bad file.
                None => return Err(bad(format!("tensor `{key}` has no place in the run"))),
            }
        }
        t.epoch = m.epoch;
        t.step_in_epoch = m.step_in_epoch;
        // Finite values can still fold into infinite ones (a running variance near zero under a
        // large scale): such a run could never write its model, so it is refused here.
        t.export().map_err(|e| {
            bad(format!(
                "its BatchNorm statistics do not fold into a model: {e}"
            ))
        })?;
        Ok(t)
    }
}

/// The statistics `[3, C]` a frozen affine layer normalizes with: the running mean, variance
/// and `1 / sqrt(var + eps)`.
fn frozen_stats(mean: &[f32], var: &[f32]) -> Vec<f32> {
    let mut stats = mean.to_vec();
    stats.extend_from_slice(var);
    stats.extend(var.iter().map(|v| 1.0 / (v + ops::BN_EPS).sqrt()));
    stats
}

/// Per affine layer, its running mean and variance (`[C]` each): what the layers normalize
/// with under [`NormMode::Frozen`].
pub type RunningStats = BTreeMap<Norm, (Vec<f32>, Vec<f32>)>;

/// What [`plan_gradients`] computed, on the host.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlanGradients {
    /// The batch's summed loss and right top-1 predictions.
    pub stats: Stats,
    /// The gradient of every parameter the loss depends on (an affine layer's scale and bias
    /// each under its own id).
    pub grads: BTreeMap<ParamId, Vec<f32>>,
    /// With batch statistics, each affine layer's `[3, C]` (mean, biased variance,
    /// `1 / sqrt(var + eps)`) and the number of values per channel they were taken over.
    pub batch_stats: BTreeMap<Norm, (Vec<f32>, usize)>,
}

/// One forward and backward pass of any `plan` (for `labels.len()` images of `input`) in
/// training mode on `be`: what [`Trainer::forward_backward_on`] runs for its network, open to
/// any network of [`crate::model::Op`]s (build one with [`crate::model::PlanBuilder`]).
/// `params` holds every tensor of [`Plan::params`]. With `frozen` (per affine layer, its
/// running mean and variance: [`NormMode::Frozen`]) the affine layers normalize with those,
/// else with the batch's statistics.
///
/// # Errors
/// A typed error when a tensor is missing or of the wrong length, the input or labels do not
/// fit the plan, or the plan holds an op with nothing to learn (a softmax before the last op,
/// a 1x1 convolution with both a bias and an affine epilogue).
pub fn plan_gradients<B: Backend>(
    be: &mut B,
    plan: &Plan,
    params: &BTreeMap<ParamId, Vec<f32>>,
    frozen: Option<&RunningStats>,
    input: &[f32],
    labels: &[u32],
) -> Result<PlanGradients> {
    let in_shape = plan.slots[plan.input];
    if input.len() != in_shape.len() || labels.len() != in_shape.n || labels.is_empty() {
        return Err(Error::shape(
            "train",
            "input",
            in_shape,
            format!("{} values for {} labels", input.len(), labels.len()),
        ));
    }
    let mut on_device = std::collections::HashMap::new();
    for (id, dims) in plan.params() {
        let data = params
            .get(&id)
            .ok_or_else(|| Error::invalid("train", format!("parameter `{id}` is missing")))?;
        let len: usize = dims.iter().product();
        if data.len() != len {
            return Err(Error::shape(
                "train",
                "parameter",
                format!("{len} values for `{id}` {dims:?}"),
                format!("{} values", data.len()),
            ));
        }
        on_device.insert(id, be.upload(&dims, data)?);
    }
    let frozen = match frozen {
        None => None,
        Some(running) => {
            let mut out = BTreeMap::new();
            for (norm, (mean, var)) in running {
                if mean.len() != var.len() {
                    return Err(Error::shape(
                        "train",
                        "running variance",
                        format!("{} values (as the mean)", mean.len()),
                        format!("{} values", var.len()),
                    ));
                }
                out.insert(
                    *norm,
                    be.upload(&[3, mean.len()], &frozen_stats(mean, var))?,
                );
            }
            Some(out)
        }
    };
    let pass = graph::forward_backward(be, plan, &on_device, frozen.as_ref(), input, labels)?;
    // One download: totals, gradients, batch statistics.
    let mut wanted = vec![&pass.totals];
    wanted.extend(pass.grads.values());
    wanted.extend(pass.batch_stats.iter().map(|(_, s, _)| s));
    let mut host = be.download(&wanted)?.into_iter();
    let missing = || Error::invalid("train", "a tensor of the training pass is missing");
    let stats = stats_of(&host.next().ok_or_else(missing)?, labels.len());
    let mut grads = BTreeMap::new();
    for of in pass.grads.keys() {
        let v = host.next().ok_or_else(missing)?;
        match *of {
            graph::GradOf::Param(id) => {
                grads.insert(id, v);
            }
            graph::GradOf::Norm(n) => {
                let (dgamma, dbeta) = v.split_at(v.len() / 2);
                grads.insert(ParamId::Scale(n), dgamma.to_vec());
                grads.insert(ParamId::Bias(n), dbeta.to_vec());
            }
        }
    }
    let batch_stats = pass
        .batch_stats
        .iter()
        .zip(host)
        .map(|((norm, _, m), batch)| (*norm, (batch, *m)))
        .collect();
    Ok(PlanGradients {
        stats,
        grads,
        batch_stats,
    })
}

/// The stats of a batch of `n` images from its `[2]` totals (summed loss, right top-1 count).
fn stats_of(totals: &[f32], n: usize) -> Stats {
    Stats {
        loss_sum: f64::from(totals.first().copied().unwrap_or(f32::NAN)),
        correct: totals.get(1).map_or(0, |&c| c.round().max(0.0) as usize),
        seen: n,
    }
}

/// Format tag of training checkpoints.
pub const CHECKPOINT_FORMAT: &str = "activeshift-checkpoint-v1";

/// Summed loss and top-1 hits of `logits` against `labels`.
fn score(logits: &[f32], labels: &[u32], k: usize) -> Result<Stats> {
    if logits.len() != labels.len() * k {
        return Err(Error::shape(
            "evaluate",
            "logits",
            format!("[{}, {k}]", labels.len()),
            format!("{} values", logits.len()),
        ));
    }
    let (_, _, per_image) = CpuBackend.softmax_cross_entropy(&logits.into(), labels, k)?;
    let mut stats = Stats {
        seen: labels.len(),
        ..Default::default()
    };
    for pair in per_image.chunks(2) {
        stats.loss_sum += f64::from(pair[0]);
        stats.correct += usize::from(pair[1] > 0.5);
    }
    Ok(stats)
}
