//! The Active Shift Layer fused into the following 1x1 convolution: the GEMM reads its input
//! through the bilinear shift, so the shifted tensor never exists in memory.

use super::conv1x1::{PackedGemm, PackedPipelines, bind_epilogue, weight_cout};
use super::{Dispatch, Pipeline, expect_dims, expect_distinct, u32_of, workgroups};
use crate::error::{Error, Result};
use crate::gpu::kernels::Conv1x1Epilogue;
use crate::gpu::{GpuContext, GpuTensor};
use crate::shape::{Shape4, check_nonempty, check_stride};

/// Most input channels of one fused dispatch (one uniform slab of taps, `vec4` per channel).
pub const ASL_CONV1X1_MAX_CHANNELS: usize = 4096;

/// Whether [`GpuModel`](crate::GpuModel) fuses each ASL into its 1x1 convolution by default on
/// `ctx`: on no adapter measured so far, unless the environment variable `ACTIVESHIFT_FUSED=1`
/// asks for it ([`GpuModel::set_fused`](crate::GpuModel::set_fused) chooses per model). On
/// lavapipe, with the row-sliding ASL kernel, the ASL kernel followed by the GEMM is as fast
/// as the fused kernel at batch 8 and faster at batch 1 (the fused GEMM reads the four taps of
/// a pixel again for every block of output channels, and on a CPU adapter loads are what
/// cost); on SwiftShader the unfused pair is faster too (warm w32 forward about 0.25 s against
/// 0.31 s); hardware GPUs are unmeasured.
pub fn fused_by_default(_ctx: &GpuContext) -> bool {
    std::env::var("ACTIVESHIFT_FUSED").is_ok_and(|v| v == "1")
}

/// Mirrors `struct TapsParams` in `shaders/asl_taps.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct TapsParams {
    c: u32,
    offset: u32,
    _pad: [u32; 2],
}

/// `shaders/asl_conv1x1.wgsl` (after `asl_taps.wgsl` and `conv1x1_pack.wgsl`):
/// `y = epilogue(W · ASL(x; shift, stride))` in one GEMM.
///
/// Two shaders: `asl_conv1x1_vec4.wgsl` (vec4 loads and stores) for stride 1 with a width
/// divisible by 4 (except on SwiftShader, which takes minutes to compile it),
/// `asl_conv1x1.wgsl` for every other shape; each with an entry point for 32
/// and one for 64 output channels per invocation (chosen by the layer's output channels).
pub struct AslConv1x1 {
    gemm: PackedPipelines,
    gemm_vec4: PackedPipelines,
    taps: Pipeline,
}

impl AslConv1x1 {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            gemm: PackedPipelines::new(device, "asl_conv1x1.wgsl"),
            gemm_vec4: PackedPipelines::new(device, "asl_conv1x1_vec4.wgsl"),
            taps: Pipeline::new(device, "asl_taps.wgsl", "main"),
        }
    }

    /// Whether the vectorised pipeline handles input `xs` at `stride` (stride 1, `W`
    /// divisible by 4); [`AslConv1x1::prepare`] uses it then.
    pub fn supports_vec4(xs: Shape4, stride: usize) -> bool {
        stride == 1 && xs.w.is_multiple_of(4)
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing
    /// `y = epilogue(W · ASL(x; shift, stride))`: `x` is `[N, C, H, W]`, `shift` `[2, C]` (all
    /// `xpos`, then all `ypos`), `weight` `[Cout, C]`, `y` `[N, Cout, (H-1)/s+1, (W-1)/s+1]`.
    /// Equal (up to rounding) to [`AslForward`](super::AslForward) followed by
    /// [`Conv1x1`](super::Conv1x1) at stride 1 with the same epilogue; a NaN shift makes its
    /// channel contribute 0, as there.
    ///
    /// # Errors
    /// [`Error::Shape`] for mismatched tensors, [`Error::InvalidArgument`] for a zero stride or
    /// an output sharing a buffer with an input, [`Error::DeviceLimit`] for more than
    /// [`ASL_CONV1X1_MAX_CHANNELS`] input channels or sizes beyond the device's limits.
    #[allow(clippy::too_many_arguments)] // mirrors the kernel's bindings one for one
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        x: &GpuTensor,
        shift: &GpuTensor,
        stride: usize,
        weight: &GpuTensor,
        epilogue: Conv1x1Epilogue<'_>,
        y: &GpuTensor,
    ) -> Result<Dispatch> {
        let xs = x.shape4("asl_conv1x1", "input")?;
        // SwiftShader spends minutes compiling the vec4 kernel (Chromium then kills its GPU
        // process); the general one compiles in about a second there.
        let vec4 = Self::supports_vec4(xs, stride) && !super::conv1x1::swiftshader_like(ctx);
        self.prepare_variant(vec4, ctx, x, shift, stride, weight, epilogue, y)
    }

    /// [`AslConv1x1::prepare`] with the vectorised pipeline (`vec4`, an error where
    /// [`AslConv1x1::supports_vec4`] is false) or the general one.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_variant(
        &self,
        vec4: bool,
        ctx: &GpuContext,
        x: &GpuTensor,
        shift: &GpuTensor,
        stride: usize,
        weight: &GpuTensor,
        epilogue: Conv1x1Epilogue<'_>,
        y: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "asl_conv1x1";
        let xs = x.shape4(OP, "input")?;
        check_stride(OP, stride)?;
        check_nonempty(OP, "input", xs)?;
        expect_dims(OP, "shift", shift, &[2, xs.c])?;
        if xs.c > ASL_CONV1X1_MAX_CHANNELS {
            return Err(Error::DeviceLimit {
                op: OP,
                what: "input channels of the fused shift",
                needed: xs.c as u64,
                limit: ASL_CONV1X1_MAX_CHANNELS as u64,
            });
        }
        let cout = weight_cout(OP, weight, xs.c)?;
        let ys = xs.strided(cout, stride);
        let ep = bind_epilogue(OP, ctx, &epilogue, ys)?;
        expect_dims(OP, "output", y, &ys.dims())?;
        expect_distinct(OP, y, &[("input", x), ("shift", shift), ("weight", weight)])?;
        if let Some(r) = epilogue.residual {
            expect_distinct(OP, y, &[("residual", r)])?;
        }
        if vec4 && !Self::supports_vec4(xs, stride) {
            return Err(Error::invalid(
                OP,
                format!(
                    "the vec4 pipeline needs stride 1 and a width divisible by 4, got {xs} at stride {stride}"
                ),
            ));
        }
        let device = ctx.device();
        let taps_params = TapsParams {
            c: u32_of(OP, "channels", xs.c)?,
            offset: 0,
            _pad: [0; 2],
        };
        let taps_groups = workgroups(OP, device, [xs.c.div_ceil(64), 1, 1])?;
        let taps = |packed: &wgpu::Buffer, offset: usize| -> Result<Dispatch> {
            let params = TapsParams {
                offset: u32_of(OP, "packed weights", offset)?,
                ..taps_params
            };
            Ok(self.taps.prepare(
                device,
                &params,
                &[(1, shift.buffer()), (2, packed)],
                taps_groups,
            ))
        };
        PackedGemm {
            op: OP,
            gemm: if vec4 { &self.gemm_vec4 } else { &self.gemm },
            pack: ctx.kernels().conv1x1(device).pack_pipeline(),
            x,
            xs,
            depth: xs.c,
            weight,
            cout,
            stride,
            epilogue: &ep,
            y,
            extra: Some(&taps),
            whole: false,
        }
        .build(ctx)
    }
}
