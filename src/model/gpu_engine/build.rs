//! Building a [`GpuModel`]'s dispatches: one per op of the lowered plan, for one batch size.

use super::{GpuModel, HostInput, Prepared};
use crate::error::{Error, Result};
use crate::gpu::GpuTensor;
use crate::gpu::kernels::{AslConv1x1Args, Conv1x1Epilogue, Dispatch};
use crate::model::lower::{LoweredOp, LoweredPlan, Prologue};
use crate::model::params::{Norm, ParamId};
use crate::model::plan::{Op, Plan, Slot};

/// An op's access to the activation tensors: the tensor of a slot, an error for a slot the
/// lowered plan never writes (none was allocated).
trait Slots<'t>: Fn(Slot) -> Option<&'t GpuTensor> + Copy {}
impl<'t, F: Fn(Slot) -> Option<&'t GpuTensor> + Copy> Slots<'t> for F {}

fn get<'t>(slot: impl Slots<'t>, s: Slot) -> Result<&'t GpuTensor> {
    slot(s).ok_or_else(|| {
        Error::Device(format!(
            "activation slot {s} is read but the lowered plan never writes it"
        ))
    })
}

impl GpuModel {
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

    /// The dispatch of one lowered op, reading activation slot `s` from `slot(s)`.
    fn build<'t>(&self, lo: &LoweredOp, n: usize, slot: impl Slots<'t>) -> Result<Dispatch> {
        let ctx = &self.ctx;
        let k = ctx.kernels();
        let at = |s: Slot| get(slot, s);
        if lo.prologue.is_some() && !matches!(lo.op, Op::Conv1x1 { .. }) {
            return Err(Error::invalid(
                "GpuModel",
                format!("only a 1x1 convolution takes a prologue, not {}", lo.kind()),
            ));
        }
        Ok(match &lo.op {
            Op::Conv1x1 { .. } => self.build_conv1x1(lo, slot)?,
            Op::Conv3x3 {
                input,
                weight,
                stride,
                out,
            } => k
                .conv3x3()
                .prepare(ctx, at(*input)?, self.param(*weight)?, *stride, at(*out)?)?,
            Op::Affine {
                input,
                norm,
                relu,
                out,
            } => {
                let (scale, bias) = self.norm(*norm)?;
                k.affine()
                    .prepare(ctx, at(*input)?, scale, bias, *relu, at(*out)?)?
            }
            Op::Shift {
                input,
                shift,
                stride,
                out,
            } => k.asl_forward().prepare(
                ctx,
                at(*input)?,
                self.param(*shift)?,
                *stride,
                at(*out)?,
            )?,
            Op::Depthwise3x3 {
                input,
                weight,
                stride,
                out,
            } => k.depthwise3x3().prepare(
                ctx,
                at(*input)?,
                self.param(*weight)?,
                *stride,
                at(*out)?,
            )?,
            Op::AvgPool { input, out } => {
                k.global_avg_pool().prepare(ctx, at(*input)?, at(*out)?)?
            }
            Op::Softmax { input, out } => {
                let rows = [n, self.classes];
                k.softmax().prepare(
                    ctx,
                    &at(*input)?.reshape(&rows)?,
                    &at(*out)?.reshape(&rows)?,
                )?
            }
        })
    }

    /// The dispatch of a lowered 1x1 convolution: the GEMM, reading its input through a folded
    /// affine + ReLU ([`Conv1x1Epilogue::input_affine_relu`]) or as the fused ASL + GEMM.
    fn build_conv1x1<'t>(&self, lo: &LoweredOp, slot: impl Slots<'t>) -> Result<Dispatch> {
        let Op::Conv1x1 {
            input,
            weight,
            stride,
            affine,
            bias,
            residual,
            relu,
            out,
        } = &lo.op
        else {
            return Err(Error::invalid("GpuModel", "not a 1x1 convolution"));
        };
        let (ctx, k) = (&self.ctx, self.ctx.kernels());
        let at = |s: Slot| get(slot, s);
        let ep = Conv1x1Epilogue {
            affine: self.epilogue_affine(*affine, *bias)?,
            residual: residual.map(at).transpose()?,
            relu: *relu,
            input_affine_relu: None,
        };
        let weight = self.param(*weight)?;
        match &lo.prologue {
            None => k
                .conv1x1()
                .prepare(ctx, at(*input)?, weight, *stride, ep, at(*out)?),
            Some(Prologue::AffineRelu { input: x, norm, .. }) => {
                let ep = Conv1x1Epilogue {
                    input_affine_relu: Some(self.norm(*norm)?),
                    ..ep
                };
                k.conv1x1()
                    .prepare(ctx, at(*x)?, weight, *stride, ep, at(*out)?)
            }
            Some(Prologue::Shift {
                input: x,
                shift,
                stride: shift_stride,
                ..
            }) if *stride == 1 => k.asl_conv1x1().prepare(
                ctx,
                AslConv1x1Args {
                    x: at(*x)?,
                    shift: self.param(*shift)?,
                    stride: *shift_stride,
                    weight,
                    epilogue: ep,
                    y: at(*out)?,
                },
            ),
            Some(Prologue::Shift { .. }) => Err(Error::invalid(
                "GpuModel",
                "an ASL fuses only into a 1x1 convolution at stride 1",
            )),
        }
    }

    /// The plan of batches of `n`, lowered as the model's [`Lowering`](crate::model::Lowering)
    /// says.
    pub(super) fn lowered(&self, n: usize) -> LoweredPlan {
        Plan::new(&self.config, n).lower(self.lowering)
    }

    /// Build activation buffers and dispatches for batches of `n` (kept until the batch size
    /// changes). Slots the lowered plan never writes (outputs of fused ASLs and folded
    /// affines) get no buffer.
    pub(super) fn prepare(&mut self, n: usize) -> Result<()> {
        if self.prepared.as_ref().is_some_and(|p| p.n == n) {
            return Ok(());
        }
        self.prepared = None;
        let plan = self.lowered(n);
        let slots = (0..plan.plan.slots.len())
            .map(|s| {
                plan.writes(s)
                    .then(|| GpuTensor::zeros(&self.ctx, &plan.plan.slots[s].dims()))
                    .transpose()
            })
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
    /// context allows ([`GpuContext::compiles_in_parallel`](crate::gpu::GpuContext::compiles_in_parallel))
    /// the ops are built on one thread per core: each compiles the kernel variants its op needs
    /// first (a variant two ops need is compiled once; the second waits for it).
    fn build_all(
        &self,
        plan: &LoweredPlan,
        n: usize,
        slots: &[Option<GpuTensor>],
    ) -> Result<Vec<Dispatch>> {
        let build = |i: usize| self.build(&plan.ops[i], n, |s| slots.get(s)?.as_ref());
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

    pub(super) fn prepared(&self) -> Result<&Prepared> {
        self.prepared
            .as_ref()
            .ok_or_else(|| Error::Device("model buffers were not prepared".into()))
    }

    /// Bind the ops that read the input to `buffer` (unless already bound to it).
    pub(super) fn bind_host_input(&mut self, buffer: &wgpu::Buffer) -> Result<()> {
        let p = self.prepared()?;
        if p.host.as_ref().is_some_and(|h| &h.buffer == buffer) {
            return Ok(());
        }
        let host = GpuTensor::from_buffer(&self.ctx, buffer.clone(), &self.input_dims(p.n))?;
        let input = p.plan.plan.input;
        let mut dispatches = Vec::new();
        for (i, lo) in p.plan.ops.iter().enumerate() {
            if lo.reads().contains(&input) {
                let slot = |s: Slot| -> Option<&GpuTensor> {
                    if s == input {
                        Some(&host)
                    } else {
                        p.slots.get(s)?.as_ref()
                    }
                };
                dispatches.push((i, self.build(lo, p.n, slot)?));
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
}
