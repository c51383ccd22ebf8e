//! The GPU backend of training: every layer a WGSL kernel of [`crate::gpu::kernels`], and a
//! step that stays on the device.
//!
//! - **Storage is recycled.** The tensors an operation returns come from a pool that
//!   [`Backend::begin_step`] rewinds: the same sequence of operations (the same plan and batch
//!   size) gets the same buffers in the same order, so after the first step no buffer is
//!   created.
//! - **Launches are prepared once.** Each launch is kept with what it was prepared from (its
//!   kernel, buffers, shapes); the next step's launch at the same position with the same key
//!   reuses it, uniform buffer and bind group included.
//! - **One submission per step.** Launches are recorded as they come and submitted together,
//!   in order, in one command buffer with the copies of the first download.
//! - **Only data moves.** Uploads are queued writes into pooled buffers; the learning rate is
//!   one value written per step; downloads go through a staging buffer kept for the next.

use super::backend::{
    Backend, BnBackwardArgs, Conv1x1Args, LinearArgs, RunningStatsStep, SgdStep, check_labels,
};
use crate::error::{Error, Result};
use crate::gpu::kernels::{Dispatch, RunningStatsDispatch, SgdDispatch};
use crate::gpu::{GpuContext, GpuTensor};
use crate::shape::Shape4;

/// What a prepared launch was prepared from: equal keys prepare equal launches.
#[derive(Clone, Debug, PartialEq)]
struct Key {
    op: &'static str,
    buffers: Vec<wgpu::Buffer>,
    /// Every tensor's dimensions, then the op's scalars (bit patterns for floats).
    numbers: Vec<u64>,
}

impl Key {
    fn new(op: &'static str, tensors: &[&GpuTensor], scalars: &[u64]) -> Self {
        let mut numbers = Vec::new();
        for t in tensors {
            numbers.push(t.dims().len() as u64);
            numbers.extend(t.dims().iter().map(|&d| d as u64));
        }
        numbers.extend_from_slice(scalars);
        Self {
            op,
            buffers: tensors.iter().map(|t| t.buffer().clone()).collect(),
            numbers,
        }
    }
}

/// The GPU (native only: a training step reads its results back synchronously).
pub struct GpuBackend {
    ctx: GpuContext,
    /// Launches recorded since the last submission.
    pending: Vec<Dispatch>,
    /// Storage handed out by operations, in the order of the first step that asked for it.
    pool: Vec<GpuTensor>,
    /// The next pool entry to hand out (rewound by `begin_step`).
    next_tensor: usize,
    /// Prepared launches, in order, with their keys.
    prepared: Vec<(Key, Dispatch)>,
    /// The next prepared launch to compare with (rewound by `begin_step`).
    next_launch: usize,
    /// Constant tensors of ones, one per shape asked for.
    ones: Vec<GpuTensor>,
    /// The base learning rate of the optimiser launches (one value).
    lr: Option<GpuTensor>,
    /// The value last written into `lr`, and whether launches waiting in `pending` read it.
    lr_written: Option<u32>,
    lr_pending: bool,
    /// Where downloads land (grown when a larger one comes).
    staging: Option<wgpu::Buffer>,
}

/// A clone shares the device, not the launches, storage or prepared launches of the original.
impl Clone for GpuBackend {
    fn clone(&self) -> Self {
        Self::new(self.ctx.clone())
    }
}

impl GpuBackend {
    /// Train on the device of `ctx`.
    pub fn new(ctx: GpuContext) -> Self {
        Self {
            ctx,
            pending: Vec::new(),
            pool: Vec::new(),
            next_tensor: 0,
            prepared: Vec::new(),
            next_launch: 0,
            ones: Vec::new(),
            lr: None,
            lr_written: None,
            lr_pending: false,
            staging: None,
        }
    }

    /// The context the kernels run on.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// The launches prepared so far, in the order of a step, each with its op's name (what
    /// `examples/train_profile.rs --gpu` times one by one).
    pub fn prepared_launches(&self) -> impl Iterator<Item = (&'static str, &Dispatch)> {
        self.prepared.iter().map(|(k, d)| (k.op, d))
    }

    /// A tensor of shape `dims` holding ones, never written (one kept per shape): the scale
    /// of a plain bias in the 1x1 convolution's affine epilogue.
    fn ones(&mut self, dims: &[usize]) -> Result<GpuTensor> {
        if let Some(t) = self.ones.iter().find(|t| t.dims() == dims) {
            return Ok(t.clone());
        }
        let len = dims.iter().product();
        let t = GpuTensor::from_slice(&self.ctx, dims, &vec![1.0; len])?;
        self.ones.push(t.clone());
        Ok(t)
    }

    /// The largest storage this backend's operations were handed so far, in bytes (what a
    /// step needs of one binding: see [`crate::gpu::required_limits`]).
    pub fn largest_tensor_bytes(&self) -> u64 {
        self.pool
            .iter()
            .map(|t| t.len() as u64 * 4)
            .max()
            .unwrap_or(0)
    }

    /// Storage for a tensor of shape `dims`: the pool's next entry when it has the size, else a
    /// new buffer taking its place. Its contents are whatever was there: every kernel writes
    /// all of its output.
    fn alloc(&mut self, dims: &[usize]) -> Result<GpuTensor> {
        let len = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::invalid("tensor", format!("shape {dims:?} overflows")))?;
        let t = match self.pool.get(self.next_tensor) {
            Some(t) if t.len() == len => t.reshape(dims)?,
            _ => {
                let t = GpuTensor::zeros(&self.ctx, dims)?;
                match self.pool.get_mut(self.next_tensor) {
                    Some(slot) => *slot = t.clone(),
                    None => self.pool.push(t.clone()),
                }
                t
            }
        };
        self.next_tensor += 1;
        Ok(t)
    }

    /// Queue the launch `key` describes, prepared by `prepare` unless the launch at this
    /// position of the previous step had the same key.
    fn launch(
        &mut self,
        key: Key,
        prepare: impl FnOnce(&GpuContext) -> Result<Dispatch>,
    ) -> Result<()> {
        let i = self.next_launch;
        let dispatch = match self.prepared.get(i) {
            Some((k, d)) if *k == key => d.clone(),
            _ => {
                let d = prepare(&self.ctx)?;
                match self.prepared.get_mut(i) {
                    Some(slot) => *slot = (key, d.clone()),
                    None => self.prepared.push((key, d.clone())),
                }
                d
            }
        };
        self.next_launch += 1;
        self.pending.push(dispatch);
        Ok(())
    }

    /// Submit the recorded launches, in order, in one command buffer.
    fn flush(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        self.lr_pending = false;
        if pending.is_empty() {
            return Ok(());
        }
        self.ctx.submit(|enc| {
            pending.iter().for_each(|d| d.record(enc));
            Ok(())
        })?;
        Ok(())
    }

    /// The learning-rate buffer holding `lr` for the launches recorded from now on.
    fn lr_buffer(&mut self, lr: f32) -> Result<GpuTensor> {
        if self.lr_written != Some(lr.to_bits()) {
            // A queued write lands before the next submission: launches already recorded
            // with the old value go first.
            if self.lr_pending {
                self.flush()?;
            }
            if self.lr.is_none() {
                self.lr = Some(GpuTensor::zeros(&self.ctx, &[1])?);
            }
            if let Some(t) = &self.lr {
                t.write(&self.ctx, &[lr])?;
            }
            self.lr_written = Some(lr.to_bits());
        }
        self.lr_pending = true;
        self.lr
            .clone()
            .ok_or_else(|| Error::invalid("sgd", "no learning-rate buffer"))
    }
}

fn bits(v: usize) -> u64 {
    v as u64
}

impl Backend for GpuBackend {
    type Tensor = GpuTensor;

    fn describe(&self) -> String {
        self.ctx.describe()
    }

    fn upload(&mut self, dims: &[usize], data: &[f32]) -> Result<GpuTensor> {
        GpuTensor::from_slice(&self.ctx, dims, data)
    }

    fn upload_batch(&mut self, dims: &[usize], data: &[f32]) -> Result<GpuTensor> {
        let t = self.alloc(dims)?;
        t.write(&self.ctx, data)?;
        Ok(t)
    }

    fn overwrite(&mut self, t: &mut GpuTensor, data: &[f32]) -> Result<()> {
        // A queued write lands before the next submission: submit what reads the old values.
        self.flush()?;
        t.write(&self.ctx, data)
    }

    fn download(&mut self, tensors: &[&GpuTensor]) -> Result<Vec<Vec<f32>>> {
        let total: u64 = tensors.iter().map(|t| t.len() as u64 * 4).sum();
        if total == 0 {
            self.flush()?;
            return Ok(tensors.iter().map(|_| Vec::new()).collect());
        }
        let staging = match &self.staging {
            Some(s) if s.size() >= total => s.clone(),
            _ => {
                let s = self.ctx.device().create_buffer(&wgpu::BufferDescriptor {
                    label: Some("activeshift training readback"),
                    size: total.next_power_of_two().max(256),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                self.ctx.count_buffer(0);
                self.staging = Some(s.clone());
                s
            }
        };
        // The launches and the copies in one submission.
        let pending = std::mem::take(&mut self.pending);
        self.lr_pending = false;
        self.ctx.submit(|enc| {
            pending.iter().for_each(|d| d.record(enc));
            let mut offset = 0;
            for t in tensors {
                let size = t.len() as u64 * 4;
                enc.copy_buffer_to_buffer(t.buffer(), 0, &staging, offset, size);
                offset += size;
            }
            Ok(())
        })?;
        let all = pollster::block_on(crate::gpu::read_mapped_prefix(&self.ctx, &staging, total))?;
        let mut rest = &all[..];
        let mut out = Vec::with_capacity(tensors.len());
        for t in tensors {
            let (head, tail) = rest.split_at(t.len());
            out.push(head.to_vec());
            rest = tail;
        }
        Ok(out)
    }

    fn begin_step(&mut self) -> Result<()> {
        // Launches still waiting read this storage: they run before anything reuses it.
        self.flush()?;
        self.next_tensor = 0;
        self.next_launch = 0;
        Ok(())
    }

    fn sgd_step(&mut self, a: SgdStep<'_, GpuTensor>) -> Result<()> {
        let lr = self.lr_buffer(a.lr)?;
        let rule = a.rule;
        let shift_channels = rule.normalize_shift.then_some(a.weight.len() / 2);
        let key = Key::new(
            "sgd",
            &[&lr, a.grad, a.weight, a.velocity],
            &[
                bits(a.grad_offset),
                u64::from(rule.lr_mult.to_bits()),
                u64::from(rule.momentum.to_bits()),
                u64::from(rule.weight_decay.to_bits()),
                bits(shift_channels.unwrap_or(0)),
            ],
        );
        let (grad, weight, velocity) = (a.grad, &*a.weight, &*a.velocity);
        self.launch(key, |ctx| {
            ctx.kernels().optimizer().prepare_sgd(
                ctx,
                SgdDispatch {
                    lr: lr.buffer(),
                    grad,
                    grad_offset: a.grad_offset,
                    weight,
                    velocity,
                    lr_mult: rule.lr_mult,
                    momentum: rule.momentum,
                    weight_decay: rule.weight_decay,
                    shift_channels,
                },
            )
        })
    }

    fn update_running_stats(&mut self, a: RunningStatsStep<'_, GpuTensor>) -> Result<()> {
        let (batch, mean, var, count) = (a.batch, &*a.mean, &*a.var, a.count);
        let key = Key::new("running_stats", &[batch, mean, var], &[bits(count)]);
        self.launch(key, |ctx| {
            ctx.kernels().optimizer().prepare_running_stats(
                ctx,
                RunningStatsDispatch {
                    batch,
                    mean,
                    var,
                    count,
                },
            )
        })
    }

    fn conv3x3(
        &mut self,
        x: &GpuTensor,
        xs: Shape4,
        w: &GpuTensor,
        cout: usize,
        s: usize,
    ) -> Result<GpuTensor> {
        let x = x.reshape(&xs.dims())?;
        let w = w.reshape(&[cout, xs.c, 3, 3])?;
        let y = self.alloc(&xs.strided(cout, s).dims())?;
        let key = Key::new("conv3x3", &[&x, &w, &y], &[bits(s)]);
        self.launch(key, |ctx| {
            ctx.kernels().conv3x3().prepare(ctx, &x, &w, s, &y)
        })?;
        Ok(y)
    }

    fn conv3x3_backward_input(
        &mut self,
        dy: &GpuTensor,
        xs: Shape4,
        w: &GpuTensor,
        cout: usize,
        s: usize,
    ) -> Result<GpuTensor> {
        let dy = dy.reshape(&xs.strided(cout, s).dims())?;
        let w = w.reshape(&[cout, xs.c, 3, 3])?;
        let dx = self.alloc(&xs.dims())?;
        let key = Key::new("conv3x3_backward_input", &[&dy, &w, &dx], &[bits(s)]);
        self.launch(key, |ctx| {
            let k = ctx.kernels().conv3x3_backward_input();
            k.prepare(ctx, &dy, &w, s, &dx)
        })?;
        Ok(dx)
    }

    fn conv3x3_backward_weight(
        &mut self,
        dy: &GpuTensor,
        x: &GpuTensor,
        xs: Shape4,
        cout: usize,
        s: usize,
    ) -> Result<GpuTensor> {
        let x = x.reshape(&xs.dims())?;
        let dy = dy.reshape(&xs.strided(cout, s).dims())?;
        let dw = self.alloc(&[cout, xs.c, 3, 3])?;
        let key = Key::new("conv3x3_backward_weight", &[&dy, &x, &dw], &[bits(s)]);
        self.launch(key, |ctx| {
            let k = ctx.kernels().conv3x3_backward_weight();
            k.prepare(ctx, &dy, &x, s, &dw)
        })?;
        Ok(dw)
    }

    fn conv1x1(&mut self, a: Conv1x1Args<'_, GpuTensor>) -> Result<GpuTensor> {
        let (xs, cout, s) = (a.xs, a.cout, a.stride);
        let x = a.x.reshape(&xs.dims())?;
        let w = a.w.reshape(&[cout, xs.c])?;
        let ys = xs.strided(cout, s);
        let residual = a.residual.map(|r| r.reshape(&ys.dims())).transpose()?;
        let bias = a.bias.map(|b| b.reshape(&[cout])).transpose()?;
        // Ones as the scale of a plain bias (the inference engine's form of it).
        let ones = bias.as_ref().map(|_| self.ones(&[cout])).transpose()?;
        let y = self.alloc(&ys.dims())?;
        let (relu, has_bias) = (a.relu, bias.is_some());
        let mut tensors = vec![&x, &w, &y];
        tensors.extend(residual.as_ref());
        tensors.extend(bias.as_ref());
        let flags = [
            bits(s),
            u64::from(relu),
            u64::from(has_bias),
            u64::from(residual.is_some()),
        ];
        let key = Key::new("conv1x1", &tensors, &flags);
        self.launch(key, |ctx| {
            let epilogue = crate::gpu::kernels::Conv1x1Epilogue {
                affine: ones.as_ref().zip(bias.as_ref()),
                residual: residual.as_ref(),
                relu,
                ..Default::default()
            };
            ctx.kernels()
                .conv1x1()
                .prepare(ctx, &x, &w, s, epilogue, &y)
        })?;
        Ok(y)
    }

    fn conv1x1_backward_weight(
        &mut self,
        dy: &GpuTensor,
        x: &GpuTensor,
        xs: Shape4,
        cout: usize,
        s: usize,
    ) -> Result<GpuTensor> {
        let x = x.reshape(&xs.dims())?;
        let dy = dy.reshape(&xs.strided(cout, s).dims())?;
        let dw = self.alloc(&[cout, xs.c])?;
        let key = Key::new("conv1x1_backward_weight", &[&dy, &x, &dw], &[bits(s)]);
        self.launch(key, |ctx| {
            let k = ctx.kernels().conv1x1_backward_weight();
            k.prepare(ctx, &dy, &x, s, &dw)
        })?;
        Ok(dw)
    }

    fn conv1x1_backward_input(
        &mut self,
        dy: &GpuTensor,
        xs: Shape4,
        w: &GpuTensor,
        cout: usize,
        s: usize,
    ) -> Result<GpuTensor> {
        let dy = dy.reshape(&xs.strided(cout, s).dims())?;
        let w = w.reshape(&[cout, xs.c])?;
        let dx = self.alloc(&xs.dims())?;
        let key = Key::new("conv1x1_backward_input", &[&dy, &w, &dx], &[bits(s)]);
        self.launch(key, |ctx| {
            let k = ctx.kernels().conv1x1_backward_input();
            k.prepare(ctx, &dy, &w, s, &dx)
        })?;
        Ok(dx)
    }

    fn bn_train(
        &mut self,
        x: &GpuTensor,
        xs: Shape4,
        gamma: &GpuTensor,
        beta: &GpuTensor,
        relu: bool,
    ) -> Result<(GpuTensor, GpuTensor)> {
        let x = x.reshape(&xs.dims())?;
        let y = self.alloc(&xs.dims())?;
        let stats = self.alloc(&[3, xs.c])?;
        let key = Key::new(
            "bn_train",
            &[&x, gamma, beta, &stats, &y],
            &[u64::from(relu)],
        );
        self.launch(key, |ctx| {
            let k = ctx.kernels().batchnorm_train();
            k.prepare_forward(
                ctx,
                crate::gpu::kernels::BnForward {
                    x: &x,
                    gamma,
                    beta,
                    stats: &stats,
                    y: &y,
                    relu,
                },
            )
        })?;
        Ok((y, stats))
    }

    fn bn_frozen(
        &mut self,
        x: &GpuTensor,
        xs: Shape4,
        gamma: &GpuTensor,
        beta: &GpuTensor,
        stats: &GpuTensor,
        relu: bool,
    ) -> Result<GpuTensor> {
        let x = x.reshape(&xs.dims())?;
        let y = self.alloc(&xs.dims())?;
        let key = Key::new(
            "bn_frozen",
            &[&x, gamma, beta, stats, &y],
            &[u64::from(relu)],
        );
        self.launch(key, |ctx| {
            let k = ctx.kernels().batchnorm_train();
            k.prepare_forward_frozen(
                ctx,
                crate::gpu::kernels::BnForward {
                    x: &x,
                    gamma,
                    beta,
                    stats,
                    y: &y,
                    relu,
                },
            )
        })?;
        Ok(y)
    }

    fn bn_backward(&mut self, a: BnBackwardArgs<'_, GpuTensor>) -> Result<(GpuTensor, GpuTensor)> {
        let xs = a.xs;
        let (x, y, dy) = (
            a.x.reshape(&xs.dims())?,
            a.y.reshape(&xs.dims())?,
            a.dy.reshape(&xs.dims())?,
        );
        let (gamma, stats) = (a.gamma, a.stats);
        let dparams = self.alloc(&[2, xs.c])?;
        let dx = self.alloc(&xs.dims())?;
        let (frozen, relu) = (a.frozen, a.relu);
        let key = Key::new(
            if frozen {
                "bn_backward_frozen"
            } else {
                "bn_backward"
            },
            &[&x, &y, gamma, stats, &dy, &dparams, &dx],
            &[u64::from(relu)],
        );
        self.launch(key, |ctx| {
            let k = ctx.kernels().batchnorm_train();
            let prepare = if frozen {
                crate::gpu::kernels::BatchNormTrain::prepare_backward_frozen
            } else {
                crate::gpu::kernels::BatchNormTrain::prepare_backward
            };
            prepare(
                k,
                ctx,
                crate::gpu::kernels::BnBackward {
                    x: &x,
                    y: &y,
                    gamma,
                    stats,
                    dy: &dy,
                    dparams: &dparams,
                    dx: &dx,
                    relu,
                },
            )
        })?;
        Ok((dx, dparams))
    }

    fn shift(
        &mut self,
        x: &GpuTensor,
        xs: Shape4,
        shift: &GpuTensor,
        s: usize,
    ) -> Result<GpuTensor> {
        let x = x.reshape(&xs.dims())?;
        let out = self.alloc(&xs.strided(xs.c, s).dims())?;
        let key = Key::new("shift", &[&x, shift, &out], &[bits(s)]);
        self.launch(key, |ctx| {
            ctx.kernels().asl_forward().prepare(ctx, &x, shift, s, &out)
        })?;
        Ok(out)
    }

    fn shift_backward(
        &mut self,
        x: &GpuTensor,
        xs: Shape4,
        dout: &GpuTensor,
        shift: &GpuTensor,
        s: usize,
    ) -> Result<(GpuTensor, GpuTensor)> {
        let x = x.reshape(&xs.dims())?;
        let dout = dout.reshape(&xs.strided(xs.c, s).dims())?;
        let dx = self.alloc(&xs.dims())?;
        let dshift = self.alloc(&[2, xs.c])?;
        let key = Key::new(
            "shift_backward",
            &[&x, &dout, shift, &dx, &dshift],
            &[bits(s)],
        );
        self.launch(key, |ctx| {
            let kernels = ctx.kernels();
            let input = kernels
                .asl_backward_input()
                .prepare(ctx, &dout, shift, s, &dx)?;
            let grad = kernels
                .asl_backward_shift()
                .prepare(ctx, &x, &dout, shift, s, &dshift)?;
            Ok(input.then(grad))
        })?;
        Ok((dx, dshift))
    }

    fn depthwise3x3(
        &mut self,
        x: &GpuTensor,
        xs: Shape4,
        w: &GpuTensor,
        s: usize,
    ) -> Result<GpuTensor> {
        let x = x.reshape(&xs.dims())?;
        let w = w.reshape(&[xs.c, 1, 3, 3])?;
        let y = self.alloc(&xs.strided(xs.c, s).dims())?;
        let key = Key::new("depthwise3x3", &[&x, &w, &y], &[bits(s)]);
        self.launch(key, |ctx| {
            ctx.kernels().depthwise3x3().prepare(ctx, &x, &w, s, &y)
        })?;
        Ok(y)
    }

    fn depthwise3x3_backward(
        &mut self,
        x: &GpuTensor,
        xs: Shape4,
        dy: &GpuTensor,
        w: &GpuTensor,
        s: usize,
    ) -> Result<(GpuTensor, GpuTensor)> {
        let x = x.reshape(&xs.dims())?;
        let dy = dy.reshape(&xs.strided(xs.c, s).dims())?;
        let w = w.reshape(&[xs.c, 1, 3, 3])?;
        let dx = self.alloc(&xs.dims())?;
        let dw = self.alloc(&[xs.c, 1, 3, 3])?;
        let key = Key::new(
            "depthwise3x3_backward",
            &[&x, &dy, &w, &dx, &dw],
            &[bits(s)],
        );
        self.launch(key, |ctx| {
            ctx.kernels().depthwise3x3_backward().prepare(
                ctx,
                crate::gpu::kernels::DepthwiseBackward {
                    x: &x,
                    dy: &dy,
                    w: &w,
                    stride: s,
                    dx: &dx,
                    dw: &dw,
                },
            )
        })?;
        Ok((dx, dw))
    }

    fn add_assign(&mut self, a: &mut GpuTensor, b: &GpuTensor) -> Result<()> {
        let a = &*a;
        let key = Key::new("add", &[b, a], &[]);
        self.launch(key, |ctx| ctx.kernels().add().prepare(ctx, b, a))
    }

    fn add_relu_assign(&mut self, a: &mut GpuTensor, b: &GpuTensor) -> Result<()> {
        let a = &*a;
        let key = Key::new("add_relu", &[b, a], &[]);
        self.launch(key, |ctx| ctx.kernels().add().prepare_relu(ctx, b, a))
    }

    fn relu_backward_assign(&mut self, d: &mut GpuTensor, y: &GpuTensor) -> Result<()> {
        let d = &*d;
        let key = Key::new("relu_backward", &[y, d], &[]);
        self.launch(key, |ctx| {
            ctx.kernels().add().prepare_relu_backward(ctx, y, d)
        })
    }

    fn channel_sum(&mut self, x: &GpuTensor, xs: Shape4) -> Result<GpuTensor> {
        let x = x.reshape(&xs.dims())?;
        let out = self.alloc(&[xs.c])?;
        let key = Key::new("channel_sum", &[&x, &out], &[]);
        self.launch(key, |ctx| {
            ctx.kernels().channel_sum().prepare(ctx, &x, &out)
        })?;
        Ok(out)
    }

    fn avg_pool(&mut self, x: &GpuTensor, xs: Shape4) -> Result<GpuTensor> {
        let x = x.reshape(&xs.dims())?;
        let y = self.alloc(&[xs.n, xs.c, 1, 1])?;
        let key = Key::new("avg_pool", &[&x, &y], &[]);
        self.launch(key, |ctx| {
            ctx.kernels().global_avg_pool().prepare(ctx, &x, &y)
        })?;
        y.reshape(&[xs.n, xs.c])
    }

    fn avg_pool_backward(&mut self, dy: &GpuTensor, xs: Shape4) -> Result<GpuTensor> {
        let dx = self.alloc(&xs.dims())?;
        let key = Key::new("avg_pool_backward", &[dy, &dx], &[]);
        self.launch(key, |ctx| {
            ctx.kernels()
                .global_avg_pool_backward()
                .prepare(ctx, dy, &dx)
        })?;
        Ok(dx)
    }

    fn linear(&mut self, a: LinearArgs<'_, GpuTensor>, b: &GpuTensor) -> Result<GpuTensor> {
        // A 1x1 convolution of [n, c, 1, 1] with the bias as the epilogue's affine (scale 1).
        let LinearArgs { x, w, n, c, k } = a;
        let ones = self.ones(&[k])?;
        let x = x.reshape(&[n, c, 1, 1])?;
        let w = w.reshape(&[k, c])?;
        let y = self.alloc(&[n, k, 1, 1])?;
        let key = Key::new("linear", &[&x, &w, &ones, b, &y], &[]);
        self.launch(key, |ctx| {
            let epilogue = crate::gpu::kernels::Conv1x1Epilogue {
                affine: Some((&ones, b)),
                ..Default::default()
            };
            ctx.kernels()
                .conv1x1()
                .prepare(ctx, &x, &w, 1, epilogue, &y)
        })?;
        y.reshape(&[n, k])
    }

    fn linear_backward(
        &mut self,
        dy: &GpuTensor,
        a: LinearArgs<'_, GpuTensor>,
    ) -> Result<(GpuTensor, GpuTensor)> {
        let LinearArgs { x, w, n, c, k } = a;
        let xs = Shape4::new(n, c, 1, 1);
        let dw = self.conv1x1_backward_weight(dy, x, xs, k, 1)?;
        let dx = self.conv1x1_backward_input(dy, xs, w, k, 1)?;
        Ok((dx.reshape(&[n, c])?, dw))
    }

    fn softmax_cross_entropy(
        &mut self,
        logits: &GpuTensor,
        labels: &[u32],
        k: usize,
    ) -> Result<(GpuTensor, GpuTensor, GpuTensor)> {
        check_labels(labels, k)?;
        let n = labels.len();
        let logits = logits.reshape(&[n, k])?;
        // The labels as u32 in pooled storage (4 bytes per label, like an f32).
        let label_t = self.alloc(&[n])?;
        let wide: Vec<u32> = labels.to_vec();
        self.ctx
            .queue()
            .write_buffer(label_t.buffer(), 0, bytemuck::cast_slice(&wide));
        self.ctx.count_upload(4 * n as u64);
        let d = self.alloc(&[n, k])?;
        let per_image = self.alloc(&[n, 2])?;
        let db = self.alloc(&[k])?;
        let key = Key::new(
            "softmax_cross_entropy",
            &[&logits, &label_t, &d, &per_image, &db],
            &[],
        );
        self.launch(key, |ctx| {
            let kernel = ctx.kernels().softmax_cross_entropy();
            kernel.prepare(ctx, &logits, label_t.buffer(), &d, &per_image, &db)
        })?;
        Ok((d, db, per_image))
    }
}
