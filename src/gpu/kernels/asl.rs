//! The Active Shift Layer kernels: forward, input gradient, shift gradient, normalization.

use super::params::{AslParams, NormalizeParams, RowsParams};
use super::{Dispatch, LazyPipeline, Pipeline, expect_dims, u32_of, workgroups};
use crate::error::Result;
use crate::gpu::{GpuContext, GpuTensor};
use crate::shape::{Shape4, check_nonempty, check_stride};

/// Invocations per workgroup of the ASL kernels (`WG_SIZE` in their WGSL).
const WG_SIZE: usize = 256;
/// Output positions reduced by one workgroup of `partial_sums` (`CHUNK` in
/// `asl_backward_shift.wgsl`).
pub const ASL_SHIFT_CHUNK: usize = 4096;

impl AslParams {
    fn new(op: &'static str, xs: Shape4, stride: usize, chunks: usize) -> Result<Self> {
        check_stride(op, stride)?;
        check_nonempty(op, "input", xs)?;
        let os = xs.strided(xs.c, stride);
        Ok(Self {
            n: u32_of(op, "batch size", xs.n)?,
            c: u32_of(op, "channels", xs.c)?,
            h: u32_of(op, "height", xs.h)?,
            w: u32_of(op, "width", xs.w)?,
            ho: u32_of(op, "output height", os.h)?,
            wo: u32_of(op, "output width", os.w)?,
            stride: u32_of(op, "stride", stride)?,
            chunks: u32_of(op, "chunks", chunks)?,
        })
    }
}

/// Output rows per invocation of `asl_forward_rows.wgsl`: each chunk of rows costs one extra
/// input row, so longer chunks load less, shorter ones spread small planes over more
/// invocations.
const ROWS_PER_INVOCATION: usize = 16;
/// Output vec4s per strip of `asl_forward_rows.wgsl`.
const STRIP_VEC4S: usize = 8;

/// The kernels behind [`AslForward`]: same results, different work per invocation.
/// [`AslForward::prepare`] picks one by shape and adapter; [`AslForward::prepare_variant`] runs
/// a named one (tests check each against the CPU twin).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AslForwardVariant {
    /// `shaders/asl_forward.wgsl`: one output value per invocation; any shape and stride.
    Scalar,
    /// `shaders/asl_forward_vec4.wgsl`: 4 adjacent output pixels per invocation from 4 aligned
    /// vec4 loads; stride 1 and `W` divisible by 4.
    Vec4,
    /// `shaders/asl_forward_rows.wgsl`: a strip of 32 pixels over up to 16 rows per
    /// invocation, each input row interpolated once and reused by the next output row (1.125
    /// vec4 loads per output vec4); for CPU adapters, where loads set the speed; stride 1 and
    /// `W` divisible by 4.
    Rows,
}

impl AslForwardVariant {
    /// Every variant.
    pub const ALL: [AslForwardVariant; 3] = [Self::Scalar, Self::Vec4, Self::Rows];

    /// A short name (`scalar`, `vec4`, `rows`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Scalar => "scalar",
            Self::Vec4 => "vec4",
            Self::Rows => "rows",
        }
    }

    /// Whether this variant computes the ASL of input `xs` at `stride`.
    pub fn supports(self, xs: Shape4, stride: usize) -> bool {
        match self {
            Self::Scalar => true,
            Self::Vec4 | Self::Rows => stride == 1 && xs.w.is_multiple_of(4),
        }
    }
}

/// Output planes up to this many pixels take the scalar kernel's 64-invocation entry point.
const SMALL_PLANE: usize = 192;

/// `shaders/asl_forward*.wgsl`: the shifted (and strided) copy of the input, by one of three
/// kernels ([`AslForwardVariant`]).
pub struct AslForward {
    pipeline: LazyPipeline,
    /// `main_small` of the scalar kernel: 64 invocations per workgroup, for small planes.
    small: LazyPipeline,
    vec4: LazyPipeline,
    rows: LazyPipeline,
}

impl AslForward {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: LazyPipeline::new(device, "asl_forward.wgsl", "main"),
            small: LazyPipeline::new(device, "asl_forward.wgsl", "main_small"),
            vec4: LazyPipeline::new(device, "asl_forward_vec4.wgsl", "main"),
            rows: LazyPipeline::new(device, "asl_forward_rows.wgsl", "main"),
        }
    }

    /// The variant [`AslForward::prepare`] uses for input `xs` at `stride` under `policy`
    /// ([`KernelPolicy::asl_forward`](crate::gpu::KernelPolicy::asl_forward)).
    pub fn choose(
        policy: &crate::gpu::KernelPolicy,
        xs: Shape4,
        stride: usize,
    ) -> AslForwardVariant {
        policy.asl_forward(xs, stride)
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing
    /// `out = ASL(x; shift, stride)`. `x` is `[N, C, H, W]`, `shift` is `[2, C]` (all `xpos`,
    /// then all `ypos`), `out` must be `[N, C, (H-1)/s+1, (W-1)/s+1]`.
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        x: &GpuTensor,
        shift: &GpuTensor,
        stride: usize,
        out: &GpuTensor,
    ) -> Result<Dispatch> {
        let xs = x.shape4("asl_forward", "input")?;
        let variant = Self::choose(ctx.policy(), xs, stride);
        self.prepare_variant(variant, ctx, x, shift, stride, out)
    }

    /// [`AslForward::prepare`] with a given variant.
    ///
    /// # Errors
    /// As [`AslForward::prepare`], and [`crate::Error::InvalidArgument`] when the variant does
    /// not handle the shape ([`AslForwardVariant::supports`]).
    pub fn prepare_variant(
        &self,
        variant: AslForwardVariant,
        ctx: &GpuContext,
        x: &GpuTensor,
        shift: &GpuTensor,
        stride: usize,
        out: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "asl_forward";
        let xs = x.shape4(OP, "input")?;
        let params = AslParams::new(OP, xs, stride, 0)?;
        expect_dims(OP, "shift", shift, &[2, xs.c])?;
        let os = xs.strided(xs.c, stride);
        expect_dims(OP, "output", out, &os.dims())?;
        if !variant.supports(xs, stride) {
            return Err(crate::Error::invalid(
                OP,
                format!(
                    "the {} kernel needs stride 1 and a width divisible by 4, got {xs} at stride {stride}",
                    variant.name()
                ),
            ));
        }
        let bindings = [(1, x.buffer()), (2, shift.buffer()), (3, out.buffer())];
        let device = ctx.device();
        match variant {
            AslForwardVariant::Scalar if os.plane() <= SMALL_PLANE => {
                // 64 invocations per workgroup: a 7x7 plane fills 49 of them instead of 49 of
                // 256 (w32's 7x7 shifts took about half the time on lavapipe).
                let groups = workgroups(OP, device, [os.plane().div_ceil(64), xs.c, xs.n])?;
                Ok(self.small.get().prepare(device, &params, &bindings, groups))
            }
            AslForwardVariant::Scalar => {
                let groups = workgroups(OP, device, [os.plane().div_ceil(WG_SIZE), xs.c, xs.n])?;
                Ok(self
                    .pipeline
                    .get()
                    .prepare(device, &params, &bindings, groups))
            }
            AslForwardVariant::Vec4 => {
                let groups = workgroups(OP, device, [(os.plane() / 4).div_ceil(64), xs.c, xs.n])?;
                Ok(self.vec4.get().prepare(device, &params, &bindings, groups))
            }
            AslForwardVariant::Rows => {
                let rows = ROWS_PER_INVOCATION.min(xs.h);
                let strips = xs.w.div_ceil(4 * STRIP_VEC4S);
                let chunks = xs.h.div_ceil(rows);
                let params = RowsParams {
                    n: params.n,
                    c: params.c,
                    h: params.h,
                    w: params.w,
                    rows: u32_of(OP, "rows per invocation", rows)?,
                    strips: u32_of(OP, "strips", strips)?,
                    chunks: u32_of(OP, "row chunks", chunks)?,
                    ..Default::default()
                };
                let per_plane = strips * chunks;
                let groups = workgroups(OP, device, [per_plane.div_ceil(64), xs.c, xs.n])?;
                Ok(self.rows.get().prepare(device, &params, &bindings, groups))
            }
        }
    }
}

/// `shaders/asl_backward_input.wgsl`: gradient with respect to the input, as a gather.
pub struct AslBackwardInput {
    pipeline: Pipeline,
}

impl AslBackwardInput {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: Pipeline::new(device, "asl_backward_input.wgsl", "main"),
        }
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing `dx = ASL^T(dout)`. `dx` is `[N, C, H, W]` (the forward input's shape), `dout`
    /// the forward output's shape, `shift` `[2, C]`.
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        dout: &GpuTensor,
        shift: &GpuTensor,
        stride: usize,
        dx: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "asl_backward_input";
        let xs = dx.shape4(OP, "input gradient")?;
        let params = AslParams::new(OP, xs, stride, 0)?;
        expect_dims(OP, "shift", shift, &[2, xs.c])?;
        expect_dims(
            OP,
            "output gradient",
            dout,
            &xs.strided(xs.c, stride).dims(),
        )?;
        let groups = workgroups(OP, ctx.device(), [xs.plane().div_ceil(WG_SIZE), xs.c, xs.n])?;
        Ok(self.pipeline.prepare(
            ctx.device(),
            &params,
            &[(1, dout.buffer()), (2, shift.buffer()), (3, dx.buffer())],
            groups,
        ))
    }
}

/// `shaders/asl_backward_shift.wgsl`: gradient with respect to the shifts, by a fixed-order
/// two-pass reduction (bitwise reproducible).
pub struct AslBackwardShift {
    partial_sums: Pipeline,
    finish: Pipeline,
}

impl AslBackwardShift {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            partial_sums: Pipeline::new(device, "asl_backward_shift.wgsl", "partial_sums"),
            finish: Pipeline::new(device, "asl_backward_shift.wgsl", "finish"),
        }
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing `grad = d loss / d shift` (`[2, C]`: all `dxpos`, then all `dypos`), summed over
    /// the batch and every output position, from the forward input `x` and `dout`.
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        x: &GpuTensor,
        dout: &GpuTensor,
        shift: &GpuTensor,
        stride: usize,
        grad: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "asl_backward_shift";
        let xs = x.shape4(OP, "input")?;
        check_stride(OP, stride)?;
        let os = xs.strided(xs.c, stride);
        let chunks = (xs.n * os.plane()).div_ceil(ASL_SHIFT_CHUNK);
        let params = AslParams::new(OP, xs, stride, chunks)?;
        expect_dims(OP, "shift", shift, &[2, xs.c])?;
        expect_dims(OP, "output gradient", dout, &os.dims())?;
        expect_dims(OP, "shift gradient", grad, &[2, xs.c])?;
        let partials = GpuTensor::zeros(ctx, &[xs.c, chunks, 2])?;
        let device = ctx.device();
        let partial_sums = self.partial_sums.prepare(
            device,
            &params,
            &[
                (1, x.buffer()),
                (2, dout.buffer()),
                (3, shift.buffer()),
                (4, partials.buffer()),
            ],
            workgroups(OP, device, [chunks, xs.c, 1])?,
        );
        let finish = self.finish.prepare(
            device,
            &params,
            &[(4, partials.buffer()), (5, grad.buffer())],
            workgroups(OP, device, [xs.c, 1, 1])?,
        );
        Ok(partial_sums.then(finish))
    }
}

/// `shaders/shift_grad_normalize.wgsl`: scales each channel's shift gradient to unit norm.
pub struct ShiftGradNormalize {
    pipeline: Pipeline,
}

impl ShiftGradNormalize {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: Pipeline::new(device, "shift_grad_normalize.wgsl", "main"),
        }
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing the in-place normalization of `grad` (`[2, C]`).
    pub fn prepare(&self, ctx: &GpuContext, grad: &GpuTensor) -> Result<Dispatch> {
        const OP: &str = "shift_grad_normalize";
        let c = match grad.dims() {
            [2, c] => *c,
            _ => {
                return Err(crate::Error::shape(
                    OP,
                    "shift gradient",
                    "[2, C]",
                    format!("{:?}", grad.dims()),
                ));
            }
        };
        let params = NormalizeParams {
            c: u32_of(OP, "channels", c)?,
            ..Default::default()
        };
        let groups = workgroups(OP, ctx.device(), [c.div_ceil(WG_SIZE), 1, 1])?;
        Ok(self
            .pipeline
            .prepare(ctx.device(), &params, &[(1, grad.buffer())], groups))
    }
}
