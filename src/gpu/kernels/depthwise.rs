//! The depthwise 3x3 convolution (the MobileNet-style baseline block).

use super::params::DepthwiseParams;
use super::{Dispatch, LazyPipeline, expect_dims, expect_distinct, u32_of, workgroups};
use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuTensor};
use crate::shape::{check_nonempty, check_stride};

/// Invocations per workgroup (`WG_SIZE` in `depthwise3x3.wgsl`).
const WG_SIZE: usize = 64;
/// Adjacent output pixels of one row per invocation (`PX` in `depthwise3x3.wgsl`).
const PX: usize = 4;

/// `shaders/depthwise3x3.wgsl`: depthwise 3x3 convolution, padding 1, any stride, no bias;
/// `shaders/depthwise3x3_vec4.wgsl` (vec4 loads and stores) for stride 1 and a width divisible
/// by 4.
pub struct Depthwise3x3 {
    pipeline: LazyPipeline,
    vec4: LazyPipeline,
}

impl Depthwise3x3 {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: LazyPipeline::new(device, "depthwise3x3.wgsl", "main"),
            vec4: LazyPipeline::new(device, "depthwise3x3_vec4.wgsl", "main"),
        }
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing the depthwise
    /// convolution `y[n, c] = conv3x3(x[n, c], weight[c, 0])` with padding 1 and stride
    /// `stride`: `x` is `[N, C, H, W]`, `weight` `[C, 1, 3, 3]` and `y`
    /// `[N, C, (H-1)/s+1, (W-1)/s+1]` (the same computation as [`crate::cpu::depthwise3x3`]);
    /// `y` must be a tensor of its own.
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        x: &GpuTensor,
        weight: &GpuTensor,
        stride: usize,
        y: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "depthwise3x3";
        check_stride(OP, stride)?;
        let xs = x.shape4(OP, "input")?;
        check_nonempty(OP, "input", xs)?;
        if weight.dims() != [xs.c, 1, 3, 3] {
            return Err(Error::shape(
                OP,
                "weight",
                format!("[{}, 1, 3, 3]", xs.c),
                format!("{:?}", weight.dims()),
            ));
        }
        let ys = xs.strided(xs.c, stride);
        expect_dims(OP, "output", y, &ys.dims())?;
        expect_distinct(OP, y, &[("input", x), ("weight", weight)])?;
        let runs_per_row = ys.w.div_ceil(PX);
        let params = DepthwiseParams {
            n: u32_of(OP, "batch size", xs.n)?,
            c: u32_of(OP, "channels", xs.c)?,
            h: u32_of(OP, "height", xs.h)?,
            w: u32_of(OP, "width", xs.w)?,
            ho: u32_of(OP, "output height", ys.h)?,
            wo: u32_of(OP, "output width", ys.w)?,
            stride: u32_of(OP, "stride", stride)?,
            runs_per_row: u32_of(OP, "runs per row", runs_per_row)?,
        };
        let device = ctx.device();
        if stride == 1 && xs.w.is_multiple_of(4) {
            let groups = workgroups(OP, device, [(xs.plane() / 4).div_ceil(WG_SIZE), xs.c, xs.n])?;
            return Ok(self.vec4.get().prepare(
                device,
                &params,
                &[(1, x.buffer()), (2, weight.buffer()), (3, y.buffer())],
                groups,
            ));
        }
        let groups = workgroups(
            OP,
            device,
            [(ys.h * runs_per_row).div_ceil(WG_SIZE), xs.c, xs.n],
        )?;
        Ok(self.pipeline.get().prepare(
            device,
            &params,
            &[(1, x.buffer()), (2, weight.buffer()), (3, y.buffer())],
            groups,
        ))
    }
}
