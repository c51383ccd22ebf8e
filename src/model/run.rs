//! Running a model: the CPU engine, and what both engines return.

use super::config::ArchConfig;
use super::file::Model;
use super::lower::Lowering;
use super::params::ParamId;
use super::plan::{Op, Plan};
use crate::cpu;
use crate::error::{Error, Result};

/// Class scores of a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// Classes per image.
    pub classes: usize,
    /// `[N, classes]` raw scores.
    pub logits: Vec<f32>,
    /// `[N, classes]` softmax probabilities.
    pub probs: Vec<f32>,
}

impl Output {
    /// Number of images.
    pub fn batch(&self) -> usize {
        self.probs.len() / self.classes.max(1)
    }

    /// The `k` most probable classes of image `i`, best first, as `(class, probability)`
    /// (empty when there is no image `i`).
    pub fn top_k(&self, i: usize, k: usize) -> Vec<(usize, f32)> {
        let Some(row) = i
            .checked_mul(self.classes)
            .and_then(|start| self.probs.get(start..)?.get(..self.classes))
        else {
            return Vec::new();
        };
        let mut idx: Vec<usize> = (0..self.classes).collect();
        idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        idx.into_iter().take(k).map(|c| (c, row[c])).collect()
    }
}

/// Check an input batch against the model's input shape; returns the batch size.
pub(crate) fn check_input(c: &ArchConfig, input: &[f32]) -> Result<usize> {
    let per = c.in_channels * c.input_size[0] * c.input_size[1];
    if input.is_empty() || !input.len().is_multiple_of(per) {
        return Err(Error::shape(
            "model input",
            "input",
            format!(
                "a multiple of {per} values ([N, {}, {}, {}])",
                c.in_channels, c.input_size[0], c.input_size[1]
            ),
            format!("{} values", input.len()),
        ));
    }
    Ok(input.len() / per)
}

/// Which CPU kernels run a plan's ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CpuKernels {
    /// The fast CPU op set (`crate::cpu::fast`): multi-threaded, GEMMs through
    /// matrixmultiply, buffers reused between calls on the same thread.
    Fast,
    /// The generic CPU twins of the GPU kernels (`crate::cpu`).
    Reference,
}

/// A buffer of `len` values for `kernels` to overwrite (from the thread's pool on the fast
/// path).
fn take(kernels: CpuKernels, len: usize) -> Vec<f32> {
    match kernels {
        CpuKernels::Fast => cpu::fast::BufferPool::take(len),
        CpuKernels::Reference => vec![0.0; len],
    }
}

impl Model {
    /// Run the network on the CPU: `input` is `[N, C, H, W]` as the model's preprocessing
    /// produces it. Runs the plan lowered with [`Lowering::ALL`] (see
    /// [`Model::forward_cpu_lowered`]).
    ///
    /// The fast CPU op set runs (`crate::cpu::fast`): multi-threaded, GEMMs through
    /// matrixmultiply, buffers reused between calls on the same thread.
    pub fn forward_cpu(&self, input: &[f32]) -> Result<Output> {
        self.forward_cpu_lowered(input, Lowering::ALL)
    }

    /// [`Model::forward_cpu`] on the plan lowered with `lowering`
    /// ([`Plan::lower`](super::Plan::lower)), the same pass the GPU engine runs. The CPU engine
    /// runs a lowered op by its parts: a fused ASL or folded affine + ReLU into its plan slot
    /// (once, however many convolutions read it), then the 1x1 convolution, so every lowering
    /// computes the same values.
    pub fn forward_cpu_lowered(&self, input: &[f32], lowering: Lowering) -> Result<Output> {
        self.run_cpu(input, lowering, CpuKernels::Fast)
    }

    /// Run the network on the CPU with the plain CPU twins of the kernels (`crate::cpu`), the
    /// reference the fast kernels of [`Model::forward_cpu`] are tested against: the plan as
    /// written ([`Lowering::NONE`]), op by op.
    pub fn forward_cpu_reference(&self, input: &[f32]) -> Result<Output> {
        self.run_cpu(input, Lowering::NONE, CpuKernels::Reference)
    }

    /// The CPU engine: the ops of the plan lowered with `lowering`, in order, each on
    /// `kernels`.
    fn run_cpu(&self, input: &[f32], lowering: Lowering, kernels: CpuKernels) -> Result<Output> {
        let n = check_input(&self.config, input)?;
        let lowered = Plan::new(&self.config, n).lower(lowering);
        let plan = &lowered.plan;
        let mut slots: Vec<Vec<f32>> = vec![Vec::new(); plan.slots.len()];
        let mut x = take(kernels, input.len());
        x.copy_from_slice(input);
        slots[plan.input] = x;
        let mut scratch = take(kernels, 0);
        for lo in &lowered.ops {
            // A prologue runs as its plan op, into its plan slot, unless an earlier reader of
            // the same folded affine already wrote it (the values are the same).
            if let Some(p) = &lo.prologue
                && slots[p.out()].is_empty()
            {
                let (out, value) = self.run_op(&p.op(), plan, &slots, kernels, &mut scratch)?;
                slots[out] = value;
            }
            let (out, value) = self.run_op(&lo.op, plan, &slots, kernels, &mut scratch)?;
            slots[out] = value;
        }
        let logits = std::mem::take(&mut slots[plan.logits]);
        let probs = std::mem::take(&mut slots[plan.probs]);
        if kernels == CpuKernels::Fast {
            cpu::fast::BufferPool::give(slots.into_iter().chain([scratch]));
        }
        Ok(Output {
            classes: self.config.classes,
            logits,
            probs,
        })
    }

    /// One plan op on `kernels`: the slot it writes and the values.
    fn run_op(
        &self,
        op: &Op,
        plan: &Plan,
        slots: &[Vec<f32>],
        kernels: CpuKernels,
        scratch: &mut Vec<f32>,
    ) -> Result<(usize, Vec<f32>)> {
        use CpuKernels::*;
        // A parameter, checked to hold `len` values.
        let param = |id: ParamId, len: usize| -> Result<&[f32]> {
            let data: &[f32] = &self.param(id)?.data;
            if data.len() != len {
                return Err(Error::shape(
                    "model",
                    id.name(),
                    format!("{len} values"),
                    format!("{} values", data.len()),
                ));
            }
            Ok(data)
        };
        Ok(match op {
            Op::Conv3x3 {
                input,
                weight,
                stride,
                out,
            } => {
                let (x, xs, ys) = (&slots[*input], plan.slots[*input], plan.slots[*out]);
                let w = param(*weight, ys.c * xs.c * 9)?;
                let y = match kernels {
                    Fast => {
                        let mut y = take(kernels, ys.len());
                        cpu::fast::conv3x3(x, xs, w, ys.c, *stride, &mut y, scratch);
                        y
                    }
                    Reference => cpu::conv3x3(x, xs, w, ys.c, *stride)?,
                };
                (*out, y)
            }
            Op::Affine {
                input,
                norm,
                relu,
                out,
            } => {
                let (x, xs) = (&slots[*input], plan.slots[*input]);
                let (a, b) = (
                    param(ParamId::Scale(*norm), xs.c)?,
                    param(ParamId::Bias(*norm), xs.c)?,
                );
                let y = match kernels {
                    Fast => {
                        let mut y = take(kernels, xs.len());
                        cpu::fast::affine(x, xs, a, b, *relu, &mut y);
                        y
                    }
                    Reference => cpu::affine(x, xs, a, b, *relu)?,
                };
                (*out, y)
            }
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
                let (x, xs, ys) = (&slots[*input], plan.slots[*input], plan.slots[*out]);
                // Ones as the scale of a plain bias, made only for the op that has one.
                let ones: Vec<f32>;
                let affine = match (affine, bias) {
                    (Some(n), _) => Some((
                        param(ParamId::Scale(*n), ys.c)?,
                        param(ParamId::Bias(*n), ys.c)?,
                    )),
                    (None, Some(b)) => {
                        ones = vec![1.0f32; ys.c];
                        Some((&ones[..], param(*b, ys.c)?))
                    }
                    (None, None) => None,
                };
                let ep = cpu::Epilogue {
                    affine,
                    residual: residual.map(|r| &slots[r][..]),
                    relu: *relu,
                };
                let w = param(*weight, ys.c * xs.c)?;
                let y = match kernels {
                    Fast => {
                        let mut y = take(kernels, ys.len());
                        let layer = cpu::fast::Conv1x1Layer {
                            w,
                            cout: ys.c,
                            stride: *stride,
                            ep: &ep,
                        };
                        cpu::fast::conv1x1(x, xs, layer, &mut y, scratch);
                        y
                    }
                    Reference => cpu::conv1x1(x, xs, w, ys.c, *stride, ep)?,
                };
                (*out, y)
            }
            Op::Shift {
                input,
                shift,
                stride,
                out,
            } => {
                let (x, xs) = (&slots[*input], plan.slots[*input]);
                let sh = param(*shift, 2 * xs.c)?;
                let y = match kernels {
                    Fast => {
                        let mut y = take(kernels, plan.slots[*out].len());
                        cpu::fast::asl_forward(x, xs, sh, *stride, &mut y);
                        y
                    }
                    Reference => cpu::asl_forward(x, xs, sh, *stride)?,
                };
                (*out, y)
            }
            Op::Depthwise3x3 {
                input,
                weight,
                stride,
                out,
            } => {
                let (x, xs) = (&slots[*input], plan.slots[*input]);
                let w = param(*weight, 9 * xs.c)?;
                let y = match kernels {
                    Fast => {
                        let mut y = take(kernels, plan.slots[*out].len());
                        cpu::fast::depthwise3x3(x, xs, w, *stride, &mut y);
                        y
                    }
                    Reference => cpu::depthwise3x3(x, xs, w, *stride)?,
                };
                (*out, y)
            }
            Op::AvgPool { input, out } => {
                let v = cpu::global_avg_pool(&slots[*input], plan.slots[*input])?;
                (*out, v)
            }
            Op::Softmax { input, out } => {
                let s = plan.slots[*input];
                let v = cpu::softmax(&slots[*input], s.n, s.c * s.h * s.w)?;
                (*out, v)
            }
        })
    }
}
