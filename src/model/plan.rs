//! The execution plan: a network as a flat list of operations on numbered activation slots,
//! derived from an [`ArchConfig`]. The CPU and GPU engines both run this same list, lowered by
//! the same pass ([`Plan::lower`](super::lower), which fuses and folds ops), and training runs
//! it as written, so no two of them can disagree about the network's structure.

use super::config::{ArchConfig, BlockKind};
use super::params::{Norm, ParamId};
use crate::shape::Shape4;

/// Index of an activation tensor in [`Plan::slots`].
pub type Slot = usize;

/// One operation. Parameter tensors are referred to by their [`ParamId`]. In JSON an object
/// tagged by `op` (`conv3x3`, `affine`, `conv1x1`, `shift`, `depthwise3x3`, `avg_pool`,
/// `softmax`) with the fields below, tensors by name.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
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

impl Op {
    /// The activation slots the op reads: its input, then a 1x1 convolution's residual.
    pub fn inputs(&self) -> Vec<Slot> {
        match self {
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

    /// The slot the op writes.
    pub fn output(&self) -> Slot {
        match self {
            Op::Conv3x3 { out, .. }
            | Op::Affine { out, .. }
            | Op::Conv1x1 { out, .. }
            | Op::Shift { out, .. }
            | Op::Depthwise3x3 { out, .. }
            | Op::AvgPool { out, .. }
            | Op::Softmax { out, .. } => *out,
        }
    }

    /// The learnable tensors the op uses, with their shapes (from the shapes of `slots`, the
    /// plan's): the only place a tensor's shape is stated.
    pub fn params(&self, slots: &[Shape4]) -> Vec<(ParamId, Vec<usize>)> {
        let affine = |norm: Norm, c: usize| {
            [
                (ParamId::Scale(norm), vec![c]),
                (ParamId::Bias(norm), vec![c]),
            ]
        };
        match self {
            Op::Conv3x3 {
                input, weight, out, ..
            } => vec![(*weight, vec![slots[*out].c, slots[*input].c, 3, 3])],
            Op::Affine { input, norm, .. } => affine(*norm, slots[*input].c).to_vec(),
            Op::Conv1x1 {
                input,
                weight,
                affine: norm,
                bias,
                out,
                ..
            } => {
                let (cin, cout) = (slots[*input].c, slots[*out].c);
                let mut p = vec![(*weight, vec![cout, cin])];
                if let Some(norm) = norm {
                    p.extend(affine(*norm, cout));
                }
                p.extend(bias.map(|b| (b, vec![cout])));
                p
            }
            Op::Shift { input, shift, .. } => vec![(*shift, vec![2, slots[*input].c])],
            Op::Depthwise3x3 { input, weight, .. } => {
                vec![(*weight, vec![slots[*input].c, 1, 3, 3])]
            }
            Op::AvgPool { .. } | Op::Softmax { .. } => Vec::new(),
        }
    }
}

/// A network as operations on activation slots, for one batch size. Serializes to the JSON a
/// PyTorch twin of the network builds its layers from (`tools/torch_twin`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
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

struct Builder {
    ops: Vec<Op>,
    slots: Vec<Shape4>,
}

impl Builder {
    fn slot(&mut self, s: Shape4) -> Slot {
        self.slots.push(s);
        self.slots.len() - 1
    }
}

impl Plan {
    /// Every learnable tensor the plan's ops use, with its shape, in the order tensors are
    /// listed, initialised and stored: the stem, then block by block (its pre-activation
    /// affine, expanding convolution, middle affine, shift or depthwise convolution, reducing
    /// convolution, projection shortcut), then the head's affine and the classifier. The ops
    /// run the shortcut before the expanding convolution; the listing keeps it last in its
    /// block, where the first model files and checkpoints put it.
    pub fn params(&self) -> Vec<(ParamId, Vec<usize>)> {
        let mut p: Vec<(ParamId, Vec<usize>)> = Vec::new();
        for op in &self.ops {
            for (id, dims) in op.params(&self.slots) {
                if !p.iter().any(|(q, _)| *q == id) {
                    p.push((id, dims));
                }
            }
        }
        // Stable: within a block the ops' order, except the shortcut, which goes last.
        p.sort_by_key(|(id, _)| {
            let place = match id {
                ParamId::StemWeight => 0,
                _ => id.block().map_or(usize::MAX, |i| i + 1),
            };
            (place, matches!(id, ParamId::Shortcut(_)))
        });
        p
    }

    /// The plan as JSON for tools outside Rust (the PyTorch twin, `tools/torch_twin`;
    /// `activeshift info --plan-json`): `{"plan": {ops, slots, input, logits, probs},
    /// "params": [{name, shape, weight_decay}]}`, tensors in [`Plan::params`]'s order,
    /// `weight_decay` where the trainer applies it (convolution and classifier weights).
    pub fn to_json(&self) -> serde_json::Value {
        let params: Vec<serde_json::Value> = self
            .params()
            .into_iter()
            .map(|(id, dims)| {
                serde_json::json!({"name": id.name(), "shape": dims, "weight_decay": id.is_weight()})
            })
            .collect();
        serde_json::json!({ "plan": self, "params": params })
    }

    /// The plan of `config` for batches of `n` images.
    pub fn new(config: &ArchConfig, n: usize) -> Plan {
        let [h, w] = config.input_size;
        let mut b = Builder {
            ops: Vec::new(),
            slots: Vec::new(),
        };
        let input = b.slot(Shape4::new(n, config.in_channels, h, w));
        let stem_shape = b.slots[input].strided(config.stem_width, config.stem_stride);
        let mut x = b.slot(stem_shape);
        b.ops.push(Op::Conv3x3 {
            input,
            weight: ParamId::StemWeight,
            stride: config.stem_stride,
            out: x,
        });
        for blk in config.blocks() {
            let i = blk.index;
            let xs = b.slots[x];
            let t = b.slot(xs);
            b.ops.push(Op::Affine {
                input: x,
                norm: Norm::Pre(i),
                relu: true,
                out: t,
            });
            // The projection shortcut first, so that the shift is directly followed by the 1x1
            // convolution reading it (lowering fuses such pairs: `model/lower.rs`).
            let shortcut = if blk.projection {
                let sc = b.slot(xs.strided(blk.width, blk.stride));
                b.ops.push(Op::Conv1x1 {
                    input: t,
                    weight: ParamId::Shortcut(i),
                    stride: blk.stride,
                    affine: None,
                    bias: None,
                    residual: None,
                    relu: false,
                    out: sc,
                });
                sc
            } else {
                x
            };
            let u = b.slot(xs.strided(blk.inner, 1));
            b.ops.push(Op::Conv1x1 {
                input: t,
                weight: ParamId::Expand(i),
                stride: 1,
                affine: Some(Norm::Mid(i)),
                bias: None,
                residual: None,
                relu: true,
                out: u,
            });
            let v = b.slot(xs.strided(blk.inner, blk.stride));
            b.ops.push(match blk.kind {
                BlockKind::Asl => Op::Shift {
                    input: u,
                    shift: ParamId::Shift(i),
                    stride: blk.stride,
                    out: v,
                },
                BlockKind::Depthwise => Op::Depthwise3x3 {
                    input: u,
                    weight: ParamId::Depthwise(i),
                    stride: blk.stride,
                    out: v,
                },
            });
            let y = b.slot(xs.strided(blk.width, blk.stride));
            b.ops.push(Op::Conv1x1 {
                input: v,
                weight: ParamId::Reduce(i),
                stride: 1,
                affine: None,
                bias: None,
                residual: Some(shortcut),
                relu: false,
                out: y,
            });
            x = y;
        }
        let xs = b.slots[x];
        let t = b.slot(xs);
        b.ops.push(Op::Affine {
            input: x,
            norm: Norm::Head,
            relu: true,
            out: t,
        });
        let pooled = b.slot(Shape4::new(n, xs.c, 1, 1));
        b.ops.push(Op::AvgPool {
            input: t,
            out: pooled,
        });
        let logits = b.slot(Shape4::new(n, config.classes, 1, 1));
        b.ops.push(Op::Conv1x1 {
            input: pooled,
            weight: ParamId::FcWeight,
            stride: 1,
            affine: None,
            bias: Some(ParamId::FcBias),
            residual: None,
            relu: false,
            out: logits,
        });
        let probs = b.slot(Shape4::new(n, config.classes, 1, 1));
        b.ops.push(Op::Softmax {
            input: logits,
            out: probs,
        });
        Plan {
            ops: b.ops,
            slots: b.slots,
            input,
            logits,
            probs,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::StageConfig;

    /// One stage of one block, widening 2 -> 4 (so it has a projection shortcut), on a
    /// 1 x 4 x 4 input with 3 classes.
    fn one_block() -> ArchConfig {
        let mut c = ArchConfig::asnet20(2, 1, 1, 4, 3);
        c.stages = vec![StageConfig {
            blocks: 1,
            width: 4,
            stride: 1,
        }];
        c
    }

    #[test]
    fn every_slot_is_written_once_before_it_is_read() {
        for config in [one_block(), ArchConfig::asnet20(4, 2, 3, 8, 10)] {
            let plan = Plan::new(&config, 2);
            let mut written = vec![false; plan.slots.len()];
            written[plan.input] = true;
            for op in &plan.ops {
                for r in op.inputs() {
                    assert!(written[r], "{op:?} reads slot {r} before it is written");
                }
                let o = op.output();
                assert!(!written[o], "{op:?} writes slot {o} a second time");
                written[o] = true;
            }
            assert!(written.iter().all(|&w| w), "a slot nobody writes");
            let [h, w] = config.input_size;
            assert_eq!(
                plan.slots[plan.input],
                Shape4::new(2, config.in_channels, h, w)
            );
            assert_eq!(
                plan.slots[plan.logits],
                Shape4::new(2, config.classes, 1, 1)
            );
            assert_eq!(plan.slots[plan.probs], plan.slots[plan.logits]);
        }
    }

    #[test]
    fn each_block_is_pre_activation_projection_expand_shift_reduce() {
        let config = ArchConfig::asnet20(4, 2, 3, 8, 10);
        let plan = Plan::new(&config, 1);
        // Stem, then 4 ops per block plus the projections, then head affine, pool, fc, softmax.
        let blocks = config.blocks();
        let projections = blocks.iter().filter(|b| b.projection).count();
        assert_eq!(projections, 2, "the two stage transitions of ASNet-20");
        assert_eq!(plan.ops.len(), 1 + 4 * blocks.len() + projections + 4);
        let shifts: Vec<usize> = plan
            .ops
            .iter()
            .enumerate()
            .filter_map(|(i, op)| matches!(op, Op::Shift { .. }).then_some(i))
            .collect();
        assert_eq!(shifts.len(), config.shift_layers());
        // Every shift sits between the expanding and the reducing 1x1 convolutions.
        for &i in &shifts {
            assert!(matches!(
                plan.ops[i - 1],
                Op::Conv1x1 {
                    relu: true,
                    affine: Some(_),
                    ..
                }
            ));
            assert!(matches!(
                plan.ops[i + 1],
                Op::Conv1x1 {
                    residual: Some(_),
                    ..
                }
            ));
        }
        let mut depthwise = config.clone();
        depthwise.block = BlockKind::Depthwise;
        let plan = Plan::new(&depthwise, 1);
        assert!(!plan.ops.iter().any(|op| matches!(op, Op::Shift { .. })));
        let dw = plan
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Depthwise3x3 { .. }));
        assert_eq!(dw.count(), shifts.len());
    }

    #[test]
    fn mult_adds_count_one_image_by_hand() {
        // Stem 3x3 1 -> 2 on 4x4: 2*16 outputs * 9 * 1. Block (cin 2, inner 4, width 4):
        // projection 4*16 * 2, expand 4*16 * 2, shift none, reduce 4*16 * 4. Classifier 3 * 4.
        let want = 2 * 16 * 9 + 64 * 2 + 64 * 2 + 64 * 4 + 3 * 4;
        for n in [1, 3] {
            assert_eq!(Plan::new(&one_block(), n).mult_adds(), want, "batch {n}");
        }
    }
}
