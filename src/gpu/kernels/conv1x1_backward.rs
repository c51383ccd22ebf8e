//! The two GEMMs of the 1x1 convolution's backward pass.

use super::conv1x1::{Conv1x1Params, TILE, TILE_K};
use super::{Dispatch, Pipeline, expect_dims, u32_of, workgroups};
use crate::error::Result;
use crate::gpu::{GpuContext, GpuTensor};

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

    /// Prepare (validate shapes, bind buffers) the dispatch computing the input gradient `dx` (`[N, Cin, H, W]`, the forward input's shape) from `dy`
    /// (`[N, Cout, Ho, Wo]`) and `weight` (`[Cout, Cin]`).
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        dy: &GpuTensor,
        weight: &GpuTensor,
        stride: usize,
        dx: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "conv1x1_backward_input";
        let xs = dx.shape4(OP, "input gradient")?;
        let cout = match weight.dims() {
            [cout, cin] if *cin == xs.c => *cout,
            d => {
                return Err(crate::Error::shape(
                    OP,
                    "weight",
                    format!("[Cout, {}]", xs.c),
                    format!("{d:?}"),
                ));
            }
        };
        let params = Conv1x1Params::new(OP, xs, cout, stride, 0)?;
        expect_dims(OP, "output gradient", dy, &xs.strided(cout, stride).dims())?;
        let groups = workgroups(
            OP,
            ctx.device(),
            [xs.plane().div_ceil(TILE), xs.c.div_ceil(TILE), xs.n],
        )?;
        Ok(self.pipeline.prepare(
            ctx.device(),
            &params,
            &[(1, dy.buffer()), (2, weight.buffer()), (3, dx.buffer())],
            groups,
        ))
    }
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
        let cout = match dw.dims() {
            [cout, cin] if *cin == xs.c => *cout,
            d => {
                return Err(crate::Error::shape(
                    OP,
                    "weight gradient",
                    format!("[Cout, {}]", xs.c),
                    format!("{d:?}"),
                ));
            }
        };
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
        // Split K = N * Ho * Wo into at most MAX_SPLITS chunks of at least MIN_CHUNK terms, so
        // that a small weight over a large batch still spreads over many workgroups.
        const MAX_SPLITS: usize = 64;
        const MIN_CHUNK: usize = 256;
        let total = xs.n * ys.plane();
        let k_chunk = total
            .div_ceil(MAX_SPLITS)
            .max(MIN_CHUNK)
            .next_multiple_of(TILE_K);
        let splits = total.div_ceil(k_chunk).max(1);
        params.k_chunk = u32_of(OP, "terms per chunk", k_chunk)?;
        params.splits = u32_of(OP, "chunks", splits)?;
        let device = ctx.device();
        let part = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("activeshift conv1x1_backward_weight chunks"),
            size: (splits * cout * xs.c * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let groups = workgroups(
            OP,
            device,
            [xs.c.div_ceil(TILE), cout.div_ceil(TILE), splits],
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
