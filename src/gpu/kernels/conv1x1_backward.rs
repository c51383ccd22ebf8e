//! The two GEMMs of the 1x1 convolution's backward pass.

use super::conv1x1::{matrix_rows, weight_cout};
use super::params::Conv1x1Params;
use super::{Dispatch, Pipeline, expect_dims, u32_of, workgroups};
use crate::error::Result;
use crate::gpu::{GpuContext, GpuTensor};
use crate::shape::Shape4;

/// `shaders/conv1x1_backward_input.wgsl`: `dx = W^T dy`, zero where the stride skipped.
pub struct Conv1x1BackwardInput {
    pipeline: Pipeline,
}

impl Conv1x1BackwardInput {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: Pipeline::new(device, "conv1x1_backward_input.wgsl", "main"),
        }
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing the input gradient `dx`
    /// (`[N, Cin, H, W]`, the forward input's shape) from `dy` (`[N, Cout, Ho, Wo]`) and
    /// `weight` (`[Cout, Cin]`): the kernel [`KernelPolicy::conv1x1_backward_input`] chooses
    /// (the forward GEMM over the transposed weight, or [`Conv1x1BackwardInput::prepare_direct`]).
    ///
    /// [`KernelPolicy::conv1x1_backward_input`]: crate::gpu::KernelPolicy::conv1x1_backward_input
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        dy: &GpuTensor,
        weight: &GpuTensor,
        stride: usize,
        dx: &GpuTensor,
    ) -> Result<Dispatch> {
        let dys = dy.shape4(OP, "output gradient")?;
        let cin = dx.shape4(OP, "input gradient")?.c;
        match ctx.policy().conv1x1_backward_input(dys, cin, stride) {
            Some(variant) => {
                // The same shape checks as the direct kernel.
                check_shapes(dy, weight, stride, dx)?;
                ctx.kernels()
                    .conv1x1()
                    .prepare_transposed(variant, ctx, dy, weight, dx)
            }
            None => self.prepare_direct(ctx, dy, weight, stride, dx),
        }
    }

    /// [`Conv1x1BackwardInput::prepare`] by the direct kernel, whatever the policy says.
    pub fn prepare_direct(
        &self,
        ctx: &GpuContext,
        dy: &GpuTensor,
        weight: &GpuTensor,
        stride: usize,
        dx: &GpuTensor,
    ) -> Result<Dispatch> {
        let (xs, cout, params) = check_shapes(dy, weight, stride, dx)?;
        let groups = workgroups(
            OP,
            ctx.device(),
            [
                xs.strided(cout, stride).plane().div_ceil(4 * 64),
                xs.c.div_ceil(8),
                xs.n,
            ],
        )?;
        Ok(self.pipeline.prepare(
            ctx.device(),
            &params,
            &[(1, dy.buffer()), (2, weight.buffer()), (3, dx.buffer())],
            groups,
        ))
    }
}

const OP: &str = "conv1x1_backward_input";

/// The shape checks of both input-gradient kernels: `dx` is `[N, Cin, H, W]`, `weight`
/// `[Cout, Cin]` and `dy` `[N, Cout, Ho, Wo]` at `stride`. Returns `dx`'s shape, `Cout` and the
/// direct kernel's parameters.
fn check_shapes(
    dy: &GpuTensor,
    weight: &GpuTensor,
    stride: usize,
    dx: &GpuTensor,
) -> Result<(Shape4, usize, Conv1x1Params)> {
    let xs = dx.shape4(OP, "input gradient")?;
    let cout = weight_cout(OP, weight, xs.c)?;
    let params = Conv1x1Params::new(OP, xs, cout, stride, 0)?;
    expect_dims(OP, "output gradient", dy, &xs.strided(cout, stride).dims())?;
    Ok((xs, cout, params))
}

/// `shaders/conv1x1_backward_weight.wgsl`: `dW = sum over the batch of dy x^T`.
pub struct Conv1x1BackwardWeight {
    pipeline: Pipeline,
    reduce: Pipeline,
}

impl Conv1x1BackwardWeight {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: Pipeline::new(device, "conv1x1_backward_weight.wgsl", "main"),
            reduce: Pipeline::new(device, "conv1x1_backward_weight.wgsl", "reduce_splits"),
        }
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing the weight gradient `dw` (`[Cout, Cin]`) from `dy` (`[N, Cout, Ho, Wo]`) and the
    /// forward input `x` (`[N, Cin, H, W]`).
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        dy: &GpuTensor,
        x: &GpuTensor,
        stride: usize,
        dw: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "conv1x1_backward_weight";
        let xs = x.shape4(OP, "input")?;
        let cout = matrix_rows(OP, "weight gradient", dw, xs.c)?;
        let mut params = Conv1x1Params::new(OP, xs, cout, stride, 0)?;
        let ys = xs.strided(cout, stride);
        expect_dims(OP, "output gradient", dy, &ys.dims())?;
        if (xs.n * ys.plane()) > u32::MAX as usize {
            return Err(crate::Error::DeviceLimit {
                op: OP,
                what: "batch positions (N * Ho * Wo)",
                needed: (xs.n * ys.plane()) as u64,
                limit: u64::from(u32::MAX),
            });
        }
        // Cut the batch's output rows into chunks of about CHUNK_PIXELS pixels (whole rows,
        // one image each): one invocation per chunk and 8 x 8 block of the weight.
        const CHUNK_PIXELS: usize = 128;
        const BLOCK: usize = 8;
        const WG_SIZE: usize = 64;
        let rows = (CHUNK_PIXELS / ys.w).clamp(1, ys.h);
        let splits = xs.n * ys.h.div_ceil(rows);
        params.k_chunk = u32_of(OP, "rows per chunk", rows)?;
        params.splits = u32_of(OP, "chunks", splits)?;
        let device = ctx.device();
        let part = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("activeshift conv1x1_backward_weight chunks"),
            size: (splits * cout * xs.c * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        ctx.count_buffer(0);
        let invocations = splits * cout.div_ceil(BLOCK) * xs.c.div_ceil(BLOCK);
        u32_of(OP, "invocations", invocations)?;
        let groups = workgroups(
            OP,
            device,
            super::elementwise::grid(device, invocations.div_ceil(WG_SIZE)),
        )?;
        let partial = self.pipeline.prepare(
            device,
            &params,
            &[(1, dy.buffer()), (2, x.buffer()), (4, &part)],
            groups,
        );
        let blocks = (cout * xs.c).div_ceil(256);
        let reduce = self.reduce.prepare(
            device,
            &params,
            &[(3, dw.buffer()), (4, &part)],
            workgroups(OP, device, super::elementwise::grid(device, blocks))?,
        );
        Ok(partial.then(reduce))
    }
}
