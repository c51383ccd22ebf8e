//! The 1x1 convolution GEMMs with their epilogue (five variants: workgroup-tiled,
//! register-tiled over packed weights and its vec4 form, each of those two also as one
//! dispatch), and the epilogue binding they share with the fused ASL GEMM. The packed GEMM
//! machinery is in `packed.rs`, the backward GEMMs in `conv1x1_backward.rs`.

use super::packed::{PackedGemm, PackedPipelines};
use super::params::Conv1x1Params;
use super::{Dispatch, LazyPipeline, Pipeline, expect_dims, expect_distinct, u32_of, workgroups};
use crate::error::Result;
use crate::gpu::{GpuContext, GpuTensor};
use crate::shape::{Shape4, check_nonempty, check_stride};

/// Output tile of the workgroup-tiled GEMMs (`TILE_M` x `TILE_N` in their WGSL).
pub(super) const TILE: usize = 64;
pub(crate) const FLAG_AFFINE: u32 = 1;
pub(crate) const FLAG_RESIDUAL: u32 = 2;
pub(crate) const FLAG_RELU: u32 = 4;
/// Read each input value through `max(in_scale[ci] * x + in_bias[ci], 0)` (the 1x1 GEMMs).
pub(super) const FLAG_INPUT_AFFINE: u32 = 16;

impl Conv1x1Params {
    pub(crate) fn new(
        op: &'static str,
        xs: Shape4,
        cout: usize,
        stride: usize,
        flags: u32,
    ) -> Result<Self> {
        check_stride(op, stride)?;
        check_nonempty(op, "input", xs)?;
        if cout == 0 {
            return Err(crate::Error::invalid(op, "zero output channels"));
        }
        let ys = xs.strided(cout, stride);
        Ok(Self {
            n: u32_of(op, "batch size", xs.n)?,
            cin: u32_of(op, "input channels", xs.c)?,
            cout: u32_of(op, "output channels", cout)?,
            h: u32_of(op, "height", xs.h)?,
            w: u32_of(op, "width", xs.w)?,
            ho: u32_of(op, "output height", ys.h)?,
            wo: u32_of(op, "output width", ys.w)?,
            stride: u32_of(op, "stride", stride)?,
            flags,
            k_chunk: 0,
            splits: 0,
            ..Default::default()
        })
    }
}

/// What [`Conv1x1`] applies to the GEMM result, in this order: per-output-channel affine
/// (`y = scale[co] * y + bias[co]`), residual add, ReLU.
#[derive(Clone, Copy, Default)]
pub struct Conv1x1Epilogue<'a> {
    /// `(scale, bias)`, each `[Cout]`.
    pub affine: Option<(&'a GpuTensor, &'a GpuTensor)>,
    /// A tensor of the output's shape added to the result.
    pub residual: Option<&'a GpuTensor>,
    /// Clamp negative results to zero.
    pub relu: bool,
    /// `(scale, bias)`, each `[Cin]`, applied to the *input* as it is read:
    /// `x' = max(scale[ci] * x + bias[ci], 0)`, a per-channel affine + ReLU (a pre-activation)
    /// folded into the convolution that reads it, so that it needs no launch and no tensor of
    /// its own. [`Conv1x1`] only; the other kernels that take an epilogue refuse it.
    pub input_affine_relu: Option<(&'a GpuTensor, &'a GpuTensor)>,
}

/// The operands of [`Conv1x1::prepare_variant`]: `y = epilogue(W x)` at `stride`.
#[derive(Clone, Copy)]
pub struct Conv1x1Args<'a> {
    /// `[N, Cin, H, W]` input.
    pub x: &'a GpuTensor,
    /// `[Cout, Cin]` weight.
    pub weight: &'a GpuTensor,
    /// Stride.
    pub stride: usize,
    /// What the GEMM applies to its input and its result.
    pub epilogue: Conv1x1Epilogue<'a>,
    /// `[N, Cout, (H-1)/s+1, (W-1)/s+1]` output.
    pub y: &'a GpuTensor,
}

/// The GEMM kernels behind [`Conv1x1`]: same results, different tiling. [`Conv1x1::prepare`]
/// picks one by shape; [`Conv1x1::prepare_variant`] runs a named one (benchmarks, tests: every
/// variant is checked against the CPU twin).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Conv1x1Variant {
    /// `shaders/conv1x1.wgsl`: 64x64 output tiles through workgroup memory, 4x4 outputs per
    /// invocation (what [`Conv1x1::prepare`] uses on adapters other than CPU ones).
    Tiled,
    /// `shaders/conv1x1_reg.wgsl`: no workgroup memory; each invocation owns 4 output pixels
    /// and 32 output channels (64 from 64 output channels on, where
    /// [`KernelPolicy::wide_gemm`](crate::gpu::KernelPolicy::wide_gemm) says); weights packed into
    /// uniform-buffer slabs. Any shape and stride.
    Register,
    /// `shaders/conv1x1_vec4.wgsl`: as [`Conv1x1Variant::Register`] with vec4 loads and stores
    /// of the pixels; stride 1 and `H*W` divisible by 4 only.
    Vec4,
    /// [`Conv1x1Variant::Register`] as one dispatch (`main_whole` entry points): all the packed
    /// weights in one storage buffer instead of one uniform slab per dispatch. For small planes,
    /// where several slab dispatches would each have little work ([`Conv1x1::choose`]).
    RegisterWhole,
    /// [`Conv1x1Variant::Vec4`] as one dispatch, as [`Conv1x1Variant::RegisterWhole`].
    Vec4Whole,
}

impl Conv1x1Variant {
    /// Every variant.
    pub const ALL: [Conv1x1Variant; 5] = [
        Self::Tiled,
        Self::Register,
        Self::Vec4,
        Self::RegisterWhole,
        Self::Vec4Whole,
    ];

    /// A short name (`tiled`, `register`, `vec4`, `register_whole`, `vec4_whole`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Tiled => "tiled",
            Self::Register => "register",
            Self::Vec4 => "vec4",
            Self::RegisterWhole => "register_whole",
            Self::Vec4Whole => "vec4_whole",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Self::Tiled => "conv1x1.wgsl",
            Self::Register | Self::RegisterWhole => "conv1x1_reg.wgsl",
            Self::Vec4 | Self::Vec4Whole => "conv1x1_vec4.wgsl",
        }
    }

    /// Whether this variant computes a 1x1 convolution of input `xs` at `stride` (only
    /// [`Conv1x1Variant::Vec4`] and [`Conv1x1Variant::Vec4Whole`] are limited: stride 1 and
    /// `H*W` divisible by 4).
    pub fn supports(self, xs: Shape4, stride: usize) -> bool {
        match self {
            Self::Vec4 | Self::Vec4Whole => stride == 1 && xs.plane().is_multiple_of(4),
            _ => true,
        }
    }
}

/// The epilogue's buffers and flags, shared by the 1x1 GEMMs (plain and shifted).
pub(crate) struct EpilogueBinding<'b> {
    pub(crate) flags: u32,
    pub(crate) scale: &'b wgpu::Buffer,
    pub(crate) bias: &'b wgpu::Buffer,
    pub(crate) residual: &'b wgpu::Buffer,
    /// The input affine's `[Cin]` scale and bias (bindings 8 and 9 of the 1x1 GEMMs).
    pub(crate) in_scale: &'b wgpu::Buffer,
    pub(crate) in_bias: &'b wgpu::Buffer,
}

/// Check `epilogue` against an output of shape `ys` and pick its buffers (placeholders for the
/// parts that are off). `cin`: the input channels, for a kernel that takes
/// [`Conv1x1Epilogue::input_affine_relu`] (None: the kernel refuses it).
pub(crate) fn bind_epilogue<'b>(
    op: &'static str,
    ctx: &'b GpuContext,
    epilogue: &Conv1x1Epilogue<'b>,
    ys: Shape4,
    cin: Option<usize>,
) -> Result<EpilogueBinding<'b>> {
    let mut flags = 0;
    if let Some((scale, bias)) = epilogue.input_affine_relu {
        let Some(cin) = cin else {
            return Err(crate::Error::invalid(
                op,
                "this kernel takes no input affine (only the 1x1 convolution does)",
            ));
        };
        expect_dims(op, "input affine scale", scale, &[cin])?;
        expect_dims(op, "input affine bias", bias, &[cin])?;
        flags |= FLAG_INPUT_AFFINE;
    }
    if let Some((scale, bias)) = epilogue.affine {
        expect_dims(op, "affine scale", scale, &[ys.c])?;
        expect_dims(op, "affine bias", bias, &[ys.c])?;
        flags |= FLAG_AFFINE;
    }
    if let Some(r) = epilogue.residual {
        expect_dims(op, "residual", r, &ys.dims())?;
        flags |= FLAG_RESIDUAL;
    }
    if epilogue.relu {
        flags |= FLAG_RELU;
    }
    let none = ctx.kernels().placeholder();
    let (scale, bias) = epilogue
        .affine
        .map_or((none, none), |(s, b)| (s.buffer(), b.buffer()));
    let residual = epilogue.residual.map_or(none, |r| r.buffer());
    let (in_scale, in_bias) = epilogue
        .input_affine_relu
        .map_or((none, none), |(s, b)| (s.buffer(), b.buffer()));
    Ok(EpilogueBinding {
        flags,
        scale,
        bias,
        residual,
        in_scale,
        in_bias,
    })
}

/// The output channels of a `[Cout, Cin]` weight whose `Cin` must be `cin`.
pub(crate) fn weight_cout(op: &'static str, weight: &GpuTensor, cin: usize) -> Result<usize> {
    matrix_rows(op, "weight", weight, cin)
}

/// The rows of `t`, a `[Cout, Cin]` matrix (a 1x1 weight or its gradient, named `what`) whose
/// `Cin` must be `cin`.
pub(crate) fn matrix_rows(
    op: &'static str,
    what: &str,
    t: &GpuTensor,
    cin: usize,
) -> Result<usize> {
    match t.dims() {
        [cout, c] if *c == cin && *cout > 0 => Ok(*cout),
        d => Err(crate::Error::shape(
            op,
            what,
            format!("[Cout, {cin}] with Cout >= 1"),
            format!("{d:?}"),
        )),
    }
}

/// `shaders/conv1x1*.wgsl`: 1x1 convolution with stride and epilogue, as a GEMM (one pipeline
/// per [`Conv1x1Variant`], each built on first use).
pub struct Conv1x1 {
    tiled: LazyPipeline,
    register: PackedPipelines,
    vec4: PackedPipelines,
    pack: LazyPipeline,
}

impl Conv1x1 {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            tiled: LazyPipeline::new(device, Conv1x1Variant::Tiled.file(), "main"),
            register: PackedPipelines::with_whole(device, Conv1x1Variant::Register.file()),
            vec4: PackedPipelines::with_whole(device, Conv1x1Variant::Vec4.file()),
            pack: LazyPipeline::new(device, "conv1x1_pack.wgsl", "main"),
        }
    }

    /// `shaders/conv1x1_pack.wgsl`, shared with the fused ASL GEMM.
    pub(crate) fn pack_pipeline(&self) -> &Pipeline {
        self.pack.get()
    }

    /// The variant [`Conv1x1::prepare`] uses for input `xs` to `cout` channels at `stride`
    /// under `policy` ([`KernelPolicy::conv1x1`](crate::gpu::KernelPolicy::conv1x1)).
    pub fn choose(
        policy: &crate::gpu::KernelPolicy,
        xs: Shape4,
        cout: usize,
        stride: usize,
    ) -> Conv1x1Variant {
        policy.conv1x1(xs, cout, stride)
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing `y = epilogue(W x)` with
    /// `x` `[N, Cin, H, W]`, `weight` `[Cout, Cin]` and `y` `[N, Cout, (H-1)/s+1, (W-1)/s+1]`,
    /// with the variant [`Conv1x1::choose`] picks.
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        x: &GpuTensor,
        weight: &GpuTensor,
        stride: usize,
        epilogue: Conv1x1Epilogue<'_>,
        y: &GpuTensor,
    ) -> Result<Dispatch> {
        let xs = x.shape4("conv1x1", "input")?;
        let cout = weight_cout("conv1x1", weight, xs.c)?;
        let args = Conv1x1Args {
            x,
            weight,
            stride,
            epilogue,
            y,
        };
        self.prepare_variant(Self::choose(ctx.policy(), xs, cout, stride), ctx, args)
    }

    /// The GEMM of `variant` (a packed one: register-tiled or vec4) multiplying by the
    /// transpose of `weight` (`[K, C]`): `y[n, c, p] = sum_k weight[k, c] * x[n, k, p]`, `x`
    /// `[N, K, H, W]`, `y` `[N, C, H, W]` (stride 1, no epilogue). The 1x1 convolution's input
    /// gradient at stride 1 ([`Conv1x1BackwardInput`](super::Conv1x1BackwardInput)).
    pub(crate) fn prepare_transposed(
        &self,
        variant: Conv1x1Variant,
        ctx: &GpuContext,
        x: &GpuTensor,
        weight: &GpuTensor,
        y: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "conv1x1_backward_input";
        let xs = x.shape4(OP, "output gradient")?;
        let c = match weight.dims() {
            [k, c] if *k == xs.c && *c > 0 => *c,
            d => {
                return Err(crate::Error::shape(
                    OP,
                    "weight",
                    format!("[{}, C]", xs.c),
                    format!("{d:?}"),
                ));
            }
        };
        Conv1x1Params::new(OP, xs, c, 1, 0)?;
        expect_dims(OP, "input gradient", y, &xs.strided(c, 1).dims())?;
        expect_distinct(OP, y, &[("output gradient", x), ("weight", weight)])?;
        let Some((gemm, whole)) = self.packed(variant) else {
            return Err(crate::Error::invalid(
                OP,
                format!("the {} GEMM reads no packed weights", variant.name()),
            ));
        };
        if !variant.supports(xs, 1) {
            return Err(crate::Error::invalid(
                OP,
                format!("the {} variant does not handle {xs}", variant.name()),
            ));
        }
        let ep = bind_epilogue(
            OP,
            ctx,
            &Conv1x1Epilogue::default(),
            y.shape4(OP, "input gradient")?,
            None,
        )?;
        PackedGemm {
            op: OP,
            gemm,
            whole,
            input_affine: true,
            pack: self.pack_pipeline(),
            x,
            xs,
            depth: xs.c,
            weight,
            transposed: true,
            cout: c,
            stride: 1,
            epilogue: &ep,
            y,
            extra: None,
        }
        .build(ctx)
    }

    /// [`Conv1x1::prepare`] with a given variant.
    ///
    /// # Errors
    /// As [`Conv1x1::prepare`], and [`crate::Error::InvalidArgument`] when the variant does
    /// not handle the shape ([`Conv1x1Variant::supports`]).
    pub fn prepare_variant(
        &self,
        variant: Conv1x1Variant,
        ctx: &GpuContext,
        args: Conv1x1Args<'_>,
    ) -> Result<Dispatch> {
        let Conv1x1Args {
            x,
            weight,
            stride,
            epilogue,
            y,
        } = args;
        const OP: &str = "conv1x1";
        let xs = x.shape4(OP, "input")?;
        let cout = weight_cout(OP, weight, xs.c)?;
        let params = Conv1x1Params::new(OP, xs, cout, stride, 0)?;
        let ys = xs.strided(cout, stride);
        let ep = bind_epilogue(OP, ctx, &epilogue, ys, Some(xs.c))?;
        expect_dims(OP, "output", y, &ys.dims())?;
        expect_distinct(OP, y, &[("input", x), ("weight", weight)])?;
        if let Some(r) = epilogue.residual {
            expect_distinct(OP, y, &[("residual", r)])?;
        }
        let device = ctx.device();
        if !variant.supports(xs, stride) {
            return Err(crate::Error::invalid(
                OP,
                format!(
                    "the {} variant does not handle input {xs} at stride {stride}",
                    variant.name()
                ),
            ));
        }
        match variant {
            Conv1x1Variant::Tiled => {
                let params = Conv1x1Params {
                    flags: ep.flags,
                    ..params
                };
                let groups = [ys.plane().div_ceil(TILE), cout.div_ceil(TILE), xs.n];
                let groups = workgroups(OP, device, groups)?;
                Ok(self.tiled.get().prepare(
                    device,
                    &params,
                    &[
                        (1, x.buffer()),
                        (2, weight.buffer()),
                        (3, ep.scale),
                        (4, ep.bias),
                        (5, ep.residual),
                        (6, y.buffer()),
                        (8, ep.in_scale),
                        (9, ep.in_bias),
                    ],
                    groups,
                ))
            }
            Conv1x1Variant::Register
            | Conv1x1Variant::Vec4
            | Conv1x1Variant::RegisterWhole
            | Conv1x1Variant::Vec4Whole => {
                let Some((gemm, whole)) = self.packed(variant) else {
                    return Err(crate::Error::invalid(OP, "not a packed GEMM variant"));
                };
                PackedGemm {
                    op: OP,
                    gemm,
                    whole,
                    input_affine: true,
                    pack: self.pack_pipeline(),
                    x,
                    xs,
                    depth: xs.c,
                    weight,
                    transposed: false,
                    cout,
                    stride,
                    epilogue: &ep,
                    y,
                    extra: None,
                }
                .build(ctx)
            }
        }
    }

    /// The pipelines of a packed-weight GEMM variant and whether it runs whole rows (`None`
    /// for the variants that read the weight as it is).
    fn packed(&self, variant: Conv1x1Variant) -> Option<(&PackedPipelines, bool)> {
        match variant {
            Conv1x1Variant::Register => Some((&self.register, false)),
            Conv1x1Variant::RegisterWhole => Some((&self.register, true)),
            Conv1x1Variant::Vec4 => Some((&self.vec4, false)),
            Conv1x1Variant::Vec4Whole => Some((&self.vec4, true)),
            Conv1x1Variant::Tiled => None,
        }
    }
}
