//! Lowering: the pass that turns a [`Plan`] into the ops an engine runs, a [`LoweredPlan`].
//!
//! Two rewrites, each exact (the lowered plan computes what the plan computes):
//! - **fusion**: an ASL whose output only the 1x1 convolution right after it reads (as its
//!   input, at stride 1) runs inside that convolution: the convolution reads the ASL's input
//!   through the shift ([`Prologue::Shift`]) and the shifted tensor is never written.
//! - **folding**: an affine + ReLU whose output only 1x1 convolutions read (each as its input,
//!   never as a residual) is applied by each of them to the values it loads
//!   ([`Prologue::AffineRelu`]); the activated tensor is never written. The blocks'
//!   pre-activations fold this way.
//!
//! Which rewrites apply is a [`Lowering`]. The GPU engine takes it from its context's kernel
//! policy through [`Lowering::for_policy`] (the one place that decides whether to fuse: the
//! kernel layer only says what it can run); the CPU engine lowers with [`Lowering::ALL`] and runs a lowered op by its
//! parts (the prologue's op, then the convolution). `GpuModel::op_dispatches` lists the lowered
//! ops, [`LoweredOp::kind`] naming each.

use super::params::{Norm, ParamId};
use super::plan::{Op, Plan, Slot};
use crate::gpu::KernelPolicy;

/// Which rewrites [`Plan::lower`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lowering {
    /// Fuse each ASL into the 1x1 convolution that alone reads it.
    pub fuse_asl: bool,
    /// Fuse only ASLs of at most this many channels (the fused kernels' limit).
    pub max_fused_channels: usize,
    /// Fold each affine + ReLU into the 1x1 convolutions that alone read it.
    pub fold_affine_relu: bool,
}

impl Lowering {
    /// No rewrite: the lowered plan runs every op of the plan on its own.
    pub const NONE: Lowering = Lowering {
        fuse_asl: false,
        max_fused_channels: 0,
        fold_affine_relu: false,
    };

    /// Every rewrite wherever it applies.
    pub const ALL: Lowering = Lowering {
        fuse_asl: true,
        max_fused_channels: usize::MAX,
        fold_affine_relu: true,
    };

    /// The rewrites the GPU engine lowers a plan with under `policy`: each ASL fused into its
    /// 1x1 convolution when [`KernelPolicy::fused_by_default`] (up to the fused kernels' channel
    /// limit), every pre-activation folded into the 1x1 convolutions reading it (always: it
    /// saves a launch and a tensor on every adapter measured).
    pub fn for_policy(policy: &KernelPolicy) -> Lowering {
        Lowering {
            fuse_asl: policy.fused_by_default(),
            max_fused_channels: crate::gpu::kernels::ASL_CONV1X1_MAX_CHANNELS,
            fold_affine_relu: true,
        }
    }
}

/// What a lowered 1x1 convolution applies to its input as it reads it: a plan op that runs
/// inside the convolution, its output slot never written.
#[derive(Clone, Debug, PartialEq)]
pub enum Prologue {
    /// An ASL ([`Op::Shift`]) fused into the convolution.
    Shift {
        /// The ASL's input: what the convolution reads.
        input: Slot,
        /// `[2, C]` shift.
        shift: ParamId,
        /// The ASL's stride.
        stride: usize,
        /// The ASL's output slot (the convolution's input in the plan), never written.
        out: Slot,
    },
    /// An affine + ReLU ([`Op::Affine`] with `relu`) folded into the convolution.
    AffineRelu {
        /// The affine's input: what the convolution reads.
        input: Slot,
        /// The affine layer.
        norm: Norm,
        /// The affine's output slot (the convolution's input in the plan), never written.
        out: Slot,
    },
}

impl Prologue {
    /// The slot the convolution reads in place of its plan input.
    pub fn input(&self) -> Slot {
        match self {
            Prologue::Shift { input, .. } | Prologue::AffineRelu { input, .. } => *input,
        }
    }

    /// The plan slot this prologue stands for (never written by an engine that runs it fused).
    pub fn out(&self) -> Slot {
        match self {
            Prologue::Shift { out, .. } | Prologue::AffineRelu { out, .. } => *out,
        }
    }

    /// The plan op this prologue stands for, writing [`Prologue::out`] (how an engine without
    /// a fused kernel runs it).
    pub fn op(&self) -> Op {
        match *self {
            Prologue::Shift {
                input,
                shift,
                stride,
                out,
            } => Op::Shift {
                input,
                shift,
                stride,
                out,
            },
            Prologue::AffineRelu { input, norm, out } => Op::Affine {
                input,
                norm,
                relu: true,
                out,
            },
        }
    }
}

/// One op of a [`LoweredPlan`]: one launch (or group of launches) of an engine.
#[derive(Clone, Debug, PartialEq)]
pub struct LoweredOp {
    /// The plan op that runs. An [`Op::Conv1x1`] whenever `prologue` is set; it then reads
    /// [`Prologue::input`] through the prologue instead of its `input` slot.
    pub op: Op,
    /// An ASL or affine + ReLU run inside `op`.
    pub prologue: Option<Prologue>,
}

impl LoweredOp {
    /// The activation slots this op reads from memory (a prologue's input in place of the slot
    /// it stands for).
    pub fn reads(&self) -> Vec<Slot> {
        let mut r = self.op.inputs();
        if let Some(p) = &self.prologue {
            for s in &mut r {
                if *s == p.out() {
                    *s = p.input();
                }
            }
        }
        r
    }

    /// What kind of op it is: `stem conv3x3`, `affine`, `conv1x1`, `affine + conv1x1` (a 1x1
    /// convolution reading its input through a folded affine + ReLU), `asl`,
    /// `asl + conv1x1 (fused)`, `depthwise3x3`, `avg_pool` or `softmax`.
    pub fn kind(&self) -> &'static str {
        match (&self.op, &self.prologue) {
            (Op::Conv1x1 { .. }, Some(Prologue::Shift { .. })) => "asl + conv1x1 (fused)",
            (Op::Conv1x1 { .. }, Some(Prologue::AffineRelu { .. })) => "affine + conv1x1",
            (Op::Conv1x1 { .. }, None) => "conv1x1",
            (Op::Conv3x3 { .. }, _) => "stem conv3x3",
            (Op::Affine { .. }, _) => "affine",
            (Op::Shift { .. }, _) => "asl",
            (Op::Depthwise3x3 { .. }, _) => "depthwise3x3",
            (Op::AvgPool { .. }, _) => "avg_pool",
            (Op::Softmax { .. }, _) => "softmax",
        }
    }

    /// The op's parameter (e.g. `blocks.3.reduce`), or its kind, and the shape it reads.
    pub fn label(&self, plan: &Plan) -> String {
        let strip = |id: &ParamId| {
            let name = id.name();
            name.rsplit_once('.')
                .map_or(name.clone(), |(p, _)| p.to_string())
        };
        let name = match &self.op {
            Op::Conv3x3 { weight, .. }
            | Op::Conv1x1 { weight, .. }
            | Op::Depthwise3x3 { weight, .. } => strip(weight),
            Op::Affine { norm, .. } => norm.prefix(),
            Op::Shift { shift, .. } => shift.name(),
            Op::AvgPool { .. } => "pool".into(),
            Op::Softmax { .. } => "softmax".into(),
        };
        let input = self.reads()[0];
        format!("{name} {}", plan.slots[input])
    }
}

/// A [`Plan`] lowered: the ops an engine runs, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct LoweredPlan {
    /// The plan it was lowered from (slots, input and outputs).
    pub plan: Plan,
    /// The lowered ops in execution order.
    pub ops: Vec<LoweredOp>,
    /// The rewrites it was lowered with.
    pub lowering: Lowering,
}

impl LoweredPlan {
    /// How many ASLs run fused into their 1x1 convolution.
    pub fn fused_asls(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o.prologue, Some(Prologue::Shift { .. })))
            .count()
    }

    /// How many affine + ReLU ops of the plan were folded (each into one or more 1x1
    /// convolutions).
    pub fn folded_affines(&self) -> usize {
        let mut outs: Vec<Slot> = self
            .ops
            .iter()
            .filter_map(|o| match &o.prologue {
                Some(p @ Prologue::AffineRelu { .. }) => Some(p.out()),
                _ => None,
            })
            .collect();
        outs.sort_unstable();
        outs.dedup();
        outs.len()
    }

    /// Whether an engine running every lowered op fused writes slot `s` (false for the outputs
    /// of fused ASLs and folded affines).
    pub fn writes(&self, s: Slot) -> bool {
        s == self.plan.input || self.ops.iter().any(|o| o.op.output() == s)
    }
}

impl Plan {
    /// Lower the plan with the rewrites `lowering` allows (see [the module](self)).
    pub fn lower(self, lowering: Lowering) -> LoweredPlan {
        let ops = &self.ops;
        let readers = |s: Slot| -> Vec<usize> {
            (0..ops.len())
                .filter(|&i| ops[i].inputs().contains(&s))
                .collect()
        };
        let kept = |s: Slot| [self.input, self.logits, self.probs].contains(&s);
        // Op i is an ASL that runs inside op i + 1.
        let fuses = |i: usize| -> bool {
            let Op::Shift { input, out, .. } = &ops[i] else {
                return false;
            };
            lowering.fuse_asl
                && self.slots[*input].c <= lowering.max_fused_channels
                && !kept(*out)
                && input != out
                && matches!(ops.get(i + 1), Some(Op::Conv1x1 { input: x, stride: 1, residual, .. })
                    if x == out && *residual != Some(*out))
                && readers(*out) == [i + 1]
        };
        // Op i is an affine + ReLU that runs inside every op reading it.
        let folds = |i: usize| -> bool {
            let Op::Affine {
                input,
                relu: true,
                out,
                ..
            } = &ops[i]
            else {
                return false;
            };
            let r = readers(*out);
            lowering.fold_affine_relu
                && !kept(*out)
                && input != out
                && !r.is_empty()
                && r.iter().all(|&j| {
                    j > i
                        && matches!(&ops[j], Op::Conv1x1 { input: x, residual, .. }
                            if x == out && *residual != Some(*out))
                })
        };
        let fused: Vec<bool> = (0..ops.len()).map(fuses).collect();
        let folded: Vec<bool> = (0..ops.len()).map(folds).collect();
        let mut lowered = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            if fused[i] || folded[i] {
                continue;
            }
            let prologue = match op {
                Op::Conv1x1 { input, .. } => {
                    if i > 0 && fused[i - 1] {
                        match ops[i - 1] {
                            Op::Shift {
                                input,
                                shift,
                                stride,
                                out,
                            } => Some(Prologue::Shift {
                                input,
                                shift,
                                stride,
                                out,
                            }),
                            _ => None,
                        }
                    } else {
                        (0..i).find_map(|j| match ops[j] {
                            Op::Affine {
                                input: a,
                                norm,
                                out,
                                ..
                            } if folded[j] && out == *input => Some(Prologue::AffineRelu {
                                input: a,
                                norm,
                                out,
                            }),
                            _ => None,
                        })
                    }
                }
                _ => None,
            };
            lowered.push(LoweredOp {
                op: op.clone(),
                prologue,
            });
        }
        LoweredPlan {
            plan: self,
            ops: lowered,
            lowering,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::Shape4;

    /// A hand-made plan: slot 0 (c channels) -> shift -> slot 1 -> 1x1 (stride, residual)
    /// -> slot 2, the logits.
    fn shift_then_conv(c: usize, stride: usize, residual: Option<Slot>) -> Plan {
        let xs = Shape4::new(1, c, 4, 4);
        Plan {
            ops: vec![
                Op::Shift {
                    input: 0,
                    shift: ParamId::Shift(0),
                    stride: 1,
                    out: 1,
                },
                Op::Conv1x1 {
                    input: 1,
                    weight: ParamId::Reduce(0),
                    stride,
                    affine: None,
                    bias: None,
                    residual,
                    relu: false,
                    out: 2,
                },
            ],
            slots: vec![xs, xs, xs.strided(c, stride)],
            input: 0,
            logits: 2,
            probs: 2,
        }
    }

    #[test]
    fn an_asl_fuses_into_the_stride_1_convolution_reading_it_up_to_the_channel_limit() {
        let limit = |max_fused_channels| Lowering {
            fuse_asl: true,
            max_fused_channels,
            fold_affine_relu: true,
        };
        let fused = shift_then_conv(8, 1, None).lower(limit(8));
        assert_eq!(fused.ops.len(), 1);
        assert_eq!(fused.fused_asls(), 1);
        assert_eq!(fused.ops[0].reads(), [0]);
        assert!(!fused.writes(1), "the shifted tensor is never written");
        assert!(matches!(
            fused.ops[0].prologue,
            Some(Prologue::Shift {
                input: 0,
                out: 1,
                ..
            })
        ));
        // One channel over the limit, a strided reader, or the shifted tensor read twice (as
        // input and residual): the ASL runs on its own.
        for plan in [
            shift_then_conv(9, 1, None),
            shift_then_conv(8, 2, None),
            shift_then_conv(8, 1, Some(1)),
        ] {
            let lowered = plan.clone().lower(limit(8));
            assert_eq!(lowered.fused_asls(), 0, "{:?}", plan.ops[1]);
            assert_eq!(lowered.ops.len(), 2);
            assert!(lowered.writes(1));
        }
        assert_eq!(
            shift_then_conv(8, 1, None)
                .lower(Lowering::NONE)
                .fused_asls(),
            0
        );
    }

    #[test]
    fn no_lowering_keeps_the_plan_and_every_lowering_keeps_its_outputs() {
        let config = crate::model::ArchConfig::asnet20(4, 2, 3, 8, 10);
        let plan = Plan::new(&config, 1);
        let none = plan.clone().lower(Lowering::NONE);
        assert_eq!(none.ops.len(), plan.ops.len());
        assert!(
            none.ops
                .iter()
                .zip(&plan.ops)
                .all(|(l, op)| l.prologue.is_none() && &l.op == op)
        );
        assert!((0..plan.slots.len()).all(|s| none.writes(s)));
        let all = plan.clone().lower(Lowering::ALL);
        assert_eq!(all.fused_asls(), config.shift_layers());
        // Every block's pre-activation folds; the head's (read by the pooling) does not.
        assert_eq!(all.folded_affines(), config.blocks().len());
        assert_eq!(
            all.ops.len(),
            plan.ops.len() - all.fused_asls() - all.folded_affines()
        );
        for s in [plan.input, plan.logits, plan.probs] {
            assert!(all.writes(s), "slot {s}");
        }
    }
}
