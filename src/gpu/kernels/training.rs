//! Kernels of the training pass that inference does not need: BatchNorm with batch statistics
//! (forward and backward), the 3x3 convolution's weight and input gradients, the depthwise 3x3
//! gradients, softmax cross-entropy, the gradient of global average pooling, the per-channel
//! sum (bias gradients, loss totals), and element-wise accumulation and ReLU steps.

use super::conv3x3::{conv3x3_params, weight_cout};
use super::elementwise::grid;
use super::params::{BnParams, CeParams, ChannelSumParams, DepthwiseBackwardParams, LenParams};
use super::{Dispatch, LazyPipeline, Pipeline, expect_dims, expect_distinct, u32_of, workgroups};
use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuTensor};
use crate::shape::{Shape4, check_nonempty, check_stride};

/// Invocations per workgroup of the element-wise and per-channel kernels here.
const WG_SIZE: usize = 256;
/// Invocations per workgroup of `softmax_cross_entropy.wgsl`.
const CE_WG_SIZE: usize = 64;

/// Pixels per workgroup of the element-wise passes of `batchnorm_train.wgsl` (`EW_WG * EW_PER`).
const BN_EW_PIXELS: usize = 256;

/// The workgroups of the element-wise passes of `batchnorm_train.wgsl`: pixel blocks x channels
/// x images.
fn bn_elements(op: &'static str, device: &wgpu::Device, xs: Shape4) -> Result<[u32; 3]> {
    workgroups(op, device, [xs.plane().div_ceil(BN_EW_PIXELS), xs.c, xs.n])
}

/// The tensors of [`BatchNormTrain::prepare_forward`] (its kernel's bindings one for one).
#[derive(Clone, Copy, Debug)]
pub struct BnForward<'a> {
    /// The input `[N, C, H, W]`.
    pub x: &'a GpuTensor,
    /// The scale `[C]`.
    pub gamma: &'a GpuTensor,
    /// The shift `[C]`.
    pub beta: &'a GpuTensor,
    /// Written: the batch statistics `[3, C]` (mean, biased variance, `1 / sqrt(var + eps)`).
    pub stats: &'a GpuTensor,
    /// Written: the output, the input's shape.
    pub y: &'a GpuTensor,
    /// Whether a ReLU follows the affine.
    pub relu: bool,
}

/// The tensors of [`BatchNormTrain::prepare_backward`] (its kernel's bindings one for one).
#[derive(Clone, Copy, Debug)]
pub struct BnBackward<'a> {
    /// The forward input.
    pub x: &'a GpuTensor,
    /// The forward output.
    pub y: &'a GpuTensor,
    /// The scale `[C]`.
    pub gamma: &'a GpuTensor,
    /// The batch statistics of the forward pass.
    pub stats: &'a GpuTensor,
    /// The output gradient.
    pub dy: &'a GpuTensor,
    /// Written: `[2, C]`, dgamma then dbeta.
    pub dparams: &'a GpuTensor,
    /// Written: the input gradient.
    pub dx: &'a GpuTensor,
    /// Whether the forward pass had a ReLU after the affine (the gradient passes only where
    /// `y > 0`).
    pub relu: bool,
}

/// `shaders/batchnorm_train.wgsl`: BatchNorm with the batch's statistics, with or without a
/// ReLU after it, and its backward pass.
pub struct BatchNormTrain {
    stats: Pipeline,
    forward: Pipeline,
    backward_reduce: Pipeline,
    backward_input: Pipeline,
    backward_input_frozen: Pipeline,
}

impl BatchNormTrain {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            stats: Pipeline::new(device, "batchnorm_train.wgsl", "batch_stats"),
            forward: Pipeline::new(device, "batchnorm_train.wgsl", "forward"),
            backward_reduce: Pipeline::new(device, "batchnorm_train.wgsl", "backward_reduce"),
            backward_input: Pipeline::new(device, "batchnorm_train.wgsl", "backward_input"),
            backward_input_frozen: Pipeline::new(
                device,
                "batchnorm_train.wgsl",
                "backward_input_frozen",
            ),
        }
    }

    fn params(op: &'static str, xs: Shape4, relu: bool) -> Result<BnParams> {
        check_nonempty(op, "input", xs)?;
        Ok(BnParams {
            n: u32_of(op, "batch size", xs.n)?,
            c: u32_of(op, "channels", xs.c)?,
            plane: u32_of(op, "plane size (H * W)", xs.plane())?,
            len: u32_of(op, "elements", xs.len())?,
            relu: u32::from(relu),
            ..Default::default()
        })
    }

    /// Prepare the dispatches computing the batch statistics of `x` (`[N, C, H, W]`) into
    /// `stats` (`[3, C]`: mean, biased variance, `1 / sqrt(var + eps)`) and then
    /// `y = max(0, gamma * (x - mean) / sqrt(var + eps) + beta)` (`gamma`, `beta`: `[C]`;
    /// without the `max` when [`BnForward::relu`] is false).
    pub fn prepare_forward(&self, ctx: &GpuContext, t: BnForward<'_>) -> Result<Dispatch> {
        self.forward_with(ctx, t, false)
    }

    /// Prepare the dispatch of the forward pass with frozen statistics: `stats` (`[3, C]`) is
    /// read, not computed (fine-tuning with `train::NormMode::Frozen`).
    pub fn prepare_forward_frozen(&self, ctx: &GpuContext, t: BnForward<'_>) -> Result<Dispatch> {
        self.forward_with(ctx, t, true)
    }

    fn forward_with(&self, ctx: &GpuContext, t: BnForward<'_>, frozen: bool) -> Result<Dispatch> {
        let BnForward {
            x,
            gamma,
            beta,
            stats,
            y,
            relu,
        } = t;
        const OP: &str = "batchnorm_train";
        let xs = x.shape4(OP, "input")?;
        let params = Self::params(OP, xs, relu)?;
        expect_dims(OP, "gamma", gamma, &[xs.c])?;
        expect_dims(OP, "beta", beta, &[xs.c])?;
        expect_dims(OP, "statistics", stats, &[3, xs.c])?;
        expect_dims(OP, "output", y, &xs.dims())?;
        expect_distinct(OP, y, &[("input", x), ("gamma", gamma), ("beta", beta)])?;
        expect_distinct(OP, stats, &[("input", x), ("output", y)])?;
        let device = ctx.device();
        let per_channel = workgroups(OP, device, [xs.c, 1, 1])?;
        let per_element = bn_elements(OP, device, xs)?;
        let apply = self.forward.prepare(
            device,
            &params,
            &[
                (1, x.buffer()),
                (2, gamma.buffer()),
                (3, beta.buffer()),
                (4, stats.buffer()),
                (5, y.buffer()),
            ],
            per_element,
        );
        if frozen {
            return Ok(apply);
        }
        let stats_step = self.stats.prepare(
            device,
            &params,
            &[(1, x.buffer()), (4, stats.buffer())],
            per_channel,
        );
        Ok(stats_step.then(apply))
    }

    /// Prepare the dispatches of the backward pass: from the forward input `x`, output `y`,
    /// `stats` and the output gradient `dy`, write `dparams` (`[2, C]`: dgamma, then dbeta) and
    /// the input gradient `dx`.
    pub fn prepare_backward(&self, ctx: &GpuContext, t: BnBackward<'_>) -> Result<Dispatch> {
        self.backward_with(ctx, t, false)
    }

    /// [`BatchNormTrain::prepare_backward`] of [`BatchNormTrain::prepare_forward_frozen`]: the
    /// statistics are constants, so the input gradient has no terms through them.
    pub fn prepare_backward_frozen(&self, ctx: &GpuContext, t: BnBackward<'_>) -> Result<Dispatch> {
        self.backward_with(ctx, t, true)
    }

    fn backward_with(&self, ctx: &GpuContext, t: BnBackward<'_>, frozen: bool) -> Result<Dispatch> {
        let BnBackward {
            x,
            y,
            gamma,
            stats,
            dy,
            dparams,
            dx,
            relu,
        } = t;
        const OP: &str = "batchnorm_train_backward";
        let xs = x.shape4(OP, "input")?;
        let params = Self::params(OP, xs, relu)?;
        expect_dims(OP, "output", y, &xs.dims())?;
        expect_dims(OP, "output gradient", dy, &xs.dims())?;
        expect_dims(OP, "input gradient", dx, &xs.dims())?;
        expect_dims(OP, "gamma", gamma, &[xs.c])?;
        expect_dims(OP, "statistics", stats, &[3, xs.c])?;
        expect_dims(OP, "parameter gradient", dparams, &[2, xs.c])?;
        let inputs = [
            ("input", x),
            ("output", y),
            ("gamma", gamma),
            ("statistics", stats),
            ("output gradient", dy),
        ];
        expect_distinct(OP, dx, &inputs)?;
        expect_distinct(OP, dparams, &inputs)?;
        expect_distinct(OP, dx, &[("parameter gradient", dparams)])?;
        let device = ctx.device();
        let per_channel = workgroups(OP, device, [xs.c, 1, 1])?;
        let per_element = bn_elements(OP, device, xs)?;
        let reduce = self.backward_reduce.prepare(
            device,
            &params,
            &[
                (1, x.buffer()),
                (4, stats.buffer()),
                (5, y.buffer()),
                (6, dy.buffer()),
                (7, dparams.buffer()),
            ],
            per_channel,
        );
        let input = if frozen {
            // No terms through the batch's statistics: neither the input nor the reduction.
            self.backward_input_frozen.prepare(
                device,
                &params,
                &[
                    (2, gamma.buffer()),
                    (4, stats.buffer()),
                    (5, y.buffer()),
                    (6, dy.buffer()),
                    (8, dx.buffer()),
                ],
                per_element,
            )
        } else {
            self.backward_input.prepare(
                device,
                &params,
                &[
                    (1, x.buffer()),
                    (2, gamma.buffer()),
                    (4, stats.buffer()),
                    (5, y.buffer()),
                    (6, dy.buffer()),
                    (7, dparams.buffer()),
                    (8, dx.buffer()),
                ],
                per_element,
            )
        };
        Ok(reduce.then(input))
    }
}

/// `shaders/conv3x3_backward_weight.wgsl`: the weight gradient of the 3x3 stem convolution.
pub struct Conv3x3BackwardWeight {
    pipeline: Pipeline,
}

impl Conv3x3BackwardWeight {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: Pipeline::new(device, "conv3x3_backward_weight.wgsl", "main"),
        }
    }

    /// Prepare the dispatch computing `dw` (`[Cout, Cin, 3, 3]`) of the pad-1, stride-`stride`
    /// 3x3 convolution of `x` (`[N, Cin, H, W]`) from its output gradient `dy`
    /// (`[N, Cout, (H-1)/s+1, (W-1)/s+1]`).
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        dy: &GpuTensor,
        x: &GpuTensor,
        stride: usize,
        dw: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "conv3x3_backward_weight";
        check_stride(OP, stride)?;
        let xs = x.shape4(OP, "input")?;
        check_nonempty(OP, "input", xs)?;
        let cout = weight_cout(OP, "weight gradient", dw.dims(), xs.c, 1)?;
        let ys = xs.strided(cout, stride);
        expect_dims(OP, "output gradient", dy, &ys.dims())?;
        expect_distinct(OP, dw, &[("input", x), ("output gradient", dy)])?;
        let params = conv3x3_params(OP, xs, ys, stride)?;
        let device = ctx.device();
        // One workgroup per (co, ci) pair.
        let groups = workgroups(OP, device, grid(device, cout * xs.c))?;
        Ok(self.pipeline.prepare(
            device,
            &params,
            &[(1, dy.buffer()), (2, x.buffer()), (3, dw.buffer())],
            groups,
        ))
    }
}

/// `shaders/conv3x3_backward_input.wgsl`: the input gradient of the 3x3 convolution (the
/// transposed convolution).
pub struct Conv3x3BackwardInput {
    pipeline: Pipeline,
}

impl Conv3x3BackwardInput {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: Pipeline::new(device, "conv3x3_backward_input.wgsl", "main"),
        }
    }

    /// Prepare the dispatch computing `dx` (`[N, Cin, H, W]`, every element written) of the
    /// pad-1, stride-`stride` 3x3 convolution by `weight` (`[Cout, Cin, 3, 3]`) from its output
    /// gradient `dy` (`[N, Cout, (H-1)/s+1, (W-1)/s+1]`).
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        dy: &GpuTensor,
        weight: &GpuTensor,
        stride: usize,
        dx: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "conv3x3_backward_input";
        check_stride(OP, stride)?;
        let xs = dx.shape4(OP, "input gradient")?;
        check_nonempty(OP, "input gradient", xs)?;
        let cout = weight_cout(OP, "weight", weight.dims(), xs.c, 1)?;
        let ys = xs.strided(cout, stride);
        expect_dims(OP, "output gradient", dy, &ys.dims())?;
        expect_distinct(OP, dx, &[("weight", weight), ("output gradient", dy)])?;
        let params = conv3x3_params(OP, xs, ys, stride)?;
        u32_of(OP, "input elements", xs.len())?;
        let device = ctx.device();
        let groups = workgroups(OP, device, grid(device, xs.len().div_ceil(WG_SIZE)))?;
        Ok(self.pipeline.prepare(
            device,
            &params,
            &[(1, dy.buffer()), (2, weight.buffer()), (3, dx.buffer())],
            groups,
        ))
    }
}

/// `shaders/channel_sum.wgsl`: the per-channel sum over images and pixels (a bias gradient,
/// the batch's loss totals).
pub struct ChannelSum {
    pipeline: Pipeline,
}

impl ChannelSum {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: Pipeline::new(device, "channel_sum.wgsl", "main"),
        }
    }

    /// Prepare the dispatch writing `out[c]` (`[C]`) = the sum of channel `c` of `x`
    /// (`[N, C, H, W]`) over its images and pixels, in a fixed order.
    pub fn prepare(&self, ctx: &GpuContext, x: &GpuTensor, out: &GpuTensor) -> Result<Dispatch> {
        const OP: &str = "channel_sum";
        let xs = x.shape4(OP, "input")?;
        check_nonempty(OP, "input", xs)?;
        expect_dims(OP, "output", out, &[xs.c])?;
        expect_distinct(OP, out, &[("input", x)])?;
        u32_of(OP, "elements", xs.len())?;
        let params = ChannelSumParams {
            n: u32_of(OP, "batch size", xs.n)?,
            c: u32_of(OP, "channels", xs.c)?,
            plane: u32_of(OP, "plane size (H * W)", xs.plane())?,
            ..Default::default()
        };
        let device = ctx.device();
        // One workgroup per channel.
        let groups = workgroups(OP, device, grid(device, xs.c))?;
        Ok(self.pipeline.prepare(
            device,
            &params,
            &[(1, x.buffer()), (2, out.buffer())],
            groups,
        ))
    }
}

/// The operands of [`Depthwise3x3Backward::prepare`].
#[derive(Clone, Copy, Debug)]
pub struct DepthwiseBackward<'a> {
    /// The forward input `[N, C, H, W]`.
    pub x: &'a GpuTensor,
    /// The output gradient.
    pub dy: &'a GpuTensor,
    /// The weight `[C, 1, 3, 3]`.
    pub w: &'a GpuTensor,
    /// The forward stride.
    pub stride: usize,
    /// Written: the input gradient (the input's shape).
    pub dx: &'a GpuTensor,
    /// Written: the weight gradient `[C, 1, 3, 3]`.
    pub dw: &'a GpuTensor,
}

/// `shaders/depthwise3x3_backward.wgsl`: the input and weight gradients of the 3x3 depthwise
/// convolution (the baseline block), both deterministic (a gather, and a fixed-order
/// per-channel reduction).
pub struct Depthwise3x3Backward {
    input: Pipeline,
    weight: Pipeline,
}

impl Depthwise3x3Backward {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            input: Pipeline::new(device, "depthwise3x3_backward.wgsl", "input"),
            weight: Pipeline::new(device, "depthwise3x3_backward.wgsl", "weight_grad"),
        }
    }

    /// Prepare the dispatches computing `dx` (`[N, C, H, W]`, the forward input's shape) and
    /// `dw` (`[C, 1, 3, 3]`) of `y = depthwise3x3(x, w)` at pad 1 and `stride`, from the
    /// output gradient `dy` (`[N, C, (H-1)/s+1, (W-1)/s+1]`).
    ///
    /// # Errors
    /// [`Error::Shape`] for mismatched tensors, [`Error::InvalidArgument`] for a zero stride
    /// or an output sharing a buffer with an input, [`Error::DeviceLimit`] past the device's
    /// dispatch limits.
    pub fn prepare(&self, ctx: &GpuContext, t: DepthwiseBackward<'_>) -> Result<Dispatch> {
        let DepthwiseBackward {
            x,
            dy,
            w,
            stride,
            dx,
            dw,
        } = t;
        const OP: &str = "depthwise3x3_backward";
        check_stride(OP, stride)?;
        let xs = x.shape4(OP, "input")?;
        check_nonempty(OP, "input", xs)?;
        let ys = xs.strided(xs.c, stride);
        expect_dims(OP, "output gradient", dy, &ys.dims())?;
        expect_dims(OP, "weight", w, &[xs.c, 1, 3, 3])?;
        expect_dims(OP, "input gradient", dx, &xs.dims())?;
        expect_dims(OP, "weight gradient", dw, &[xs.c, 1, 3, 3])?;
        let inputs = [("input", x), ("output gradient", dy), ("weight", w)];
        expect_distinct(OP, dx, &inputs)?;
        expect_distinct(OP, dw, &inputs)?;
        expect_distinct(OP, dw, &[("input gradient", dx)])?;
        let params = DepthwiseBackwardParams {
            n: u32_of(OP, "batch size", xs.n)?,
            c: u32_of(OP, "channels", xs.c)?,
            h: u32_of(OP, "height", xs.h)?,
            w: u32_of(OP, "width", xs.w)?,
            ho: u32_of(OP, "output height", ys.h)?,
            wo: u32_of(OP, "output width", ys.w)?,
            stride: u32_of(OP, "stride", stride)?,
            ..Default::default()
        };
        let device = ctx.device();
        let input_groups = workgroups(OP, device, grid(device, xs.len().div_ceil(WG_SIZE)))?;
        let input = self.input.prepare(
            device,
            &params,
            &[(2, dy.buffer()), (3, w.buffer()), (4, dx.buffer())],
            input_groups,
        );
        let weight_groups = workgroups(OP, device, [xs.c, 1, 1])?;
        let weight = self.weight.prepare(
            device,
            &params,
            &[(1, x.buffer()), (2, dy.buffer()), (5, dw.buffer())],
            weight_groups,
        );
        Ok(input.then(weight))
    }
}

/// `shaders/softmax_cross_entropy.wgsl`: softmax cross-entropy, its logit gradient and the
/// classifier bias gradient.
pub struct SoftmaxCrossEntropy {
    main: Pipeline,
    bias_grad: Pipeline,
}

impl SoftmaxCrossEntropy {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            main: Pipeline::new(device, "softmax_cross_entropy.wgsl", "main"),
            bias_grad: Pipeline::new(device, "softmax_cross_entropy.wgsl", "bias_grad"),
        }
    }

    /// Prepare the dispatches computing, from `logits` (`[N, K]`) and `labels` (`[N]`, each
    /// `< K`, as `u32` in a buffer of at least `4 N` bytes with `STORAGE` usage), the gradient of
    /// the mean loss `dlogits` (`[N, K]`), `per_image` (`[N, 2]`: loss, 1 if top-1 is right)
    /// and `dbias` (`[K]`, the sum of `dlogits` over the batch).
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        logits: &GpuTensor,
        labels: &wgpu::Buffer,
        dlogits: &GpuTensor,
        per_image: &GpuTensor,
        dbias: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "softmax_cross_entropy";
        let (n, k) = match logits.dims() {
            [n, k] if *n > 0 && *k > 0 => (*n, *k),
            d => {
                return Err(Error::shape(OP, "logits", "[N, K]", format!("{d:?}")));
            }
        };
        if labels.size() < 4 * n as u64 {
            return Err(Error::invalid(
                OP,
                format!(
                    "{n} labels need {} bytes, the buffer has {}",
                    4 * n,
                    labels.size()
                ),
            ));
        }
        expect_dims(OP, "logit gradient", dlogits, &[n, k])?;
        expect_dims(OP, "per-image loss", per_image, &[n, 2])?;
        expect_dims(OP, "bias gradient", dbias, &[k])?;
        expect_distinct(OP, dlogits, &[("logits", logits)])?;
        expect_distinct(
            OP,
            per_image,
            &[("logits", logits), ("logit gradient", dlogits)],
        )?;
        expect_distinct(OP, dbias, &[("logit gradient", dlogits)])?;
        let params = CeParams {
            n: u32_of(OP, "batch size", n)?,
            k: u32_of(OP, "classes", k)?,
            ..Default::default()
        };
        let device = ctx.device();
        let per_image_groups = workgroups(OP, device, [n.div_ceil(CE_WG_SIZE), 1, 1])?;
        let per_class = workgroups(OP, device, [k.div_ceil(CE_WG_SIZE), 1, 1])?;
        let main = self.main.prepare(
            device,
            &params,
            &[
                (1, logits.buffer()),
                (2, labels),
                (3, dlogits.buffer()),
                (4, per_image.buffer()),
            ],
            per_image_groups,
        );
        let bias = self.bias_grad.prepare(
            device,
            &params,
            &[(3, dlogits.buffer()), (5, dbias.buffer())],
            per_class,
        );
        Ok(main.then(bias))
    }
}

/// `shaders/global_avg_pool_backward.wgsl`: the gradient of global average pooling.
pub struct GlobalAvgPoolBackward {
    pipeline: Pipeline,
}

impl GlobalAvgPoolBackward {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: Pipeline::new(device, "global_avg_pool_backward.wgsl", "main"),
        }
    }

    /// Prepare the dispatch spreading `dy` (`[N, C]` or `[N, C, 1, 1]`) over `dx`
    /// (`[N, C, H, W]`): `dx[n, c, i, j] = dy[n, c] / (H * W)`.
    pub fn prepare(&self, ctx: &GpuContext, dy: &GpuTensor, dx: &GpuTensor) -> Result<Dispatch> {
        const OP: &str = "global_avg_pool_backward";
        let xs = dx.shape4(OP, "input gradient")?;
        check_nonempty(OP, "input gradient", xs)?;
        if dy.len() != xs.n * xs.c {
            return Err(Error::shape(
                OP,
                "output gradient",
                format!("[{}, {}]", xs.n, xs.c),
                format!("{:?}", dy.dims()),
            ));
        }
        expect_distinct(OP, dx, &[("output gradient", dy)])?;
        let params = LenParams {
            len: u32_of(OP, "elements", xs.len())?,
            plane: u32_of(OP, "plane size (H * W)", xs.plane())?,
            ..Default::default()
        };
        let device = ctx.device();
        let groups = workgroups(OP, device, grid(device, xs.len().div_ceil(WG_SIZE)))?;
        Ok(self.pipeline.prepare(
            device,
            &params,
            &[(1, dy.buffer()), (2, dx.buffer())],
            groups,
        ))
    }
}

/// `shaders/add.wgsl`: `y += x`, `y = max(y + x, 0)` and the ReLU's gradient
/// `y = y where x > 0, else 0`, element-wise in place.
pub struct Add {
    pipeline: Pipeline,
    relu: LazyPipeline,
    relu_backward: LazyPipeline,
}

impl Add {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: Pipeline::new(device, "add.wgsl", "main"),
            relu: LazyPipeline::new(device, "add.wgsl", "add_relu"),
            relu_backward: LazyPipeline::new(device, "add.wgsl", "relu_backward"),
        }
    }

    /// Prepare the dispatch adding `x` into `y` (same number of elements, different tensors).
    pub fn prepare(&self, ctx: &GpuContext, x: &GpuTensor, y: &GpuTensor) -> Result<Dispatch> {
        self.prepare_with(ctx, x, y, &self.pipeline, "add")
    }

    /// Prepare the dispatch computing `y = max(y + x, 0)` (as [`Add::prepare`], then ReLU).
    pub fn prepare_relu(&self, ctx: &GpuContext, x: &GpuTensor, y: &GpuTensor) -> Result<Dispatch> {
        self.prepare_with(ctx, x, y, self.relu.get(), "add_relu")
    }

    /// Prepare the dispatch passing the gradient `dy` of a ReLU's output `y` through it, in
    /// place: `dy = dy where y > 0, else 0`.
    pub fn prepare_relu_backward(
        &self,
        ctx: &GpuContext,
        y: &GpuTensor,
        dy: &GpuTensor,
    ) -> Result<Dispatch> {
        self.prepare_with(ctx, y, dy, self.relu_backward.get(), "relu_backward")
    }

    fn prepare_with(
        &self,
        ctx: &GpuContext,
        x: &GpuTensor,
        y: &GpuTensor,
        pipeline: &Pipeline,
        op: &'static str,
    ) -> Result<Dispatch> {
        if x.len() != y.len() || y.is_empty() {
            return Err(Error::shape(
                op,
                "addend",
                format!("{:?} (non-empty)", y.dims()),
                format!("{:?}", x.dims()),
            ));
        }
        expect_distinct(op, y, &[("addend", x)])?;
        let params = LenParams {
            len: u32_of(op, "elements", y.len())?,
            plane: 1,
            ..Default::default()
        };
        let device = ctx.device();
        let groups = workgroups(op, device, grid(device, y.len().div_ceil(WG_SIZE)))?;
        Ok(pipeline.prepare(device, &params, &[(1, x.buffer()), (2, y.buffer())], groups))
    }
}
