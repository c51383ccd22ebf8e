//! Per-channel and per-row layers of inference: the affine (folded BatchNorm) with optional
//! ReLU, global average pooling and the row-wise softmax of the classifier.

use super::params::{AffineParams, CopyParams, PoolParams, SoftmaxParams};
use super::{Dispatch, LazyPipeline, Pipeline, expect_dims, expect_distinct, u32_of, workgroups};
use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuTensor};
use crate::shape::check_nonempty;

/// Invocations per workgroup of these kernels (`WG_SIZE` in their WGSL).
const WG_SIZE: usize = 256;

/// `shaders/affine.wgsl`: `y = scale[c] * x + bias[c]` per channel, optionally followed by ReLU
/// (vec4 entry points where `H * W` is divisible by 4).
pub struct Affine {
    main: LazyPipeline,
    in_place: LazyPipeline,
    main4: LazyPipeline,
    in_place4: LazyPipeline,
}

impl Affine {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            main: LazyPipeline::new(device, "affine.wgsl", "main"),
            in_place: LazyPipeline::new(device, "affine.wgsl", "in_place"),
            main4: LazyPipeline::new(device, "affine.wgsl", "main4"),
            in_place4: LazyPipeline::new(device, "affine.wgsl", "in_place4"),
        }
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing `y = scale[c] * x + bias[c]` (then `max(y, 0)` when `relu`). `x` and `y` are
    /// `[N, C, H, W]`, `scale` and `bias` `[C]`. `y` may be `x` itself (the same buffer): the
    /// tensor is then updated in place.
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        x: &GpuTensor,
        scale: &GpuTensor,
        bias: &GpuTensor,
        relu: bool,
        y: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "affine";
        let xs = x.shape4(OP, "input")?;
        check_nonempty(OP, "input", xs)?;
        expect_dims(OP, "scale", scale, &[xs.c])?;
        expect_dims(OP, "bias", bias, &[xs.c])?;
        expect_dims(OP, "output", y, &xs.dims())?;
        expect_distinct(OP, y, &[("scale", scale), ("bias", bias)])?;
        let params = AffineParams {
            len: u32_of(OP, "elements", xs.len())?,
            c: u32_of(OP, "channels", xs.c)?,
            plane: u32_of(OP, "plane size (H * W)", xs.plane())?,
            relu: u32::from(relu),
        };
        let device = ctx.device();
        let limit = device.limits().max_compute_workgroups_per_dimension as usize;
        if xs.plane().is_multiple_of(4) && xs.c <= limit && xs.n <= limit {
            // One vec4 per invocation, on a [plane chunks, C, N] grid.
            let groups = workgroups(OP, device, [(xs.plane() / 4).div_ceil(WG_SIZE), xs.c, xs.n])?;
            let shared = [(2, scale.buffer()), (3, bias.buffer()), (6, y.buffer())];
            return Ok(if x.buffer() == y.buffer() {
                self.in_place4
                    .get()
                    .prepare(device, &params, &shared, groups)
            } else {
                let mut buffers = vec![(5, x.buffer())];
                buffers.extend(shared);
                self.main4.get().prepare(device, &params, &buffers, groups)
            });
        }
        let groups = workgroups(OP, device, grid(device, xs.len().div_ceil(WG_SIZE)))?;
        let shared = [(2, scale.buffer()), (3, bias.buffer()), (4, y.buffer())];
        if x.buffer() == y.buffer() {
            Ok(self
                .in_place
                .get()
                .prepare(device, &params, &shared, groups))
        } else {
            let mut buffers = vec![(1, x.buffer())];
            buffers.extend(shared);
            Ok(self.main.get().prepare(device, &params, &buffers, groups))
        }
    }
}

/// `groups` workgroups as a 2-d grid `[x, y, 1]` with `x * y >= groups`, `x` within the
/// per-dimension limit (kernels index them as `wg.y * num_workgroups.x + wg.x` and skip the
/// surplus).
pub(super) fn grid(device: &wgpu::Device, groups: usize) -> [usize; 3] {
    let limit = device.limits().max_compute_workgroups_per_dimension.max(1) as usize;
    if groups <= limit {
        [groups, 1, 1]
    } else {
        [limit, groups.div_ceil(limit), 1]
    }
}

/// `shaders/global_avg_pool.wgsl`: the mean of every channel plane, by a fixed-order
/// reduction (bitwise reproducible).
pub struct GlobalAvgPool {
    pipeline: Pipeline,
}

impl GlobalAvgPool {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: Pipeline::new(device, "global_avg_pool.wgsl", "main"),
        }
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing `y[n, c, 0, 0] = mean over (i, j) of x[n, c, i, j]`: `x` is `[N, C, H, W]`, `y`
    /// `[N, C, 1, 1]` (a tensor of its own).
    pub fn prepare(&self, ctx: &GpuContext, x: &GpuTensor, y: &GpuTensor) -> Result<Dispatch> {
        const OP: &str = "global_avg_pool";
        let xs = x.shape4(OP, "input")?;
        check_nonempty(OP, "input", xs)?;
        expect_dims(OP, "output", y, &[xs.n, xs.c, 1, 1])?;
        expect_distinct(OP, y, &[("input", x)])?;
        let params = PoolParams {
            n: u32_of(OP, "batch size", xs.n)?,
            c: u32_of(OP, "channels", xs.c)?,
            plane: u32_of(OP, "plane size (H * W)", xs.plane())?,
            ..Default::default()
        };
        let device = ctx.device();
        let groups = workgroups(OP, device, [xs.c, xs.n, 1])?;
        Ok(self
            .pipeline
            .prepare(device, &params, &[(1, x.buffer()), (2, y.buffer())], groups))
    }
}

/// `shaders/softmax.wgsl`: numerically stable softmax of every row of a `[N, K]` tensor.
pub struct Softmax {
    pipeline: Pipeline,
}

impl Softmax {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: Pipeline::new(device, "softmax.wgsl", "main"),
        }
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing `y[r, k] = exp(x[r, k] - max_k x[r, k]) / sum_k exp(x[r, k] - max_k x[r, k])`:
    /// `x` and `y` are `[N, K]` and must be different tensors.
    pub fn prepare(&self, ctx: &GpuContext, x: &GpuTensor, y: &GpuTensor) -> Result<Dispatch> {
        const OP: &str = "softmax";
        let (rows, cols) = match x.dims() {
            [rows, cols] => (*rows, *cols),
            d => {
                return Err(Error::shape(
                    OP,
                    "input",
                    "a 2-d [N, K] tensor",
                    format!("{d:?}"),
                ));
            }
        };
        expect_dims(OP, "output", y, &[rows, cols])?;
        expect_distinct(OP, y, &[("input", x)])?;
        let params = SoftmaxParams {
            rows: u32_of(OP, "rows", rows)?,
            cols: u32_of(OP, "columns", cols)?,
            ..Default::default()
        };
        let device = ctx.device();
        let groups = workgroups(OP, device, [rows, 1, 1])?;
        Ok(self
            .pipeline
            .prepare(device, &params, &[(1, x.buffer()), (2, y.buffer())], groups))
    }
}

/// `shaders/copy.wgsl`: `y = x`, one element per invocation, or `shaders/copy_vec4.wgsl`, one
/// vec4 per invocation, for lengths divisible by 4 (the benchmark's bandwidth ceiling).
pub struct BufferCopy {
    pipeline: LazyPipeline,
    vec4: LazyPipeline,
}

impl BufferCopy {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: LazyPipeline::new(device, "copy.wgsl", "main"),
            vec4: LazyPipeline::new(device, "copy_vec4.wgsl", "main"),
        }
    }

    /// Prepare (validate shapes, bind buffers) the dispatch copying `x` into `y` (same
    /// element count, different buffers).
    pub fn prepare(&self, ctx: &GpuContext, x: &GpuTensor, y: &GpuTensor) -> Result<Dispatch> {
        const OP: &str = "copy";
        if x.len() != y.len() {
            return Err(Error::shape(
                OP,
                "output",
                format!("{} elements", x.len()),
                format!("{} elements", y.len()),
            ));
        }
        expect_distinct(OP, y, &[("input", x)])?;
        let vec4 = x.len().is_multiple_of(4);
        let len = if vec4 { x.len() / 4 } else { x.len() };
        let groups = len.div_ceil(WG_SIZE);
        let gx = groups.min(32768);
        let params = CopyParams {
            len: u32_of(OP, "elements", len)?,
            row: u32_of(OP, "elements", gx * WG_SIZE)?,
            ..Default::default()
        };
        let groups = workgroups(OP, ctx.device(), [gx, groups.div_ceil(gx), 1])?;
        let pipeline = if vec4 {
            self.vec4.get()
        } else {
            self.pipeline.get()
        };
        Ok(pipeline.prepare(
            ctx.device(),
            &params,
            &[(1, x.buffer()), (2, y.buffer())],
            groups,
        ))
    }
}
