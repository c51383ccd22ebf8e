//! Running a model on the GPU: parameters uploaded once, activation buffers and bind groups
//! built once per batch size, the whole network recorded into one compute pass and one
//! submission, one readback at the end.

use super::file::Model;
use super::plan::{ONES, Op, Plan};
use super::run::{Output, check_input};
use crate::error::{Error, Result};
use crate::gpu::kernels::{Conv1x1Epilogue, Dispatch};
use crate::gpu::{GpuContext, GpuTensor};
use std::collections::HashMap;

/// A model resident on a GPU device.
pub struct GpuModel {
    ctx: GpuContext,
    classes: usize,
    config: super::ArchConfig,
    params: HashMap<String, GpuTensor>,
    prepared: Option<Prepared>,
}

/// Everything built for one batch size.
struct Prepared {
    n: usize,
    plan: Plan,
    slots: Vec<GpuTensor>,
    dispatches: Vec<Dispatch>,
    /// Receives logits then probabilities.
    staging: wgpu::Buffer,
}

impl GpuModel {
    /// Upload `model`'s parameters to the context's device.
    pub fn new(ctx: &GpuContext, model: &Model) -> Result<Self> {
        let mut params = HashMap::new();
        for (name, t) in &model.params {
            params.insert(name.clone(), GpuTensor::from_slice(ctx, &t.dims, &t.data)?);
        }
        let classes = model.config.classes;
        params.insert(
            ONES.to_string(),
            GpuTensor::from_slice(ctx, &[classes], &vec![1.0; classes])?,
        );
        Ok(Self {
            ctx: ctx.clone(),
            classes,
            config: model.config.clone(),
            params,
            prepared: None,
        })
    }

    /// The context the model lives on.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    fn param(&self, name: &str) -> Result<&GpuTensor> {
        self.params.get(name).ok_or_else(|| Error::Format {
            format: "model",
            msg: format!("tensor `{name}` is missing"),
        })
    }

    /// Build activation buffers and dispatches for batches of `n` (kept until the batch size
    /// changes).
    fn prepare(&mut self, n: usize) -> Result<()> {
        if self.prepared.as_ref().is_some_and(|p| p.n == n) {
            return Ok(());
        }
        self.prepared = None;
        let ctx = &self.ctx;
        let dev = ctx.device();
        let k = ctx.kernels();
        let plan = Plan::new(&self.config, n);
        let slots = plan
            .slots
            .iter()
            .map(|s| GpuTensor::zeros(ctx, &s.dims()))
            .collect::<Result<Vec<_>>>()?;
        let mut dispatches = Vec::with_capacity(plan.ops.len());
        for op in &plan.ops {
            let d = match op {
                Op::Conv3x3 {
                    input,
                    weight,
                    stride,
                    out,
                } => k.conv3x3(dev).prepare(
                    ctx,
                    &slots[*input],
                    self.param(weight)?,
                    *stride,
                    &slots[*out],
                )?,
                Op::Affine {
                    input,
                    scale,
                    bias,
                    relu,
                    out,
                } => k.affine(dev).prepare(
                    ctx,
                    &slots[*input],
                    self.param(scale)?,
                    self.param(bias)?,
                    *relu,
                    &slots[*out],
                )?,
                Op::Conv1x1 {
                    input,
                    weight,
                    stride,
                    affine,
                    residual,
                    relu,
                    out,
                } => {
                    let affine = match affine {
                        Some((s, b)) => Some((self.param(s)?, self.param(b)?)),
                        None => None,
                    };
                    let ep = Conv1x1Epilogue {
                        affine,
                        residual: residual.map(|r| &slots[r]),
                        relu: *relu,
                    };
                    k.conv1x1(dev).prepare(
                        ctx,
                        &slots[*input],
                        self.param(weight)?,
                        *stride,
                        ep,
                        &slots[*out],
                    )?
                }
                Op::Shift {
                    input,
                    shift,
                    stride,
                    out,
                } => k.asl_forward(dev).prepare(
                    ctx,
                    &slots[*input],
                    self.param(shift)?,
                    *stride,
                    &slots[*out],
                )?,
                Op::AvgPool { input, out } => {
                    k.global_avg_pool(dev)
                        .prepare(ctx, &slots[*input], &slots[*out])?
                }
                Op::Softmax { input, out } => {
                    let rows = [n, self.classes];
                    k.softmax(dev).prepare(
                        ctx,
                        &slots[*input].reshape(&rows)?,
                        &slots[*out].reshape(&rows)?,
                    )?
                }
            };
            dispatches.push(d);
        }
        let staging = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("activeshift model readback"),
            size: (2 * n * self.classes * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.prepared = Some(Prepared {
            n,
            plan,
            slots,
            dispatches,
            staging,
        });
        Ok(())
    }

    /// Run the network on `input` (`[N, C, H, W]` as the model's preprocessing produces it) and
    /// read back logits and probabilities. Never blocks on the web.
    pub async fn forward(&mut self, input: &[f32]) -> Result<Output> {
        let n = check_input(&self.config, input)?;
        self.prepare(n)?;
        let ctx = &self.ctx;
        let p = self
            .prepared
            .as_ref()
            .ok_or_else(|| Error::Device("model buffers were not prepared".into()))?;
        p.slots[p.plan.input].write(ctx, input)?;
        let bytes = (n * self.classes * 4) as u64;
        ctx.submit(|enc| {
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("activeshift model"),
                    timestamp_writes: None,
                });
                for d in &p.dispatches {
                    d.record_in(&mut pass);
                }
            }
            enc.copy_buffer_to_buffer(p.slots[p.plan.logits].buffer(), 0, &p.staging, 0, bytes);
            enc.copy_buffer_to_buffer(p.slots[p.plan.probs].buffer(), 0, &p.staging, bytes, bytes);
            Ok(())
        })?;
        let data = crate::gpu::read_mapped(ctx, &p.staging).await?;
        let half = n * self.classes;
        Ok(Output {
            classes: self.classes,
            logits: data[..half].to_vec(),
            probs: data[half..].to_vec(),
        })
    }
}
