//! Running a model on the GPU: parameters uploaded once, activation buffers and bind groups
//! built once per batch size, the whole network recorded into one compute pass.
//!
//! Two ways in: [`GpuModel::forward`] (host slice in, [`Output`] out: one submission, one
//! readback) and [`GpuModel::record`] for applications that own the device (their buffer in,
//! their buffer out, recorded into their command encoder; they submit). Both replay the same
//! prepared dispatches.

mod build;

use super::config::ArchConfig;
use super::file::Model;
use super::lower::{LoweredPlan, Lowering};
use super::plan::Plan;
use super::run::{Output, check_input};
use crate::error::{Error, Result};
use crate::gpu::kernels::Dispatch;
use crate::gpu::{GpuContext, GpuTensor};
use std::collections::HashMap;

/// A model resident on a GPU device.
///
/// What it creates on the device (all freed when it is dropped, once the GPU is done with
/// them): one storage buffer per parameter tensor, uploaded by [`GpuModel::new`]; and, per
/// batch size (rebuilt when the batch size changes), one storage buffer per activation the
/// lowered plan writes (none for a fused ASL's or a folded affine's output), one small uniform
/// buffer and bind group per kernel launch, and for
/// [`GpuModel::forward`] a readback buffer of `2 * batch * classes` floats. Pipelines are
/// shared by every model on the same [`GpuContext`]. Nothing is allocated per call once a
/// batch size has been prepared.
pub struct GpuModel {
    ctx: GpuContext,
    classes: usize,
    config: ArchConfig,
    params: HashMap<String, GpuTensor>,
    /// `[classes]` ones: the scale of the classifier's bias epilogue.
    ones: GpuTensor,
    /// Bytes of the largest activation of one image.
    image_bytes: u64,
    /// Caller's cap on the images per submission (`usize::MAX` when unset).
    batch_limit: usize,
    /// The rewrites the plan is lowered with (from the context's
    /// [`KernelPolicy::lowering`](crate::gpu::KernelPolicy::lowering), fusion per model by
    /// [`GpuModel::set_fused`]).
    lowering: Lowering,
    prepared: Option<Prepared>,
}

/// Everything built for one batch size.
struct Prepared {
    n: usize,
    plan: LoweredPlan,
    /// One buffer per activation slot the lowered plan writes.
    slots: Vec<Option<GpuTensor>>,
    /// One dispatch per op of the lowered plan, reading the model's own input slot.
    dispatches: Vec<Dispatch>,
    /// The ops that read the input, bound to the host buffer last given to `record`.
    host: Option<HostInput>,
    /// Receives logits then probabilities (built by the first `forward`).
    staging: Option<wgpu::Buffer>,
}

impl Prepared {
    /// The buffer of slot `s` (one the lowered plan writes).
    fn slot(&self, s: usize) -> Result<&GpuTensor> {
        self.slots
            .get(s)
            .and_then(Option::as_ref)
            .ok_or_else(|| Error::Device(format!("activation slot {s} has no buffer")))
    }
}

/// Dispatches that read a host-owned input buffer in place of the model's input slot.
struct HostInput {
    buffer: wgpu::Buffer,
    /// `(lowered op index, dispatch)` for every op that reads the input.
    dispatches: Vec<(usize, Dispatch)>,
}

/// One op of a prepared network with its launches, for profiling
/// ([`GpuModel::op_dispatches`]; `activeshift bench` times each).
#[derive(Clone)]
pub struct OpDispatch {
    /// What kind of op ([`LoweredOp::kind`](crate::model::LoweredOp::kind)): `stem conv3x3`,
    /// `affine`, `conv1x1`, `affine + conv1x1` (a 1x1 convolution reading its input through the
    /// affine + ReLU folded into it), `asl`, `asl + conv1x1 (fused)`, `depthwise3x3`,
    /// `avg_pool` or `softmax`.
    pub kind: &'static str,
    /// The op's parameter (e.g. `stage2.block1.reduce`), or its kind, and its input shape.
    pub label: String,
    /// Its launches (parameter-only setup already run), reading the model's own activations.
    pub dispatch: Dispatch,
}

impl GpuModel {
    /// Upload `model`'s parameters to the context's device.
    pub fn new(ctx: &GpuContext, model: &Model) -> Result<Self> {
        let mut params = HashMap::new();
        for (name, t) in &model.params {
            params.insert(name.clone(), GpuTensor::from_slice(ctx, &t.dims, &t.data)?);
        }
        let classes = model.config.classes;
        let ones = GpuTensor::from_slice(ctx, &[classes], &vec![1.0; classes])?;
        let image_bytes = Plan::new(&model.config, 1)
            .slots
            .iter()
            .map(|s| s.c as u64 * s.h as u64 * s.w as u64 * 4)
            .max()
            .unwrap_or(0);
        Ok(Self {
            ctx: ctx.clone(),
            classes,
            config: model.config.clone(),
            params,
            ones,
            image_bytes,
            batch_limit: usize::MAX,
            lowering: Lowering::for_policy(ctx.policy()),
            prepared: None,
        })
    }

    /// Whether each ASL runs fused into the 1x1 convolution that reads it
    /// ([`AslConv1x1`](crate::gpu::kernels::AslConv1x1): the shifted tensor is never written),
    /// or as its own kernel followed by the GEMM. New models start with
    /// the context's [`KernelPolicy::fused_by_default`](crate::gpu::KernelPolicy::fused_by_default):
    /// fused on hardware GPUs, unfused on CPU adapters (lavapipe, SwiftShader), where that
    /// measured as fast or faster, unless [`KernelPolicyBuilder::fused`](crate::gpu::KernelPolicyBuilder::fused)
    /// fixed it.
    pub fn fused(&self) -> bool {
        self.lowering.fuse_asl
    }

    /// How many ASLs of the network run fused into their 1x1 convolution with the current
    /// setting: every ASL whose output only that convolution reads when
    /// [`GpuModel::fused`] is on, 0 when it is off.
    pub fn fused_asls(&self) -> usize {
        self.lowered(1).fused_asls()
    }

    /// Choose fused or unfused ASLs (see [`GpuModel::fused`]); takes effect at the next run
    /// (the prepared dispatches are rebuilt).
    pub fn set_fused(&mut self, fused: bool) {
        if fused != self.lowering.fuse_asl {
            self.lowering.fuse_asl = fused;
            self.prepared = None;
        }
    }

    /// The rewrites this model lowers its plan with ([`Plan::lower`]).
    pub fn lowering(&self) -> Lowering {
        self.lowering
    }

    /// The lowered plan this model runs for batches of `batch` images: one dispatch (group)
    /// per op, in order ([`GpuModel::op_dispatches`] lists them).
    pub fn lowered_plan(&self, batch: usize) -> LoweredPlan {
        self.lowered(batch)
    }

    /// The context the model lives on.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// The architecture.
    pub fn config(&self) -> &ArchConfig {
        &self.config
    }

    /// Number of classes (the width of each row of the outputs).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The input shape `[N, C, H, W]` of a batch of `batch` images.
    pub fn input_dims(&self, batch: usize) -> [usize; 4] {
        let [h, w] = self.config.input_size;
        [batch, self.config.in_channels, h, w]
    }

    /// Bytes that [`GpuModel::record`] writes into its output buffer for `batch` images:
    /// `[batch, classes]` logits followed by `[batch, classes]` probabilities, f32.
    pub fn output_bytes(&self, batch: usize) -> u64 {
        2 * batch as u64 * self.classes as u64 * 4
    }

    /// The most images one submission can hold: every activation of the batch must fit one
    /// storage buffer binding (`max_storage_buffer_binding_size`), and the batch one dispatch
    /// dimension; also at most what [`GpuModel::set_batch_limit`] allows.
    /// [`GpuModel::forward`] splits larger batches; [`GpuModel::record`] refuses them.
    ///
    /// # Errors
    /// [`Error::DeviceLimit`] when even one image's largest activation exceeds the binding size.
    pub fn max_batch(&self) -> Result<usize> {
        let limits = self.ctx.device().limits();
        let binding = limits.max_storage_buffer_binding_size;
        if self.image_bytes > binding {
            return Err(Error::DeviceLimit {
                op: "GpuModel",
                what: "bytes for the largest activation of one image (one storage buffer binding)",
                needed: self.image_bytes,
                limit: binding,
            });
        }
        let by_memory = binding / self.image_bytes.max(1);
        let by_dispatch = u64::from(limits.max_compute_workgroups_per_dimension);
        let n = by_memory.min(by_dispatch).max(1);
        Ok(usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(self.batch_limit))
    }

    /// Cap the images per submission (at least 1), e.g. to bound GPU memory: `forward` splits
    /// larger batches into submissions of at most `limit` images.
    pub fn set_batch_limit(&mut self, limit: usize) {
        self.batch_limit = limit.max(1);
    }

    /// The `[N, classes, 1, 1]` logits of the batch size last run or recorded (the model's own
    /// buffer; a host may bind it in a later pass instead of copying). `None` before the first
    /// run. Rebuilt, so a different buffer, when the batch size changes.
    pub fn logits(&self) -> Option<&GpuTensor> {
        let p = self.prepared.as_ref()?;
        p.slots.get(p.plan.plan.logits)?.as_ref()
    }

    /// The `[N, classes, 1, 1]` softmax probabilities, like [`GpuModel::logits`].
    pub fn probs(&self) -> Option<&GpuTensor> {
        let p = self.prepared.as_ref()?;
        p.slots.get(p.plan.plan.probs)?.as_ref()
    }

    /// Record the whole network into one compute pass of `encoder`, reading the host's input
    /// buffer when `host` is set.
    fn encode(p: &Prepared, encoder: &mut wgpu::CommandEncoder, host: bool) {
        let host = if host { p.host.as_ref() } else { None };
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("activeshift model"),
            timestamp_writes: None,
        });
        for (i, d) in p.dispatches.iter().enumerate() {
            let d = host
                .and_then(|h| h.dispatches.iter().find(|(j, _)| *j == i))
                .map_or(d, |(_, hd)| hd);
            d.record_in(&mut pass);
        }
    }

    /// The network prepared for batches of `batch` (as [`GpuModel::forward`] would), op by op:
    /// the ops of its lowered plan ([`GpuModel::lowered_plan`]), each with its launches, kind
    /// and a label, in execution order (an ASL fused into a 1x1 convolution, or an affine folded
    /// into it, is part of that op, whose kind says so). Recording them in order computes what
    /// `forward` computes from the model's own input buffer; timing them one by one shows where
    /// a forward pass spends its time (`activeshift bench`, section "Where the time goes").
    pub fn op_dispatches(&mut self, batch: usize) -> Result<Vec<OpDispatch>> {
        if batch == 0 {
            return Err(Error::invalid(
                "GpuModel::op_dispatches",
                "batch must be at least 1 image",
            ));
        }
        self.prepare(batch)?;
        let p = self.prepared()?;
        Ok(p.plan
            .ops
            .iter()
            .zip(&p.dispatches)
            .map(|(lo, d)| OpDispatch {
                kind: lo.kind(),
                label: lo.label(&p.plan.plan),
                dispatch: d.clone(),
            })
            .collect())
    }

    /// Record the network into a command encoder the host owns; the host submits it. Nothing
    /// round-trips through the CPU: the model reads `input` in place and, when `output` is
    /// given, copies its results into it within the same encoder.
    ///
    /// - `input`: `[batch, C, H, W]` f32 (see [`GpuModel::input_dims`]), preprocessed as the
    ///   model's [`Preprocess`](super::Preprocess) describes, in a buffer with `STORAGE` usage
    ///   on the model's device, at least that large and at most `max_storage_buffer_binding_size`
    ///   bytes (it is bound whole; only its first bytes are read).
    /// - `output`: receives `[batch, classes]` logits then `[batch, classes]` probabilities
    ///   ([`GpuModel::output_bytes`]); needs `COPY_DST` usage. Or pass `None` and bind
    ///   [`GpuModel::logits`] / [`GpuModel::probs`] directly after this call.
    ///
    /// The first call for a batch size builds the model's buffers and bind groups; later calls
    /// with the same batch size and input buffer allocate nothing. The model keeps a handle to
    /// the last input buffer until it is given another one, the batch size changes or the
    /// model is dropped.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a zero batch or missing buffer usage, [`Error::Shape`]
    /// for buffers too small, [`Error::DeviceLimit`] for a batch above
    /// [`GpuModel::max_batch`], [`Error::Device`] when the device is known to be lost.
    pub fn record(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        input: &wgpu::Buffer,
        batch: usize,
        output: Option<&wgpu::Buffer>,
    ) -> Result<()> {
        const OP: &str = "GpuModel::record";
        self.ctx.check_device()?;
        if batch == 0 {
            return Err(Error::invalid(OP, "batch must be at least 1 image"));
        }
        let max = self.max_batch()?;
        if batch > max {
            return Err(Error::DeviceLimit {
                op: OP,
                what: "images per recorded batch (record smaller batches)",
                needed: batch as u64,
                limit: max as u64,
            });
        }
        if let Some(out) = output {
            if !out.usage().contains(wgpu::BufferUsages::COPY_DST) {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "the output buffer needs COPY_DST usage, it has {}",
                        crate::gpu::usage_names(out.usage())
                    ),
                ));
            }
            let need = self.output_bytes(batch);
            if out.size() < need {
                return Err(Error::shape(
                    OP,
                    "output buffer",
                    format!("at least {need} bytes (logits and probabilities of {batch} images)"),
                    format!("{} bytes", out.size()),
                ));
            }
        }
        self.prepare(batch)?;
        self.bind_host_input(input)?;
        let p = self.prepared()?;
        Self::encode(p, encoder, true);
        if let Some(out) = output {
            let bytes = self.output_bytes(batch) / 2;
            let (logits, probs) = (p.slot(p.plan.plan.logits)?, p.slot(p.plan.plan.probs)?);
            encoder.copy_buffer_to_buffer(logits.buffer(), 0, out, 0, bytes);
            encoder.copy_buffer_to_buffer(probs.buffer(), 0, out, bytes, bytes);
        }
        Ok(())
    }

    /// Run the network on `input` (`[N, C, H, W]` as the model's preprocessing produces it) and
    /// read back logits and probabilities. Batches above [`GpuModel::max_batch`] run as several
    /// submissions. Never blocks on the web.
    pub async fn forward(&mut self, input: &[f32]) -> Result<Output> {
        let n = check_input(&self.config, input)?;
        let chunk = self.max_batch()?;
        if n <= chunk {
            return self.forward_batch(input, n).await;
        }
        // Split into submissions of `chunk` images; the last one is padded with zeros so that
        // every submission reuses the same prepared buffers.
        let per = input.len() / n;
        let k = self.classes;
        let mut out = Output {
            classes: k,
            logits: Vec::with_capacity(n * k),
            probs: Vec::with_capacity(n * k),
        };
        let mut padded = Vec::new();
        for start in (0..n).step_by(chunk) {
            let m = (n - start).min(chunk);
            let part = &input[start * per..][..m * per];
            let part = if m == chunk {
                part
            } else {
                padded.clear();
                padded.extend_from_slice(part);
                padded.resize(chunk * per, 0.0);
                &padded[..]
            };
            let o = self.forward_batch(part, chunk).await?;
            out.logits.extend_from_slice(&o.logits[..m * k]);
            out.probs.extend_from_slice(&o.probs[..m * k]);
        }
        Ok(out)
    }

    /// One submission of `n` images.
    async fn forward_batch(&mut self, input: &[f32], n: usize) -> Result<Output> {
        self.prepare(n)?;
        let bytes = self.output_bytes(n) / 2;
        if let Some(p) = self.prepared.as_mut()
            && p.staging.is_none()
        {
            p.staging = Some(self.ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("activeshift model readback"),
                size: 2 * bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
            self.ctx.count_buffer(0);
        }
        let ctx = &self.ctx;
        let p = self.prepared()?;
        let staging = p
            .staging
            .as_ref()
            .ok_or_else(|| Error::Device("model readback buffer was not created".into()))?;
        p.slot(p.plan.plan.input)?.write(ctx, input)?;
        let (logits, probs) = (p.slot(p.plan.plan.logits)?, p.slot(p.plan.plan.probs)?);
        ctx.submit(|enc| {
            Self::encode(p, enc, false);
            enc.copy_buffer_to_buffer(logits.buffer(), 0, staging, 0, bytes);
            enc.copy_buffer_to_buffer(probs.buffer(), 0, staging, bytes, bytes);
            Ok(())
        })?;
        let data = crate::gpu::read_mapped(ctx, staging).await?;
        let half = n * self.classes;
        if data.len() != 2 * half {
            return Err(Error::Readback(format!(
                "expected {} values, read {}",
                2 * half,
                data.len()
            )));
        }
        Ok(Output {
            classes: self.classes,
            logits: data[..half].to_vec(),
            probs: data[half..].to_vec(),
        })
    }
}
