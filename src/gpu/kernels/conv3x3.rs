//! The 3x3 pad-1 convolution of the network stem.

use super::conv1x1::bind_epilogue;
use super::packed::{PackedGemm, PackedPipelines};
use super::params::Conv3x3Params;
use super::{
    Conv1x1Epilogue, Dispatch, LazyPipeline, expect_dims, expect_distinct, u32_of, workgroups,
};
use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuTensor};
use crate::shape::{Shape4, check_nonempty, check_stride};

/// Invocations per workgroup (`WG_SIZE` in `conv3x3.wgsl`).
const WG_SIZE: usize = 64;
/// Adjacent output pixels of one row per invocation (`PX` in `conv3x3.wgsl`).
const PX: usize = 8;
/// Output channels per workgroup (`CO_TILE` in `conv3x3.wgsl`).
const CO_TILE: usize = 16;

/// `shaders/conv3x3_gemm.wgsl` (the register-tiled GEMM over weights packed by
/// `conv1x1_pack.wgsl`, reading its input through im2col on the fly) and
/// `shaders/conv3x3.wgsl` (direct, [`Conv3x3::prepare_direct`]): 3x3 convolution, padding 1,
/// any stride, no bias.
pub struct Conv3x3 {
    pipeline: LazyPipeline,
    gemm: PackedPipelines,
}

impl Conv3x3 {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: LazyPipeline::new(device, "conv3x3.wgsl", "main"),
            gemm: PackedPipelines::new(device, "conv3x3_gemm.wgsl"),
        }
    }

    /// Prepare the dispatch computing `y = conv3x3(x, weight)` (as [`Conv3x3::prepare_direct`]):
    /// on CPU adapters ([`KernelPolicy::register_tiled`](crate::gpu::KernelPolicy::register_tiled)) with the im2col GEMM, else
    /// with the direct kernel.
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        x: &GpuTensor,
        weight: &GpuTensor,
        stride: usize,
        y: &GpuTensor,
    ) -> Result<Dispatch> {
        if !ctx.policy().register_tiled() {
            return self.prepare_direct(ctx, x, weight, stride, y);
        }
        self.prepare_gemm(ctx, x, weight, stride, y)
    }

    /// [`Conv3x3::prepare`] with the im2col GEMM whatever the adapter.
    pub fn prepare_gemm(
        &self,
        ctx: &GpuContext,
        x: &GpuTensor,
        weight: &GpuTensor,
        stride: usize,
        y: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "conv3x3";
        // The direct kernel's checks apply unchanged.
        self.check(OP, x, weight, stride, y)?;
        let xs = x.shape4(OP, "input")?;
        let cout = weight.dims()[0];
        let ep = bind_epilogue(
            OP,
            ctx,
            &Conv1x1Epilogue::default(),
            xs.strided(cout, stride),
            None,
        )?;
        PackedGemm {
            op: OP,
            gemm: &self.gemm,
            pack: ctx.kernels().conv1x1().pack_pipeline(),
            x,
            xs,
            depth: 9 * xs.c,
            weight,
            transposed: false,
            cout,
            stride,
            epilogue: &ep,
            y,
            extra: None,
            whole: false,
            input_affine: false,
        }
        .build(ctx)
    }

    fn check(
        &self,
        op: &'static str,
        x: &GpuTensor,
        weight: &GpuTensor,
        stride: usize,
        y: &GpuTensor,
    ) -> Result<()> {
        check_stride(op, stride)?;
        let xs = x.shape4(op, "input")?;
        check_nonempty(op, "input", xs)?;
        let cout = weight_cout(op, "weight", weight.dims(), xs.c, 1)?;
        expect_dims(op, "output", y, &xs.strided(cout, stride).dims())?;
        expect_distinct(op, y, &[("input", x), ("weight", weight)])
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing `y = conv3x3(x, weight)` with padding 1 and stride `stride`: `x` is
    /// `[N, Cin, H, W]`, `weight` `[Cout, Cin, 3, 3]` and `y` `[N, Cout, (H-1)/s+1, (W-1)/s+1]`
    /// (the same computation as [`crate::cpu::conv3x3`]); `y` must be a tensor of its own.
    /// The direct kernel (`shaders/conv3x3.wgsl`).
    pub fn prepare_direct(
        &self,
        ctx: &GpuContext,
        x: &GpuTensor,
        weight: &GpuTensor,
        stride: usize,
        y: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "conv3x3";
        check_stride(OP, stride)?;
        let xs = x.shape4(OP, "input")?;
        check_nonempty(OP, "input", xs)?;
        let cout = weight_cout(OP, "weight", weight.dims(), xs.c, 0)?;
        let ys = xs.strided(cout, stride);
        expect_dims(OP, "output", y, &ys.dims())?;
        expect_distinct(OP, y, &[("input", x), ("weight", weight)])?;
        let params = conv3x3_params(OP, xs, ys, stride)?;
        let device = ctx.device();
        let groups = workgroups(
            OP,
            device,
            [
                (ys.h * ys.w.div_ceil(PX)).div_ceil(WG_SIZE),
                cout.div_ceil(CO_TILE),
                xs.n,
            ],
        )?;
        Ok(self.pipeline.get().prepare(
            device,
            &params,
            &[(1, x.buffer()), (2, weight.buffer()), (3, y.buffer())],
            groups,
        ))
    }
}

/// The output channels of a 3x3 convolution weight `dims` (`[Cout, Cin, 3, 3]`, `what` in the
/// error) for an input of `cin` channels, at least `min_cout` of them.
pub(super) fn weight_cout(
    op: &'static str,
    what: &'static str,
    dims: &[usize],
    cin: usize,
    min_cout: usize,
) -> Result<usize> {
    match dims {
        [cout, c, 3, 3] if *c == cin && *cout >= min_cout => Ok(*cout),
        d => Err(Error::shape(
            op,
            what,
            format!("[Cout, {cin}, 3, 3]"),
            format!("{d:?}"),
        )),
    }
}

/// The kernels' parameters of the pad-1, stride-`stride` 3x3 convolution from `xs` to `ys`.
pub(super) fn conv3x3_params(
    op: &'static str,
    xs: Shape4,
    ys: Shape4,
    stride: usize,
) -> Result<Conv3x3Params> {
    Ok(Conv3x3Params {
        n: u32_of(op, "batch size", xs.n)?,
        cin: u32_of(op, "input channels", xs.c)?,
        cout: u32_of(op, "output channels", ys.c)?,
        h: u32_of(op, "height", xs.h)?,
        w: u32_of(op, "width", xs.w)?,
        ho: u32_of(op, "output height", ys.h)?,
        wo: u32_of(op, "output width", ys.w)?,
        stride: u32_of(op, "stride", stride)?,
    })
}
