//! The Active Shift Layer fused into the following 1x1 convolution: the GEMM reads its input
//! through the bilinear shift, so the shifted tensor never exists in memory.

use super::conv1x1::{bind_epilogue, weight_cout};
use super::packed::{PackedGemm, PackedPipelines};
use super::params::{Conv1x1Params, TapsParams};
use super::{Dispatch, LazyPipeline, Pipeline, expect_dims, expect_distinct, u32_of, workgroups};
use crate::error::{Error, Result};
use crate::gpu::kernels::Conv1x1Epilogue;
use crate::gpu::{GpuContext, GpuTensor};
use crate::shape::{Shape4, check_nonempty, check_stride};

/// Most input channels of one fused dispatch of the register-tiled variants (one uniform slab
/// of taps, `vec4` per channel); [`AslConv1x1Variant::Tiled`] has no such limit.
pub const ASL_CONV1X1_MAX_CHANNELS: usize = 4096;

/// The kernels behind [`AslConv1x1`]: same results, different GEMMs.
/// [`AslConv1x1::prepare`] picks one by adapter and shape; [`AslConv1x1::prepare_variant`] runs
/// a named one (benchmarks, tests: every variant is checked against the CPU twin and the
/// unfused path).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AslConv1x1Variant {
    /// `shaders/asl_conv1x1.wgsl`: the register-tiled GEMM of `conv1x1_reg.wgsl` reading its
    /// pixels through the shift (CPU adapters; any shape).
    Register,
    /// `shaders/asl_conv1x1_vec4.wgsl`: its vec4 twin (stride 1, width divisible by 4).
    Vec4,
    /// `shaders/asl_conv1x1_tiled.wgsl`: the workgroup-tiled GEMM of `conv1x1.wgsl` loading its
    /// input tile through the shift (adapters other than CPU ones; any shape).
    Tiled,
}

impl AslConv1x1Variant {
    /// Every variant.
    pub const ALL: [AslConv1x1Variant; 3] = [Self::Register, Self::Vec4, Self::Tiled];

    /// A short name (`register`, `vec4`, `tiled`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Vec4 => "vec4",
            Self::Tiled => "tiled",
        }
    }

    /// Whether this variant handles input `xs` at `stride` (only [`AslConv1x1Variant::Vec4`]
    /// is limited: stride 1 and a width divisible by 4).
    pub fn supports(self, xs: Shape4, stride: usize) -> bool {
        match self {
            Self::Vec4 => stride == 1 && xs.w.is_multiple_of(4),
            _ => true,
        }
    }
}

/// The operands of [`AslConv1x1::prepare`]: `y = epilogue(W · ASL(x; shift, stride))`.
#[derive(Clone, Copy)]
pub struct AslConv1x1Args<'a> {
    /// `[N, C, H, W]` input.
    pub x: &'a GpuTensor,
    /// `[2, C]` shift: all `xpos`, then all `ypos`.
    pub shift: &'a GpuTensor,
    /// The shift's stride (the GEMM itself runs at stride 1).
    pub stride: usize,
    /// `[Cout, C]` weight.
    pub weight: &'a GpuTensor,
    /// What the GEMM applies to its result (no input affine: refused).
    pub epilogue: Conv1x1Epilogue<'a>,
    /// `[N, Cout, (H-1)/s+1, (W-1)/s+1]` output.
    pub y: &'a GpuTensor,
}

/// `y = epilogue(W · ASL(x; shift, stride))` in one GEMM (after `asl_taps.wgsl`, which turns
/// the shifts into per-channel taps, and for the register-tiled variants `conv1x1_pack.wgsl`).
///
/// Three shaders ([`AslConv1x1Variant`], chosen by [`KernelPolicy`](crate::gpu::KernelPolicy)): on CPU adapters
/// `asl_conv1x1_vec4.wgsl` (vec4 loads and stores) for stride 1 with a width divisible by 4
/// (except on SwiftShader, which takes minutes to compile it) and `asl_conv1x1.wgsl` for every
/// other shape, each with an entry point for 32 and one for 64 output channels per invocation
/// (the latter where [`KernelPolicy::wide_gemm`](crate::gpu::KernelPolicy::wide_gemm) says);
/// elsewhere `asl_conv1x1_tiled.wgsl`, the workgroup-tiled GEMM.
pub struct AslConv1x1 {
    gemm: PackedPipelines,
    gemm_vec4: PackedPipelines,
    tiled: LazyPipeline,
    taps: Pipeline,
}

impl AslConv1x1 {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            gemm: PackedPipelines::new(device, "asl_conv1x1.wgsl"),
            gemm_vec4: PackedPipelines::new(device, "asl_conv1x1_vec4.wgsl"),
            tiled: LazyPipeline::new(device, "asl_conv1x1_tiled.wgsl", "main"),
            taps: Pipeline::new(device, "asl_taps.wgsl", "main"),
        }
    }

    /// Whether the vectorised pipeline handles input `xs` at `stride` (stride 1, `W`
    /// divisible by 4).
    pub fn supports_vec4(xs: Shape4, stride: usize) -> bool {
        AslConv1x1Variant::Vec4.supports(xs, stride)
    }

    /// The variant [`AslConv1x1::prepare`] uses for input `xs` to `cout` channels at `stride`
    /// under `policy` ([`KernelPolicy::asl_conv1x1`](crate::gpu::KernelPolicy::asl_conv1x1)).
    pub fn choose(
        policy: &crate::gpu::KernelPolicy,
        xs: Shape4,
        cout: usize,
        stride: usize,
    ) -> AslConv1x1Variant {
        policy.asl_conv1x1(xs, cout, stride)
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing
    /// `y = epilogue(W · ASL(x; shift, stride))` ([`AslConv1x1Args`]), with the variant
    /// [`AslConv1x1::choose`] picks. Equal (up to rounding) to [`AslForward`](super::AslForward)
    /// followed by [`Conv1x1`](super::Conv1x1) at stride 1 with the same epilogue; a NaN shift
    /// makes its channel contribute 0, as there.
    ///
    /// # Errors
    /// [`Error::Shape`] for mismatched tensors, [`Error::InvalidArgument`] for a zero stride or
    /// an output sharing a buffer with an input, [`Error::DeviceLimit`] for more than
    /// [`ASL_CONV1X1_MAX_CHANNELS`] input channels or sizes beyond the device's limits.
    pub fn prepare(&self, ctx: &GpuContext, args: AslConv1x1Args<'_>) -> Result<Dispatch> {
        let xs = args.x.shape4("asl_conv1x1", "input")?;
        let cout = args.weight.dims().first().copied().unwrap_or(0);
        let variant = Self::choose(ctx.policy(), xs, cout, args.stride);
        self.prepare_variant(variant, ctx, args)
    }

    /// [`AslConv1x1::prepare`] with a given variant (an error where
    /// [`AslConv1x1Variant::supports`] is false).
    pub fn prepare_variant(
        &self,
        variant: AslConv1x1Variant,
        ctx: &GpuContext,
        args: AslConv1x1Args<'_>,
    ) -> Result<Dispatch> {
        let AslConv1x1Args {
            x,
            shift,
            stride,
            weight,
            epilogue,
            y,
        } = args;
        const OP: &str = "asl_conv1x1";
        let xs = x.shape4(OP, "input")?;
        check_stride(OP, stride)?;
        check_nonempty(OP, "input", xs)?;
        expect_dims(OP, "shift", shift, &[2, xs.c])?;
        if xs.c > ASL_CONV1X1_MAX_CHANNELS && variant != AslConv1x1Variant::Tiled {
            return Err(Error::DeviceLimit {
                op: OP,
                what: "input channels of the fused shift",
                needed: xs.c as u64,
                limit: ASL_CONV1X1_MAX_CHANNELS as u64,
            });
        }
        let cout = weight_cout(OP, weight, xs.c)?;
        let ys = xs.strided(cout, stride);
        let ep = bind_epilogue(OP, ctx, &epilogue, ys, None)?;
        expect_dims(OP, "output", y, &ys.dims())?;
        expect_distinct(OP, y, &[("input", x), ("shift", shift), ("weight", weight)])?;
        if let Some(r) = epilogue.residual {
            expect_distinct(OP, y, &[("residual", r)])?;
        }
        if !variant.supports(xs, stride) {
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
            ..Default::default()
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
        if variant == AslConv1x1Variant::Tiled {
            // The taps in their own storage buffer (parameter-only: a setup launch), then the
            // tiled GEMM over 64x64 output tiles.
            let tap_buf = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("activeshift shift taps"),
                size: (xs.c * 16) as u64,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            });
            ctx.count_buffer(0);
            let params = Conv1x1Params::new(OP, xs, cout, stride, ep.flags)?;
            let groups = workgroups(
                OP,
                device,
                [ys.plane().div_ceil(64), cout.div_ceil(64), xs.n],
            )?;
            let gemm = self.tiled.get().prepare(
                device,
                &params,
                &[
                    (1, x.buffer()),
                    (2, weight.buffer()),
                    (3, ep.scale),
                    (4, ep.bias),
                    (5, ep.residual),
                    (6, y.buffer()),
                    (7, &tap_buf),
                ],
                groups,
            );
            return Ok(taps(&tap_buf, 0)?.setup().then(gemm));
        }
        PackedGemm {
            op: OP,
            gemm: if variant == AslConv1x1Variant::Vec4 {
                &self.gemm_vec4
            } else {
                &self.gemm
            },
            pack: ctx.kernels().conv1x1().pack_pipeline(),
            x,
            xs,
            depth: xs.c,
            weight,
            transposed: false,
            cout,
            stride,
            epilogue: &ep,
            y,
            extra: Some(&taps),
            whole: false,
            input_affine: false,
        }
        .build(ctx)
    }
}
