//! Training runs the inference plan ([`Plan`]): the forward pass executes the plan's ops on a
//! [`Backend`] keeping every activation (the tape), with BatchNorm on the batch's statistics
//! wherever the plan has an affine layer; the loss replaces the softmax; the backward pass
//! walks the ops in reverse with one rule per op kind ([`Graph::backward_op`]). A new block
//! kind needs its op in [`crate::model::plan`] with a forward and a backward rule here (and
//! its kernels behind [`Backend`]); no training code of its own.

use super::backend::{Backend, BnBackwardArgs, Conv1x1Args, LinearArgs};
use crate::error::{Error, Result};
use crate::model::{Norm, Op, ParamId, Plan, Slot};
use crate::shape::Shape4;
use std::collections::{BTreeMap, HashMap};

/// What one training-mode forward and backward pass produced, on the backend.
pub(crate) struct Pass<T> {
    /// `[2, 1]`: the batch's summed loss and its number of right top-1 predictions.
    pub totals: T,
    /// The gradient of every parameter (an affine layer's scale and bias together).
    pub grads: BTreeMap<GradOf, T>,
    /// Each affine layer's batch statistics (`[3, C]`: mean, biased variance, inverse
    /// standard deviation) and the number of values per channel they were taken over.
    pub batch_stats: Vec<(Norm, T, usize)>,
}

/// A gradient being gathered: one parameter's, or an affine layer's `[2, C]` (dgamma, dbeta).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum GradOf {
    Param(ParamId),
    Norm(Norm),
}

/// What a BatchNorm's backward rule needs beyond the op's input and output.
struct NormTape<T> {
    /// The batch statistics `[3, C]` (`None`: the frozen ones of [`Graph::frozen`]).
    stats: Option<T>,
    /// For a 1x1 convolution with a BatchNorm epilogue: the convolution's output before it.
    pre: Option<T>,
}

/// One training pass in progress on backend `B`.
struct Graph<'p, B: Backend> {
    plan: &'p Plan,
    params: &'p HashMap<ParamId, B::Tensor>,
    /// Per affine layer, frozen statistics `[3, C]` to normalize with instead of the batch's
    /// ([`super::NormMode::Frozen`]); `None` for BatchNorm on batch statistics.
    frozen: Option<&'p BTreeMap<Norm, B::Tensor>>,
    /// Activations by slot (the tape).
    slots: Vec<Option<B::Tensor>>,
    /// Per op with a BatchNorm: what its backward rule needs.
    norm: Vec<Option<NormTape<B::Tensor>>>,
    /// Gradients by slot, summed over the slot's readers.
    dslots: Vec<Option<B::Tensor>>,
    grads: BTreeMap<GradOf, B::Tensor>,
}

fn unsupported(op: &str, what: &str) -> Error {
    Error::invalid(
        "train",
        format!("{op}: {what} has no training rule (see src/train/graph.rs)"),
    )
}

/// One forward and backward pass of `plan` (for `labels.len()` images) in training mode on
/// `be`, with the parameters `params` (on `be`); starts a step ([`Backend::begin_step`]).
/// Everything it returns stays on the backend.
///
/// With `frozen` (per affine layer, the statistics `[3, C]` to use), the affine layers
/// normalize with those constants instead of the batch's, and no batch statistics come back.
pub(crate) fn forward_backward<B: Backend>(
    be: &mut B,
    plan: &Plan,
    params: &HashMap<ParamId, B::Tensor>,
    frozen: Option<&BTreeMap<Norm, B::Tensor>>,
    input: &[f32],
    labels: &[u32],
) -> Result<Pass<B::Tensor>> {
    be.begin_step()?;
    let mut g = Graph {
        plan,
        params,
        frozen,
        slots: (0..plan.slots.len()).map(|_| None).collect(),
        norm: (0..plan.ops.len()).map(|_| None).collect(),
        dslots: (0..plan.slots.len()).map(|_| None).collect(),
        grads: BTreeMap::new(),
    };
    let xs = plan.slots[plan.input];
    g.slots[plan.input] = Some(be.upload_batch(&xs.dims(), input)?);
    for (i, op) in plan.ops.iter().enumerate() {
        g.forward_op(be, i, op)?;
    }
    let k = plan.slots[plan.logits].c;
    let n = labels.len();
    let (dlogits, _, per_image) = be.softmax_cross_entropy(g.slot(plan.logits)?, labels, k)?;
    // The batch's totals on the backend, as the weight gradient of a 1x1 convolution reading
    // a one-channel input of ones (two values come back, not one pair per image).
    let ones_shape = Shape4::new(n, 1, 1, 1);
    let ones = be.ones(&ones_shape.dims())?;
    let totals = be.conv1x1_backward_weight(&per_image, &ones, ones_shape, 2, 1)?;
    g.dslots[plan.logits] = Some(dlogits);
    for (i, op) in plan.ops.iter().enumerate().rev() {
        g.backward_op(be, i, op)?;
    }
    let mut batch_stats = Vec::new();
    for (i, op) in plan.ops.iter().enumerate() {
        if frozen.is_some() {
            break;
        }
        let (norm, shape) = match op {
            Op::Affine { norm, input, .. } => (*norm, plan.slots[*input]),
            Op::Conv1x1 {
                affine: Some(norm),
                out,
                ..
            } => (*norm, plan.slots[*out]),
            _ => continue,
        };
        let stats = g.norm[i].take().and_then(|n| n.stats).ok_or_else(missing)?;
        batch_stats.push((norm, stats, shape.n * shape.plane()));
    }
    Ok(Pass {
        totals,
        grads: g.grads,
        batch_stats,
    })
}

fn missing() -> Error {
    Error::invalid("train", "a tensor of the training pass is missing")
}

impl<B: Backend> Graph<'_, B> {
    fn slot(&self, s: Slot) -> Result<&B::Tensor> {
        self.slots[s].as_ref().ok_or_else(missing)
    }

    fn param(&self, id: ParamId) -> Result<&B::Tensor> {
        self.params
            .get(&id)
            .ok_or_else(|| Error::invalid("train", format!("parameter `{id}` is missing")))
    }

    /// The affine layer `norm` (then ReLU) on `x`: BatchNorm on the batch's statistics, or on
    /// the frozen ones; `(y, the statistics used)`.
    fn normalize(
        &self,
        be: &mut B,
        x: &B::Tensor,
        xs: Shape4,
        norm: Norm,
    ) -> Result<(B::Tensor, Option<B::Tensor>)> {
        let (gamma, beta) = (
            self.param(ParamId::Scale(norm))?,
            self.param(ParamId::Bias(norm))?,
        );
        match self.frozen {
            None => {
                let (y, stats) = be.bn_relu_train(x, xs, gamma, beta)?;
                Ok((y, Some(stats)))
            }
            Some(frozen) => {
                let stats = frozen.get(&norm).ok_or_else(missing)?;
                Ok((be.bn_relu_frozen(x, xs, gamma, beta, stats)?, None))
            }
        }
    }

    /// The statistics the affine layer `norm` of op `op_index` normalized with.
    fn stats_of(&self, op_index: usize, norm: Norm) -> Result<&B::Tensor> {
        let tape = self.norm[op_index].as_ref().ok_or_else(missing)?;
        match (&tape.stats, self.frozen) {
            (Some(stats), _) => Ok(stats),
            (None, Some(frozen)) => frozen.get(&norm).ok_or_else(missing),
            (None, None) => Err(missing()),
        }
    }

    /// Add `d` to the gradient of slot `s`.
    fn accumulate(&mut self, be: &mut B, s: Slot, d: B::Tensor) -> Result<()> {
        match &mut self.dslots[s] {
            Some(acc) => be.add_assign(acc, &d),
            none => {
                *none = Some(d);
                Ok(())
            }
        }
    }

    /// Add `d` to the gradient of a parameter or an affine layer.
    fn accumulate_grad(&mut self, be: &mut B, of: GradOf, d: B::Tensor) -> Result<()> {
        match self.grads.get_mut(&of) {
            Some(acc) => be.add_assign(acc, &d),
            None => {
                self.grads.insert(of, d);
                Ok(())
            }
        }
    }

    /// Forward rule of op `i`: its output into the tape (and what its backward rule needs).
    fn forward_op(&mut self, be: &mut B, i: usize, op: &Op) -> Result<()> {
        let plan = self.plan;
        let shapes = &plan.slots;
        let (out, y) = match op {
            Op::Conv3x3 {
                input,
                weight,
                stride,
                out,
            } => {
                let cout = shapes[*out].c;
                let x = self.slot(*input)?;
                let y = be.conv3x3(x, shapes[*input], self.param(*weight)?, cout, *stride)?;
                (*out, y)
            }
            Op::Affine {
                input,
                norm,
                relu,
                out,
            } => {
                if !relu {
                    return Err(unsupported("affine", "BatchNorm without ReLU"));
                }
                let (y, stats) = self.normalize(be, self.slot(*input)?, shapes[*input], *norm)?;
                self.norm[i] = Some(NormTape { stats, pre: None });
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
                let (xs, ys) = (shapes[*input], shapes[*out]);
                let (x, w) = (self.slot(*input)?, self.param(*weight)?);
                if let Some(b) = bias {
                    if xs.plane() != 1 || *stride != 1 || affine.is_some() || *relu {
                        return Err(unsupported(
                            "conv1x1",
                            "a bias other than the classifier's (1x1 input, nothing else)",
                        ));
                    }
                    let a = LinearArgs {
                        x,
                        w,
                        n: xs.n,
                        c: xs.c,
                        k: ys.c,
                    };
                    let mut y = be.linear(a, self.param(*b)?)?;
                    if let Some(r) = residual {
                        be.add_assign(&mut y, self.slot(*r)?)?;
                    }
                    (*out, y)
                } else if let Some(norm) = affine {
                    if !relu || residual.is_some() {
                        return Err(unsupported(
                            "conv1x1",
                            "a BatchNorm epilogue without ReLU or with a residual",
                        ));
                    }
                    let z = be.conv1x1(Conv1x1Args {
                        x,
                        xs,
                        w,
                        cout: ys.c,
                        stride: *stride,
                        residual: None,
                    })?;
                    let (y, stats) = self.normalize(be, &z, ys, *norm)?;
                    self.norm[i] = Some(NormTape {
                        stats,
                        pre: Some(z),
                    });
                    (*out, y)
                } else {
                    if *relu {
                        return Err(unsupported("conv1x1", "a ReLU without BatchNorm"));
                    }
                    let residual = residual.map(|r| self.slot(r)).transpose()?;
                    let y = be.conv1x1(Conv1x1Args {
                        x,
                        xs,
                        w,
                        cout: ys.c,
                        stride: *stride,
                        residual,
                    })?;
                    (*out, y)
                }
            }
            Op::Shift {
                input,
                shift,
                stride,
                out,
            } => {
                let x = self.slot(*input)?;
                let y = be.shift(x, shapes[*input], self.param(*shift)?, *stride)?;
                (*out, y)
            }
            Op::Depthwise3x3 {
                input,
                weight,
                stride,
                out,
            } => {
                let x = self.slot(*input)?;
                let y = be.depthwise3x3(x, shapes[*input], self.param(*weight)?, *stride)?;
                (*out, y)
            }
            Op::AvgPool { input, out } => {
                let y = be.avg_pool(self.slot(*input)?, shapes[*input])?;
                (*out, y)
            }
            // Training ends at the logits: the loss takes the softmax's place.
            Op::Softmax { .. } => return Ok(()),
        };
        self.slots[out] = Some(y);
        Ok(())
    }

    /// Backward rule of op `i`: the gradients of its inputs and parameters from its output's.
    fn backward_op(&mut self, be: &mut B, op_index: usize, op: &Op) -> Result<()> {
        let plan = self.plan;
        let shapes = &plan.slots;
        let out = match op {
            Op::Conv3x3 { out, .. }
            | Op::Affine { out, .. }
            | Op::Conv1x1 { out, .. }
            | Op::Shift { out, .. }
            | Op::Depthwise3x3 { out, .. }
            | Op::AvgPool { out, .. }
            | Op::Softmax { out, .. } => *out,
        };
        // Nothing the loss depends on (the softmax's probabilities).
        let Some(dy) = self.dslots[out].take() else {
            return Ok(());
        };
        match op {
            Op::Conv3x3 {
                input,
                weight,
                stride,
                ..
            } => {
                if *input != self.plan.input {
                    return Err(unsupported("conv3x3", "an input gradient (only the stem)"));
                }
                let (xs, cout) = (shapes[*input], shapes[out].c);
                let dw = be.conv3x3_backward_weight(&dy, self.slot(*input)?, xs, cout, *stride)?;
                self.accumulate_grad(be, GradOf::Param(*weight), dw)?;
            }
            Op::Affine { input, norm, .. } => {
                let (dx, dparams) = {
                    let stats = self.stats_of(op_index, *norm)?;
                    let (x, y) = (self.slot(*input)?, self.slot(out)?);
                    let gamma = self.param(ParamId::Scale(*norm))?;
                    be.bn_relu_backward(BnBackwardArgs {
                        dy: &dy,
                        x,
                        y,
                        xs: shapes[*input],
                        gamma,
                        stats,
                        frozen: self.frozen.is_some(),
                    })?
                };
                self.accumulate_grad(be, GradOf::Norm(*norm), dparams)?;
                self.accumulate(be, *input, dx)?;
            }
            Op::Conv1x1 {
                input,
                weight,
                stride,
                affine,
                bias,
                residual,
                ..
            } => {
                let (xs, ys) = (shapes[*input], shapes[out]);
                let dz = match affine {
                    Some(norm) => {
                        let (dz, dparams) = {
                            let tape = self.norm[op_index].as_ref().ok_or_else(missing)?;
                            let z = tape.pre.as_ref().ok_or_else(missing)?;
                            let stats = self.stats_of(op_index, *norm)?;
                            let gamma = self.param(ParamId::Scale(*norm))?;
                            be.bn_relu_backward(BnBackwardArgs {
                                dy: &dy,
                                x: z,
                                y: self.slot(out)?,
                                xs: ys,
                                gamma,
                                stats,
                                frozen: self.frozen.is_some(),
                            })?
                        };
                        self.accumulate_grad(be, GradOf::Norm(*norm), dparams)?;
                        dz
                    }
                    None => dy,
                };
                let (x, w) = (self.slot(*input)?, self.param(*weight)?);
                let (dx, dw) = if let Some(b) = bias {
                    let a = LinearArgs {
                        x,
                        w,
                        n: xs.n,
                        c: xs.c,
                        k: ys.c,
                    };
                    let (dx, dw) = be.linear_backward(&dz, a)?;
                    // The bias gradient: the output gradient summed per channel, as the weight
                    // gradient of a 1x1 convolution reading a one-channel input of ones.
                    let ones_shape = Shape4::new(ys.n, 1, ys.h, ys.w);
                    let ones = be.ones(&ones_shape.dims())?;
                    let db = be.conv1x1_backward_weight(&dz, &ones, ones_shape, ys.c, 1)?;
                    self.accumulate_grad(be, GradOf::Param(*b), db)?;
                    (dx, dw)
                } else {
                    let dx = be.conv1x1_backward_input(&dz, xs, w, ys.c, *stride)?;
                    let dw = be.conv1x1_backward_weight(&dz, x, xs, ys.c, *stride)?;
                    (dx, dw)
                };
                self.accumulate_grad(be, GradOf::Param(*weight), dw)?;
                self.accumulate(be, *input, dx)?;
                // (The forward rule allows a residual only without an epilogue BatchNorm, so
                // the residual's gradient is the output's.)
                if let Some(r) = residual {
                    self.accumulate(be, *r, dz)?;
                }
            }
            Op::Shift {
                input,
                shift,
                stride,
                ..
            } => {
                let (dx, dshift) = {
                    let (x, sh) = (self.slot(*input)?, self.param(*shift)?);
                    be.shift_backward(x, shapes[*input], &dy, sh, *stride)?
                };
                self.accumulate_grad(be, GradOf::Param(*shift), dshift)?;
                self.accumulate(be, *input, dx)?;
            }
            Op::Depthwise3x3 {
                input,
                weight,
                stride,
                ..
            } => {
                let (dx, dw) = {
                    let (x, w) = (self.slot(*input)?, self.param(*weight)?);
                    be.depthwise3x3_backward(x, shapes[*input], &dy, w, *stride)?
                };
                self.accumulate_grad(be, GradOf::Param(*weight), dw)?;
                self.accumulate(be, *input, dx)?;
            }
            Op::AvgPool { input, .. } => {
                let dx = be.avg_pool_backward(&dy, shapes[*input])?;
                self.accumulate(be, *input, dx)?;
            }
            Op::Softmax { .. } => {
                return Err(unsupported("softmax", "a gradient of the probabilities"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::StageConfig;
    use crate::model::{ArchConfig, Model};
    use crate::train::backend::CpuBackend;
    use crate::train::cpu_tensor::CpuTensor;

    /// One widening block (a projection shortcut) on 1 x 6 x 6 images, 3 classes.
    fn setup() -> (Plan, HashMap<ParamId, Vec<f32>>, Vec<f32>, Vec<u32>) {
        let mut config = ArchConfig::asnet20(2, 2, 1, 6, 3);
        config.stages = vec![StageConfig {
            blocks: 1,
            width: 4,
            stride: 1,
        }];
        let model = Model::synthetic(&config, 7).unwrap();
        let params = config
            .params()
            .into_iter()
            .map(|(id, _)| (id, model.param(id).unwrap().data.clone()))
            .collect();
        let input = (0..2 * 36)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 8.0)
            .collect();
        (Plan::new(&config, 2), params, input, vec![2, 0])
    }

    fn upload(
        be: &mut CpuBackend,
        params: &HashMap<ParamId, Vec<f32>>,
    ) -> HashMap<ParamId, CpuTensor> {
        params
            .iter()
            .map(|(&id, v)| (id, be.upload(&[v.len()], v).unwrap()))
            .collect()
    }

    /// The batch's mean loss (what the gradients are of).
    fn loss(
        plan: &Plan,
        params: &HashMap<ParamId, Vec<f32>>,
        input: &[f32],
        labels: &[u32],
    ) -> f64 {
        let mut be = CpuBackend;
        let on = upload(&mut be, params);
        let pass = forward_backward(&mut be, plan, &on, None, input, labels).unwrap();
        f64::from(be.download(&[&pass.totals]).unwrap()[0][0]) / labels.len() as f64
    }

    #[test]
    fn parameter_gradients_match_finite_differences_of_the_loss() {
        let (plan, params, input, labels) = setup();
        let mut be = CpuBackend;
        let on = upload(&mut be, &params);
        let pass = forward_backward(&mut be, &plan, &on, None, &input, &labels).unwrap();
        for id in [
            ParamId::StemWeight,
            ParamId::Expand(0),
            ParamId::Reduce(0),
            ParamId::Shortcut(0),
            ParamId::FcWeight,
            ParamId::FcBias,
        ] {
            let grad = &be.download(&[&pass.grads[&GradOf::Param(id)]]).unwrap()[0];
            assert_eq!(grad.len(), params[&id].len(), "{id}");
            for k in [0, grad.len() / 2, grad.len() - 1] {
                let h = 1e-3;
                let nudged = |d: f32| {
                    let mut p = params.clone();
                    p.get_mut(&id).unwrap()[k] += d;
                    loss(&plan, &p, &input, &labels)
                };
                let numeric = (nudged(h) - nudged(-h)) / (2.0 * f64::from(h));
                let analytic = f64::from(grad[k]);
                assert!(
                    (analytic - numeric).abs() <= 2e-3 + 2e-2 * numeric.abs(),
                    "{id}[{k}]: {analytic} vs finite differences {numeric}"
                );
            }
        }
    }

    #[test]
    fn batch_statistics_come_back_per_affine_layer_unless_frozen() {
        let (plan, params, input, labels) = setup();
        let mut be = CpuBackend;
        let on = upload(&mut be, &params);
        let pass = forward_backward(&mut be, &plan, &on, None, &input, &labels).unwrap();
        // Pre-activation, the expansion's epilogue, the head.
        let norms: Vec<Norm> = pass.batch_stats.iter().map(|(n, _, _)| *n).collect();
        assert_eq!(norms, [Norm::Pre(0), Norm::Mid(0), Norm::Head]);
        // Per channel over the batch's 2 x 6 x 6 positions.
        assert!(pass.batch_stats.iter().all(|(_, _, count)| *count == 72));
        let frozen: BTreeMap<Norm, CpuTensor> = norms
            .iter()
            .map(|&n| {
                let c = params[&ParamId::Scale(n)].len();
                let stats: Vec<f32> = [vec![0.0; c], vec![1.0; c], vec![1.0; c]].concat();
                (n, be.upload(&[3, c], &stats).unwrap())
            })
            .collect();
        let pass = forward_backward(&mut be, &plan, &on, Some(&frozen), &input, &labels).unwrap();
        assert!(pass.batch_stats.is_empty());
    }

    #[test]
    fn a_missing_parameter_is_an_error_naming_it() {
        let (plan, params, input, labels) = setup();
        let mut be = CpuBackend;
        let mut on = upload(&mut be, &params);
        on.remove(&ParamId::Reduce(0));
        let err = forward_backward(&mut be, &plan, &on, None, &input, &labels)
            .err()
            .expect("a pass without a parameter");
        assert!(err.to_string().contains("blocks.0"), "{err}");
    }
}
