//! The operations a training step needs, behind one trait, so that the same training code
//! (the plan's forward and backward rules in `graph.rs`, the optimiser step of
//! [`Session`](super::Session)) runs on the CPU ([`CpuBackend`]: rayon + ndarray GEMMs) and on
//! the GPU ([`GpuBackend`](super::GpuBackend): the WGSL kernels).
//!
//! Tensors are NCHW `f32`. Each operation returns fresh tensors (a backend may recycle the
//! storage of the previous step's: see [`Backend::begin_step`]). The training state
//! (parameters, momentum, BatchNorm running statistics) is made of backend tensors too, updated
//! in place by [`Backend::sgd_step`] and [`Backend::update_running_stats`], so a run whose
//! state lives on the device never copies it to the host but to write a checkpoint.

use super::cpu_tensor::{CpuTensor, uninit};
use super::ops;
use super::optim::{self, SgdRule};
use crate::cpu::fast;
use crate::error::{Error, Result};
use crate::shape::Shape4;

/// The operands of [`Backend::conv1x1`]: a 1x1 convolution with stride `stride` of `x`
/// (shape `xs`) by `w` (`[cout, xs.c]`), then its epilogue in this order: plus `bias` (`[cout]`)
/// per channel, plus `residual` (of the output's shape), ReLU; each when given.
#[derive(Debug)]
pub struct Conv1x1Args<'a, T> {
    /// The input.
    pub x: &'a T,
    /// Its shape.
    pub xs: Shape4,
    /// The weight `[cout, xs.c]`.
    pub w: &'a T,
    /// Output channels.
    pub cout: usize,
    /// Stride.
    pub stride: usize,
    /// Added per channel when given (`[cout]`).
    pub bias: Option<&'a T>,
    /// Added to the output when given.
    pub residual: Option<&'a T>,
    /// Clamp negative results to zero, last.
    pub relu: bool,
}

/// The operands of [`Backend::bn_backward`]: what [`Backend::bn_train`] (or
/// [`Backend::bn_frozen`]) read and produced, and the gradient of its output.
#[derive(Debug)]
pub struct BnBackwardArgs<'a, T> {
    /// The output gradient.
    pub dy: &'a T,
    /// The forward input.
    pub x: &'a T,
    /// The forward output.
    pub y: &'a T,
    /// Their shape.
    pub xs: Shape4,
    /// The scale `[C]`.
    pub gamma: &'a T,
    /// The statistics `[3, C]` the forward pass used.
    pub stats: &'a T,
    /// Whether the forward pass was [`Backend::bn_frozen`] (statistics as constants).
    pub frozen: bool,
    /// Whether the forward pass had a ReLU after the affine (the gradient passes where
    /// `y > 0` only).
    pub relu: bool,
}

/// The operands of [`Backend::linear`] and [`Backend::linear_backward`]: `[n, c]` features
/// `x`, the classifier weight `w` (`[k, c]`).
#[derive(Debug)]
pub struct LinearArgs<'a, T> {
    /// The features `[n, c]`.
    pub x: &'a T,
    /// The weight `[k, c]`.
    pub w: &'a T,
    /// Images.
    pub n: usize,
    /// Features per image.
    pub c: usize,
    /// Classes.
    pub k: usize,
}

/// One parameter tensor's optimiser step for [`Backend::sgd_step`], in place.
#[derive(Debug)]
pub struct SgdStep<'a, T> {
    /// The parameter.
    pub weight: &'a mut T,
    /// Its momentum buffer.
    pub velocity: &'a mut T,
    /// The gradient: `weight`'s length of values from element `grad_offset` on.
    pub grad: &'a T,
    /// Where the gradient starts in `grad` (an affine layer's `[2, C]` gradient holds the
    /// scale's, then the bias's).
    pub grad_offset: usize,
    /// How the parameter learns.
    pub rule: SgdRule,
    /// The step's base learning rate. Between two [`Backend::begin_step`] calls every step
    /// should use the same one (a device may keep it in one buffer written per step).
    pub lr: f32,
}

/// BatchNorm's running-statistics update for [`Backend::update_running_stats`], in place (the
/// rule of [`ops::update_running_stats`]).
#[derive(Debug)]
pub struct RunningStatsStep<'a, T> {
    /// The running mean `[C]`.
    pub mean: &'a mut T,
    /// The running variance `[C]`.
    pub var: &'a mut T,
    /// The batch statistics `[3, C]` of [`Backend::bn_train`].
    pub batch: &'a T,
    /// The number of values per channel they were taken over.
    pub count: usize,
}

/// A device that runs the layers of a training step.
pub trait Backend {
    /// A tensor living on the device.
    type Tensor;

    /// A short description for logs ("CPU, 2 threads", the adapter name).
    fn describe(&self) -> String;
    /// Copy host data of shape `dims` to the device: a tensor of its own (the training state).
    fn upload(&mut self, dims: &[usize], data: &[f32]) -> Result<Self::Tensor>;
    /// Copy a step's data (its input batch) to the device: like [`Backend::upload`], but the
    /// tensor need only live until the next [`Backend::begin_step`] (a device writes it into
    /// recycled storage). The default is [`Backend::upload`].
    fn upload_batch(&mut self, dims: &[usize], data: &[f32]) -> Result<Self::Tensor> {
        self.upload(dims, data)
    }
    /// Overwrite the values of a tensor of the training state (one [`Backend::upload`] made)
    /// with `data`, of its length, after every operation recorded so far.
    fn overwrite(&mut self, t: &mut Self::Tensor, data: &[f32]) -> Result<()>;
    /// Copy tensors back to the host (in one round trip where the device allows).
    fn download(&mut self, tensors: &[&Self::Tensor]) -> Result<Vec<Vec<f32>>>;
    /// A training step starts: the tensors the operations returned since the last call are no
    /// longer used, so a device may hand their storage out again. The same sequence of
    /// operations then gets the same storage, and a device that keeps what it prepared for
    /// each launch reuses that too. The default does nothing.
    fn begin_step(&mut self) -> Result<()> {
        Ok(())
    }
    /// One parameter tensor's optimiser step, in place ([`SgdStep`]; the rule of
    /// [`optim::sgd_update`]).
    fn sgd_step(&mut self, step: SgdStep<'_, Self::Tensor>) -> Result<()>;
    /// BatchNorm's running-statistics update, in place ([`RunningStatsStep`]).
    fn update_running_stats(&mut self, step: RunningStatsStep<'_, Self::Tensor>) -> Result<()>;

    /// 3x3 convolution, pad 1, stride `s`, no bias: `w` is `[cout, xs.c, 3, 3]`.
    fn conv3x3(
        &mut self,
        x: &Self::Tensor,
        xs: Shape4,
        w: &Self::Tensor,
        cout: usize,
        s: usize,
    ) -> Result<Self::Tensor>;
    /// Input gradient of [`Backend::conv3x3`] (the transposed convolution; shape `xs`).
    fn conv3x3_backward_input(
        &mut self,
        dy: &Self::Tensor,
        xs: Shape4,
        w: &Self::Tensor,
        cout: usize,
        s: usize,
    ) -> Result<Self::Tensor>;
    /// Weight gradient of [`Backend::conv3x3`].
    fn conv3x3_backward_weight(
        &mut self,
        dy: &Self::Tensor,
        x: &Self::Tensor,
        xs: Shape4,
        cout: usize,
        s: usize,
    ) -> Result<Self::Tensor>;
    /// 1x1 convolution ([`Conv1x1Args`]).
    fn conv1x1(&mut self, a: Conv1x1Args<'_, Self::Tensor>) -> Result<Self::Tensor>;
    /// Weight gradient of [`Backend::conv1x1`] (summed over the batch).
    fn conv1x1_backward_weight(
        &mut self,
        dy: &Self::Tensor,
        x: &Self::Tensor,
        xs: Shape4,
        cout: usize,
        s: usize,
    ) -> Result<Self::Tensor>;
    /// Input gradient of [`Backend::conv1x1`] (shape `xs`; zero where the stride skipped).
    fn conv1x1_backward_input(
        &mut self,
        dy: &Self::Tensor,
        xs: Shape4,
        w: &Self::Tensor,
        cout: usize,
        s: usize,
    ) -> Result<Self::Tensor>;
    /// BatchNorm with batch statistics, then ReLU when `relu`: `(y, stats)` with `stats`
    /// `[3, C]` (mean, biased variance, `1 / sqrt(var + eps)`).
    fn bn_train(
        &mut self,
        x: &Self::Tensor,
        xs: Shape4,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        relu: bool,
    ) -> Result<(Self::Tensor, Self::Tensor)>;
    /// [`Backend::bn_train`] with given statistics `stats` `[3, C]` (mean, variance,
    /// `1 / sqrt(var + eps)`: the running ones, frozen) instead of the batch's.
    fn bn_frozen(
        &mut self,
        x: &Self::Tensor,
        xs: Shape4,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        stats: &Self::Tensor,
        relu: bool,
    ) -> Result<Self::Tensor>;
    /// Backward of [`Backend::bn_train`] (or, with [`BnBackwardArgs::frozen`], of
    /// [`Backend::bn_frozen`]): `(dx, dparams)` with `dparams` `[2, C]`: dgamma, then dbeta.
    fn bn_backward(
        &mut self,
        a: BnBackwardArgs<'_, Self::Tensor>,
    ) -> Result<(Self::Tensor, Self::Tensor)>;
    /// The Active Shift Layer (`shift`: `[2, C]`, all x then all y) with stride `s`.
    fn shift(
        &mut self,
        x: &Self::Tensor,
        xs: Shape4,
        shift: &Self::Tensor,
        s: usize,
    ) -> Result<Self::Tensor>;
    /// Backward of [`Backend::shift`]: `(dx, dshift)`, the shift gradient summed over the batch.
    fn shift_backward(
        &mut self,
        x: &Self::Tensor,
        xs: Shape4,
        dout: &Self::Tensor,
        shift: &Self::Tensor,
        s: usize,
    ) -> Result<(Self::Tensor, Self::Tensor)>;
    /// 3x3 depthwise convolution (pad 1, stride `s`, `w` `[C, 1, 3, 3]`): the baseline block.
    fn depthwise3x3(
        &mut self,
        x: &Self::Tensor,
        xs: Shape4,
        w: &Self::Tensor,
        s: usize,
    ) -> Result<Self::Tensor>;
    /// Backward of [`Backend::depthwise3x3`]: `(dx, dw)`, the weight gradient summed over the
    /// batch.
    fn depthwise3x3_backward(
        &mut self,
        x: &Self::Tensor,
        xs: Shape4,
        dy: &Self::Tensor,
        w: &Self::Tensor,
        s: usize,
    ) -> Result<(Self::Tensor, Self::Tensor)>;
    /// `a += b`.
    fn add_assign(&mut self, a: &mut Self::Tensor, b: &Self::Tensor) -> Result<()>;
    /// `a = max(a + b, 0)`: a residual added after a BatchNorm, then ReLU.
    fn add_relu_assign(&mut self, a: &mut Self::Tensor, b: &Self::Tensor) -> Result<()>;
    /// The gradient `d` of a ReLU's output `y` through the ReLU, in place: `d` where `y > 0`,
    /// else 0.
    fn relu_backward_assign(&mut self, d: &mut Self::Tensor, y: &Self::Tensor) -> Result<()>;
    /// The sum of every channel of `x` (shape `xs`) over its images and pixels: `[C]` (a bias
    /// gradient; the batch's loss totals, per-image pairs read as `[N, 2, 1, 1]`).
    fn channel_sum(&mut self, x: &Self::Tensor, xs: Shape4) -> Result<Self::Tensor>;
    /// Global average pooling: `[N, C]`.
    fn avg_pool(&mut self, x: &Self::Tensor, xs: Shape4) -> Result<Self::Tensor>;
    /// Backward of [`Backend::avg_pool`]: shape `xs`.
    fn avg_pool_backward(&mut self, dy: &Self::Tensor, xs: Shape4) -> Result<Self::Tensor>;
    /// Fully connected layer ([`LinearArgs`]): `[n, k]` logits, plus the bias `b` (`[k]`).
    fn linear(&mut self, a: LinearArgs<'_, Self::Tensor>, b: &Self::Tensor)
    -> Result<Self::Tensor>;
    /// Backward of [`Backend::linear`] without the bias: `(dx, dw)` from the logits' gradient.
    fn linear_backward(
        &mut self,
        dy: &Self::Tensor,
        a: LinearArgs<'_, Self::Tensor>,
    ) -> Result<(Self::Tensor, Self::Tensor)>;
    /// Softmax cross-entropy of `[n, k]` logits against `labels` (each `< k`): the gradient of
    /// the mean loss, the bias gradient (its sum over the batch) and `[n, 2]` per-image
    /// (loss, 1 if the top-1 class is right).
    fn softmax_cross_entropy(
        &mut self,
        logits: &Self::Tensor,
        labels: &[u32],
        k: usize,
    ) -> Result<(Self::Tensor, Self::Tensor, Self::Tensor)>;
}

pub(crate) fn check_labels(labels: &[u32], k: usize) -> Result<()> {
    match labels.iter().find(|&&l| l as usize >= k) {
        Some(l) => Err(Error::invalid(
            "softmax_cross_entropy",
            format!("label {l} is not below the {k} classes"),
        )),
        None => Ok(()),
    }
}

/// The CPU: the fast CPU op set (`crate::cpu::fast`), multi-threaded with rayon, GEMMs through
/// ndarray.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

impl Backend for CpuBackend {
    type Tensor = CpuTensor;

    fn describe(&self) -> String {
        format!("CPU, {} threads", rayon::current_num_threads())
    }

    fn upload(&mut self, _dims: &[usize], data: &[f32]) -> Result<CpuTensor> {
        Ok(CpuTensor::from(data))
    }

    fn overwrite(&mut self, t: &mut CpuTensor, data: &[f32]) -> Result<()> {
        if t.len() != data.len() {
            return Err(Error::shape(
                "overwrite",
                "data",
                format!("{} values", t.len()),
                format!("{} values", data.len()),
            ));
        }
        t.copy_from_slice(data);
        Ok(())
    }

    fn download(&mut self, tensors: &[&CpuTensor]) -> Result<Vec<Vec<f32>>> {
        Ok(tensors.iter().map(|t| t.to_vec()).collect())
    }

    fn sgd_step(&mut self, a: SgdStep<'_, CpuTensor>) -> Result<()> {
        let len = a.weight.len();
        let grad = a
            .grad
            .get(a.grad_offset..)
            .and_then(|g| g.get(..len))
            .ok_or_else(|| {
                Error::shape(
                    "sgd",
                    "gradient",
                    format!("{len} values from element {}", a.grad_offset),
                    format!("{} values", a.grad.len()),
                )
            })?;
        optim::sgd_update(&a.rule, a.lr, a.weight, a.velocity, grad)
    }

    fn update_running_stats(&mut self, a: RunningStatsStep<'_, CpuTensor>) -> Result<()> {
        let c = a.mean.len();
        if a.var.len() != c || a.batch.len() != 3 * c {
            return Err(Error::shape(
                "running_stats",
                "statistics",
                format!("[3, {c}] and [{c}]"),
                format!("{} and {} values", a.batch.len(), a.var.len()),
            ));
        }
        ops::update_running_stats(a.mean, a.var, a.batch, a.count);
        Ok(())
    }

    fn conv3x3(
        &mut self,
        x: &CpuTensor,
        xs: Shape4,
        w: &CpuTensor,
        cout: usize,
        s: usize,
    ) -> Result<CpuTensor> {
        let mut y = uninit(xs.strided(cout, s).len());
        fast::conv3x3(x, xs, w, cout, s, &mut y, &mut Vec::new());
        Ok(y.into())
    }

    fn conv3x3_backward_input(
        &mut self,
        dy: &CpuTensor,
        xs: Shape4,
        w: &CpuTensor,
        cout: usize,
        s: usize,
    ) -> Result<CpuTensor> {
        let mut dx = uninit(xs.len());
        fast::conv3x3_backward_input(dy, xs, w, cout, s, &mut dx);
        Ok(dx.into())
    }

    fn conv3x3_backward_weight(
        &mut self,
        dy: &CpuTensor,
        x: &CpuTensor,
        xs: Shape4,
        cout: usize,
        s: usize,
    ) -> Result<CpuTensor> {
        Ok(fast::conv3x3_backward_weight(dy, x, xs, cout, s).into())
    }

    fn conv1x1(&mut self, a: Conv1x1Args<'_, CpuTensor>) -> Result<CpuTensor> {
        let Conv1x1Args {
            x,
            xs,
            w,
            cout,
            stride: s,
            bias,
            residual,
            relu,
        } = a;
        let mut y = uninit(xs.strided(cout, s).len());
        // Ones as the scale of a plain bias (the inference engine's form of it).
        let ones = bias.map(|_| vec![1.0f32; cout]);
        let ep = crate::cpu::Epilogue {
            affine: ones.as_deref().zip(bias.map(|b| &b[..])),
            residual: residual.map(|r| &r[..]),
            relu,
        };
        let layer = fast::Conv1x1Layer {
            w,
            cout,
            stride: s,
            ep: &ep,
        };
        fast::conv1x1(x, xs, layer, &mut y, &mut Vec::new());
        Ok(y.into())
    }

    fn conv1x1_backward_weight(
        &mut self,
        dy: &CpuTensor,
        x: &CpuTensor,
        xs: Shape4,
        cout: usize,
        s: usize,
    ) -> Result<CpuTensor> {
        Ok(fast::conv1x1_backward_weight(dy, x, xs, cout, s).into())
    }

    fn conv1x1_backward_input(
        &mut self,
        dy: &CpuTensor,
        xs: Shape4,
        w: &CpuTensor,
        cout: usize,
        s: usize,
    ) -> Result<CpuTensor> {
        let mut dx = uninit(xs.len());
        fast::conv1x1_backward_input(dy, xs, w, cout, s, &mut dx);
        Ok(dx.into())
    }

    fn bn_train(
        &mut self,
        x: &CpuTensor,
        xs: Shape4,
        gamma: &CpuTensor,
        beta: &CpuTensor,
        relu: bool,
    ) -> Result<(CpuTensor, CpuTensor)> {
        let (y, stats) = fast::bn_train(x, xs, gamma, beta, relu);
        Ok((y.into(), stats.into()))
    }

    fn bn_frozen(
        &mut self,
        x: &CpuTensor,
        xs: Shape4,
        gamma: &CpuTensor,
        beta: &CpuTensor,
        stats: &CpuTensor,
        relu: bool,
    ) -> Result<CpuTensor> {
        Ok(fast::bn_frozen(x, xs, gamma, beta, stats, relu).into())
    }

    fn bn_backward(&mut self, a: BnBackwardArgs<'_, CpuTensor>) -> Result<(CpuTensor, CpuTensor)> {
        let BnBackwardArgs {
            dy,
            x,
            y,
            xs,
            gamma,
            stats,
            frozen,
            relu,
        } = a;
        let mode = fast::BnMode { frozen, relu };
        let (dx, mut dparams, dbeta) = fast::bn_backward(dy, x, y, xs, gamma, stats, mode);
        dparams.extend(dbeta);
        Ok((dx.into(), dparams.into()))
    }

    fn shift(
        &mut self,
        x: &CpuTensor,
        xs: Shape4,
        shift: &CpuTensor,
        s: usize,
    ) -> Result<CpuTensor> {
        crate::cpu::check_len("shift", "shift", shift, 2 * xs.c, format!("[2, {}]", xs.c))?;
        let mut y = uninit(xs.strided(xs.c, s).len());
        fast::asl_forward(x, xs, shift, s, &mut y);
        Ok(y.into())
    }

    fn shift_backward(
        &mut self,
        x: &CpuTensor,
        xs: Shape4,
        dout: &CpuTensor,
        shift: &CpuTensor,
        s: usize,
    ) -> Result<(CpuTensor, CpuTensor)> {
        let (dx, dshift) = fast::shift_backward(x, xs, dout, shift, s)?;
        Ok((dx.into(), dshift.into()))
    }

    fn depthwise3x3(
        &mut self,
        x: &CpuTensor,
        xs: Shape4,
        w: &CpuTensor,
        s: usize,
    ) -> Result<CpuTensor> {
        crate::cpu::check_len(
            "depthwise3x3",
            "weight",
            w,
            9 * xs.c,
            format!("[{}, 1, 3, 3]", xs.c),
        )?;
        let mut y = uninit(xs.strided(xs.c, s).len());
        fast::depthwise3x3(x, xs, w, s, &mut y);
        Ok(y.into())
    }

    fn depthwise3x3_backward(
        &mut self,
        x: &CpuTensor,
        xs: Shape4,
        dy: &CpuTensor,
        w: &CpuTensor,
        s: usize,
    ) -> Result<(CpuTensor, CpuTensor)> {
        let (dx, dw) = fast::depthwise3x3_backward(x, xs, dy, w, s);
        Ok((dx.into(), dw.into()))
    }

    fn add_assign(&mut self, a: &mut CpuTensor, b: &CpuTensor) -> Result<()> {
        use rayon::prelude::*;
        // Blocks of 16K values: a residual gradient is megabytes, a parameter's a few values.
        a.par_chunks_mut(1 << 14)
            .zip(b.par_chunks(1 << 14))
            .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, b)| *a += b));
        Ok(())
    }

    fn add_relu_assign(&mut self, a: &mut CpuTensor, b: &CpuTensor) -> Result<()> {
        use rayon::prelude::*;
        a.par_chunks_mut(1 << 14)
            .zip(b.par_chunks(1 << 14))
            .for_each(|(a, b)| {
                a.iter_mut()
                    .zip(b)
                    .for_each(|(a, b)| *a = (*a + b).max(0.0))
            });
        Ok(())
    }

    fn relu_backward_assign(&mut self, d: &mut CpuTensor, y: &CpuTensor) -> Result<()> {
        use rayon::prelude::*;
        d.par_chunks_mut(1 << 14)
            .zip(y.par_chunks(1 << 14))
            .for_each(|(d, y)| {
                d.iter_mut()
                    .zip(y)
                    .for_each(|(d, y)| *d = if *y > 0.0 { *d } else { 0.0 })
            });
        Ok(())
    }

    fn channel_sum(&mut self, x: &CpuTensor, xs: Shape4) -> Result<CpuTensor> {
        crate::cpu::check_len("channel_sum", "input", x, xs.len(), xs)?;
        Ok(fast::channel_sum(x, xs).into())
    }

    fn avg_pool(&mut self, x: &CpuTensor, xs: Shape4) -> Result<CpuTensor> {
        Ok(x.chunks(xs.plane())
            .map(|p| p.iter().sum::<f32>() / xs.plane() as f32)
            .collect::<Vec<f32>>()
            .into())
    }

    fn avg_pool_backward(&mut self, dy: &CpuTensor, xs: Shape4) -> Result<CpuTensor> {
        let plane = xs.plane() as f32;
        let mut dx = uninit(xs.len());
        for (d, g) in dx.chunks_mut(xs.plane()).zip(dy.iter()) {
            d.fill(g / plane);
        }
        Ok(dx.into())
    }

    fn linear(&mut self, a: LinearArgs<'_, CpuTensor>, b: &CpuTensor) -> Result<CpuTensor> {
        let LinearArgs { x, w, n, c, k } = a;
        let mut logits = vec![0.0; n * k];
        for i in 0..n {
            for cls in 0..k {
                let mut acc = b[cls];
                for ch in 0..c {
                    acc += w[cls * c + ch] * x[i * c + ch];
                }
                logits[i * k + cls] = acc;
            }
        }
        Ok(logits.into())
    }

    fn linear_backward(
        &mut self,
        dy: &CpuTensor,
        a: LinearArgs<'_, CpuTensor>,
    ) -> Result<(CpuTensor, CpuTensor)> {
        let LinearArgs { x, w, n, c, k } = a;
        let mut dw = vec![0.0; k * c];
        let mut dx = vec![0.0; n * c];
        for i in 0..n {
            for cls in 0..k {
                let g = dy[i * k + cls];
                for ch in 0..c {
                    dw[cls * c + ch] += g * x[i * c + ch];
                    dx[i * c + ch] += g * w[cls * c + ch];
                }
            }
        }
        Ok((dx.into(), dw.into()))
    }

    fn softmax_cross_entropy(
        &mut self,
        logits: &CpuTensor,
        labels: &[u32],
        k: usize,
    ) -> Result<(CpuTensor, CpuTensor, CpuTensor)> {
        check_labels(labels, k)?;
        let n = labels.len();
        let mut d = vec![0.0; n * k];
        let mut per_image = vec![0.0; 2 * n];
        for i in 0..n {
            let row = &logits[i * k..][..k];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
            let label = labels[i] as usize;
            let argmax = (0..k)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0);
            per_image[2 * i] = sum.ln() + max - row[label];
            per_image[2 * i + 1] = if argmax == label { 1.0 } else { 0.0 };
            for cls in 0..k {
                let p = (row[cls] - max).exp() / sum;
                d[i * k + cls] = (p - if cls == label { 1.0 } else { 0.0 }) / n as f32;
            }
        }
        let db: Vec<f32> = (0..k)
            .map(|cls| (0..n).map(|i| d[i * k + cls]).sum())
            .collect();
        Ok((d.into(), db.into(), per_image.into()))
    }
}
