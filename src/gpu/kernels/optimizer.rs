//! `shaders/optimizer.wgsl`: the training state's update on the device (the optimiser step of
//! one parameter tensor, BatchNorm's running statistics), so that a GPU training run keeps its
//! state in GPU buffers.

use super::elementwise::grid;
use super::params::OptimizerParams;
use super::{Dispatch, Pipeline, expect_distinct, u32_of, workgroups};
use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuTensor};

/// Invocations per workgroup of `optimizer.wgsl`.
const WG_SIZE: usize = 256;

/// One parameter tensor's optimiser step for [`Optimizer::prepare_sgd`]: Nesterov SGD
/// (`g' = g + weight_decay w; v = momentum v + g'; w -= lr lr_mult (g' + momentum v)`), the
/// gradient first normalized per channel when `shift_channels` is given.
#[derive(Clone, Copy, Debug)]
pub struct SgdDispatch<'a> {
    /// The step's base learning rate: a buffer whose first `f32` the host writes each step
    /// (so a prepared dispatch serves every step), `STORAGE` usage, at least 4 bytes.
    pub lr: &'a wgpu::Buffer,
    /// The gradient: `weight.len()` values from element `grad_offset` on.
    pub grad: &'a GpuTensor,
    /// Where the gradient starts in `grad` (the affine layers' `[2, C]` gradients hold the
    /// scale's, then the bias's).
    pub grad_offset: usize,
    /// The parameter, updated in place.
    pub weight: &'a GpuTensor,
    /// Its momentum buffer, updated in place.
    pub velocity: &'a GpuTensor,
    /// Multiplier of the base learning rate (the shifts': 0.01).
    pub lr_mult: f32,
    /// Nesterov momentum.
    pub momentum: f32,
    /// L2 weight decay (0 for what is not a weight).
    pub weight_decay: f32,
    /// `Some(C)` for a `[2, C]` shift: each channel's `(dx, dy)` gradient scaled to unit length
    /// before the step (the normalized shift gradient).
    pub shift_channels: Option<usize>,
}

/// BatchNorm's running-statistics update for [`Optimizer::prepare_running_stats`]:
/// `mean = 0.9 mean + 0.1 batch_mean`, `var = 0.9 var + 0.1 batch_var m / max(m - 1, 1)`.
#[derive(Clone, Copy, Debug)]
pub struct RunningStatsDispatch<'a> {
    /// The batch statistics `[3, C]` (mean, biased variance, inverse standard deviation).
    pub batch: &'a GpuTensor,
    /// The running mean `[C]`, updated in place.
    pub mean: &'a GpuTensor,
    /// The running variance `[C]`, updated in place.
    pub var: &'a GpuTensor,
    /// The number of values per channel the batch statistics were taken over (m).
    pub count: usize,
}

/// `shaders/optimizer.wgsl`: the optimiser step and the running statistics, in place.
pub struct Optimizer {
    sgd: Pipeline,
    running_stats: Pipeline,
}

impl Optimizer {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            sgd: Pipeline::new(device, "optimizer.wgsl", "sgd"),
            running_stats: Pipeline::new(device, "optimizer.wgsl", "running_stats"),
        }
    }

    /// Prepare one parameter tensor's optimiser step ([`SgdDispatch`]).
    ///
    /// # Errors
    /// [`Error::Shape`] when the gradient, velocity and parameter do not match (or a shift is
    /// not `[2, C]`), [`Error::InvalidArgument`] for a non-finite rate or an output sharing a
    /// buffer with an input.
    pub fn prepare_sgd(&self, ctx: &GpuContext, a: SgdDispatch<'_>) -> Result<Dispatch> {
        const OP: &str = "sgd";
        let len = a.weight.len();
        if a.velocity.len() != len {
            return Err(Error::shape(
                OP,
                "velocity",
                format!("{len} elements"),
                format!("{:?}", a.velocity.dims()),
            ));
        }
        if a.grad_offset
            .checked_add(len)
            .is_none_or(|end| end > a.grad.len())
        {
            return Err(Error::shape(
                OP,
                "gradient",
                format!("{len} elements from element {}", a.grad_offset),
                format!("{:?}", a.grad.dims()),
            ));
        }
        if let Some(c) = a.shift_channels
            && (c == 0 || 2 * c != len)
        {
            return Err(Error::shape(
                OP,
                "shift",
                format!("[2, {c}]"),
                format!("{:?}", a.weight.dims()),
            ));
        }
        for (what, v) in [
            ("lr_mult", a.lr_mult),
            ("momentum", a.momentum),
            ("weight_decay", a.weight_decay),
        ] {
            if !v.is_finite() {
                return Err(Error::invalid(OP, format!("{what} is {v}")));
            }
        }
        if a.lr.size() < 4 || !a.lr.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::invalid(
                OP,
                "the learning rate needs a STORAGE buffer of at least 4 bytes",
            ));
        }
        expect_distinct(
            OP,
            a.weight,
            &[("gradient", a.grad), ("velocity", a.velocity)],
        )?;
        expect_distinct(OP, a.velocity, &[("gradient", a.grad)])?;
        let params = OptimizerParams {
            len: u32_of(OP, "elements", len)?,
            offset: u32_of(OP, "gradient offset", a.grad_offset)?,
            channels: u32_of(OP, "shift channels", a.shift_channels.unwrap_or(0))?,
            lr_mult: a.lr_mult,
            momentum: a.momentum,
            weight_decay: a.weight_decay,
            ..Default::default()
        };
        let device = ctx.device();
        let groups = workgroups(OP, device, grid(device, len.div_ceil(WG_SIZE)))?;
        Ok(self.sgd.prepare(
            device,
            &params,
            &[
                (1, a.lr),
                (2, a.grad.buffer()),
                (3, a.weight.buffer()),
                (4, a.velocity.buffer()),
            ],
            groups,
        ))
    }

    /// Prepare BatchNorm's running-statistics update ([`RunningStatsDispatch`]).
    ///
    /// # Errors
    /// [`Error::Shape`] when the statistics are not `[3, C]` with `[C]` running statistics,
    /// [`Error::InvalidArgument`] for a zero count or shared buffers.
    pub fn prepare_running_stats(
        &self,
        ctx: &GpuContext,
        a: RunningStatsDispatch<'_>,
    ) -> Result<Dispatch> {
        const OP: &str = "running_stats";
        let c = a.mean.len();
        if a.var.len() != c || a.batch.len() != 3 * c {
            return Err(Error::shape(
                OP,
                "statistics",
                format!("[3, {c}] batch statistics and [{c}] running variance"),
                format!("{:?} and {:?}", a.batch.dims(), a.var.dims()),
            ));
        }
        if a.count == 0 {
            return Err(Error::invalid(OP, "statistics over zero values"));
        }
        expect_distinct(
            OP,
            a.mean,
            &[("batch statistics", a.batch), ("variance", a.var)],
        )?;
        expect_distinct(OP, a.var, &[("batch statistics", a.batch)])?;
        let m = a.count as f32;
        let params = OptimizerParams {
            len: u32_of(OP, "channels", c)?,
            count: m,
            divisor: (m - 1.0).max(1.0),
            ..Default::default()
        };
        let device = ctx.device();
        let groups = workgroups(OP, device, grid(device, c.div_ceil(WG_SIZE)))?;
        Ok(self.running_stats.prepare(
            device,
            &params,
            &[
                (2, a.batch.buffer()),
                (3, a.mean.buffer()),
                (4, a.var.buffer()),
            ],
            groups,
        ))
    }
}
