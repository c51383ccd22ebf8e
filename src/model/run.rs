//! Running a model: the CPU engine, and what both engines return.

use super::config::ArchConfig;
use super::file::Model;
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

impl Model {
    /// Run the network on the CPU: `input` is `[N, C, H, W]` as the model's preprocessing
    /// produces it.
    ///
    /// With the `train` feature (on by default; it brings rayon and ndarray) this is the fast
    /// path: multi-threaded, GEMMs through matrixmultiply, buffers reused between calls on the
    /// same thread. Without it, and always through [`Model::forward_cpu_reference`], the plain
    /// CPU twins of the kernels run.
    pub fn forward_cpu(&self, input: &[f32]) -> Result<Output> {
        #[cfg(feature = "train")]
        {
            self.forward_cpu_fast(input)
        }
        #[cfg(not(feature = "train"))]
        {
            self.forward_cpu_reference(input)
        }
    }

    /// The fast CPU path of [`Model::forward_cpu`].
    #[cfg(feature = "train")]
    fn forward_cpu_fast(&self, input: &[f32]) -> Result<Output> {
        use crate::cpu::fast::{self, BufferPool};
        let n = check_input(&self.config, input)?;
        let plan = Plan::new(&self.config, n);
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
        let mut slots: Vec<Vec<f32>> = vec![Vec::new(); plan.slots.len()];
        let mut x = BufferPool::take(input.len());
        x.copy_from_slice(input);
        slots[plan.input] = x;
        let mut scratch = BufferPool::take(0);
        for op in &plan.ops {
            let (out, value) = match op {
                Op::Conv3x3 {
                    input,
                    weight,
                    stride,
                    out,
                } => {
                    let (xs, ys) = (plan.slots[*input], plan.slots[*out]);
                    let w = param(*weight, ys.c * xs.c * 9)?;
                    let mut y = BufferPool::take(ys.len());
                    fast::conv3x3(&slots[*input], xs, w, ys.c, *stride, &mut y, &mut scratch);
                    (*out, y)
                }
                Op::Affine {
                    input,
                    norm,
                    relu,
                    out,
                } => {
                    let xs = plan.slots[*input];
                    let (a, b) = (
                        param(ParamId::Scale(*norm), xs.c)?,
                        param(ParamId::Bias(*norm), xs.c)?,
                    );
                    let mut y = BufferPool::take(xs.len());
                    fast::affine(&slots[*input], xs, a, b, *relu, &mut y);
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
                    let (xs, ys) = (plan.slots[*input], plan.slots[*out]);
                    let ones = vec![1.0f32; ys.c];
                    let affine = match (affine, bias) {
                        (Some(n), _) => Some((
                            param(ParamId::Scale(*n), ys.c)?,
                            param(ParamId::Bias(*n), ys.c)?,
                        )),
                        (None, Some(b)) => Some((&ones[..], param(*b, ys.c)?)),
                        (None, None) => None,
                    };
                    let ep = cpu::Epilogue {
                        affine,
                        residual: residual.map(|r| &slots[r][..]),
                        relu: *relu,
                    };
                    let w = param(*weight, ys.c * xs.c)?;
                    let mut y = BufferPool::take(ys.len());
                    fast::conv1x1(
                        &slots[*input],
                        xs,
                        w,
                        ys.c,
                        *stride,
                        &ep,
                        &mut y,
                        &mut scratch,
                    );
                    (*out, y)
                }
                Op::Shift {
                    input,
                    shift,
                    stride,
                    out,
                } => {
                    let xs = plan.slots[*input];
                    let sh = param(*shift, 2 * xs.c)?;
                    let mut y = BufferPool::take(plan.slots[*out].len());
                    fast::asl_forward(&slots[*input], xs, sh, *stride, &mut y);
                    (*out, y)
                }
                Op::Depthwise3x3 {
                    input,
                    weight,
                    stride,
                    out,
                } => {
                    let xs = plan.slots[*input];
                    let w = param(*weight, 9 * xs.c)?;
                    let y = crate::train::ops::depthwise3x3(&slots[*input], xs, w, *stride)?;
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
            };
            slots[out] = value;
        }
        let logits = std::mem::take(&mut slots[plan.logits]);
        let probs = std::mem::take(&mut slots[plan.probs]);
        BufferPool::give(slots.into_iter().chain([scratch]));
        Ok(Output {
            classes: self.config.classes,
            logits,
            probs,
        })
    }

    /// Run the network on the CPU with the plain CPU twins of the kernels (`crate::cpu`), the
    /// reference the fast path of [`Model::forward_cpu`] is tested against.
    pub fn forward_cpu_reference(&self, input: &[f32]) -> Result<Output> {
        let n = check_input(&self.config, input)?;
        let plan = Plan::new(&self.config, n);
        let param = |id: ParamId| -> Result<&[f32]> { Ok(&self.param(id)?.data) };
        let mut slots: Vec<Vec<f32>> = vec![Vec::new(); plan.slots.len()];
        slots[plan.input] = input.to_vec();
        for op in &plan.ops {
            let (out, value) = match op {
                Op::Conv3x3 {
                    input,
                    weight,
                    stride,
                    out,
                } => {
                    let cout = plan.slots[*out].c;
                    let v = cpu::conv3x3(
                        &slots[*input],
                        plan.slots[*input],
                        param(*weight)?,
                        cout,
                        *stride,
                    )?;
                    (*out, v)
                }
                Op::Affine {
                    input,
                    norm,
                    relu,
                    out,
                } => {
                    let v = cpu::affine(
                        &slots[*input],
                        plan.slots[*input],
                        param(ParamId::Scale(*norm))?,
                        param(ParamId::Bias(*norm))?,
                        *relu,
                    )?;
                    (*out, v)
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
                    let ones = vec![1.0f32; plan.slots[*out].c];
                    let affine = match (affine, bias) {
                        (Some(n), _) => {
                            Some((param(ParamId::Scale(*n))?, param(ParamId::Bias(*n))?))
                        }
                        (None, Some(b)) => Some((&ones[..], param(*b)?)),
                        (None, None) => None,
                    };
                    let ep = cpu::Epilogue {
                        affine,
                        residual: residual.map(|r| &slots[r][..]),
                        relu: *relu,
                    };
                    let v = cpu::conv1x1(
                        &slots[*input],
                        plan.slots[*input],
                        param(*weight)?,
                        plan.slots[*out].c,
                        *stride,
                        ep,
                    )?;
                    (*out, v)
                }
                Op::Shift {
                    input,
                    shift,
                    stride,
                    out,
                } => {
                    let v = cpu::asl_forward(
                        &slots[*input],
                        plan.slots[*input],
                        param(*shift)?,
                        *stride,
                    )?;
                    (*out, v)
                }
                Op::Depthwise3x3 {
                    input,
                    weight,
                    stride,
                    out,
                } => {
                    let v = cpu::depthwise3x3(
                        &slots[*input],
                        plan.slots[*input],
                        param(*weight)?,
                        *stride,
                    )?;
                    (*out, v)
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
            };
            slots[out] = value;
        }
        Ok(Output {
            classes: self.config.classes,
            logits: std::mem::take(&mut slots[plan.logits]),
            probs: std::mem::take(&mut slots[plan.probs]),
        })
    }
}
