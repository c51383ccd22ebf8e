//! A training run whose state lives on its backend: parameters, momentum and BatchNorm running
//! statistics are backend tensors, updated in place each step by the backend's optimiser
//! ([`Backend::sgd_step`], [`Backend::update_running_stats`]); only the batch goes in. The
//! steps' summed loss and hits stay on the backend too, until [`Session::stats`] reads them
//! (two numbers, as often as the caller wants to show them). The host copy (a [`Trainer`]) is brought up to date
//! when asked ([`Session::sync`]): to write a checkpoint or export the model.

use super::backend::{Backend, RunningStatsStep, SgdStep};
use super::graph::{self, GradOf};
use super::optim::SgdRule;
use super::{Stats, Trainer, stats_of};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::{Norm, ParamId, Plan};
use std::collections::{BTreeMap, HashMap};

/// A [`Trainer`] whose state lives on the backend `B`; the same code trains on the CPU
/// ([`CpuBackend`](super::CpuBackend)) and on the GPU ([`GpuBackend`](super::GpuBackend)).
pub struct Session<B: Backend> {
    be: B,
    /// The run's description and position; its tensors as of the last [`Session::sync`].
    host: Trainer,
    params: HashMap<ParamId, B::Tensor>,
    velocity: HashMap<ParamId, B::Tensor>,
    /// Each parameter's number of values.
    lens: HashMap<ParamId, usize>,
    /// Running mean and variance per affine layer.
    running: BTreeMap<Norm, (B::Tensor, B::Tensor)>,
    /// With frozen statistics ([`super::NormMode::Frozen`]), those of every affine layer
    /// (`[3, C]`), made once.
    frozen: Option<BTreeMap<Norm, B::Tensor>>,
    /// The training plan of the last batch size.
    plan: Option<Plan>,
    /// Whether `host` holds the backend's state.
    synced: bool,
    /// Summed loss and hits of the steps since the last [`Session::stats`] (`[2]`).
    totals: Option<B::Tensor>,
    /// Images of those steps.
    unread: usize,
}

fn absent(what: String) -> Error {
    Error::invalid("train session", format!("{what} is missing"))
}

impl<B: Backend> Session<B> {
    /// Move the state of `trainer` onto `be`.
    pub fn new(trainer: Trainer, mut be: B) -> Result<Self> {
        let (mut params, mut velocity, mut running) =
            (HashMap::new(), HashMap::new(), BTreeMap::new());
        let mut lens = HashMap::new();
        for (id, dims) in trainer.config.params() {
            let name = id.name();
            let p = trainer
                .params
                .get(&name)
                .ok_or_else(|| absent(name.clone()))?;
            let v = trainer
                .velocity
                .get(&name)
                .ok_or_else(|| absent(name.clone()))?;
            lens.insert(id, dims.iter().product());
            params.insert(id, be.upload(&dims, p)?);
            velocity.insert(id, be.upload(&dims, v)?);
            if let ParamId::Scale(norm) = id {
                let (m, v) = (norm.running_mean_name(), norm.running_var_name());
                let mean = trainer.params.get(&m).ok_or_else(|| absent(m))?;
                let var = trainer.params.get(&v).ok_or_else(|| absent(v))?;
                running.insert(norm, (be.upload(&dims, mean)?, be.upload(&dims, var)?));
            }
        }
        let frozen = trainer.frozen_stats_on(&mut be)?;
        Ok(Self {
            be,
            host: trainer,
            params,
            velocity,
            lens,
            running,
            frozen,
            plan: None,
            synced: true,
            totals: None,
            unread: 0,
        })
    }

    /// The backend.
    pub fn backend(&mut self) -> &mut B {
        &mut self.be
    }

    /// The run's configuration, settings and position; its parameters, momentum and running
    /// statistics as of the last [`Session::sync`] (call that for current ones).
    pub fn trainer(&self) -> &Trainer {
        &self.host
    }

    /// Set the run's position (completed epochs, completed steps in the current epoch).
    pub fn set_position(&mut self, epoch: usize, step_in_epoch: usize) {
        self.host.epoch = epoch;
        self.host.step_in_epoch = step_in_epoch;
    }

    /// Bring the host copy up to date (one download of the whole state) and return it: to
    /// write a checkpoint ([`Trainer::save_checkpoint`]) or export the model.
    pub fn sync(&mut self) -> Result<&Trainer> {
        if !self.synced {
            let ids: Vec<ParamId> = self.params.keys().copied().collect();
            let norms: Vec<Norm> = self.running.keys().copied().collect();
            let mut wanted = Vec::new();
            for id in &ids {
                wanted.push(&self.params[id]);
                wanted.push(&self.velocity[id]);
            }
            for (mean, var) in self.running.values() {
                wanted.push(mean);
                wanted.push(var);
            }
            let mut host = self.be.download(&wanted)?.into_iter();
            let mut next = || {
                host.next()
                    .ok_or_else(|| absent("a downloaded tensor".into()))
            };
            for id in ids {
                self.host.params.insert(id.name(), next()?);
                self.host.velocity.insert(id.name(), next()?);
            }
            for norm in norms {
                self.host.params.insert(norm.running_mean_name(), next()?);
                self.host.params.insert(norm.running_var_name(), next()?);
            }
            self.synced = true;
        }
        Ok(&self.host)
    }

    /// The run, brought up to date.
    pub fn into_trainer(mut self) -> Result<Trainer> {
        self.sync()?;
        Ok(self.host)
    }

    /// One SGD step on the images `idx` of `set` (augmented as [`Trainer::batch_of`] says)
    /// with learning rate `lr`. Its loss and hits are added to what [`Session::stats`] reads.
    pub fn step(&mut self, set: &Dataset, idx: &[usize], lr: f32, step_seed: u64) -> Result<()> {
        let (input, labels) = self.host.batch_of(set, idx, step_seed)?;
        self.step_batch(&input, &labels, lr)
    }

    /// One SGD step on a preprocessed batch: forward and backward through the plan, the
    /// optimiser and the running statistics, all on the backend; nothing comes back (the
    /// batch's loss and hits are added to what [`Session::stats`] reads). A device may still
    /// be running the step when this returns.
    pub fn step_batch(&mut self, input: &[f32], labels: &[u32], lr: f32) -> Result<()> {
        let n = labels.len();
        if self.plan.as_ref().is_none_or(|p| p.slots[p.input].n != n) {
            self.plan = Some(self.host.plan_for(input, labels)?);
        }
        let plan = self
            .plan
            .as_ref()
            .ok_or_else(|| absent("the plan".into()))?;
        let in_shape = plan.slots[plan.input];
        if input.len() != in_shape.len() || n == 0 {
            return Err(Error::shape(
                "train",
                "input",
                in_shape,
                format!("{} values for {n} labels", input.len()),
            ));
        }
        self.synced = false;
        let pass = graph::forward_backward(
            &mut self.be,
            plan,
            &self.params,
            self.frozen.as_ref(),
            input,
            labels,
        )?;
        for (of, grad) in &pass.grads {
            match *of {
                GradOf::Param(id) => self.sgd(id, grad, 0, lr)?,
                GradOf::Norm(norm) => {
                    // `[2, C]`: the scale's gradient, then the bias's.
                    let scale = ParamId::Scale(norm);
                    self.sgd(scale, grad, 0, lr)?;
                    let c = *self.lens.get(&scale).ok_or_else(|| absent(scale.name()))?;
                    self.sgd(ParamId::Bias(norm), grad, c, lr)?;
                }
            }
        }
        for (norm, batch, count) in &pass.batch_stats {
            let (mean, var) = self
                .running
                .get_mut(norm)
                .ok_or_else(|| absent(norm.running_mean_name()))?;
            self.be.update_running_stats(RunningStatsStep {
                mean,
                var,
                batch,
                count: *count,
            })?;
        }
        let totals = match &mut self.totals {
            Some(t) => t,
            None => self.totals.insert(self.be.upload(&[2], &[0.0, 0.0])?),
        };
        self.be.add_assign(totals, &pass.totals)?;
        self.unread += n;
        Ok(())
    }

    /// The summed loss, hits and images of the steps since the last call (all zero when there
    /// were none): one download of two numbers, which waits for those steps to finish.
    pub fn stats(&mut self) -> Result<Stats> {
        let Some(totals) = &mut self.totals else {
            return Ok(Stats::default());
        };
        if self.unread == 0 {
            return Ok(Stats::default());
        }
        let read = self.be.download(&[totals])?;
        self.be.overwrite(totals, &[0.0, 0.0])?;
        let stats = stats_of(read.first().map_or(&[][..], |t| &t[..]), self.unread);
        self.unread = 0;
        Ok(stats)
    }

    /// The optimiser step of parameter `id` from `grad` (from element `offset` on).
    fn sgd(&mut self, id: ParamId, grad: &B::Tensor, offset: usize, lr: f32) -> Result<()> {
        let Some(rule) = SgdRule::of(&self.host.settings, id) else {
            return Ok(());
        };
        let weight = self.params.get_mut(&id).ok_or_else(|| absent(id.name()))?;
        let velocity = self
            .velocity
            .get_mut(&id)
            .ok_or_else(|| absent(id.name()))?;
        self.be.sgd_step(SgdStep {
            weight,
            velocity,
            grad,
            grad_offset: offset,
            rule,
            lr,
        })
    }
}
