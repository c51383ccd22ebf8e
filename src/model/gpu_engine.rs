//! Running a model on the GPU: parameters uploaded once, activation buffers and bind groups
//! built once per batch size, the whole network recorded into one compute pass.
//!
//! Two ways in: [`GpuModel::forward`] (host slice in, [`Output`] out: one submission, one
//! readback) and [`GpuModel::record`] for applications that own the device (their buffer in,
//! their buffer out, recorded into their command encoder; they submit). Both replay the same
//! prepared dispatches.

use super::config::ArchConfig;
use super::file::Model;
use super::params::{Norm, ParamId};
use super::plan::{Op, Plan, Slot};
use super::run::{Output, check_input};
use crate::error::{Error, Result};
use crate::gpu::kernels::{Conv1x1Epilogue, Dispatch};
use crate::gpu::{GpuContext, GpuTensor};
use std::collections::HashMap;

/// A model resident on a GPU device.
///
/// What it creates on the device (all freed when it is dropped, once the GPU is done with
/// them): one storage buffer per parameter tensor, uploaded by [`GpuModel::new`]; and, per
/// batch size (rebuilt when the batch size changes), one storage buffer per activation of the
/// plan, one small uniform buffer and bind group per kernel launch, and for
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
    /// Run each ASL fused into the 1x1 convolution that reads it (the default).
    fused: bool,
    prepared: Option<Prepared>,
}

/// Everything built for one batch size.
struct Prepared {
    n: usize,
    plan: Plan,
    slots: Vec<GpuTensor>,
    /// One dispatch per op of the plan, reading the model's own input slot.
    dispatches: Vec<Dispatch>,
    /// The ops that read the input, bound to the host buffer last given to `record`.
    host: Option<HostInput>,
    /// Receives logits then probabilities (built by the first `forward`).
    staging: Option<wgpu::Buffer>,
}

/// Dispatches that read a host-owned input buffer in place of the model's input slot.
struct HostInput {
    buffer: wgpu::Buffer,
    /// `(op index, dispatch)` for every op that reads the input.
    dispatches: Vec<(usize, Dispatch)>,
}

/// One op of a prepared network with its launches, for profiling
/// ([`GpuModel::op_dispatches`]; `activeshift bench` times each).
#[derive(Clone)]
pub struct OpDispatch {
    /// What kind of op: `stem conv3x3`, `affine`, `conv1x1`, `affine + conv1x1` (a 1x1
    /// convolution reading its input through the affine + ReLU before it), `asl`,
    /// `asl + conv1x1 (fused)`, `depthwise3x3`, `avg_pool` or `softmax`.
    pub kind: &'static str,
    /// The op's parameter (e.g. `stage2.block1.reduce`), or its kind, and its input shape.
    pub label: String,
    /// Its launches (parameter-only setup already run), reading the model's own activations.
    pub dispatch: Dispatch,
}

/// The kind and label of `op` (`fused`: an ASL fused into this 1x1 convolution; `folded`: an
/// affine folded into it).
fn describe(op: &Op, plan: &Plan, fused: bool, folded: bool) -> (&'static str, String) {
    let strip = |id: &ParamId| {
        let name = id.name();
        name.rsplit_once('.')
            .map_or(name.clone(), |(p, _)| p.to_string())
    };
    let (kind, name, input) = match op {
        Op::Conv3x3 { weight, input, .. } => ("stem conv3x3", strip(weight), *input),
        Op::Affine { norm, input, .. } => ("affine", norm.prefix(), *input),
        Op::Conv1x1 { weight, input, .. } if fused => {
            ("asl + conv1x1 (fused)", strip(weight), *input)
        }
        Op::Conv1x1 { weight, input, .. } if folded => ("affine + conv1x1", strip(weight), *input),
        Op::Conv1x1 { weight, input, .. } => ("conv1x1", strip(weight), *input),
        Op::Shift { shift, input, .. } => ("asl", shift.name(), *input),
        Op::Depthwise3x3 { weight, input, .. } => ("depthwise3x3", strip(weight), *input),
        Op::AvgPool { input, .. } => ("avg_pool", "pool".into(), *input),
        Op::Softmax { input, .. } => ("softmax", "softmax".into(), *input),
    };
    (kind, format!("{name} {}", plan.slots[input]))
}

/// The activation slots `op` reads.
fn reads(op: &Op) -> Vec<Slot> {
    match op {
        Op::Conv3x3 { input, .. }
        | Op::Affine { input, .. }
        | Op::Shift { input, .. }
        | Op::Depthwise3x3 { input, .. }
        | Op::AvgPool { input, .. }
        | Op::Softmax { input, .. } => vec![*input],
        Op::Conv1x1 {
            input, residual, ..
        } => std::iter::once(*input).chain(*residual).collect(),
    }
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
            fused: ctx.policy().fused_by_default(),
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
        self.fused
    }

    /// How many ASLs of the network run fused into their 1x1 convolution with the current
    /// setting: every ASL whose output only that convolution reads when
    /// [`GpuModel::fused`] is on, 0 when it is off.
    pub fn fused_asls(&self) -> usize {
        let plan = Plan::new(&self.config, 1);
        (0..plan.ops.len())
            .filter(|&i| self.fuses(&plan, i))
            .count()
    }

    /// Choose fused or unfused ASLs (see [`GpuModel::fused`]); takes effect at the next run
    /// (the prepared dispatches are rebuilt).
    pub fn set_fused(&mut self, fused: bool) {
        if fused != self.fused {
            self.fused = fused;
            self.prepared = None;
        }
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
        self.prepared.as_ref().map(|p| &p.slots[p.plan.logits])
    }

    /// The `[N, classes, 1, 1]` softmax probabilities, like [`GpuModel::logits`].
    pub fn probs(&self) -> Option<&GpuTensor> {
        self.prepared.as_ref().map(|p| &p.slots[p.plan.probs])
    }

    fn param(&self, id: ParamId) -> Result<&GpuTensor> {
        let name = id.name();
        self.params.get(&name).ok_or_else(|| Error::Format {
            format: "model",
            msg: format!("tensor `{name}` is missing"),
        })
    }

    /// The `(scale, bias)` of an affine layer.
    fn norm(&self, n: Norm) -> Result<(&GpuTensor, &GpuTensor)> {
        Ok((
            self.param(ParamId::Scale(n))?,
            self.param(ParamId::Bias(n))?,
        ))
    }

    /// The affine of a 1x1 convolution's epilogue: its affine layer, or its bias (scale 1).
    fn epilogue_affine(
        &self,
        affine: Option<Norm>,
        bias: Option<ParamId>,
    ) -> Result<Option<(&GpuTensor, &GpuTensor)>> {
        Ok(match (affine, bias) {
            (Some(n), _) => Some(self.norm(n)?),
            (None, Some(b)) => Some((&self.ones, self.param(b)?)),
            (None, None) => None,
        })
    }

    /// The dispatch of one op, reading activation slot `s` from `slot(s)`. `folded`: the
    /// affine + ReLU op that produced a 1x1 convolution's input and is folded into it (the
    /// convolution then reads the affine's input through it).
    fn build<'t>(
        &self,
        op: &Op,
        n: usize,
        folded: Option<&Op>,
        slot: impl Fn(Slot) -> &'t GpuTensor,
    ) -> Result<Dispatch> {
        let ctx = &self.ctx;
        let k = ctx.kernels();
        Ok(match op {
            Op::Conv3x3 {
                input,
                weight,
                stride,
                out,
            } => {
                k.conv3x3()
                    .prepare(ctx, slot(*input), self.param(*weight)?, *stride, slot(*out))?
            }
            Op::Affine {
                input,
                norm,
                relu,
                out,
            } => k.affine().prepare(
                ctx,
                slot(*input),
                self.norm(*norm)?.0,
                self.norm(*norm)?.1,
                *relu,
                slot(*out),
            )?,
            Op::Conv1x1 {
                input,
                weight,
                stride,
                affine,
                bias,
                residual,
                relu,
                out,
            } => {
                let affine = self.epilogue_affine(*affine, *bias)?;
                let (source, input_affine_relu) = match folded {
                    Some(Op::Affine { input: x, norm, .. }) => (*x, Some(self.norm(*norm)?)),
                    _ => (*input, None),
                };
                let ep = Conv1x1Epilogue {
                    affine,
                    residual: residual.map(&slot),
                    relu: *relu,
                    input_affine_relu,
                };
                k.conv1x1().prepare(
                    ctx,
                    slot(source),
                    self.param(*weight)?,
                    *stride,
                    ep,
                    slot(*out),
                )?
            }
            Op::Shift {
                input,
                shift,
                stride,
                out,
            } => k.asl_forward().prepare(
                ctx,
                slot(*input),
                self.param(*shift)?,
                *stride,
                slot(*out),
            )?,
            Op::Depthwise3x3 {
                input,
                weight,
                stride,
                out,
            } => k.depthwise3x3().prepare(
                ctx,
                slot(*input),
                self.param(*weight)?,
                *stride,
                slot(*out),
            )?,
            Op::AvgPool { input, out } => {
                k.global_avg_pool().prepare(ctx, slot(*input), slot(*out))?
            }
            Op::Softmax { input, out } => {
                let rows = [n, self.classes];
                k.softmax().prepare(
                    ctx,
                    &slot(*input).reshape(&rows)?,
                    &slot(*out).reshape(&rows)?,
                )?
            }
        })
    }

    /// The fused dispatch of `shift_op` (an ASL) and `conv_op` (the 1x1 convolution reading
    /// its output), or `None` when the pair does not fuse.
    fn build_fused<'t>(
        &self,
        shift_op: &Op,
        conv_op: &Op,
        slot: impl Fn(Slot) -> &'t GpuTensor,
    ) -> Result<Option<Dispatch>> {
        let (
            Op::Shift {
                input: src,
                shift,
                stride: shift_stride,
                out: shifted,
            },
            Op::Conv1x1 {
                input,
                weight,
                stride: 1,
                affine,
                bias,
                residual,
                relu,
                out,
            },
        ) = (shift_op, conv_op)
        else {
            return Ok(None);
        };
        if input != shifted || *residual == Some(*shifted) {
            return Ok(None);
        }
        let affine = self.epilogue_affine(*affine, *bias)?;
        let ep = Conv1x1Epilogue {
            affine,
            residual: residual.map(&slot),
            relu: *relu,
            input_affine_relu: None,
        };
        Ok(Some(self.ctx.kernels().asl_conv1x1().prepare(
            &self.ctx,
            slot(*src),
            self.param(*shift)?,
            *shift_stride,
            self.param(*weight)?,
            ep,
            slot(*out),
        )?))
    }

    /// Whether op `i` of `plan` is an ASL that runs fused into op `i + 1` (the 1x1
    /// convolution reading its output, and nothing else reads it).
    fn fuses(&self, plan: &Plan, i: usize) -> bool {
        let Some(Op::Shift { out: shifted, .. }) = plan.ops.get(i) else {
            return false;
        };
        self.fused
            && matches!(plan.ops.get(i + 1), Some(Op::Conv1x1 { input, stride: 1, residual, .. })
                if input == shifted && *residual != Some(*shifted))
            && !plan.ops[i + 2..]
                .iter()
                .any(|op| reads(op).contains(shifted))
            && plan.slots[*shifted].c <= crate::gpu::kernels::ASL_CONV1X1_MAX_CHANNELS
    }

    /// Whether op `i` of `plan` is an affine + ReLU folded into the 1x1 convolutions that read
    /// its output (every reader is one, reading it as its input): they apply it to the values
    /// they load (`Conv1x1Epilogue::input_affine_relu`), so it needs no launch and its output
    /// is never written. Exact; always on. The blocks' pre-activations fold this way.
    fn folds(plan: &Plan, i: usize) -> bool {
        let Some(Op::Affine {
            input,
            relu: true,
            out,
            ..
        }) = plan.ops.get(i)
        else {
            return false;
        };
        let readers: Vec<&Op> = plan
            .ops
            .iter()
            .filter(|op| reads(op).contains(out))
            .collect();
        *input != plan.input
            && input != out
            && ![plan.input, plan.logits, plan.probs].contains(out)
            && !readers.is_empty()
            && readers.iter().all(|op| {
                matches!(op, Op::Conv1x1 { input, residual, .. }
                    if input == out && *residual != Some(*out))
            })
    }

    /// The folded affine that produced op `i`'s input, if op `i` is a 1x1 convolution.
    fn folded_into(plan: &Plan, i: usize) -> Option<&Op> {
        let Op::Conv1x1 { input, .. } = &plan.ops[i] else {
            return None;
        };
        (0..i).rev().find_map(|j| match &plan.ops[j] {
            op @ Op::Affine { out, .. } if out == input && Self::folds(plan, j) => Some(op),
            _ => None,
        })
    }

    /// The dispatch of op `i` of `plan`: empty for an ASL fused into the next op and for an
    /// affine folded into its readers, the fused kernel for the op after such an ASL.
    fn build_at<'t>(
        &self,
        plan: &Plan,
        i: usize,
        n: usize,
        slot: impl Fn(Slot) -> &'t GpuTensor + Copy,
    ) -> Result<Dispatch> {
        if self.fuses(plan, i) || Self::folds(plan, i) {
            return Ok(Dispatch::empty());
        }
        if i > 0
            && self.fuses(plan, i - 1)
            && let Some(d) = self.build_fused(&plan.ops[i - 1], &plan.ops[i], slot)?
        {
            return Ok(d);
        }
        self.build(&plan.ops[i], n, Self::folded_into(plan, i), slot)
    }

    /// Build activation buffers and dispatches for batches of `n` (kept until the batch size
    /// changes).
    fn prepare(&mut self, n: usize) -> Result<()> {
        if self.prepared.as_ref().is_some_and(|p| p.n == n) {
            return Ok(());
        }
        self.prepared = None;
        let plan = Plan::new(&self.config, n);
        let slots = plan
            .slots
            .iter()
            .map(|s| GpuTensor::zeros(&self.ctx, &s.dims()))
            .collect::<Result<Vec<_>>>()?;
        let dispatches = self.build_all(&plan, n, &slots)?;
        let dispatches = self.run_setup(dispatches)?;
        self.prepared = Some(Prepared {
            n,
            plan,
            slots,
            dispatches,
            host: None,
            staging: None,
        });
        Ok(())
    }

    /// The dispatches of every op of `plan`, in op order. The first run on a machine spends
    /// nearly all its time compiling pipelines (tens of seconds on a CPU adapter), so where the
    /// context allows ([`GpuContext::compiles_in_parallel`]) the ops are built on one thread
    /// per core: each compiles the kernel variants its op needs first (a variant two ops need
    /// is compiled once; the second waits for it).
    fn build_all(&self, plan: &Plan, n: usize, slots: &[GpuTensor]) -> Result<Vec<Dispatch>> {
        let build = |i: usize| self.build_at(plan, i, n, |s| &slots[s]);
        #[cfg(not(target_arch = "wasm32"))]
        if self.ctx.compiles_in_parallel() {
            use std::sync::atomic::{AtomicUsize, Ordering};
            let threads = std::thread::available_parallelism()
                .map_or(1, |t| t.get())
                .min(plan.ops.len());
            if threads > 1 {
                let next = AtomicUsize::new(0);
                let worker = || {
                    let mut built = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= plan.ops.len() {
                            return built;
                        }
                        built.push((i, build(i)));
                    }
                };
                let mut built: Vec<(usize, Result<Dispatch>)> = std::thread::scope(|scope| {
                    let handles: Vec<_> = (0..threads).map(|_| scope.spawn(worker)).collect();
                    handles
                        .into_iter()
                        .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                        .collect()
                });
                built.sort_by_key(|(i, _)| *i);
                return built.into_iter().map(|(_, d)| d).collect();
            }
        }
        (0..plan.ops.len()).map(build).collect()
    }

    /// Submit the setup launches of `dispatches` (weight packing, shift taps: the parameters
    /// never change) once, now, and keep the per-run launches.
    fn run_setup(&self, dispatches: Vec<Dispatch>) -> Result<Vec<Dispatch>> {
        let (setup, run): (Vec<Dispatch>, Vec<Dispatch>) =
            dispatches.into_iter().map(Dispatch::split_setup).unzip();
        if setup.iter().any(|d| d.launches() > 0) {
            self.ctx.submit(|enc| {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("activeshift model setup"),
                    timestamp_writes: None,
                });
                setup.iter().for_each(|d| d.record_in(&mut pass));
                Ok(())
            })?;
        }
        Ok(run)
    }

    fn prepared(&self) -> Result<&Prepared> {
        self.prepared
            .as_ref()
            .ok_or_else(|| Error::Device("model buffers were not prepared".into()))
    }

    /// Bind the ops that read the input to `buffer` (unless already bound to it).
    fn bind_host_input(&mut self, buffer: &wgpu::Buffer) -> Result<()> {
        let p = self.prepared()?;
        if p.host.as_ref().is_some_and(|h| &h.buffer == buffer) {
            return Ok(());
        }
        let host = GpuTensor::from_buffer(&self.ctx, buffer.clone(), &self.input_dims(p.n))?;
        let input = p.plan.input;
        let mut dispatches = Vec::new();
        let ops = &p.plan.ops;
        for i in 0..ops.len() {
            // An op reading the input, or either op of a fused pair of which one reads it.
            let touches = |j: usize| reads(&ops[j]).contains(&input);
            let paired = (i > 0 && self.fuses(&p.plan, i - 1) && touches(i - 1))
                || (self.fuses(&p.plan, i) && touches(i + 1));
            if touches(i) || paired {
                let slot = |s| if s == input { &host } else { &p.slots[s] };
                dispatches.push((i, self.build_at(&p.plan, i, p.n, slot)?));
            }
        }
        let (ids, built): (Vec<usize>, Vec<Dispatch>) = dispatches.into_iter().unzip();
        let dispatches = ids.into_iter().zip(self.run_setup(built)?).collect();
        if let Some(p) = self.prepared.as_mut() {
            p.host = Some(HostInput {
                buffer: buffer.clone(),
                dispatches,
            });
        }
        Ok(())
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
    /// each op's launches with its kind and a label, in execution order, leaving out ASLs fused
    /// into the next op (that op's kind says so). Recording them in order computes what
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
        Ok((0..p.plan.ops.len())
            .filter(|&i| !self.fuses(&p.plan, i) && !Self::folds(&p.plan, i))
            .map(|i| {
                let fused = i > 0 && self.fuses(&p.plan, i - 1);
                let folded = Self::folded_into(&p.plan, i).is_some();
                let (kind, label) = describe(&p.plan.ops[i], &p.plan, fused, folded);
                OpDispatch {
                    kind,
                    label,
                    dispatch: p.dispatches[i].clone(),
                }
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
            encoder.copy_buffer_to_buffer(p.slots[p.plan.logits].buffer(), 0, out, 0, bytes);
            encoder.copy_buffer_to_buffer(p.slots[p.plan.probs].buffer(), 0, out, bytes, bytes);
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
        p.slots[p.plan.input].write(ctx, input)?;
        ctx.submit(|enc| {
            Self::encode(p, enc, false);
            enc.copy_buffer_to_buffer(p.slots[p.plan.logits].buffer(), 0, staging, 0, bytes);
            enc.copy_buffer_to_buffer(p.slots[p.plan.probs].buffer(), 0, staging, bytes, bytes);
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
