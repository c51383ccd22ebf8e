//! The execution plan: a network as a flat list of operations on numbered activation slots,
//! derived from an [`ArchConfig`]. The CPU and GPU engines both run this same list, lowered by
//! the same pass ([`Plan::lower`](super::lower), which fuses and folds ops), and training runs
//! it as written, so no two of them can disagree about the network's structure.

use super::config::{ArchConfig, BlockKind};
use super::params::{Norm, ParamId};
use crate::shape::Shape4;

/// Index of an activation tensor in [`Plan::slots`].
pub type Slot = usize;

/// One operation. Parameter tensors are referred to by their [`ParamId`].
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// 3x3 convolution, padding 1, no bias.
    Conv3x3 {
        /// Input slot.
        input: Slot,
        /// `[Cout, Cin, 3, 3]` weight.
        weight: ParamId,
        /// Stride.
        stride: usize,
        /// Output slot.
        out: Slot,
    },
    /// Per-channel affine `y = scale * x + bias` (BatchNorm: in training with the batch's
    /// statistics), optionally followed by ReLU.
    Affine {
        /// Input slot.
        input: Slot,
        /// The layer: its [`ParamId::Scale`] and [`ParamId::Bias`].
        norm: Norm,
        /// Apply ReLU after the affine.
        relu: bool,
        /// Output slot.
        out: Slot,
    },
    /// 1x1 convolution with stride and epilogue (affine or bias, then residual add, then
    /// ReLU).
    Conv1x1 {
        /// Input slot.
        input: Slot,
        /// `[Cout, Cin]` weight.
        weight: ParamId,
        /// Stride.
        stride: usize,
        /// The epilogue's affine layer (BatchNorm in training).
        affine: Option<Norm>,
        /// A `[Cout]` bias added in the epilogue (the classifier's).
        bias: Option<ParamId>,
        /// Slot added to the result.
        residual: Option<Slot>,
        /// Apply ReLU last.
        relu: bool,
        /// Output slot.
        out: Slot,
    },
    /// Active Shift Layer.
    Shift {
        /// Input slot.
        input: Slot,
        /// `[2, C]` shift (xpos row, ypos row).
        shift: ParamId,
        /// Stride.
        stride: usize,
        /// Output slot.
        out: Slot,
    },
    /// 3x3 depthwise convolution, pad 1, no bias (the depthwise baseline block).
    Depthwise3x3 {
        /// Input slot.
        input: Slot,
        /// `[C, 1, 3, 3]` weight.
        weight: ParamId,
        /// Stride.
        stride: usize,
        /// Output slot.
        out: Slot,
    },
    /// Global average pooling to `[N, C, 1, 1]`.
    AvgPool {
        /// Input slot.
        input: Slot,
        /// Output slot.
        out: Slot,
    },
    /// Softmax over the channels of `[N, K, 1, 1]`.
    Softmax {
        /// Input slot.
        input: Slot,
        /// Output slot.
        out: Slot,
    },
}

/// A network as operations on activation slots, for one batch size.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The operations in execution order.
    pub ops: Vec<Op>,
    /// Shape of every activation slot.
    pub slots: Vec<Shape4>,
    /// The input slot `[N, C, H, W]`.
    pub input: Slot,
    /// The logits `[N, classes, 1, 1]`.
    pub logits: Slot,
    /// The class probabilities `[N, classes, 1, 1]`.
    pub probs: Slot,
}

/// Builds a [`Plan`] op by op: [`Plan::new`] builds a network of blocks with it, and a test
/// or another front end any network of the ops (training takes any plan:
/// [`crate::train::plan_gradients`]). Slots are numbered in the order they are made.
#[derive(Clone, Debug)]
pub struct PlanBuilder {
    ops: Vec<Op>,
    slots: Vec<Shape4>,
}

impl PlanBuilder {
    /// A plan whose input, slot 0, has shape `input` (`[N, C, H, W]`).
    pub fn new(input: Shape4) -> Self {
        Self {
            ops: Vec::new(),
            slots: vec![input],
        }
    }

    /// The shape of slot `s`.
    ///
    /// # Panics
    /// When `s` is not a slot of this builder.
    pub fn shape(&self, s: Slot) -> Shape4 {
        self.slots[s]
    }

    /// The op `op(out)` writing a new slot `out` of shape `shape`; returns `out`.
    pub fn push(&mut self, shape: Shape4, op: impl FnOnce(Slot) -> Op) -> Slot {
        self.slots.push(shape);
        let out = self.slots.len() - 1;
        self.ops.push(op(out));
        out
    }

    /// The plan whose logits (`[N, classes, 1, 1]`) are slot `logits`, with the softmax
    /// added after them.
    pub fn finish(mut self, logits: Slot) -> Plan {
        let probs = self.push(self.slots[logits], |out| Op::Softmax { input: logits, out });
        Plan {
            ops: self.ops,
            slots: self.slots,
            input: 0,
            logits,
            probs,
        }
    }
}

impl Plan {
    /// The plan of `config` for batches of `n` images.
    pub fn new(config: &ArchConfig, n: usize) -> Plan {
        let [h, w] = config.input_size;
        let mut b = PlanBuilder::new(Shape4::new(n, config.in_channels, h, w));
        let input = 0;
        let stem_shape = b
            .shape(input)
            .strided(config.stem_width, config.stem_stride);
        let mut x = b.push(stem_shape, |out| Op::Conv3x3 {
            input,
            weight: ParamId::StemWeight,
            stride: config.stem_stride,
            out,
        });
        for blk in config.blocks() {
            let i = blk.index;
            let xs = b.shape(x);
            let t = b.push(xs, |out| Op::Affine {
                input: x,
                norm: Norm::Pre(i),
                relu: true,
                out,
            });
            // The projection shortcut first, so that the shift is directly followed by the 1x1
            // convolution reading it (lowering fuses such pairs: `model/lower.rs`).
            let shortcut = if blk.projection {
                b.push(xs.strided(blk.width, blk.stride), |out| Op::Conv1x1 {
                    input: t,
                    weight: ParamId::Shortcut(i),
                    stride: blk.stride,
                    affine: None,
                    bias: None,
                    residual: None,
                    relu: false,
                    out,
                })
            } else {
                x
            };
            let u = b.push(xs.strided(blk.inner, 1), |out| Op::Conv1x1 {
                input: t,
                weight: ParamId::Expand(i),
                stride: 1,
                affine: Some(Norm::Mid(i)),
                bias: None,
                residual: None,
                relu: true,
                out,
            });
            let v = b.push(xs.strided(blk.inner, blk.stride), |out| match blk.kind {
                BlockKind::Asl => Op::Shift {
                    input: u,
                    shift: ParamId::Shift(i),
                    stride: blk.stride,
                    out,
                },
                BlockKind::Depthwise => Op::Depthwise3x3 {
                    input: u,
                    weight: ParamId::Depthwise(i),
                    stride: blk.stride,
                    out,
                },
            });
            x = b.push(xs.strided(blk.width, blk.stride), |out| Op::Conv1x1 {
                input: v,
                weight: ParamId::Reduce(i),
                stride: 1,
                affine: None,
                bias: None,
                residual: Some(shortcut),
                relu: false,
                out,
            });
        }
        let xs = b.shape(x);
        let t = b.push(xs, |out| Op::Affine {
            input: x,
            norm: Norm::Head,
            relu: true,
            out,
        });
        let pooled = b.push(Shape4::new(n, xs.c, 1, 1), |out| Op::AvgPool {
            input: t,
            out,
        });
        let logits = b.push(Shape4::new(n, config.classes, 1, 1), |out| Op::Conv1x1 {
            input: pooled,
            weight: ParamId::FcWeight,
            stride: 1,
            affine: None,
            bias: Some(ParamId::FcBias),
            residual: None,
            relu: false,
            out,
        });
        b.finish(logits)
    }

    /// Every parameter tensor the ops read, with its dimensions as the ops read it, in the
    /// order of first use (a tensor read twice is listed once, as first read): a 3x3
    /// convolution's weight `[Cout, Cin, 3, 3]`, an affine layer's scale and bias `[C]` each,
    /// a 1x1 convolution's weight `[Cout, Cin]` and bias `[Cout]`, a shift `[2, C]`, a
    /// depthwise weight `[C, 1, 3, 3]`.
    pub fn params(&self) -> Vec<(ParamId, Vec<usize>)> {
        let mut out: Vec<(ParamId, Vec<usize>)> = Vec::new();
        let mut add = |id: ParamId, dims: Vec<usize>| {
            if !out.iter().any(|(o, _)| *o == id) {
                out.push((id, dims));
            }
        };
        for op in &self.ops {
            match op {
                Op::Conv3x3 {
                    input, weight, out, ..
                } => add(
                    *weight,
                    vec![self.slots[*out].c, self.slots[*input].c, 3, 3],
                ),
                Op::Affine { input, norm, .. } => {
                    let c = self.slots[*input].c;
                    add(ParamId::Scale(*norm), vec![c]);
                    add(ParamId::Bias(*norm), vec![c]);
                }
                Op::Conv1x1 {
                    input,
                    weight,
                    affine,
                    bias,
                    out,
                    ..
                } => {
                    let cout = self.slots[*out].c;
                    add(*weight, vec![cout, self.slots[*input].c]);
                    if let Some(norm) = affine {
                        add(ParamId::Scale(*norm), vec![cout]);
                        add(ParamId::Bias(*norm), vec![cout]);
                    }
                    if let Some(b) = bias {
                        add(*b, vec![cout]);
                    }
                }
                Op::Shift { input, shift, .. } => add(*shift, vec![2, self.slots[*input].c]),
                Op::Depthwise3x3 { input, weight, .. } => {
                    add(*weight, vec![self.slots[*input].c, 1, 3, 3]);
                }
                Op::AvgPool { .. } | Op::Softmax { .. } => {}
            }
        }
        out
    }

    /// Multiply-adds of one image's forward pass (convolutions and the classifier).
    pub fn mult_adds(&self) -> u64 {
        let n = self.slots[self.input].n.max(1) as u64;
        let mut total = 0u64;
        for op in &self.ops {
            match op {
                Op::Conv3x3 { input, out, .. } => {
                    let o = self.slots[*out];
                    total += o.len() as u64 * self.slots[*input].c as u64 * 9;
                }
                Op::Conv1x1 { input, out, .. } => {
                    let o = self.slots[*out];
                    total += o.len() as u64 * self.slots[*input].c as u64;
                }
                Op::Depthwise3x3 { out, .. } => {
                    total += self.slots[*out].len() as u64 * 9;
                }
                _ => {}
            }
        }
        total / n
    }
}
