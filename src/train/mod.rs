//! Training AS-ResNet / ASNet end to end on the CPU: BatchNorm with batch statistics, the
//! authors' optimiser (SGD with Nesterov momentum 0.9, weight decay on weights only, the
//! normalized shift gradient with learning-rate multiplier 0.01 and no decay), checkpoints that
//! resume exactly, and export to an inference [`Model`] (BatchNorm folded into the affine
//! layers).

pub mod ops;

use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::model::{ArchConfig, BlockSpec, HostTensor, Model};
use crate::shape::Shape4;
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
    /// ShiftNet's fixed grouped integer shifts (frozen).
    Grouped,
    /// Integer shifts sampled from N(0, 1), rounded (frozen).
    SampledInt,
    /// Real shifts sampled from N(0, 1) (frozen).
    SampledReal,
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
        }
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
    fn add(&mut self, o: Stats) {
        self.loss_sum += o.loss_sum;
        self.correct += o.correct;
        self.seen += o.seen;
    }
}

/// ShiftNet's grouped shift of channel `c` of `channels` (DESIGN.md §2): `(dx, dy)`.
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

fn is_decayed(name: &str) -> bool {
    name.ends_with(".weight")
}

impl Trainer {
    /// A fresh run: He-normal convolutions, uniform classifier, BatchNorm gamma 1 and beta 0,
    /// shifts per [`ShiftMode`].
    pub fn new(config: ArchConfig, labels: Vec<String>, settings: TrainSettings) -> Result<Self> {
        config.validate()?;
        let mut rng = StdRng::seed_from_u64(settings.seed);
        let mut params = BTreeMap::new();
        for (name, dims) in config.param_shapes() {
            let len: usize = dims.iter().product();
            let data: Vec<f32> = if name.ends_with(".shift") {
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
                        ShiftMode::SampledReal => (normal(&mut rng), normal(&mut rng)),
                    };
                    v[ch] = x;
                    v[c + ch] = y;
                }
                v
            } else if name.ends_with(".scale") {
                vec![1.0; len]
            } else if name.ends_with(".bias") {
                vec![0.0; len]
            } else if name == "fc.weight" {
                let a = (6.0 / (dims[0] + dims[1]) as f32).sqrt();
                (0..len).map(|_| rng.random_range(-a..a)).collect()
            } else {
                let fan_in: usize = dims[1..].iter().product();
                let std = (2.0 / fan_in as f32).sqrt();
                (0..len).map(|_| normal(&mut rng) * std).collect()
            };
            params.insert(name, data);
        }
        let mut stats = BTreeMap::new();
        for (name, dims) in config.param_shapes() {
            if let Some(prefix) = name.strip_suffix(".scale") {
                stats.insert(format!("{prefix}.running_mean"), vec![0.0; dims[0]]);
                stats.insert(format!("{prefix}.running_var"), vec![1.0; dims[0]]);
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

    fn p(&self, name: &str) -> &[f32] {
        self.params.get(name).map(|v| &v[..]).unwrap_or(&[])
    }

    /// Steps per epoch for a training set of `n` images (the last partial batch is dropped).
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        (n / self.settings.batch).max(1)
    }

    /// Learning rate at global step `step` of `total`.
    pub fn lr_at(&self, step: usize, total: usize) -> f32 {
        let f = step as f32 / total.max(1) as f32;
        match self.settings.schedule {
            Schedule::Cosine => self.settings.lr * 0.5 * (1.0 + (std::f32::consts::PI * f).cos()),
            Schedule::Step => {
                self.settings.lr
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

    /// The shuffled image order of epoch `epoch` (a function of the seed and the epoch only,
    /// so a resumed run sees the same batches).
    pub fn epoch_order(&self, n: usize, epoch: usize) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(
            self.settings.seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(epoch as u64 + 1)),
        );
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
        order
    }

    /// One SGD step on the images `idx` of `set`; returns the batch's stats.
    pub fn train_step(
        &mut self,
        set: &Dataset,
        idx: &[usize],
        lr: f32,
        step_seed: u64,
    ) -> Result<Stats> {
        let mut input = Vec::new();
        let mut rng = StdRng::seed_from_u64(step_seed);
        data::batch(
            set,
            idx,
            self.settings.augment.then_some(&mut rng),
            &mut input,
        );
        let labels: Vec<u8> = idx.iter().map(|&i| set.labels[i]).collect();
        let (stats, grads) = self.forward_backward(&input, &labels)?;
        self.apply(grads, lr);
        Ok(stats)
    }

    /// Test-set accuracy with the running statistics (inference mode).
    pub fn evaluate(&self, set: &Dataset) -> Result<Stats> {
        let mut total = Stats::default();
        let mut input = Vec::new();
        let idx: Vec<usize> = (0..set.len()).collect();
        for chunk in idx.chunks(500) {
            data::batch(set, chunk, None, &mut input);
            let labels: Vec<u8> = chunk.iter().map(|&i| set.labels[i]).collect();
            let logits = self.forward_eval(&input, chunk.len())?;
            total.add(score(&logits, &labels, self.config.classes).0);
        }
        Ok(total)
    }

    fn input_shape(&self, n: usize) -> Shape4 {
        Shape4::new(
            n,
            self.config.in_channels,
            self.config.input_size[0],
            self.config.input_size[1],
        )
    }

    /// Inference-mode logits `[N, classes]`.
    pub fn forward_eval(&self, input: &[f32], n: usize) -> Result<Vec<f32>> {
        let c = &self.config;
        let mut xs = self.input_shape(n);
        let mut x = ops::conv3x3(
            input,
            xs,
            self.p("stem.weight"),
            c.stem_width,
            c.stem_stride,
        );
        xs = xs.strided(c.stem_width, c.stem_stride);
        let bn = |x: &[f32], xs: Shape4, p: &str| {
            ops::bn_relu_eval(
                x,
                xs,
                self.p(&format!("{p}.scale")),
                self.p(&format!("{p}.bias")),
                self.p(&format!("{p}.running_mean")),
                self.p(&format!("{p}.running_var")),
            )
        };
        for b in c.blocks() {
            let pre = format!("{}.pre", b.prefix);
            let t = bn(&x, xs, &pre);
            let e = ops::conv1x1(
                &t,
                xs,
                self.p(&format!("{}.expand.weight", b.prefix)),
                b.inner,
                1,
            );
            let es = xs.strided(b.inner, 1);
            let u = bn(&e, es, &format!("{}.mid", b.prefix));
            let (_, vs, y) = self.block_tail(&b, &x, xs, &t, &u)?;
            x = y;
            xs = vs.strided(b.width, 1);
        }
        let h = bn(&x, xs, "head");
        let pooled = pool(&h, xs);
        Ok(classifier(
            &pooled,
            n,
            xs.c,
            self.p("fc.weight"),
            self.p("fc.bias"),
            c.classes,
        ))
    }

    /// Forward and backward of one batch in training mode: stats and gradients by name.
    pub fn forward_backward(
        &mut self,
        input: &[f32],
        labels: &[u8],
    ) -> Result<(Stats, BTreeMap<String, Vec<f32>>)> {
        let n = labels.len();
        let c = self.config.clone();
        let in_shape = self.input_shape(n);
        if input.len() != in_shape.len() {
            return Err(Error::shape(
                "train",
                "input",
                in_shape,
                format!("{} values", input.len()),
            ));
        }
        let mut grads: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        let mut xs = in_shape.strided(c.stem_width, c.stem_stride);
        let mut x = ops::conv3x3(
            input,
            in_shape,
            self.p("stem.weight"),
            c.stem_width,
            c.stem_stride,
        );

        struct Tape {
            x: Vec<f32>,
            xs: Shape4,
            t: Vec<f32>,
            pre: ops::BnCache,
            e: Vec<f32>,
            u: Vec<f32>,
            mid: ops::BnCache,
            v: Vec<f32>,
            vs: Shape4,
        }
        let blocks = c.blocks();
        let mut tapes = Vec::with_capacity(blocks.len());
        for b in &blocks {
            let pre = format!("{}.pre", b.prefix);
            let (t, pre_cache) = self.bn_train(&x, xs, &pre);
            let e = ops::conv1x1(
                &t,
                xs,
                self.p(&format!("{}.expand.weight", b.prefix)),
                b.inner,
                1,
            );
            let es = xs.strided(b.inner, 1);
            let (u, mid_cache) = self.bn_train(&e, es, &format!("{}.mid", b.prefix));
            let (v, vs, y) = self.block_tail(b, &x, xs, &t, &u)?;
            let ys = vs.strided(b.width, 1);
            tapes.push(Tape {
                x: std::mem::replace(&mut x, y),
                xs,
                t,
                pre: pre_cache,
                e,
                u,
                mid: mid_cache,
                v,
                vs,
            });
            xs = ys;
        }
        let (h, head_cache) = self.bn_train(&x, xs, "head");
        let pooled = pool(&h, xs);
        let logits = classifier(
            &pooled,
            n,
            xs.c,
            self.p("fc.weight"),
            self.p("fc.bias"),
            c.classes,
        );
        let (stats, dlogits) = score(&logits, labels, c.classes);

        // Classifier and head.
        let k = c.classes;
        let mut dfc = vec![0.0; k * xs.c];
        let mut dfb = vec![0.0; k];
        let mut dpooled = vec![0.0; n * xs.c];
        let fc = self.p("fc.weight");
        for i in 0..n {
            for cls in 0..k {
                let g = dlogits[i * k + cls];
                dfb[cls] += g;
                for ch in 0..xs.c {
                    dfc[cls * xs.c + ch] += g * pooled[i * xs.c + ch];
                    dpooled[i * xs.c + ch] += g * fc[cls * xs.c + ch];
                }
            }
        }
        grads.insert("fc.weight".into(), dfc);
        grads.insert("fc.bias".into(), dfb);
        let plane = xs.plane() as f32;
        let dh: Vec<f32> = (0..xs.len())
            .map(|i| dpooled[i / xs.plane()] / plane)
            .collect();
        let (mut dx, dg, db) =
            ops::bn_relu_backward(&dh, &x, &h, xs, self.p("head.scale"), &head_cache);
        grads.insert("head.scale".into(), dg);
        grads.insert("head.bias".into(), db);

        for (b, tape) in blocks.iter().zip(tapes).rev() {
            let name = |s: &str| format!("{}.{s}", b.prefix);
            let dy = dx;
            // reduce conv
            let mut dv = vec![0.0; tape.vs.len()];
            self.conv1x1_backward(
                &mut grads,
                &name("reduce.weight"),
                &dy,
                &tape.v,
                tape.vs,
                b.width,
                1,
                &mut dv,
            );
            // shift
            let es = tape.xs.strided(b.inner, 1);
            let (du, dshift) =
                ops::shift_backward(&tape.u, es, &dv, self.p(&name("shift")), b.stride)?;
            grads.insert(name("shift"), dshift);
            // mid BN + ReLU
            let (de, dg, db) = ops::bn_relu_backward(
                &du,
                &tape.e,
                &tape.u,
                es,
                self.p(&name("mid.scale")),
                &tape.mid,
            );
            grads.insert(name("mid.scale"), dg);
            grads.insert(name("mid.bias"), db);
            // expand conv
            let mut dt = vec![0.0; tape.xs.len()];
            self.conv1x1_backward(
                &mut grads,
                &name("expand.weight"),
                &de,
                &tape.t,
                tape.xs,
                b.inner,
                1,
                &mut dt,
            );
            let mut dskip = None;
            if b.projection {
                self.conv1x1_backward(
                    &mut grads,
                    &name("shortcut.weight"),
                    &dy,
                    &tape.t,
                    tape.xs,
                    b.width,
                    b.stride,
                    &mut dt,
                );
            } else {
                dskip = Some(dy);
            }
            // pre BN + ReLU
            let (mut dxb, dg, db) = ops::bn_relu_backward(
                &dt,
                &tape.x,
                &tape.t,
                tape.xs,
                self.p(&name("pre.scale")),
                &tape.pre,
            );
            grads.insert(name("pre.scale"), dg);
            grads.insert(name("pre.bias"), db);
            if let Some(d) = dskip {
                dxb.iter_mut().zip(d).for_each(|(a, s)| *a += s);
            }
            dx = dxb;
        }
        grads.insert(
            "stem.weight".into(),
            ops::conv3x3_backward_weight(&dx, input, in_shape, c.stem_width, c.stem_stride),
        );
        Ok((stats, grads))
    }

    /// The part of a block after its mid BatchNorm + ReLU output `u`: the shift, the reduce
    /// convolution and the shortcut (identity of `x`, or a strided 1x1 convolution of `t`).
    /// Returns the shifted tensor, its shape and the block output.
    fn block_tail(
        &self,
        b: &BlockSpec,
        x: &[f32],
        xs: Shape4,
        t: &[f32],
        u: &[f32],
    ) -> Result<(Vec<f32>, Shape4, Vec<f32>)> {
        let name = |s: &str| format!("{}.{s}", b.prefix);
        let es = xs.strided(b.inner, 1);
        let v = ops::shift(u, es, self.p(&name("shift")), b.stride)?;
        let vs = es.strided(b.inner, b.stride);
        let mut y = ops::conv1x1(&v, vs, self.p(&name("reduce.weight")), b.width, 1);
        if b.projection {
            let sc = ops::conv1x1(t, xs, self.p(&name("shortcut.weight")), b.width, b.stride);
            y.iter_mut().zip(sc).for_each(|(a, s)| *a += s);
        } else {
            y.iter_mut().zip(x).for_each(|(a, s)| *a += s);
        }
        Ok((v, vs, y))
    }

    /// Both gradients of the 1x1 convolution with weight `weight` (`[cout, xs.c]`, stride `s`)
    /// of input `x`: the weight gradient goes into `grads`, the input gradient is added to `dx`.
    #[allow(clippy::too_many_arguments)]
    fn conv1x1_backward(
        &self,
        grads: &mut BTreeMap<String, Vec<f32>>,
        weight: &str,
        dy: &[f32],
        x: &[f32],
        xs: Shape4,
        cout: usize,
        s: usize,
        dx: &mut [f32],
    ) {
        grads.insert(
            weight.to_string(),
            ops::conv1x1_backward_weight(dy, x, xs, cout, s),
        );
        ops::conv1x1_backward_input(dy, xs, self.p(weight), cout, s, dx);
    }

    fn bn_train(&mut self, x: &[f32], xs: Shape4, prefix: &str) -> (Vec<f32>, ops::BnCache) {
        let gamma = self.p(&format!("{prefix}.scale")).to_vec();
        let beta = self.p(&format!("{prefix}.bias")).to_vec();
        let mut rm = self
            .params
            .remove(&format!("{prefix}.running_mean"))
            .unwrap_or_default();
        let mut rv = self
            .params
            .remove(&format!("{prefix}.running_var"))
            .unwrap_or_default();
        let out = ops::bn_relu_train(x, xs, &gamma, &beta, &mut rm, &mut rv);
        self.params.insert(format!("{prefix}.running_mean"), rm);
        self.params.insert(format!("{prefix}.running_var"), rv);
        out
    }

    /// Apply one optimiser step with learning rate `lr` (PyTorch's Nesterov form:
    /// `v = m v + g; w -= lr (g + m v)`).
    pub fn apply(&mut self, grads: BTreeMap<String, Vec<f32>>, lr: f32) {
        let s = self.settings.clone();
        for (name, mut g) in grads {
            let is_shift = name.ends_with(".shift");
            if is_shift {
                if s.shift != ShiftMode::Learned {
                    continue;
                }
                let _ = crate::cpu::normalize_shift_grad(&mut g);
            }
            let (Some(w), Some(v)) = (self.params.get_mut(&name), self.velocity.get_mut(&name))
            else {
                continue;
            };
            let rate = if is_shift { lr * s.shift_lr_mult } else { lr };
            let wd = if is_decayed(&name) {
                s.weight_decay
            } else {
                0.0
            };
            for i in 0..w.len() {
                let gi = g[i] + wd * w[i];
                v[i] = s.momentum * v[i] + gi;
                w[i] -= rate * (gi + s.momentum * v[i]);
            }
        }
    }

    /// The inference model: BatchNorm folded into the affine layers.
    pub fn export(&self) -> Result<Model> {
        let mut params = BTreeMap::new();
        for (name, dims) in self.config.param_shapes() {
            let data = if let Some(prefix) = name.strip_suffix(".scale") {
                ops::fold_bn(
                    self.p(&name),
                    self.p(&format!("{prefix}.bias")),
                    self.p(&format!("{prefix}.running_mean")),
                    self.p(&format!("{prefix}.running_var")),
                )
                .0
            } else if let Some(prefix) = name.strip_suffix(".bias").filter(|p| !p.starts_with("fc"))
            {
                ops::fold_bn(
                    self.p(&format!("{prefix}.scale")),
                    self.p(&name),
                    self.p(&format!("{prefix}.running_mean")),
                    self.p(&format!("{prefix}.running_var")),
                )
                .1
            } else {
                self.p(&name).to_vec()
            };
            params.insert(name, HostTensor::new(dims, data)?);
        }
        Model::new(self.config.clone(), self.labels.clone(), params)
    }

    /// Write a checkpoint atomically (temporary file, then rename).
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
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
        crate::model::write_tensors_atomic(path, &tensors, CHECKPOINT_FORMAT, &meta.to_string())
    }

    /// Read a checkpoint written by [`Trainer::save_checkpoint`].
    pub fn load_checkpoint(path: &Path) -> Result<Self> {
        let (tensors, meta) = crate::model::read_tensors(path, CHECKPOINT_FORMAT)?;
        #[derive(Deserialize)]
        struct Meta {
            config: ArchConfig,
            labels: Vec<String>,
            settings: TrainSettings,
            epoch: usize,
            step_in_epoch: usize,
        }
        let m: Meta = serde_json::from_str(&meta).map_err(|e| Error::Format {
            format: "checkpoint",
            msg: format!("{}: state: {e}", path.display()),
        })?;
        let mut t = Trainer::new(m.config, m.labels, m.settings)?;
        for v in t.params.values_mut().chain(t.velocity.values_mut()) {
            v.clear();
        }
        for (key, tensor) in tensors {
            let (kind, name) = key.split_once('/').unwrap_or(("", ""));
            let slot = match kind {
                "param" => t.params.get_mut(name),
                "velocity" => t.velocity.get_mut(name),
                _ => None,
            };
            match slot {
                Some(s) => *s = tensor.data,
                None => {
                    return Err(Error::Format {
                        format: "checkpoint",
                        msg: format!("{}: unexpected tensor `{key}`", path.display()),
                    });
                }
            }
        }
        if let Some((k, _)) = t
            .params
            .iter()
            .chain(t.velocity.iter())
            .find(|(_, v)| v.is_empty())
        {
            return Err(Error::Format {
                format: "checkpoint",
                msg: format!("{}: tensor `{k}` is missing", path.display()),
            });
        }
        t.epoch = m.epoch;
        t.step_in_epoch = m.step_in_epoch;
        Ok(t)
    }
}

/// Format tag of training checkpoints.
pub const CHECKPOINT_FORMAT: &str = "activeshift-checkpoint-v1";

fn pool(h: &[f32], xs: Shape4) -> Vec<f32> {
    h.chunks(xs.plane())
        .map(|p| p.iter().sum::<f32>() / xs.plane() as f32)
        .collect()
}

fn classifier(pooled: &[f32], n: usize, c: usize, w: &[f32], b: &[f32], k: usize) -> Vec<f32> {
    let mut logits = vec![0.0; n * k];
    for i in 0..n {
        for cls in 0..k {
            let mut acc = b[cls];
            for ch in 0..c {
                acc += w[cls * c + ch] * pooled[i * c + ch];
            }
            logits[i * k + cls] = acc;
        }
    }
    logits
}

/// Softmax cross-entropy: stats and `d(mean loss)/d logits`.
fn score(logits: &[f32], labels: &[u8], k: usize) -> (Stats, Vec<f32>) {
    let n = labels.len();
    let mut d = vec![0.0; logits.len()];
    let mut stats = Stats {
        seen: n,
        ..Default::default()
    };
    for i in 0..n {
        let row = &logits[i * k..][..k];
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
        let label = labels[i] as usize;
        let argmax = (0..k)
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap_or(0);
        if argmax == label {
            stats.correct += 1;
        }
        stats.loss_sum += f64::from(sum.ln() + max - row[label]);
        for cls in 0..k {
            let p = (row[cls] - max).exp() / sum;
            d[i * k + cls] = (p - if cls == label { 1.0 } else { 0.0 }) / n as f32;
        }
    }
    (stats, d)
}
