//! The 1x1 convolution GEMM with its epilogue, and the two GEMMs of its backward pass.

use super::{Dispatch, Pipeline, expect_dims, expect_distinct, u32_of, workgroups};
use crate::error::Result;
use crate::gpu::{GpuContext, GpuTensor};
use crate::shape::{Shape4, check_nonempty, check_stride};
use std::sync::OnceLock;

/// Output tile of the GEMM kernels (`TILE_M` x `TILE_N` in their WGSL).
const TILE: usize = 64;
pub(crate) const FLAG_AFFINE: u32 = 1;
pub(crate) const FLAG_RESIDUAL: u32 = 2;
pub(crate) const FLAG_RELU: u32 = 4;

/// Mirrors `struct Conv1x1Params` in `shaders/conv1x1*.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Conv1x1Params {
    n: u32,
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    stride: u32,
    flags: u32,
    _pad: [u32; 3],
}

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
            _pad: [0; 3],
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
}

/// The GEMM kernels behind [`Conv1x1`]: same bindings, parameters and results, different
/// tiling. [`Conv1x1::prepare`] picks one by shape; [`Conv1x1::prepare_variant`] runs a named one
/// (benchmarks, tests: every variant is checked against the CPU twin).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Conv1x1Variant {
    /// `shaders/conv1x1_naive.wgsl`: one invocation per output value, no reuse (the baseline).
    Naive,
    /// `shaders/conv1x1.wgsl`: 64x64 output tiles through workgroup memory, 4x4 outputs per
    /// invocation.
    Tiled,
    /// `shaders/conv1x1_reg.wgsl`: no workgroup memory; each invocation owns one pixel and 16
    /// output channels, the weights are workgroup-uniform loads.
    Register,
}

impl Conv1x1Variant {
    /// Every variant.
    pub const ALL: [Conv1x1Variant; 3] = [Self::Naive, Self::Tiled, Self::Register];

    /// A short name (`naive`, `tiled`, `register`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Naive => "naive",
            Self::Tiled => "tiled",
            Self::Register => "register",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Self::Naive => "conv1x1_naive.wgsl",
            Self::Tiled => "conv1x1.wgsl",
            Self::Register => "conv1x1_reg.wgsl",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Naive => 0,
            Self::Tiled => 1,
            Self::Register => 2,
        }
    }

    /// Workgroups for `n` images of `plane` output pixels and `cout` channels.
    fn groups(self, plane: usize, cout: usize, n: usize) -> [usize; 3] {
        match self {
            Self::Naive => [plane.div_ceil(64), cout, n],
            Self::Tiled => [plane.div_ceil(TILE), cout.div_ceil(TILE), n],
            Self::Register => [plane.div_ceil(64), cout.div_ceil(16), n],
        }
    }
}

/// Bind the epilogue's buffers and flags shared by the 1x1 GEMMs (plain and shifted).
pub(crate) struct EpilogueBinding<'b> {
    pub(crate) flags: u32,
    pub(crate) scale: &'b wgpu::Buffer,
    pub(crate) bias: &'b wgpu::Buffer,
    pub(crate) residual: &'b wgpu::Buffer,
}

/// Check `epilogue` against an output of shape `ys` and pick its buffers (placeholders for the
/// parts that are off).
pub(crate) fn bind_epilogue<'b>(
    op: &'static str,
    ctx: &'b GpuContext,
    epilogue: &Conv1x1Epilogue<'b>,
    ys: Shape4,
) -> Result<EpilogueBinding<'b>> {
    let mut flags = 0;
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
    let none = ctx.kernels().placeholder(ctx.device());
    let (scale, bias) = epilogue
        .affine
        .map_or((none, none), |(s, b)| (s.buffer(), b.buffer()));
    let residual = epilogue.residual.map_or(none, |r| r.buffer());
    Ok(EpilogueBinding {
        flags,
        scale,
        bias,
        residual,
    })
}

/// The output channels of a `[Cout, Cin]` weight whose `Cin` must be `cin`.
pub(crate) fn weight_cout(op: &'static str, weight: &GpuTensor, cin: usize) -> Result<usize> {
    match weight.dims() {
        [cout, c] if *c == cin && *cout > 0 => Ok(*cout),
        d => Err(crate::Error::shape(
            op,
            "weight",
            format!("[Cout, {cin}] with Cout >= 1"),
            format!("{d:?}"),
        )),
    }
}

/// `shaders/conv1x1*.wgsl`: 1x1 convolution with stride and epilogue, as a GEMM (one pipeline
/// per [`Conv1x1Variant`], each built on first use).
pub struct Conv1x1 {
    device: wgpu::Device,
    pipelines: [OnceLock<Pipeline>; 3],
}

impl Conv1x1 {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            device: device.clone(),
            pipelines: Default::default(),
        }
    }

    fn pipeline(&self, v: Conv1x1Variant) -> &Pipeline {
        self.pipelines[v.index()].get_or_init(|| Pipeline::new(&self.device, v.file(), "main"))
    }

    /// The variant [`Conv1x1::prepare`] uses for `cout` output channels on this adapter.
    pub fn choose(ctx: &GpuContext, _cout: usize) -> Conv1x1Variant {
        let _ = ctx;
        Conv1x1Variant::Register
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
        let cout = weight.dims().first().copied().unwrap_or(0);
        let v = Self::choose(ctx, cout);
        self.prepare_variant(v, ctx, x, weight, stride, epilogue, y)
    }

    /// [`Conv1x1::prepare`] with a given variant.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_variant(
        &self,
        variant: Conv1x1Variant,
        ctx: &GpuContext,
        x: &GpuTensor,
        weight: &GpuTensor,
        stride: usize,
        epilogue: Conv1x1Epilogue<'_>,
        y: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "conv1x1";
        let xs = x.shape4(OP, "input")?;
        let cout = weight_cout(OP, weight, xs.c)?;
        check_stride(OP, stride)?;
        let ys = xs.strided(cout, stride);
        let ep = bind_epilogue(OP, ctx, &epilogue, ys)?;
        let params = Conv1x1Params::new(OP, xs, cout, stride, ep.flags)?;
        expect_dims(OP, "output", y, &ys.dims())?;
        expect_distinct(OP, y, &[("input", x)])?;
        let device = ctx.device();
        let groups = workgroups(OP, device, variant.groups(ys.plane(), cout, xs.n))?;
        Ok(self.pipeline(variant).prepare(
            device,
            &params,
            &[
                (1, x.buffer()),
                (2, weight.buffer()),
                (3, ep.scale),
                (4, ep.bias),
                (5, ep.residual),
                (6, y.buffer()),
            ],
            groups,
        ))
    }
}

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
}

impl Conv1x1BackwardWeight {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: Pipeline::new(device, "conv1x1_backward_weight.wgsl", "main"),
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
        let params = Conv1x1Params::new(OP, xs, cout, stride, 0)?;
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
        let groups = workgroups(
            OP,
            ctx.device(),
            [xs.c.div_ceil(TILE), cout.div_ceil(TILE), 1],
        )?;
        Ok(self.pipeline.prepare(
            ctx.device(),
            &params,
            &[(1, dy.buffer()), (2, x.buffer()), (3, dw.buffer())],
            groups,
        ))
    }
}
