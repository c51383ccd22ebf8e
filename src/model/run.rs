//! Running a model: the CPU engine, and what both engines return.

use super::config::ArchConfig;
use super::file::Model;
use super::plan::{ONES, Op, Plan};
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
    pub fn forward_cpu(&self, input: &[f32]) -> Result<Output> {
        let n = check_input(&self.config, input)?;
        let plan = Plan::new(&self.config, n);
        let ones = vec![1.0f32; self.config.classes];
        let param = |name: &str| -> Result<&[f32]> {
            if name == ONES {
                return Ok(&ones);
            }
            Ok(&self.param(name)?.data)
        };
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
                        param(weight)?,
                        cout,
                        *stride,
                    )?;
                    (*out, v)
                }
                Op::Affine {
                    input,
                    scale,
                    bias,
                    relu,
                    out,
                } => {
                    let v = cpu::affine(
                        &slots[*input],
                        plan.slots[*input],
                        param(scale)?,
                        param(bias)?,
                        *relu,
                    )?;
                    (*out, v)
                }
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
                        Some((s, b)) => Some((param(s)?, param(b)?)),
                        None => None,
                    };
                    let ep = cpu::Epilogue {
                        affine,
                        residual: residual.map(|r| &slots[r][..]),
                        relu: *relu,
                    };
                    let v = cpu::conv1x1(
                        &slots[*input],
                        plan.slots[*input],
                        param(weight)?,
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
                        param(shift)?,
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
                        param(weight)?,
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
